#!/usr/bin/env bash
# Installs what pynet needs on a Debian/Ubuntu machine (as root) and creates the project venv.
# Idempotent: a second run only checks. Never touches the machine's network configuration.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-pip python3-nftables   # Debian's interpreter + libnftables bindings
  iproute2 nftables iptables ipset conntrack ethtool   # the data planes and their tools
  containernetworking-plugins                          # reference bridge/host-local/portmap/bandwidth
  podman busybox-static uidmap runc                    # a real runtime calling the plugin (tests; runc: crun refuses hybrid cgroups)
  iperf3 socat tcpdump                                 # lab traffic and benchmarks
  ruby shellcheck make                                 # Vagrantfile and provisioning checks
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# kubectl (for `kubectl kustomize`): Debian's kubernetes-client, unless some kubectl is already there.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=/usr/bin/python3   # Debian's, for the Debian-only nftables (and bcc) bindings
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv --system-site-packages .venv
fi
stamp=.venv/.pynet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing pynet into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/pynet)"
