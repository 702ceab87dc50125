"""The agent started with the DaemonSet's own arguments answers its probes (root, throwaway netns).

Covers: the rendered DaemonSet's agent arguments, with the ConfigMap's values substituted as the
kubelet would, run for real inside a node namespace (only ``--source`` added, since there is no API
server here, and the pod CIDR file moved to a temp dir): the liveness (``/healthz``) and readiness
(``/readyz``) probes the DaemonSet declares answer 200 at the host/port/path it declares; metrics
answer on the ConfigMap's metrics address; the pod CIDR file is written for pynet-ipam; the
nftables and iptables variants program their backend, and the VXLAN overlay its route; SIGTERM stops it cleanly; then the
clean-up DaemonSet's command (``deploy/uninstall``) removes the rules and the VXLAN device.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from pynet.overlay import ANNOTATION_VTEP_MAC, vtep_mac_for
from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.netns import TestNetns

REPO = Path(__file__).resolve().parents[3]
PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)\n"
    "except Exception as err:\n"
    "    print(getattr(err, 'code', 'down'))\n"
)


def _render(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["/usr/bin/kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _kind(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [obj] = [o for o in objs if o["kind"] == kind]
    return obj


def _expand(argv: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], a) for a in argv]


def _poll(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _get(ns: TestNetns, url: str) -> str:
    return ns.run(sys.executable, "-c", PROBE, url, check=False).stdout.strip()


#: variant -> (command that lists the backend's rules in the node, what must appear there)
VARIANTS = {
    "overlays/nftables": (("nft", "list", "table", "ip", "pynet"), "10.96.0.80"),
    "overlays/iptables": (("iptables-save", "-t", "nat"), "10.96.0.80/32"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_with_daemonset_arguments(
    make_netns: Callable[..., TestNetns], tmp_path: Path, variant: str
) -> None:
    list_rules, vip = VARIANTS[variant]
    objs = _render(REPO / "deploy" / variant)
    data = _kind(objs, "ConfigMap")["data"]
    ds = _kind(objs, "DaemonSet")
    [agent] = ds["spec"]["template"]["spec"]["containers"]
    env = {"NODE_NAME": "node-1"}
    for e in agent["env"]:
        if "configMapKeyRef" in e.get("valueFrom", {}):
            env[e["name"]] = data[e["valueFrom"]["configMapKeyRef"]["key"]]
    assert agent["command"] == ["pynet", "agent"]

    node, upstream = make_netns("dsnode"), make_netns("dsup")
    node.sh(
        f"ip link add uplink type veth peer name peer0 netns {upstream.name} && "
        "ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up"
    )
    upstream.sh("ip addr add 192.0.2.2/24 dev peer0 && ip link set peer0 up")
    src = tmp_path / "cluster"
    src.mkdir()
    (src / "cluster.yaml").write_text(
        yaml.safe_dump_all(
            [
                make_node("node-1", ["192.0.2.1"], ["10.244.9.0/24"]),
                make_node(
                    "node-2",
                    ["192.0.2.2"],
                    ["10.244.10.0/24"],
                    annotations={ANNOTATION_VTEP_MAC: vtep_mac_for("node-2")},  # what its agent publishes
                ),
                make_service("web", "10.96.0.80", [port(80, name="http")]),
                make_slice(
                    "web",
                    ["10.244.10.5"],
                    [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    node_name="node-2",
                ),
            ]
        )
    )
    pod_cidr_file = tmp_path / "pod-cidr"
    argv = _expand(agent["args"], env) + [
        "--source",
        str(src),  # no API server here: the same objects from manifests
        "--source-poll-interval",
        "0.1",
        f"--pod-cidr-file={pod_cidr_file}",  # not the machine's /run/pynet
    ]
    proc = node.popen(
        [sys.executable, "-m", "pynet", "agent", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            get = agent[probe]["httpGet"]
            url = f"http://{get['host']}:{get['port']}{get['path']}"
            assert _poll(lambda url=url: _get(node, url) == "200", 30), (probe, _get(node, url))
        metrics = f"http://{data['metrics-address']}/metrics"
        assert _poll(lambda: _get(node, metrics) == "200", 10)
        out = node.run(
            sys.executable,
            "-c",
            "import urllib.request,sys; sys.stdout.write("
            f"urllib.request.urlopen({metrics!r}).read().decode())",
        ).stdout
        assert "pynet_sync_proxy_rules_last_timestamp_seconds" in out
        assert pod_cidr_file.read_text().split() == ["10.244.9.0/24"]
        assert vip in node.run(*list_rules).stdout
        assert _poll(lambda: "pynet-vxlan" in node.run("ip", "route", "show", "10.244.10.0/24").stdout, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err

    # the clean-up DaemonSet's command, in the same node
    cleanup = _kind(_render(REPO / "deploy" / "uninstall"), "DaemonSet")
    [rules] = [
        c for c in cleanup["spec"]["template"]["spec"]["initContainers"] if c["name"] == "cleanup-rules"
    ]
    command = _expand(rules["command"], {"NODE_NAME": "node-1"})
    assert command[:2] == ["pynet", "agent"]
    done = node.run(sys.executable, "-m", "pynet", "agent", *command[2:], check=False)
    assert done.returncode == 0, done.stderr
    assert node.run("nft", "list", "table", "ip", "pynet", check=False).returncode != 0
    assert "PYNET" not in node.run("iptables-save").stdout
    assert node.run("ip", "link", "show", "pynet-vxlan", check=False).returncode != 0
