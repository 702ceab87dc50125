#!/usr/bin/env bash
# Every node of the Vagrant lab: kernel settings, containerd, kubelet/kubeadm/kubectl, Python for
# the CNI launchers, and the pynet image imported into containerd. Idempotent: a rerun only checks.
#
# Environment (set by the Vagrantfile): NODE_IP, K8S_MINOR (e.g. 1.31), PYNET_BACKEND.
# Needs network access (Debian mirrors, pkgs.k8s.io, the Debian base image of the Containerfile).
set -euo pipefail

: "${NODE_IP:?NODE_IP is required}"
: "${K8S_MINOR:=1.31}"
PYNET_IMAGE=localhost/pynet:0.1.0
export DEBIAN_FRONTEND=noninteractive

log() { printf '[common %s] %s\n' "$(hostname)" "$*"; }

# --- kernel: modules and sysctls kubeadm and pynet expect --------------------------------------
swapoff -a
sed -i '/\sswap\s/s/^/#/' /etc/fstab
cat >/etc/modules-load.d/pynet.conf <<'MODULES'
overlay
br_netfilter
vxlan
ip_vs
ip_vs_rr
nf_conntrack
MODULES
while read -r module; do modprobe "$module"; done </etc/modules-load.d/pynet.conf
cat >/etc/sysctl.d/90-pynet.conf <<'SYSCTL'
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
SYSCTL
sysctl --quiet --system
# the eBPF backend pins its maps here
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi
grep -q '^bpf /sys/fs/bpf ' /etc/fstab || echo 'bpf /sys/fs/bpf bpf defaults 0 0' >>/etc/fstab

# --- packages -----------------------------------------------------------------------------------
log "installing packages"
apt-get update -qq
# python3 (+ python3-nftables for the plugin's ipMasq rules): the CNI launchers in /opt/cni/bin
# run on the host with /usr/bin/python3; the rest of their code comes from /opt/pynet
apt-get install -y -qq --no-install-recommends \
  apt-transport-https ca-certificates curl gpg \
  containerd podman python3 python3-nftables nftables iptables ipset conntrack iproute2 >/dev/null
# the eBPF backend's bcc compiles against the running kernel's headers (mounted into the agent)
if [ "${PYNET_BACKEND:-nftables}" = ebpf ]; then
  apt-get install -y -qq --no-install-recommends "linux-headers-$(uname -r)" >/dev/null ||
    log "WARNING: no headers for kernel $(uname -r): upgrade the box's kernel for the ebpf backend"
fi

keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
if [ ! -s "$keyring" ]; then
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "https://pkgs.k8s.io/core:/stable:/v${K8S_MINOR}/deb/Release.key" | gpg --dearmor -o "$keyring"
fi
echo "deb [signed-by=${keyring}] https://pkgs.k8s.io/core:/stable:/v${K8S_MINOR}/deb/ /" \
  >/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
# kubernetes-cni (a kubelet dependency) puts the reference plugins, portmap included, in /opt/cni/bin
apt-get install -y -qq kubelet kubeadm kubectl >/dev/null
apt-mark hold kubelet kubeadm kubectl >/dev/null

# --- containerd: systemd cgroups, as kubelet expects -----------------------------------------------
if [ ! -f /etc/containerd/config.toml ] || ! grep -q 'SystemdCgroup = true' /etc/containerd/config.toml; then
  mkdir -p /etc/containerd
  containerd config default | sed 's/SystemdCgroup = false/SystemdCgroup = true/' >/etc/containerd/config.toml
  systemctl restart containerd
fi
systemctl enable --now containerd >/dev/null

# kubelet on the lab network, not on the NAT interface every Vagrant VM shares
echo "KUBELET_EXTRA_ARGS=--node-ip=${NODE_IP}" >/etc/default/kubelet
systemctl daemon-reload
systemctl enable kubelet >/dev/null

# --- the pynet image, built from the checkout and handed to containerd ---------------------------
log "building ${PYNET_IMAGE}"
cd /vagrant
podman build --quiet -f deploy/Containerfile --ignorefile deploy/Containerfile.dockerignore \
  -t "${PYNET_IMAGE}" . >/dev/null
archive=$(mktemp /tmp/pynet-image.XXXXXX.tar)
trap 'rm -f "$archive"' EXIT
podman save --format docker-archive -o "$archive" "${PYNET_IMAGE}"
ctr --namespace k8s.io images import "$archive" >/dev/null
log "ready"
