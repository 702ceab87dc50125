"""Bridge mode: a veth pair per pod, the host end on the node bridge (the reference bridge plugin's model).

ADD, in order (each step undone on failure through the caller's ExitStack):

1. the node's VXLAN device when ``vxlan`` is configured (shared; never removed, not even on rollback);
2. the bridge (created on first use; shared; kept), its gateway addresses when ``isGateway``,
   promiscuous mode when ``promiscMode``, forwarding on in the node;
3. the veth pair, host end ``vethXXXXXXXX`` enslaved to the bridge, pod end ``CNI_IFNAME`` created
   directly inside the pod netns (one RTM_NEWLINK); hairpin mode; VLAN (pvid, untagged) on the port;
4. inside the pod: sysctls, addresses, routes (:func:`pynet.cni.drivers.base.configure_pod`).

DEL deletes the pod end (the kernel removes its peer). When the netns is already gone, so is the
pair. ``vlan`` needs a kernel with bridge VLAN filtering; without it ADD fails with code 2
(unsupported field) and rolls back.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING

from pynet.cni.config import VXLAN_OVERHEAD
from pynet.cni.drivers.base import (
    CHECK_FAILED,
    AttachmentSpec,
    check_pod,
    configure_pod,
    gateway_for,
    pod_handle,
    pod_sysctls,
)
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.types import Interface, Result
from pynet.netlink import addrs as nladdrs
from pynet.netlink import links as nllinks
from pynet.netlink import sysctl
from pynet.netlink.errors import LinkExists, LinkNotFound, NetlinkOpError, NetnsNotFound, translating
from pynet.netlink.handle import iproute

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["DEFAULT_MTU", "BridgeDriver"]

DEFAULT_MTU = 1500
ZERO_MAC = "00:00:00:00:00:00"
log = logging.getLogger("pynet.cni")


def _underlay_mtu(host: IPRoute, dev: str | None) -> int:
    """MTU of the VXLAN underlay: ``dev`` if named, else the link of the IPv4 default route, else 1500."""
    if dev:
        return nllinks.get_link(host, dev).mtu
    for route in nladdrs.list_routes(host, None, 4):
        if route.dst.prefixlen == 0 and route.oif:
            return nllinks.get_link(host, index=route.oif).mtu
    return DEFAULT_MTU


def _net_error(what: str, err: Exception) -> CniError:
    return CniError(ErrCode.INTERNAL, f"{what}: {err}")


class BridgeDriver:
    """Implements :class:`pynet.cni.drivers.base.Driver` for ``mode: bridge``."""

    def attach(self, spec: AttachmentSpec, undo: ExitStack) -> list[Interface]:
        conf = spec.conf
        with iproute(None) as host:
            try:
                mtu = spec.mtu or DEFAULT_MTU
                if conf.vxlan is not None:
                    vx = conf.vxlan
                    vxl = nllinks.ensure_vxlan(host, vx.device, vni=vx.vni, port=vx.port, local=vx.local,
                                               dev=vx.dev, mtu=_underlay_mtu(host, vx.dev) - VXLAN_OVERHEAD)
                    # pods on an overlay node must fit the tunnel unless the config says otherwise
                    mtu = spec.mtu or vxl.mtu
                spec = replace(spec, mtu=mtu)
                br = nllinks.ensure_bridge(host, conf.bridge, mtu=mtu)
                if conf.is_gateway:
                    for ip in spec.ips:
                        gw = gateway_for(ip)
                        gw_if = ipaddress.ip_interface(f"{gw}/{ip.address.network.prefixlen}")
                        nladdrs.ensure_addr(host, br.index, gw_if)
                if conf.promisc_mode and not br.promisc:
                    nllinks.set_promisc(host, br.index, True)
                if any(ip.family == 4 for ip in spec.ips):
                    sysctl.write("net.ipv4.ip_forward", "1")
                if any(ip.family == 6 for ip in spec.ips):
                    sysctl.write("net.ipv6.conf.all.forwarding", "1")
                if conf.vlan:
                    self._enable_vlan_filtering(host, br.index)
            except NetlinkOpError as err:
                raise _net_error(f"cannot prepare bridge {conf.bridge}", err) from err
            hostveth = self._veth(host, spec, br.index, undo)
            try:
                if conf.hairpin_mode:
                    nllinks.set_hairpin(host, hostveth.index, True)
                if conf.vlan:
                    with translating(f"vlan {conf.vlan} on {hostveth.name}"):
                        host.vlan_filter("add", index=hostveth.index,
                                         vlan_info={"vid": conf.vlan, "flags": ["pvid", "untagged"]})
            except NetlinkOpError as err:
                raise _net_error(f"cannot configure bridge port {hostveth.name}", err) from err
            if br.mac in ("", ZERO_MAC):  # a portless bridge without a fixed MAC: it has one now
                br = nllinks.get_link(host, index=br.index)
        # One handle into the pod (the caller's, if it holds one; the pod's sysctls are written too).
        with pod_handle(spec, pod_sysctls(spec.ifname, spec.ips)) as pod:
            podveth = nllinks.get_link(pod, spec.ifname)
            with translating(f"set {spec.ifname} up"):
                pod.link("set", index=podveth.index, state="up")
            configure_pod(pod, podveth.index, spec)
        return [
            Interface(br.name, br.mac),
            Interface(hostveth.name, hostveth.mac),
            Interface(spec.ifname, podveth.mac, spec.netns, mtu=podveth.mtu),
        ]

    @staticmethod
    def _enable_vlan_filtering(host: IPRoute, bridge_index: int) -> None:
        try:
            with translating("enable VLAN filtering"):
                host.link("set", index=bridge_index, kind="bridge", br_vlan_filtering=1)
        except NetlinkOpError as err:
            if err.errno == errno.EOPNOTSUPP:
                raise CniError(ErrCode.UNSUPPORTED_FIELD, "unsupported field vlan: this kernel's bridge has no "
                               "VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)") from err
            raise

    @staticmethod
    def _veth(host: IPRoute, spec: AttachmentSpec, bridge_index: int, undo: ExitStack) -> nllinks.LinkInfo:
        try:
            created = nllinks.setup_veth(host, spec.netns, spec.ifname, mtu=spec.mtu, master=bridge_index)
        except LinkExists as err:
            raise CniError(ErrCode.INTERNAL, f"cannot create {spec.ifname} in {spec.netns}: {err}",
                           "an interface of that name already exists in the container") from err
        except NetlinkOpError as err:
            raise _net_error("cannot create veth pair", err) from err
        undo.callback(_undo_veth, created.name)
        return created

    def detach(self, spec: AttachmentSpec) -> None:
        if spec.netns:
            try:
                with iproute(spec.netns, nsexec=spec.nsexec) as pod:
                    nllinks.delete_link(pod, spec.ifname)
                return
            except NetnsNotFound:
                pass  # N.B. the netns is gone (and took the veth pair with it, unless someone holds it)
            except NetlinkOpError as err:
                raise _net_error(f"cannot delete {spec.ifname} in {spec.netns}", err) from err
        # No usable netns: remove the host end prevResult names, if it is still one of our veths.
        host_ends = [i.name for i in (spec.prev.interfaces if spec.prev else ())
                     if not i.sandbox and i.name != spec.conf.bridge]
        if not host_ends:
            return
        with iproute(None) as host:
            for name in host_ends:
                try:
                    link = nllinks.get_link(host, name)
                except LinkNotFound:
                    continue
                if link.kind == "veth":
                    nllinks.delete_link(host, name)

    def check(self, spec: AttachmentSpec, prev: Result) -> None:
        try:
            with iproute(spec.netns, nsexec=spec.nsexec) as pod:
                pod_link = check_pod(pod, spec, prev)
        except NetnsNotFound as err:
            raise CniError(ErrCode.UNKNOWN_CONTAINER, f"network namespace {spec.netns} does not exist") from err
        with iproute(None) as host:
            try:
                br = nllinks.get_link(host, spec.conf.bridge)
            except LinkNotFound as err:
                raise CniError(CHECK_FAILED, f"CHECK failed: bridge {spec.conf.bridge} is missing") from err
            # The pod end's peer (IFLA_LINK) must be a port of our bridge and the one prevResult names;
            # other host-side interfaces in prevResult may belong to later plugins (bandwidth's ifb).
            try:
                peer = nllinks.get_link(host, index=pod_link.peer_index) if pod_link.peer_index else None
            except LinkNotFound:
                peer = None
            if peer is None or peer.master != br.index:
                raise CniError(CHECK_FAILED, f"CHECK failed: the host end of {spec.ifname} is not a port of {br.name}")
            if not any(itf.name == peer.name for itf in prev.interfaces):
                raise CniError(CHECK_FAILED, f"CHECK failed: host end {peer.name} is not in prevResult")


def _undo_veth(name: str) -> None:
    try:
        with iproute(None) as host:
            nllinks.delete_link(host, name)
    except NetlinkOpError as err:  # N.B. best effort during rollback
        log.warning("rollback: cannot delete %s: %s", name, err)
