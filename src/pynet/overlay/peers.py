"""Desired overlay state: which peers a node must program, and the diff against what is programmed.

Pure, no I/O. ``desired_peers(local_name, nodes)`` turns the cluster's Nodes into one :class:`Peer`
per OTHER node that has an IPv4 address and an IPv4 pod CIDR (a node missing either cannot be reached
yet and is simply left out, as flannel does until the node has a lease). ``diff_peers`` compares two
peer maps and says what to remove and what to (re)program; a peer whose MAC, node address or CIDR
changed is both removed (old entries) and added (new ones), so stale FDB/neighbour/route entries never
survive a change of a peer's identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pynet.overlay.vtep import first_ipv4, first_ipv4_cidr, node_vtep_ip, node_vtep_mac
from pynet.proxy.model import Node

__all__ = ["Peer", "PeerDiff", "desired_peers", "diff_peers", "peer_of"]


@dataclass(frozen=True, slots=True, order=True)
class Peer:
    """What this node needs to know about another node to reach its pods."""

    name: str
    node_ip: IPv4Address  # underlay address: VXLAN destination, host-gw next hop
    pod_cidr: IPv4Network
    vtep_ip: IPv4Address  # on the peer's VXLAN device; next hop of the onlink route
    vtep_mac: str  # lower-case colon form


@dataclass(frozen=True, slots=True)
class PeerDiff:
    remove: tuple[Peer, ...]
    add: tuple[Peer, ...]

    @property
    def empty(self) -> bool:
        return not self.remove and not self.add


def peer_of(node: Node) -> Peer | None:
    """The peer view of ``node``, or None when it has no IPv4 address or pod CIDR yet."""
    node_ip = first_ipv4(node.addresses)
    cidr = first_ipv4_cidr(node.pod_cidrs)
    vtep_ip = node_vtep_ip(node)
    if node_ip is None or cidr is None or vtep_ip is None:
        return None
    return Peer(node.name, node_ip, cidr, vtep_ip, node_vtep_mac(node))


def desired_peers(local_name: str, nodes: Iterable[Node]) -> dict[str, Peer]:
    """Every other node that can be reached, keyed by node name.

    Two nodes claiming the same pod CIDR is a cluster misconfiguration; the first by name wins so that
    the result does not depend on the order of the input.
    """
    out: dict[str, Peer] = {}
    claimed: set[IPv4Network] = set()
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == local_name:
            continue
        peer = peer_of(node)
        if peer is None or peer.pod_cidr in claimed:
            continue
        claimed.add(peer.pod_cidr)
        out[node.name] = peer
    return out


def diff_peers(current: Mapping[str, Peer], desired: Mapping[str, Peer]) -> PeerDiff:
    """What to take away (gone or changed) and what to program (new or changed)."""
    remove = tuple(sorted(p for name, p in current.items() if desired.get(name) != p))
    add = tuple(sorted(p for name, p in desired.items() if current.get(name) != p))
    return PeerDiff(remove=remove, add=add)
