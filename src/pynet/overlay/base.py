"""The overlay controller interface the agent codes against, and the kernel seam controllers use.

The agent calls a controller on its single sync thread, inside the node's network namespace:
``sync(local, nodes)`` after every change of the Nodes (idempotent: it programs every OTHER node and
removes what belongs to nodes that are gone), ``local_annotations()`` to publish this node's VTEP
identity on its Node (API-server mode), and ``cleanup()`` on ``--cleanup``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from pynet.errors import PynetError
from pynet.overlay.entries import OverlayEntries
from pynet.proxy.model import Node

__all__ = [
    "RTPROT_PYNET",
    "VXLAN_OVERHEAD",
    "Kernel",
    "LinkView",
    "OverlayController",
    "OverlayError",
    "VxlanSpec",
]

#: routing protocol number marking pynet's overlay routes (free in /etc/iproute2/rt_protos)
RTPROT_PYNET = 112
#: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers
VXLAN_OVERHEAD = 50


class OverlayError(PynetError):
    """A netlink operation of the overlay failed, or the node cannot be programmed (cause chained)."""


@dataclass(frozen=True, slots=True)
class VxlanSpec:
    """The node's VXLAN device as it must be."""

    name: str
    vni: int
    port: int
    local: IPv4Address
    underlay_index: int
    mtu: int
    mac: str
    address: IPv4Address  # the VTEP address, as a /32


@dataclass(frozen=True, slots=True)
class LinkView:
    index: int
    name: str
    mtu: int


class OverlayController(Protocol):
    def sync(self, local: Node | None, nodes: Sequence[Node]) -> None: ...
    def local_annotations(self) -> dict[str, str]: ...
    def cleanup(self) -> None: ...


class Kernel(Protocol):
    """What the controllers need from netlink (:class:`pynet.overlay._kernel.NetlinkOverlay`; a fake
    in the unit tests)."""

    def link_of_address(self, addr: IPv4Address) -> LinkView | None: ...
    def link_by_name(self, name: str) -> LinkView | None: ...
    def ensure_vxlan(self, spec: VxlanSpec) -> LinkView: ...
    def delete_link(self, name: str) -> bool: ...
    def observe(self, index: int, *, fdb_and_neigh: bool) -> OverlayEntries: ...
    def apply(self, index: int, remove: OverlayEntries, add: OverlayEntries) -> None: ...
    def delete_routes(self) -> int: ...
