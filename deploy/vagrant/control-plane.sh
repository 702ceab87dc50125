#!/usr/bin/env bash
# The Vagrant lab's control plane: kubeadm init without kube-proxy (pynet replaces it), then
# pynet itself with `kubectl apply -k`. Rerunning it (e.g. `PYNET_BACKEND=ebpf vagrant provision
# cp`) keeps the cluster and re-applies pynet with the chosen backend.
#
# Environment (set by the Vagrantfile): NODE_IP, BOOTSTRAP_TOKEN, POD_CIDR, PYNET_BACKEND.
set -euo pipefail

: "${NODE_IP:?NODE_IP is required}"
: "${BOOTSTRAP_TOKEN:?BOOTSTRAP_TOKEN is required}"
: "${POD_CIDR:=10.244.0.0/16}"
: "${PYNET_BACKEND:=nftables}"
export KUBECONFIG=/etc/kubernetes/admin.conf

log() { printf '[control-plane] %s\n' "$*"; }

case "$PYNET_BACKEND" in
  nftables | iptables | ipvs | ebpf) ;;
  *)
    echo "PYNET_BACKEND must be nftables, iptables, ipvs or ebpf (got '$PYNET_BACKEND')" >&2
    exit 2
    ;;
esac

if [ ! -f "$KUBECONFIG" ]; then
  log "kubeadm init"
  # addon/kube-proxy skipped: pynet renders Services. The pod CIDR is split into one /24 per
  # node by the controller manager; pynet's agent publishes it for pynet-ipam.
  kubeadm init \
    --apiserver-advertise-address="$NODE_IP" \
    --pod-network-cidr="$POD_CIDR" \
    --token="$BOOTSTRAP_TOKEN" \
    --token-ttl=0 \
    --skip-phases=addon/kube-proxy
fi

for home in /root /home/vagrant; do
  install -d -m 0700 "$home/.kube"
  install -m 0600 "$KUBECONFIG" "$home/.kube/config"
done
chown -R vagrant:vagrant /home/vagrant/.kube

# Without kube-proxy, the agent cannot reach the API through the `kubernetes` Service before it
# has programmed that Service: tell it where the API server really is.
kubectl create namespace pynet-system --dry-run=client -o yaml | kubectl apply -f -
kubectl --namespace pynet-system create configmap pynet-apiserver \
  --from-literal=KUBERNETES_SERVICE_HOST="$NODE_IP" \
  --from-literal=KUBERNETES_SERVICE_PORT=6443 \
  --dry-run=client -o yaml | kubectl apply -f -

log "applying pynet (backend ${PYNET_BACKEND})"
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
cp -r /vagrant/deploy "$workdir/deploy"
cat >"$workdir/kustomization.yaml" <<KUSTOMIZATION
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deploy/overlays/${PYNET_BACKEND}
configMapGenerator:
  - name: pynet-config
    namespace: pynet-system
    behavior: merge
    literals:
      - cluster-cidr=${POD_CIDR}
KUSTOMIZATION
kubectl apply -k "$workdir"

kubectl --namespace pynet-system rollout status daemonset/pynet --timeout=300s
kubectl get nodes -o wide
