"""The overlay controllers against a real kernel, without the plugin or the agent: three node
namespaces on an underlay bridge, one hand-made "pod" per node (a veth with the node's .2 address),
and the controller run inside each node namespace as the agent runs it. Covers: VXLAN device shape
(VNI, port, learning off, MTU 1450, derived MAC, VTEP /32), FDB/neighbour/route per peer, cross-node
ping and TCP between pods, idempotent re-sync, a removed node's entries gone, stale entries of a
restarted controller removed, cleanup; host-gw routes and traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pynet.lab import netns, topology
from pynet.lab.plan import LabPlan, NodePlan
from pynet.overlay import vtep_mac_for
from pynet.testing.netns import random_suffix

SYNC_SCRIPT = """
import json, sys
from ipaddress import ip_address, ip_network
from pynet.overlay import make_overlay
from pynet.proxy.model import Node
mode, me, raw, action = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
nodes = [Node(n["name"], (ip_address(n["ip"]),), (ip_network(n["cidr"]),)) for n in raw]
ctrl = make_overlay(mode, node_name=me)
if action == "cleanup":
    ctrl.cleanup()
else:
    ctrl.sync(next((n for n in nodes if n.name == me), None), nodes)
    print(json.dumps(ctrl.local_annotations()))
"""


def node_docs(plan: LabPlan, names: list[str]) -> str:
    return json.dumps([{"name": n.name, "ip": str(n.ip), "cidr": str(n.pod_cidr)} for n in plan.nodes if n.name in names])


def sync(plan: LabPlan, node: NodePlan, mode: str, names: list[str], action: str = "sync") -> str:
    return netns.run(node.netns, [sys.executable, "-c", SYNC_SCRIPT, mode, node.name, node_docs(plan, names), action]).stdout


@pytest.fixture
def lab() -> Iterator[LabPlan]:
    plan = LabPlan.build(f"ov{random_suffix(6)}", nodes=3, pods_per_node=1, root=Path("/nonexistent"))
    try:
        topology.build_underlay(plan)
        for node in plan.nodes:
            topology.build_node(plan, node)
            pod = node.pods[0]
            netns.add(pod.netns)
            gw, addr = node.pod_cidr.network_address + 1, node.pod_cidr.network_address + 2
            netns.run(node.netns, ["ip", "link", "add", "vp", "mtu", "1450", "type", "veth", "peer", "name", "eth0",
                                   "netns", pod.netns])
            netns.run(node.netns, ["ip", "addr", "add", f"{gw}/24", "dev", "vp"])
            netns.run(node.netns, ["ip", "link", "set", "vp", "up"])
            netns.run(pod.netns, ["ip", "addr", "add", f"{addr}/24", "dev", "eth0"])
            netns.run(pod.netns, ["ip", "link", "set", "eth0", "mtu", "1450", "up"])
            netns.run(pod.netns, ["ip", "route", "add", "default", "via", str(gw)])
        yield plan
    finally:
        for name in netns.list_with_prefix(plan.prefix):
            netns.delete(name)


def ping(src: str, dst: str) -> bool:
    return netns.run(src, ["busybox", "ping", "-c", "1", "-W", "2", dst], check=False).returncode == 0


def tcp_bulk(plan: LabPlan, src: str, dst_ns: str, dst: str, nbytes: int) -> dict[str, object]:
    server = subprocess.Popen(netns.argv(dst_ns, [sys.executable, "-m", "pynet.lab.podserver", "x"]),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        out = netns.run(src, [sys.executable, "-m", "pynet.lab.probe", f"tcp:{dst}:8080", f"bulk:{dst}:8081:{nbytes}"],
                        check=False, timeout=30).stdout
        results = [json.loads(line) for line in out.splitlines()]
        return {"echo": results[0], "bulk": results[1]}
    finally:
        server.kill()
        server.wait()


def test_vxlan_overlay_end_to_end(lab: LabPlan) -> None:
    all3 = ["node1", "node2", "node3"]
    n1, n2, n3 = lab.nodes
    ann = json.loads(sync(lab, n1, "vxlan", all3))
    assert ann == {"pynet.io/vtep-mac": vtep_mac_for("node1"), "pynet.io/vtep-ip": "10.244.1.0"}
    for n in (n2, n3):
        sync(lab, n, "vxlan", all3)

    link = json.loads(netns.run(n1.netns, ["ip", "-d", "-j", "link", "show", "pynet-vxlan"]).stdout)[0]
    data = link["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data["local"], data["learning"], link["mtu"], link["address"]) == (
        1, 8472, "192.168.100.11", False, 1450, vtep_mac_for("node1"))
    fdb = netns.run(n1.netns, ["bridge", "fdb", "show", "dev", "pynet-vxlan"]).stdout
    assert f"{vtep_mac_for('node2')} dst 192.168.100.12" in fdb and f"{vtep_mac_for('node3')} dst 192.168.100.13" in fdb
    neigh = netns.run(n1.netns, ["ip", "neigh", "show", "dev", "pynet-vxlan"]).stdout
    assert f"10.244.3.0 lladdr {vtep_mac_for('node3')} PERMANENT" in neigh
    routes = netns.run(n1.netns, ["ip", "route", "show", "dev", "pynet-vxlan"]).stdout
    assert "10.244.2.0/24 via 10.244.2.0 proto 112 onlink" in routes

    pod1, pod3 = n1.pods[0].netns, n3.pods[0].netns
    assert ping(pod1, "10.244.2.2") and ping(pod1, "10.244.3.2")
    res = tcp_bulk(lab, pod1, pod3, "10.244.3.2", 2 * 1024 * 1024)
    assert res["echo"]["reply"] == "x 10.244.1.2", res  # type: ignore[index]
    assert res["bulk"]["ok"] and res["bulk"]["bytes"] == 2 * 1024 * 1024, res  # type: ignore[index]

    # idempotent: a second sync changes nothing
    before = netns.run(n1.netns, ["bridge", "fdb", "show", "dev", "pynet-vxlan"]).stdout
    sync(lab, n1, "vxlan", all3)
    assert netns.run(n1.netns, ["bridge", "fdb", "show", "dev", "pynet-vxlan"]).stdout == before

    # node3 leaves: its FDB entry, neighbour and route go; node2 stays reachable
    sync(lab, n1, "vxlan", ["node1", "node2"])
    fdb = netns.run(n1.netns, ["bridge", "fdb", "show", "dev", "pynet-vxlan"]).stdout
    assert "192.168.100.13" not in fdb and "192.168.100.12" in fdb
    assert "10.244.3.0" not in netns.run(n1.netns, ["ip", "neigh", "show", "dev", "pynet-vxlan"]).stdout
    assert "10.244.3.0/24" not in netns.run(n1.netns, ["ip", "route"]).stdout
    assert not ping(pod1, "10.244.3.2")
    assert ping(pod1, "10.244.2.2")

    # a hand-made stale entry on our device (a crashed predecessor) is removed; foreign routes are kept
    netns.run(n1.netns, ["bridge", "fdb", "append", "0a:00:00:00:00:99", "dev", "pynet-vxlan", "dst", "192.168.100.99"])
    netns.run(n1.netns, ["ip", "route", "add", "10.99.0.0/16", "via", "192.168.100.1"])
    sync(lab, n1, "vxlan", ["node1", "node2"])
    assert "0a:00:00:00:00:99" not in netns.run(n1.netns, ["bridge", "fdb", "show", "dev", "pynet-vxlan"]).stdout
    assert "10.99.0.0/16" in netns.run(n1.netns, ["ip", "route"]).stdout

    sync(lab, n1, "vxlan", [], action="cleanup")
    assert netns.run(n1.netns, ["ip", "link", "show", "pynet-vxlan"], check=False).returncode != 0


def test_host_gw_routes_and_traffic(lab: LabPlan) -> None:
    all3 = ["node1", "node2", "node3"]
    for n in lab.nodes:
        sync(lab, n, "host-gw", all3)
    n1 = lab.nodes[0]
    routes = netns.run(n1.netns, ["ip", "route"]).stdout
    assert "10.244.2.0/24 via 192.168.100.12 dev eth0 proto 112" in routes
    assert "10.244.3.0/24 via 192.168.100.13 dev eth0 proto 112" in routes
    assert netns.run(n1.netns, ["ip", "link", "show", "pynet-vxlan"], check=False).returncode != 0
    assert ping(n1.pods[0].netns, "10.244.3.2")
    sync(lab, n1, "host-gw", ["node1", "node2"])
    routes = netns.run(n1.netns, ["ip", "route"]).stdout
    assert "10.244.3.0/24" not in routes and "10.244.2.0/24 via 192.168.100.12" in routes
    sync(lab, n1, "host-gw", [], action="cleanup")
    assert "proto 112" not in netns.run(n1.netns, ["ip", "route"]).stdout
    assert "192.168.100.0/24 dev eth0" in netns.run(n1.netns, ["ip", "route"]).stdout
