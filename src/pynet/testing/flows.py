"""SHARED_FLOWS: one table of packet flows that every backend's tracer must agree with.

:func:`shared_state` is the cluster they run against (IP plan as in :mod:`pynet.testing.services`:
node 172.31.0.1, pods 10.244.1.0/24 on this node and 10.244.2.0/24 elsewhere, cluster CIDR
10.244.0.0/16, services 10.96.0.0/16, external IPs 192.0.2.0/24, LB IPs 198.51.100.0/24).
A flow names its packet and what must happen: the set of endpoints it may reach (every one of them,
no other), or REJECT / DROP, and whether the backend sees the node's address (masquerade).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from types import MappingProxyType

from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName
from pynet.proxy.state import ProxyState

__all__ = ["NODE_IP", "SHARED_FLOWS", "PacketFlow", "shared_state"]

NODE_IP = "172.31.0.1"
POD = "10.244.1.20"  # a client pod on this node
OUTSIDE = "203.0.113.7"  # a client outside the cluster
ALLOWED = "198.18.0.5"  # inside the LB's source range
A, B, R = "10.244.1.11", "10.244.1.12", "10.244.2.13"  # local, local, remote endpoints


def _port(name: str, cip: str, p: int = 80, proto: Protocol = Protocol.TCP, **kw: object) -> ServicePort:
    spn = ServicePortName(NamespacedName("flows", name), "", proto)
    return ServicePort(spn, IPFamily.V4, ip_address(cip), p, proto, **kw)  # type: ignore[arg-type]


def _ep(addr: str, **kw: object) -> Endpoint:
    local = addr.startswith("10.244.1.")
    return Endpoint(ip_address(addr), 8080, node_name="node-1" if local else "node-2", is_local=local, **kw)  # type: ignore[arg-type]


def shared_state() -> ProxyState:
    ports = [
        (_port("web", "10.96.0.10"), (_ep(A), _ep(B), _ep(R))),
        (_port("dns", "10.96.0.11", 53, Protocol.UDP), (_ep(B),)),
        (_port("np", "10.96.0.12", node_port=30080, external_ips=(ip_address("192.0.2.12"),)), (_ep(A), _ep(R))),
        (_port("etp", "10.96.0.13", node_port=30081, external_policy_local=True), (_ep(A), _ep(R))),
        (_port("etp-remote", "10.96.0.14", node_port=30082, external_policy_local=True), (_ep(R),)),
        (_port("itp", "10.96.0.15", internal_policy_local=True), (_ep(A), _ep(R))),
        (_port("lb", "10.96.0.16", load_balancer_ips=(ip_address("198.51.100.16"),),
               load_balancer_source_ranges=(ip_network("198.18.0.0/16"),), node_port=30083), (_ep(B),)),
        (_port("empty", "10.96.0.17"), ()),
        (_port("term", "10.96.0.18"), (_ep(A, ready=False, serving=True, terminating=True),
                                       _ep(B, ready=False, serving=False, terminating=True))),
        (_port("hair", "10.96.0.19"), (_ep(A),)),
    ]
    return ProxyState(
        IPFamily.V4, "node-1", node_ips=(ip_address(NODE_IP),), cluster_cidrs=(ip_network("10.244.0.0/16"),),
        services=MappingProxyType({sp.name: sp for sp, _ in ports}),
        endpoints=MappingProxyType({sp.name: eps for sp, eps in ports}),
    )


@dataclass(frozen=True)
class PacketFlow:
    name: str
    src: str
    proto: str
    dst: str
    dport: int
    #: endpoints "ip:port" the flow may reach, or {"REJECT"} / {"DROP"}
    output: frozenset[str]
    masq: bool = False
    origin: str = "remote"  # "local": sent by the node itself


def _f(name: str, src: str, dst: str, dport: int, out: set[str], masq: bool = False, proto: str = "tcp",
       origin: str = "remote") -> PacketFlow:
    return PacketFlow(name, src, proto, dst, dport, frozenset(out), masq, origin)


def _eps(*ips: str) -> set[str]:
    return {f"{ip}:8080" for ip in ips}


SHARED_FLOWS: tuple[PacketFlow, ...] = (
    _f("clusterip from pod", POD, "10.96.0.10", 80, _eps(A, B, R)),
    _f("clusterip from outside is masqueraded", OUTSIDE, "10.96.0.10", 80, _eps(A, B, R), masq=True),
    _f("clusterip udp", POD, "10.96.0.11", 53, _eps(B), proto="udp"),
    _f("clusterip wrong port rejected", POD, "10.96.0.10", 81, {"REJECT"}),
    _f("nodeport from outside", OUTSIDE, NODE_IP, 30080, _eps(A, R), masq=True),
    _f("nodeport from the node", NODE_IP, NODE_IP, 30080, _eps(A, R), masq=True, origin="local"),
    _f("external ip", OUTSIDE, "192.0.2.12", 80, _eps(A, R), masq=True),
    _f("etp local keeps client, local only", OUTSIDE, NODE_IP, 30081, _eps(A)),
    _f("etp local from a pod uses the cluster", POD, NODE_IP, 30081, _eps(A, R)),
    _f("etp local from the node is masqueraded", NODE_IP, NODE_IP, 30081, _eps(A, R), masq=True, origin="local"),
    _f("etp local without local endpoints drops", OUTSIDE, NODE_IP, 30082, {"DROP"}),
    _f("itp local", POD, "10.96.0.15", 80, _eps(A)),
    _f("lb allowed source", ALLOWED, "198.51.100.16", 80, _eps(B), masq=True),
    _f("lb denied source", OUTSIDE, "198.51.100.16", 80, {"DROP"}),
    _f("no endpoints rejected", POD, "10.96.0.17", 80, {"REJECT"}),
    _f("terminating fallback", POD, "10.96.0.18", 80, _eps(A)),
    _f("hairpin is masqueraded", A, "10.96.0.19", 80, _eps(A), masq=True),
    _f("an endpoint reaching another endpoint is not", B, "10.96.0.19", 80, _eps(A)),
    _f("unrelated traffic untouched", POD, "10.244.1.11", 8080, {"ACCEPT"}),
)
