"""The overlay's netlink I/O (pyroute2), in the CURRENT network namespace.

The agent runs inside the node's namespace and calls the controllers on its one sync thread, so this
module opens a fresh ``IPRoute()`` per operation batch (no setns, no socket shared across threads).

What it owns, and nothing else:
- the VXLAN device it is told about (all FDB entries with a destination and all permanent
  neighbours on it are the overlay's);
- routes carrying the routing protocol number :data:`RTPROT_PYNET` (``ip route ... proto 112``):
  that is how host-gw routes on the shared underlay link are told apart from everyone else's.

pyroute2 shortfall worked around here: ``IPRoute.fdb("replace", ...)`` does not add the ``self``
flag and the NUD_NOARP|NUD_PERMANENT state the way ``add`` does, and the VXLAN driver then answers
EOPNOTSUPP; we pass both explicitly. Netlink errors are translated once into :class:`OverlayError`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import flags as ND_FLAGS
from pyroute2.netlink.rtnl.ndmsg import states as NUD

from pynet._log import get_logger
from pynet.errors import PynetError
from pynet.overlay.base import RTPROT_PYNET, LinkView, OverlayError, VxlanSpec
from pynet.overlay.entries import FdbEntry, NeighEntry, OverlayEntries, RouteEntry

__all__ = ["NetlinkOverlay"]

log = get_logger("pynet.overlay")

RTNH_F_ONLINK = 4
AF_INET = 2


@contextlib.contextmanager
def _netlink(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as err:
        raise OverlayError(f"{what}: {err}") from err
    except (OSError, PynetError) as err:
        if isinstance(err, OverlayError):
            raise
        raise OverlayError(f"{what}: {err}") from err


IPRouteFactory = Callable[[], Any]


class NetlinkOverlay:
    """Observe and change the overlay's kernel entries through pyroute2."""

    def __init__(self, ipr_factory: IPRouteFactory = IPRoute) -> None:
        self._factory = ipr_factory

    @contextlib.contextmanager
    def _ipr(self) -> Iterator[Any]:
        ipr = self._factory()
        try:
            yield ipr
        finally:
            ipr.close()

    # ------------------------------------------------------------------ links

    def link_of_address(self, addr: IPv4Address) -> LinkView | None:
        """The link that carries ``addr`` (the underlay link of the node IP)."""
        with self._ipr() as ipr, _netlink(f"find the link of {addr}"):
            for msg in ipr.get_addr(family=AF_INET):
                if msg.get("IFA_ADDRESS") == str(addr) or msg.get("IFA_LOCAL") == str(addr):
                    return self._link_view(ipr, msg["index"])
        return None

    def link_by_name(self, name: str) -> LinkView | None:
        with self._ipr() as ipr, _netlink(f"look up link {name}"):
            found = ipr.link_lookup(ifname=name)
            return self._link_view(ipr, found[0]) if found else None

    @staticmethod
    def _link_view(ipr: Any, index: int) -> LinkView:
        msg = ipr.link("get", index=index)[0]
        return LinkView(index, str(msg.get("IFLA_IFNAME")), int(msg.get("IFLA_MTU")))

    def ensure_vxlan(self, spec: VxlanSpec) -> LinkView:
        """Create or fix the VXLAN device; idempotent.

        Creation goes through the plugin's :func:`pynet.netlink.links.ensure_vxlan` (the plugin
        ensures the same device on ADD: one helper, one device shape). Identity attributes (VNI,
        port, local address, learning) cannot change on a live VXLAN device, so a device that differs
        there is deleted first and recreated; MTU, MAC, the VTEP address and the state are
        corrected in place (the plugin sets none of them).
        """
        from pynet.netlink import links as nllinks

        with self._ipr() as ipr, _netlink(f"ensure vxlan device {spec.name}"):
            found = ipr.link_lookup(ifname=spec.name)
            if found and not _vxlan_matches(ipr.link("get", index=found[0])[0], spec):
                log.info("vxlan device differs; recreating", extra={"kv": {"device": spec.name}})
                ipr.link("del", index=found[0])
            underlay = self._link_view(ipr, spec.underlay_index)
            index = nllinks.ensure_vxlan(ipr, spec.name, vni=spec.vni, port=spec.port, local=str(spec.local),
                                         dev=underlay.name, mtu=spec.mtu).index
            msg = ipr.link("get", index=index)[0]
            if msg.get("IFLA_MTU") != spec.mtu or str(msg.get("IFLA_ADDRESS")).lower() != spec.mac:
                ipr.link("set", index=index, mtu=spec.mtu, address=spec.mac)
            want = str(spec.address)
            have = [(m.get("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.get_addr(index=index, family=AF_INET)]
            for addr, plen in have:
                if (addr, plen) != (want, 32):
                    ipr.addr("del", index=index, address=addr, prefixlen=plen)
            if (want, 32) not in have:
                ipr.addr("add", index=index, address=want, prefixlen=32)
            ipr.link("set", index=index, state="up")
            return LinkView(index, spec.name, spec.mtu)

    def delete_link(self, name: str) -> bool:
        """Delete ``name`` if it exists; True when something was deleted."""
        with self._ipr() as ipr, _netlink(f"delete link {name}"):
            found = ipr.link_lookup(ifname=name)
            if not found:
                return False
            ipr.link("del", index=found[0])
            return True

    # ------------------------------------------------------------------ entries

    def observe(self, index: int, *, fdb_and_neigh: bool) -> OverlayEntries:
        """The overlay entries present on link ``index`` (routes: only those with our protocol)."""
        with self._ipr() as ipr, _netlink(f"read overlay entries on link {index}"):
            fdb: set[FdbEntry] = set()
            neigh: set[NeighEntry] = set()
            if fdb_and_neigh:
                for m in ipr.fdb("dump", ifindex=index):
                    dst, mac = m.get("NDA_DST"), m.get("NDA_LLADDR")
                    if m["ifindex"] == index and dst and mac:
                        addr = ip_address(dst)
                        if isinstance(addr, IPv4Address):
                            fdb.add(FdbEntry(str(mac).lower(), addr))
                for m in ipr.neigh("dump", ifindex=index, family=AF_INET):
                    dst, mac = m.get("NDA_DST"), m.get("NDA_LLADDR")
                    if m["ifindex"] == index and m["state"] & NUD["permanent"] and dst and mac:
                        neigh.add(NeighEntry(IPv4Address(dst), str(mac).lower()))
            routes: set[RouteEntry] = set()
            for m in ipr.route("dump", family=AF_INET):
                if m["proto"] != RTPROT_PYNET or m.get("RTA_OIF") != index or m.get("RTA_GATEWAY") is None:
                    continue
                dst = IPv4Network(f"{m.get('RTA_DST') or '0.0.0.0'}/{m['dst_len']}")
                routes.add(RouteEntry(dst, IPv4Address(m.get("RTA_GATEWAY")), bool(m["flags"] & RTNH_F_ONLINK)))
            return OverlayEntries(frozenset(fdb), frozenset(neigh), frozenset(routes))

    def apply(self, index: int, remove: OverlayEntries, add: OverlayEntries) -> None:
        """Remove, then add. Removals tolerate entries already gone; one failing entry does not stop
        the others (a peer on another segment must not cut off the rest): every failure is collected
        and raised together at the end as one :class:`OverlayError`."""
        failures: list[str] = []
        with self._ipr() as ipr:
            steps: list[tuple[str, Callable[[], object]]] = []
            part = functools.partial
            for r in sorted(remove.routes):
                steps.append((f"del {r}", _tolerant(part(
                    ipr.route, "del", dst=str(r.dst), gateway=str(r.gateway), oif=index, proto=RTPROT_PYNET))))
            for n in sorted(remove.neigh):
                steps.append((f"del {n}", _tolerant(part(ipr.neigh, "del", ifindex=index, dst=str(n.ip), lladdr=n.mac))))
            for f in sorted(remove.fdb):
                steps.append((f"del {f}", _tolerant(part(ipr.fdb, "del", ifindex=index, lladdr=f.mac, dst=str(f.dst)))))
            for f in sorted(add.fdb):
                steps.append((f"add {f}", part(
                    ipr.fdb, "replace", ifindex=index, lladdr=f.mac, dst=str(f.dst),
                    state=NUD["permanent"] | NUD["noarp"], flags=ND_FLAGS["self"])))
            for n in sorted(add.neigh):
                steps.append((f"add {n}", part(
                    ipr.neigh, "replace", ifindex=index, dst=str(n.ip), lladdr=n.mac, state=NUD["permanent"])))
            for r in sorted(add.routes):
                steps.append((f"add {r}", part(
                    ipr.route, "replace", dst=str(r.dst), gateway=str(r.gateway), oif=index,
                    flags=RTNH_F_ONLINK if r.onlink else 0, proto=RTPROT_PYNET)))
            for what, step in steps:
                try:
                    step()
                except (NetlinkError, OSError) as err:
                    failures.append(f"{what}: {err}")
        if failures:
            raise OverlayError("; ".join(failures))

    def delete_routes(self) -> int:
        """Delete every route with our protocol number on any link (cleanup); returns the count."""
        count = 0
        with self._ipr() as ipr, _netlink("delete pynet overlay routes"):
            for m in ipr.route("dump", family=AF_INET):
                if m["proto"] != RTPROT_PYNET:
                    continue
                with _missing_ok():
                    ipr.route("del", dst=f"{m.get('RTA_DST') or '0.0.0.0'}/{m['dst_len']}",
                              gateway=m.get("RTA_GATEWAY"), oif=m.get("RTA_OIF"), proto=RTPROT_PYNET)
                    count += 1
        return count


def _tolerant(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with _missing_ok():
            return fn()
        return None
    return run


@contextlib.contextmanager
def _missing_ok() -> Iterator[None]:
    try:
        yield
    except NetlinkError as err:
        if err.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise


def _vxlan_matches(msg: Any, spec: VxlanSpec) -> bool:
    if msg.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "vxlan":
        return False
    data = msg.get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
    if data is None:
        return False
    return bool(
        data.get("IFLA_VXLAN_ID") == spec.vni
        and data.get("IFLA_VXLAN_PORT") == spec.port
        and data.get("IFLA_VXLAN_LOCAL") == str(spec.local)
        and not data.get("IFLA_VXLAN_LEARNING")
    )
