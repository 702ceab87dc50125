"""The plugin as ``pynet install-cni`` leaves it on a node wires a real pod (root, throwaway netns).

Covers: install-cni with a ``--home-dir`` code bundle, then the cluster conflist the DaemonSet
ships (``deploy/base/cni/10-pynet.conflist``: pynet + the reference ``portmap``) run like libcni
with the INSTALLED executables, inside a node namespace of the test's own (with an uplink and a
default route, as a node has): ADD gives the pod its address from the node's pod CIDR file, the
VXLAN-derived MTU, a default route, and it reaches its gateway; the IPAM lease and the ipMasq table
exist; DEL in reverse order removes the pod interface, the lease and the table. Nothing happens in
the root namespace: every link lives in namespaces the test creates and removes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import ip_interface, ip_network
from pathlib import Path
from typing import Any

from pynet.testing.cni import PluginRun, run_plugin
from pynet.testing.netns import TestNetns

REPO = Path(__file__).resolve().parents[3]
POD_CIDR = "10.250.7.0/24"


def _chain(
    node: TestNetns, command: str, conflist: dict[str, Any], bin_dir: Path, pod: TestNetns, prev: Any = None
) -> PluginRun:
    """libcni's order (ADD forward with prevResult threaded, DEL backward) with the installed pynet."""
    plugins = conflist["plugins"][::-1] if command == "DEL" else conflist["plugins"]
    result, last = prev, None
    for plugin in plugins:
        conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
        if result is not None:
            conf["prevResult"] = result
        exe = bin_dir / "pynet" if plugin["type"] == "pynet" else Path("/usr/lib/cni") / plugin["type"]
        last = run_plugin(
            node, command, conf, "ctr-deploy", pod.path, plugin=str(exe), cni_path=f"{bin_dir}:/usr/lib/cni"
        )
        assert last.ok, (plugin["type"], last.out, last.stderr)
        if command == "ADD":
            result = last.out
    assert last is not None
    return last


def _json(ns: TestNetns, *argv: str) -> Any:
    return json.loads(ns.run(*argv).stdout)


def test_installed_plugin_wires_and_unwires_a_pod(make_netns: Any, tmp_path: Path) -> None:
    node, pod, upstream = make_netns("dnode"), make_netns("dpod"), make_netns("dup")
    # the node's uplink and default route (the plugin sizes the VXLAN device from the uplink's MTU)
    node.sh(
        f"ip link add uplink type veth peer name peer0 netns {upstream.name} && "
        "ip addr add 192.0.2.1/24 dev uplink && ip link set uplink up && "
        "ip route add default via 192.0.2.254"
    )
    upstream.sh("ip addr add 192.0.2.254/24 dev peer0 && ip link set peer0 up")

    # the DaemonSet's conflist, with the node's files under tmp_path
    conflist = json.loads((REPO / "deploy/base/cni/10-pynet.conflist").read_text())
    (tmp_path / "pod-cidr").write_text(POD_CIDR + "\n")
    ipam = conflist["plugins"][0]["ipam"]
    ipam.update(podCidrFile=str(tmp_path / "pod-cidr"), dataDir=str(tmp_path / "ipam"))
    source = tmp_path / "10-pynet.conflist"
    source.write_text(json.dumps(conflist))
    bin_dir = tmp_path / "opt-cni-bin"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pynet",
            "install-cni",
            "--bin-dir",
            str(bin_dir),
            "--conf-dir",
            str(tmp_path / "net.d"),
            "--conflist",
            str(source),
            "--home-dir",
            str(tmp_path / "opt-pynet"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "opt-pynet" / "current") in (bin_dir / "pynet").read_text()

    added = _chain(node, "ADD", conflist, bin_dir, pod)
    [ip] = [ip_interface(i["address"]) for i in added.out["ips"]]
    assert ip in ip_network(POD_CIDR) and ip.network == ip_network(POD_CIDR)
    [eth0] = _json(pod, "ip", "-j", "addr", "show", "dev", "eth0")
    assert eth0["mtu"] == 1450  # uplink 1500 minus the VXLAN overhead
    assert str(ip.ip) in [a["local"] for a in eth0["addr_info"]]
    [default] = _json(pod, "ip", "-j", "route", "show", "default")
    gateway = str(ip_network(POD_CIDR)[1])
    assert default["gateway"] == gateway
    assert pod.run("busybox", "ping", "-c", "1", "-W", "2", gateway, check=False).returncode == 0
    assert {link["ifname"] for link in _json(node, "ip", "-j", "link", "show")} >= {"pynet0", "pynet-vxlan"}
    assert (tmp_path / "ipam" / "pynet" / str(ip.ip)).is_file()
    assert node.run("nft", "list", "table", "inet", "pynet-cni", check=False).returncode == 0

    _chain(node, "DEL", conflist, bin_dir, pod, prev=added.out)
    assert pod.run("ip", "link", "show", "dev", "eth0", check=False).returncode != 0
    assert not (tmp_path / "ipam" / "pynet" / str(ip.ip)).exists()
    assert node.run("nft", "list", "table", "inet", "pynet-cni", check=False).returncode != 0
