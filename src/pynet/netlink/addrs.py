"""Addresses and routes over pyroute2, idempotent and typed with ``ipaddress`` values."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import TYPE_CHECKING, Any

from pynet.netlink.errors import NetlinkOpError, translating

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["RouteInfo", "ensure_addr", "ensure_route", "list_addrs", "list_routes"]

IFA_F_NODAD = 0x02
_AF = {4: 2, 6: 10}


def list_addrs(ipr: IPRoute, index: int) -> list[IPv4Interface | IPv6Interface]:
    """Global-scope addresses of link ``index`` (link-local IPv6 is left out)."""
    out: list[IPv4Interface | IPv6Interface] = []
    with translating(f"list addresses of {index}"):
        for msg in ipr.get_addr(index=index):
            addr = ipaddress.ip_interface(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
            if isinstance(addr, IPv6Interface) and addr.ip.is_link_local:
                continue
            out.append(addr)
    return out


def ensure_addr(ipr: IPRoute, index: int, addr: IPv4Interface | IPv6Interface) -> bool:
    """Add ``addr`` to link ``index`` unless present; True if it was added. IPv6 skips DAD."""
    kw: dict[str, Any] = {"flags": IFA_F_NODAD} if addr.version == 6 else {}
    try:
        with translating(f"add address {addr}"):
            ipr.addr("add", index=index, address=str(addr.ip), prefixlen=addr.network.prefixlen, **kw)
    except NetlinkOpError as err:
        if err.errno != errno.EEXIST:
            raise
        return False
    return True


@dataclass(frozen=True, slots=True)
class RouteInfo:
    dst: IPv4Network | IPv6Network
    gw: IPv4Address | IPv6Address | None
    oif: int | None


def list_routes(ipr: IPRoute, index: int | None = None, family: int = 4) -> list[RouteInfo]:
    """Main-table unicast routes (optionally only those leaving through ``index``)."""
    out = []
    with translating("list routes"):
        msgs = ipr.get_routes(family=_AF[family], table=254)
    for msg in msgs:
        if msg["type"] != 1:  # RTN_UNICAST
            continue
        oif = msg.get("RTA_OIF")
        if index is not None and oif != index:
            continue
        dst = msg.get("RTA_DST")
        net = ipaddress.ip_network(f"{dst}/{msg['dst_len']}" if dst else ("0.0.0.0/0" if family == 4 else "::/0"))
        gw = msg.get("RTA_GATEWAY")
        out.append(RouteInfo(net, ipaddress.ip_address(gw) if gw else None, oif))
    return out


def ensure_route(ipr: IPRoute, dst: IPv4Network | IPv6Network, gw: IPv4Address | IPv6Address | None,
                 index: int, *, mtu: int | None = None, priority: int | None = None) -> bool:
    """Add a route unless one to ``dst`` already exists; True if added."""
    kw: dict[str, Any] = {"dst": str(dst), "oif": index}
    if gw is not None:
        kw["gateway"] = str(gw)
    if priority is not None:
        kw["priority"] = priority
    if mtu:
        kw["metrics"] = {"attrs": [("RTAX_MTU", mtu)]}
    try:
        with translating(f"add route {dst} via {gw}"):
            ipr.route("add", **kw)
    except NetlinkOpError as err:
        if err.errno != errno.EEXIST:
            raise
        return False
    return True
