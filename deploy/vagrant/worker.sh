#!/usr/bin/env bash
# A Vagrant lab worker: kubeadm join. pynet arrives by itself (the DaemonSet tolerates every node).
#
# Environment (set by the Vagrantfile): NODE_IP, CONTROL_PLANE_IP, BOOTSTRAP_TOKEN.
set -euo pipefail

: "${NODE_IP:?NODE_IP is required}"
: "${CONTROL_PLANE_IP:?CONTROL_PLANE_IP is required}"
: "${BOOTSTRAP_TOKEN:?BOOTSTRAP_TOKEN is required}"

if [ -f /etc/kubernetes/kubelet.conf ]; then
  echo "[worker $(hostname)] already joined"
  exit 0
fi

# Wait (bounded) for the API server: workers may come up while the control plane still initialises.
for _ in $(seq 1 60); do
  if curl -ksf "https://${CONTROL_PLANE_IP}:6443/readyz" >/dev/null; then
    break
  fi
  sleep 5
done

# Lab only: the CA is not pinned (the workers cannot know its hash before the control plane
# exists). A real cluster passes --discovery-token-ca-cert-hash instead.
kubeadm join "${CONTROL_PLANE_IP}:6443" \
  --token="$BOOTSTRAP_TOKEN" \
  --discovery-token-unsafe-skip-ca-verification \
  --node-name="$(hostname)"
echo "[worker $(hostname)] joined; node IP ${NODE_IP}"
