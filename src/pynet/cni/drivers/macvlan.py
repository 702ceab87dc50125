"""macvlan mode: the pod gets a macvlan sub-interface of a node link (``master``), no bridge, no veth.

Config keys (parsed by :mod:`pynet.cni.config`): ``master`` (the parent link in the node; default:
the link of the node's IPv4 default route, like the reference macvlan plugin), ``macvlanMode``
(``bridge`` default | ``private`` | ``vepa`` | ``passthru``), ``mtu`` (default: the master's; never
larger). IPAM, ``ipMasq`` and the result are handled by :mod:`pynet.cni.commands` as for bridge mode.

ADD, in order (each step undone on failure through the caller's ExitStack):

1. create the macvlan in the NODE namespace under a temporary name (``mvXXXXXXXX``), on ``master``;
2. move it into the pod namespace, rename it there to ``CNI_IFNAME`` and bring it up;
3. inside the pod: sysctls, addresses, routes (:func:`pynet.cni.drivers.base.configure_pod`).

DEL deletes the pod's interface; an absent netns or interface is success (the kernel removes a
macvlan with its namespace). Hazard, by design of macvlan: in ``bridge`` mode pods on one master
reach each other and the master's segment, but NOT the node's own address on the master (the
kernel does not hand frames between a macvlan and its parent); give the node a macvlan of its own
if it must talk to its pods.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from pynet.cni.drivers.base import CHECK_FAILED, AttachmentSpec, check_pod, configure_pod, pod_sysctls
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.types import Interface, Result
from pynet.netlink import addrs as nladdrs
from pynet.netlink import links as nllinks
from pynet.netlink.errors import LinkExists, LinkNotFound, NetlinkOpError, NetnsNotFound, translating
from pynet.netlink.handle import iproute

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["MACVLAN_MODES", "MacvlanDriver"]

MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
TEMP_NAME_ATTEMPTS = 5
log = logging.getLogger("pynet.cni")


def _temp_name() -> str:
    return "mv" + secrets.token_hex(4)


def _master(host: IPRoute, name: str | None) -> nllinks.LinkInfo:
    """The configured master, else the link of the IPv4 default route (code 7 when neither exists)."""
    try:
        if name:
            return nllinks.get_link(host, name)
        for route in nladdrs.list_routes(host, None, 4):
            if route.dst.prefixlen == 0 and route.oif:
                return nllinks.get_link(host, index=route.oif)
    except LinkNotFound as err:
        raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"invalid network config: master {name!r} does not exist "
                       "in the node's namespace") from err
    raise CniError(ErrCode.INVALID_NETWORK_CONFIG, "invalid network config: master is not set and the node has "
                   "no IPv4 default route to take it from")


def _mode(conf_mode: str) -> str:
    if conf_mode not in MACVLAN_MODES:
        raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"invalid network config: macvlanMode must be one of "
                       f"{', '.join(MACVLAN_MODES)}, got {conf_mode!r}")
    return conf_mode


class MacvlanDriver:
    """Implements :class:`pynet.cni.drivers.base.Driver` for ``mode: macvlan``."""

    def attach(self, spec: AttachmentSpec, undo: ExitStack) -> list[Interface]:
        conf = spec.conf
        mode = _mode(conf.macvlan_mode)
        with iproute(None) as host:
            master = _master(host, conf.master)
            mtu = spec.mtu or master.mtu
            if mtu > master.mtu:
                raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"invalid network config: mtu {mtu} is larger "
                               f"than master {master.name}'s {master.mtu}")
            spec = replace(spec, mtu=mtu)
            temp = self._create(host, master, mode, mtu)
            undo.callback(_undo_host, temp)
            try:
                with translating(f"move {temp} into {spec.netns}"):
                    host.link("set", index=nllinks.get_link(host, temp).index, net_ns_fd=spec.netns)
            except NetlinkOpError as err:
                raise CniError(ErrCode.INTERNAL, f"cannot move {temp} into {spec.netns}: {err}") from err
        undo.callback(_undo_pod, spec, temp)
        with iproute(spec.netns, nsexec=spec.nsexec, sysctls=None) as pod:
            if pod.link_lookup(ifname=spec.ifname):
                raise CniError(ErrCode.INTERNAL, f"cannot create {spec.ifname} in {spec.netns}",
                               "an interface of that name already exists in the container")
            try:
                link = nllinks.get_link(pod, temp)
                with translating(f"rename {temp} to {spec.ifname}"):
                    pod.link("set", index=link.index, ifname=spec.ifname)
                with translating(f"set {spec.ifname} up"):
                    pod.link("set", index=link.index, state="up")
            except NetlinkOpError as err:
                raise CniError(ErrCode.INTERNAL, f"cannot set up {spec.ifname} in {spec.netns}: {err}") from err
        # a fresh handle whose creation writes the per-interface sysctls (the name exists now)
        with iproute(spec.netns, nsexec=spec.nsexec, sysctls=pod_sysctls(spec.ifname, spec.ips)) as pod:
            configure_pod(pod, link.index, spec)
            link = nllinks.get_link(pod, index=link.index)
        return [Interface(spec.ifname, link.mac, spec.netns, mtu=link.mtu)]

    @staticmethod
    def _create(host: IPRoute, master: nllinks.LinkInfo, mode: str, mtu: int) -> str:
        last: Exception | None = None
        for _ in range(TEMP_NAME_ATTEMPTS):
            name = _temp_name()
            try:
                with translating(f"create macvlan {name} on {master.name}"):
                    host.link("add", ifname=name, kind="macvlan", link=master.index, macvlan_mode=mode, mtu=mtu)
                return name
            except LinkExists as err:
                last = err
            except NetlinkOpError as err:
                raise CniError(ErrCode.INTERNAL, f"cannot create macvlan on {master.name} ({mode}): {err}") from err
        raise CniError(ErrCode.INTERNAL, f"no free temporary link name after {TEMP_NAME_ATTEMPTS} attempts: {last}")

    def detach(self, spec: AttachmentSpec) -> None:
        if not spec.netns:
            return  # N.B. without a netns there is nothing of ours left: a macvlan dies with its namespace
        try:
            with iproute(spec.netns, nsexec=spec.nsexec) as pod:
                nllinks.delete_link(pod, spec.ifname)
        except NetnsNotFound:
            return
        except NetlinkOpError as err:
            raise CniError(ErrCode.INTERNAL, f"cannot delete {spec.ifname} in {spec.netns}: {err}") from err

    def check(self, spec: AttachmentSpec, prev: Result) -> None:
        try:
            with iproute(spec.netns, nsexec=spec.nsexec) as pod:
                link = check_pod(pod, spec, prev)
        except NetnsNotFound as err:
            raise CniError(ErrCode.UNKNOWN_CONTAINER, f"network namespace {spec.netns} does not exist") from err
        if link.kind != "macvlan":
            raise CniError(CHECK_FAILED, f"CHECK failed: {spec.ifname} is a {link.kind or 'plain'} link, not macvlan")
        with iproute(None) as host:
            master = _master(host, spec.conf.master)
        if link.peer_index != master.index:
            raise CniError(CHECK_FAILED, f"CHECK failed: {spec.ifname} is not a macvlan of {master.name}")


def _undo_host(name: str) -> None:
    try:
        with iproute(None) as host:
            nllinks.delete_link(host, name)
    except NetlinkOpError as err:  # N.B. best effort during rollback
        log.warning("rollback: cannot delete %s: %s", name, err)


def _undo_pod(spec: AttachmentSpec, temp: str) -> None:
    try:
        with iproute(spec.netns, nsexec=spec.nsexec) as pod:
            if not nllinks.delete_link(pod, temp) and _is_ours(pod, spec.ifname):
                nllinks.delete_link(pod, spec.ifname)
    except NetlinkOpError as err:  # N.B. best effort during rollback
        log.warning("rollback: cannot delete %s in %s: %s", spec.ifname, spec.netns, err)


def _is_ours(pod: IPRoute, name: str) -> bool:
    try:
        return nllinks.get_link(pod, name).kind == "macvlan"
    except LinkNotFound:
        return False
