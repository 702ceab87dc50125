"""Build (and read) the lab's wires: the underlay bridge, node and external namespaces.

Everything is made with pyroute2 sockets opened INSIDE the lab's namespaces
(``IPRoute(netns=path, flags=0)``: created by a short-lived helper, so this process never setns and
``flags=0`` never creates a namespace by accident). The root namespace is never touched.

The equivalent ``ip`` commands, for the docs and for a learner::

    ip netns add pynetlab-demo-ul; ip -n pynetlab-demo-ul link add br0 type bridge
    ip netns add pynetlab-demo-node1
    ip -n pynetlab-demo-ul link add n1 type veth peer name eth0 netns pynetlab-demo-node1
    ip -n pynetlab-demo-ul link set n1 master br0 up
    ip -n pynetlab-demo-node1 addr add 192.168.100.11/24 dev eth0; ip -n ... link set eth0 up
    ip netns exec pynetlab-demo-node1 sysctl -w net.ipv4.ip_forward=1
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from ipaddress import IPv4Interface
from typing import Any

from pyroute2 import IPRoute

from pynet.lab import netns
from pynet.lab.plan import EXTERNAL_IP, UNDERLAY_MTU, LabPlan, NodePlan

__all__ = ["build_external", "build_node", "build_underlay", "link_addresses"]

BRIDGE = "br0"
NODE_UPLINK = "eth0"


@contextlib.contextmanager
def _ipr(name: str) -> Iterator[Any]:
    ipr = IPRoute(netns=f"{netns.NETNS_DIR}/{name}", flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def build_underlay(plan: LabPlan) -> None:
    """The underlay namespace with bridge ``br0``: the lab's L2 segment between nodes."""
    netns.add(plan.underlay_netns)
    with _ipr(plan.underlay_netns) as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge", mtu=UNDERLAY_MTU)
        ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")


def _plug(plan: LabPlan, port: str, ns_name: str, address: IPv4Interface) -> None:
    """A veth from the underlay bridge (``port``) to ``eth0`` in ``ns_name``, addressed and up."""
    with _ipr(plan.underlay_netns) as ipr:
        ipr.link("add", ifname=port, kind="veth", peer={"ifname": NODE_UPLINK}, mtu=UNDERLAY_MTU)
        peer = ipr.link_lookup(ifname=NODE_UPLINK)[0]
        ipr.link("set", index=peer, net_ns_fd=f"{netns.NETNS_DIR}/{ns_name}")
        idx = ipr.link_lookup(ifname=port)[0]
        ipr.link("set", index=idx, master=ipr.link_lookup(ifname=BRIDGE)[0])
        ipr.link("set", index=idx, state="up")
    with _ipr(ns_name) as ipr:
        idx = ipr.link_lookup(ifname=NODE_UPLINK)[0]
        ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=idx, state="up")


def build_node(plan: LabPlan, node: NodePlan) -> None:
    """A node namespace on the underlay, forwarding like a Kubernetes node does."""
    netns.add(node.netns)
    _plug(plan, node.underlay_port, node.netns, node.address)
    netns.run(node.netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])


def build_external(plan: LabPlan) -> None:
    """The "outside world": a client namespace on the underlay, outside the cluster CIDR."""
    netns.add(plan.external_netns)
    _plug(plan, "ext", plan.external_netns, EXTERNAL_IP)


def link_addresses(ns_name: str) -> dict[str, list[str]]:
    """``{ifname: ["addr/len", ...]}`` of every link in ``ns_name`` (for ``pynet lab status``)."""
    out: dict[str, list[str]] = {}
    with _ipr(ns_name) as ipr:
        names = {m["index"]: m.get("IFLA_IFNAME") for m in ipr.get_links()}
        for m in ipr.get_addr():
            name = names.get(m["index"], str(m["index"]))
            if name == "lo":
                continue
            out.setdefault(name, []).append(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
    return out
