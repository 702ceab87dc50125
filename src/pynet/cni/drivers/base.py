"""The driver seam: how a pod gets its interface, whatever the mode (bridge, macvlan, ...).

A driver is a small object with three methods, looked up by ``mode`` in
:data:`pynet.cni.drivers.DRIVERS`. :mod:`pynet.cni.commands` does the rest (config, IPAM
delegation, masquerading, the result). To add a mode, write ``drivers/<mode>.py`` with a class
implementing :class:`Driver`, register it in ``drivers/__init__.py``, and reuse
:func:`configure_pod` for the pod side so addresses, routes and sysctls behave the same everywhere.

Contract:

* ``attach(spec, undo)`` creates the pod's interface named ``spec.ifname`` inside ``spec.netns``,
  configures ``spec.ips``/``spec.routes`` on it, and returns the result's interfaces with the pod's
  one (``sandbox`` set) LAST. Each side effect registers its reversal on ``undo`` right after it
  succeeded (``undo.callback(...)``); the caller pops the stack on success, unwinds it on failure.
* ``detach(spec)`` is idempotent: the netns (``spec.netns`` may be ``""``), the link, or both may
  already be gone. It never fails for something that is not there.
* ``check(spec, prev)`` raises :class:`~pynet.cni.errors.CniError` when the kernel state differs
  from ``prev`` (the prevResult of ADD).

Hosts and pods are reached through :mod:`pynet.netlink.handle` (``iproute(None)`` is the node:
the namespace the plugin runs in).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pynet.cni.config import NetConf
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.types import Interface, IPAddress, IPConfig, Result, Route
from pynet.netlink import addrs as nladdrs
from pynet.netlink import sysctl
from pynet.netlink.errors import NetlinkOpError
from pynet.netlink.handle import iproute
from pynet.netlink.nsexec import NetnsExec

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from pynet.netlink.links import LinkInfo

__all__ = ["CHECK_FAILED", "AttachmentSpec", "Driver", "check_pod", "configure_pod", "gateway_for", "pod_handle",
           "pod_routes", "pod_sysctls"]

#: plugin-specific error code (the spec reserves 100+ for plugins): CHECK found drift
CHECK_FAILED = 100


@dataclass(frozen=True)
class AttachmentSpec:
    """Everything a driver needs for one attachment (replaces bridge.go's ten positional parameters)."""

    conf: NetConf
    container_id: str
    netns: str
    ifname: str
    mtu: int
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    nsexec: NetnsExec | None = None
    #: the config's prevResult (DEL/CHECK), if any: names the host-side links ADD made
    prev: Result | None = None
    #: ADD: an open handle into ``netns`` the caller already holds (one netlink socket per pod and
    #: request); a driver may use it instead of opening its own, and never closes it
    pod: IPRoute | None = None


class Driver(Protocol):
    def attach(self, spec: AttachmentSpec, undo: ExitStack) -> list[Interface]: ...

    def detach(self, spec: AttachmentSpec) -> None: ...

    def check(self, spec: AttachmentSpec, prev: Result) -> None: ...


@contextmanager
def pod_handle(spec: AttachmentSpec, sysctls: Mapping[str, str] | None = None) -> Iterator[IPRoute]:
    """A handle into the pod for ``spec``: the caller's open one (``spec.pod``, the sysctls then
    written through :mod:`pynet.netlink.nsexec` on their own), else a new one whose creation writes
    them. Raises NetnsNotFound/NetlinkOpError."""
    if spec.pod is None:
        with iproute(spec.netns, nsexec=spec.nsexec, sysctls=sysctls) as pod:
            yield pod
        return
    if sysctls:
        sysctl.write_in_netns(spec.netns, sysctls, spec.nsexec)
    yield spec.pod


def gateway_for(ip: IPConfig) -> IPAddress:
    """The IP config's gateway, else the first host of its subnet (what the reference bridge does)."""
    if ip.gateway is not None:
        return ip.gateway
    first: IPAddress = next(iter(ip.address.network.hosts()))  # type: ignore[assignment]
    return first


def pod_sysctls(ifname: str, ips: tuple[IPConfig, ...]) -> dict[str, str]:
    """Per-interface sysctls set inside the pod: gratuitous ARP on address/link changes (v4);
    no router advertisements and no DAD delay for a statically addressed interface (v6)."""
    out: dict[str, str] = {}
    if any(ip.family == 4 for ip in ips):
        out[f"net.ipv4.conf.{ifname}.arp_notify"] = "1"
    if any(ip.family == 6 for ip in ips):
        out[f"net.ipv6.conf.{ifname}.accept_ra"] = "0"
        out[f"net.ipv6.conf.{ifname}.accept_dad"] = "0"
    return out


def pod_routes(conf: NetConf, ips: tuple[IPConfig, ...], routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """IPAM's routes plus, with ``isDefaultGateway``, a default route per family via the gateway."""
    out = list(routes)
    if conf.is_default_gateway:
        for ip in ips:
            dst = ipaddress.ip_network("0.0.0.0/0" if ip.family == 4 else "::/0")
            if not any(r.dst == dst for r in out):
                out.append(Route(dst, gateway_for(ip)))
    return tuple(out)


def configure_pod(pod: IPRoute, index: int, spec: AttachmentSpec) -> None:
    """Put ``spec.ips`` and ``spec.routes`` on the pod's interface (a route without ``gw`` goes via
    the same family's gateway)."""
    try:
        for ip in spec.ips:
            nladdrs.ensure_addr(pod, index, ip.address)
        for route in spec.routes:
            gw = route.gw
            if gw is None:
                gw = next((gateway_for(ip) for ip in spec.ips if ip.family == route.dst.version), None)
            nladdrs.ensure_route(pod, route.dst, gw, index, mtu=route.mtu, priority=route.priority)
    except NetlinkOpError as err:
        raise CniError(ErrCode.INTERNAL, f"cannot configure {spec.ifname} in {spec.netns}: {err}") from err


def check_pod(pod: IPRoute, spec: AttachmentSpec, prev: Result) -> LinkInfo:
    """Verify the pod side against ``prev``; returns the pod link. Raises CniError(CHECK_FAILED)."""
    from pynet.netlink import links as nllinks
    from pynet.netlink.errors import LinkNotFound

    def drift(msg: str) -> CniError:
        return CniError(CHECK_FAILED, f"CHECK failed: {msg}", f"container {spec.container_id}")

    try:
        link = nllinks.get_link(pod, spec.ifname)
    except LinkNotFound as err:
        raise drift(f"interface {spec.ifname} is missing in {spec.netns}") from err
    sandbox_idx = [i for i, itf in enumerate(prev.interfaces) if itf.sandbox and itf.name == spec.ifname]
    for i in sandbox_idx:
        want = prev.interfaces[i].mac
        if want and want.lower() != link.mac.lower():
            raise drift(f"{spec.ifname} has MAC {link.mac}, prevResult says {want}")
    have = set(nladdrs.list_addrs(pod, link.index))
    for ip in prev.ips:
        if ip.interface is not None and sandbox_idx and ip.interface not in sandbox_idx:
            continue
        if ip.address not in have:
            raise drift(f"address {ip.address} is missing on {spec.ifname}")
    for route in prev.routes:
        present = nladdrs.list_routes(pod, None, route.dst.version)
        if not any(r.dst == route.dst and (route.gw is None or r.gw == route.gw) for r in present):
            raise drift(f"route {route.dst} via {route.gw} is missing")
    return link
