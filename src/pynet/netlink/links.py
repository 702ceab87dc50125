"""Links over pyroute2: typed :class:`LinkInfo`, bridge/veth/vxlan set-up and idempotent deletion.

Conventions: ``ensure_*`` creates or verifies and returns the link (safe under concurrent callers:
EEXIST from a racing creator is answered by re-reading); ``delete_link`` tolerates a missing link.
Every function takes an open ``IPRoute`` (see :mod:`pynet.netlink.handle`) so the caller decides
which namespace it talks to and how many requests share one socket.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynet.netlink.errors import LinkExists, LinkNotFound, NetlinkOpError, translating

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = [
    "IFF_PROMISC",
    "IFF_UP",
    "LinkInfo",
    "delete_link",
    "ensure_bridge",
    "ensure_vxlan",
    "get_link",
    "link_exists",
    "random_mac",
    "random_veth_name",
    "set_hairpin",
    "set_promisc",
    "setup_veth",
]

IFF_UP = 0x1
IFF_PROMISC = 0x100
VETH_NAME_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What pynet needs to know about a link (read back from the kernel, never assumed)."""

    index: int
    name: str
    kind: str
    mac: str
    mtu: int
    up: bool
    promisc: bool
    master: int | None = None
    #: IFLA_LINK: for a veth, the peer's ifindex (in the peer's namespace)
    peer_index: int | None = None
    hairpin: bool | None = None
    vxlan_id: int | None = None
    vxlan_port: int | None = None
    vxlan_learning: bool | None = None

    @classmethod
    def from_msg(cls, msg: Any) -> LinkInfo:
        flags = int(msg["flags"])
        # IFLA_LINKINFO looked up once (each get_nested walks the message's attributes again: this
        # runs several times per CNI ADD)
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        slave = info.get("IFLA_INFO_SLAVE_DATA") if info is not None else None
        hairpin = None
        if slave is not None:
            mode = slave.get("IFLA_BRPORT_MODE")
            hairpin = bool(mode) if mode is not None else None
        vx = info.get("IFLA_INFO_DATA") if info is not None and kind == "vxlan" else None
        return cls(
            index=int(msg["index"]),
            name=str(msg.get("IFLA_IFNAME")),
            kind=str(kind or ""),
            mac=str(msg.get("IFLA_ADDRESS") or ""),
            mtu=int(msg.get("IFLA_MTU") or 0),
            up=bool(flags & IFF_UP),
            promisc=bool(flags & IFF_PROMISC),
            master=msg.get("IFLA_MASTER"),
            peer_index=msg.get("IFLA_LINK"),
            hairpin=hairpin,
            vxlan_id=vx.get("IFLA_VXLAN_ID") if vx is not None else None,
            vxlan_port=vx.get("IFLA_VXLAN_PORT") if vx is not None else None,
            vxlan_learning=bool(vx.get("IFLA_VXLAN_LEARNING")) if vx is not None else None,
        )


def random_veth_name() -> str:
    """``veth`` + 8 hex digits (12 characters, within IFNAMSIZ), like the reference plugins."""
    return "veth" + secrets.token_hex(4)


def get_link(ipr: IPRoute, name: str | None = None, *, index: int | None = None) -> LinkInfo:
    """Read a link by name or index; raises :class:`LinkNotFound`."""
    # One RTM_GETLINK by name or index (link_lookup would dump every link of the namespace).
    with translating(f"get link {name or index}"):
        msgs = ipr.link("get", index=index) if index is not None else ipr.link("get", ifname=name)
    return LinkInfo.from_msg(msgs[0])


def _set_up(ipr: IPRoute, link: LinkInfo) -> LinkInfo:
    if link.up:
        return link
    with translating(f"set {link.name} up"):
        ipr.link("set", index=link.index, state="up")
    return get_link(ipr, index=link.index)


def random_mac() -> str:
    """A random locally administered unicast MAC (``x2:..``, ``x6:..``, ``xa:..`` or ``xe:..``)."""
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


def ensure_bridge(ipr: IPRoute, name: str, *, mtu: int | None = None) -> LinkInfo:
    """Create bridge ``name`` (up) unless it exists; raise if ``name`` is some other kind of link.

    A new bridge gets an explicit MAC: otherwise the kernel gives it the lowest MAC among its
    ports, which changes as pods come and go (and the MAC reported in results would go stale).
    """
    try:
        link = get_link(ipr, name)
    except LinkNotFound:
        kw: dict[str, Any] = {"mtu": mtu} if mtu else {}
        kw["address"] = random_mac()
        try:
            with translating(f"create bridge {name}"):
                ipr.link("add", ifname=name, kind="bridge", **kw)
        except LinkExists:
            pass  # a concurrent ADD won the race; use its bridge
        link = get_link(ipr, name)
    if link.kind != "bridge":
        raise NetlinkOpError(f"{name} exists but is a {link.kind or 'device'} link, not a bridge")
    return _set_up(ipr, link)


def ensure_vxlan(ipr: IPRoute, name: str, *, vni: int, port: int = 8472, local: str | None = None,
                 dev: str | None = None, mtu: int | None = None) -> LinkInfo:
    """Make sure VXLAN device ``name`` exists with ``vni``/``port``, learning off, up.

    The device is shared by every pod of the node and never deleted here. An existing device whose
    VNI or port differ is an error (changing it would cut the node's other pods off).
    """
    try:
        link = get_link(ipr, name)
    except LinkNotFound:
        kw: dict[str, Any] = {"vxlan_id": vni, "vxlan_port": port, "vxlan_learning": 0}
        if local:
            kw["vxlan_local"] = local
        if dev:
            kw["vxlan_link"] = get_link(ipr, dev).index
        if mtu:
            kw["mtu"] = mtu
        try:
            with translating(f"create vxlan {name}"):
                ipr.link("add", ifname=name, kind="vxlan", **kw)
        except LinkExists:
            pass
        link = get_link(ipr, name)
    if link.kind != "vxlan":
        raise NetlinkOpError(f"{name} exists but is a {link.kind or 'device'} link, not vxlan")
    if link.vxlan_id != vni or link.vxlan_port != port:
        raise NetlinkOpError(f"vxlan {name} has vni {link.vxlan_id} port {link.vxlan_port}, config wants {vni}/{port}")
    return _set_up(ipr, link)


def setup_veth(host: IPRoute, pod_netns: str, pod_ifname: str, *, mtu: int, master: int | None = None) -> LinkInfo:
    """Create a veth pair: host end ``vethXXXXXXXX`` here (up, enslaved to ``master``), peer ``pod_ifname``
    created directly inside the namespace at path ``pod_netns``, in ONE RTM_NEWLINK.

    A clash on the random host name is retried (bounded); a clash inside the pod is
    :class:`LinkExists`. Returns the host end as read back from the kernel (the pod end is down;
    the caller configures it through a handle in the pod).
    """
    extra: dict[str, Any] = {"master": master} if master is not None else {}
    for attempt in range(VETH_NAME_ATTEMPTS):
        name = random_veth_name()
        try:
            with translating(f"create veth {name}/{pod_ifname}"):
                host.link("add", ifname=name, kind="veth", mtu=mtu, state="up", **extra,
                          peer={"ifname": pod_ifname, "net_ns_fd": pod_netns, "mtu": mtu})
        except LinkExists:
            if attempt == VETH_NAME_ATTEMPTS - 1 or not link_exists(host, name):
                raise  # the clash is inside the pod (or we ran out of names)
            continue
        return get_link(host, name)
    raise AssertionError("unreachable")


def link_exists(ipr: IPRoute, name: str) -> bool:
    try:
        get_link(ipr, name)
    except LinkNotFound:
        return False
    return True


def set_hairpin(ipr: IPRoute, index: int, on: bool) -> None:
    """Hairpin mode on a bridge port (traffic may leave the port it came in on)."""
    with translating(f"hairpin on port {index}"):
        ipr.brport("set", index=index, mode=1 if on else 0)


def set_promisc(ipr: IPRoute, index: int, on: bool) -> None:
    with translating(f"promisc on {index}"):
        ipr.link("set", index=index, flags=IFF_PROMISC if on else 0, change=IFF_PROMISC)


def delete_link(ipr: IPRoute, name: str) -> bool:
    """Delete ``name``; True if it was there, False if it was already gone (idempotent)."""
    try:
        with translating(f"delete link {name}"):
            ipr.link("del", ifname=name)
    except LinkNotFound:
        return False
    return True
