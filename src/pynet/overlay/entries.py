"""Kernel entries the overlay owns, derived from peers, and the plan that turns observed into desired.

Pure, no I/O. The controllers reconcile against what the KERNEL holds (observed on every sync), not
against a memory of what they programmed, so an agent restart or a hand-made change converges too.

- VXLAN (flannel's design), per peer: an FDB entry ``vtep_mac -> node_ip`` on the VXLAN device, a
  permanent neighbour ``vtep_ip -> vtep_mac`` on it, and an onlink route ``pod_cidr via vtep_ip``
  over it (the kernel then needs neither ARP nor learning across the tunnel).
- host-gw, per peer: a route ``pod_cidr via node_ip`` over the underlay link; nothing else.

Order when applying (see :func:`plan`): removals run routes -> neighbours -> FDB, additions run
FDB -> neighbours -> routes, so a route never points at a next hop that is not resolvable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from pynet.overlay.peers import Peer

__all__ = ["FdbEntry", "NeighEntry", "OverlayEntries", "RouteEntry", "hostgw_entries", "plan", "vxlan_entries"]


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    mac: str
    dst: IPv4Address

    def __str__(self) -> str:
        return f"fdb {self.mac} dst {self.dst}"


@dataclass(frozen=True, slots=True, order=True)
class NeighEntry:
    ip: IPv4Address
    mac: str

    def __str__(self) -> str:
        return f"neigh {self.ip} lladdr {self.mac}"


@dataclass(frozen=True, slots=True, order=True)
class RouteEntry:
    dst: IPv4Network
    gateway: IPv4Address
    onlink: bool = False

    def __str__(self) -> str:
        return f"route {self.dst} via {self.gateway}{' onlink' if self.onlink else ''}"


@dataclass(frozen=True, slots=True)
class OverlayEntries:
    fdb: frozenset[FdbEntry] = field(default_factory=frozenset)
    neigh: frozenset[NeighEntry] = field(default_factory=frozenset)
    routes: frozenset[RouteEntry] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not (self.fdb or self.neigh or self.routes)

    def lines(self) -> list[str]:
        """A stable, readable dump (tests and DEBUG logs)."""
        return [str(e) for e in (*sorted(self.fdb), *sorted(self.neigh), *sorted(self.routes))]


def vxlan_entries(peers: Iterable[Peer]) -> OverlayEntries:
    ps = list(peers)
    return OverlayEntries(
        fdb=frozenset(FdbEntry(p.vtep_mac, p.node_ip) for p in ps),
        neigh=frozenset(NeighEntry(p.vtep_ip, p.vtep_mac) for p in ps),
        routes=frozenset(RouteEntry(p.pod_cidr, p.vtep_ip, onlink=True) for p in ps),
    )


def hostgw_entries(peers: Iterable[Peer]) -> OverlayEntries:
    return OverlayEntries(routes=frozenset(RouteEntry(p.pod_cidr, p.node_ip) for p in peers))


def plan(observed: OverlayEntries, desired: OverlayEntries) -> tuple[OverlayEntries, OverlayEntries]:
    """``(remove, add)``: what is observed but not desired, and what is desired but not observed.

    A route to a CIDR whose next hop changed appears in both: the caller removes the old one first.
    """
    remove = OverlayEntries(
        fdb=observed.fdb - desired.fdb,
        neigh=observed.neigh - desired.neigh,
        routes=observed.routes - desired.routes,
    )
    add = OverlayEntries(
        fdb=desired.fdb - observed.fdb,
        neigh=desired.neigh - observed.neigh,
        routes=desired.routes - observed.routes,
    )
    return remove, add
