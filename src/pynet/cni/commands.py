"""The CNI verbs of ``pynet``: orchestration of config, IPAM delegation, driver and masquerading.

``cmd_add`` runs inside one ``ExitStack``: IPAM ADD is undone by IPAM DEL, the veth by deleting it,
the masquerade record by removing it; ``undo.pop_all()`` on success. Shared node objects (bridge,
VXLAN device) are kept, as the reference plugins do. Before IPAM, ADD refuses a CNI_IFNAME the pod
already has (the rollback's IPAM DEL would otherwise free the live attachment's address).

``cmd_del`` is idempotent: a missing netns, link, allocation or rule is success, and it still tears
down (with defaults) when the config has become invalid. ``cmd_check`` compares the kernel with
prevResult. ``cmd_gc`` passes ``cni.dev/valid-attachments`` to IPAM and sweeps stale masquerade
records. ``cmd_status`` asks IPAM whether it can allocate.

``Commands(nsexec=...)`` lets the agent's socket server pick the netns strategy (the Broker helper
process); the module-level functions use the process default (setns in the plugin's one thread).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pynet.cni import delegate, masq
from pynet.cni.config import NetConf, parse_netconf
from pynet.cni.drivers import AttachmentSpec, get_driver
from pynet.cni.drivers.base import CHECK_FAILED, pod_routes
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.skel import CmdArgs, PluginFuncs
from pynet.cni.types import DNS, Result
from pynet.netlink.nsexec import NetnsExec

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

__all__ = ["FUNCS", "Commands", "cmd_add", "cmd_check", "cmd_del", "cmd_gc", "cmd_status"]

log = logging.getLogger("pynet.cni")
VALID_ATTACHMENTS = "cni.dev/valid-attachments"


def _conf(args: CmdArgs) -> NetConf:
    conf = parse_netconf(args.conf, args.cni_version)
    if not conf.ipam_type:
        raise CniError(ErrCode.INVALID_NETWORK_CONFIG, "invalid network config: ipam.type is required",
                       "pynet delegates addressing to an IPAM plugin, e.g. pynet-ipam or host-local")
    return conf


def _conf_for_delete(args: CmdArgs) -> NetConf:
    """DEL must be able to clean up even after the config went bad (a runtime would otherwise retry
    DEL forever and leak the address): fall back to the few keys teardown needs."""
    try:
        return parse_netconf(args.conf, args.cni_version)
    except CniError as err:
        if err.code != ErrCode.INVALID_NETWORK_CONFIG:
            raise
        raw = args.conf
        ipam = raw.get("ipam") if isinstance(raw.get("ipam"), dict) else {}
        mode = raw.get("mode") if raw.get("mode") in ("bridge", "macvlan") else "bridge"
        bridge = raw.get("bridge") if isinstance(raw.get("bridge"), str) and raw.get("bridge") else "pynet0"
        log.warning("DEL with an invalid config (%s): tearing down with defaults", err.msg)
        return NetConf(name=str(raw.get("name") or ""), cni_version=args.cni_version, mode=str(mode),
                       bridge=str(bridge), ip_masq=raw.get("ipMasq") is True, ipam=dict(ipam or {}))


def _require_netns(args: CmdArgs) -> None:
    if not os.path.exists(args.netns):
        raise CniError(ErrCode.UNKNOWN_CONTAINER, f"network namespace {args.netns} does not exist",
                       f"container {args.container_id}")


def _merge_dns(conf_dns: Any, ipam_dns: DNS) -> DNS:
    return ipam_dns if ipam_dns else DNS.from_dict(conf_dns)


@dataclass(frozen=True)
class Commands:
    nsexec: NetnsExec | None = None

    def _spec(self, conf: NetConf, args: CmdArgs, result: Result | None = None) -> AttachmentSpec:
        return AttachmentSpec(conf=conf, container_id=args.container_id, netns=args.netns, ifname=args.ifname,
                              mtu=conf.mtu or 0, ips=result.ips if result else (),
                              routes=result.routes if result else (), nsexec=self.nsexec)

    def add(self, args: CmdArgs) -> Result:
        conf = _conf(args)
        _require_netns(args)
        driver = get_driver(conf.mode)
        # One netlink socket into the pod for the whole ADD: the check below and the driver's work.
        with self._pod(args) as pod, ExitStack() as undo:
            self._refuse_taken_ifname(args, pod)
            ipam = delegate.delegate("ADD", conf.ipam_type, args)
            assert ipam is not None
            undo.callback(_release, conf, args)
            if not ipam.ips:
                raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"IPAM plugin {conf.ipam_type} returned no address")
            routes = pod_routes(conf, ipam.ips, ipam.routes)
            spec = replace(self._spec(conf, args, ipam), routes=routes, pod=pod)
            interfaces = driver.attach(spec, undo)
            if conf.ip_masq:
                masq.setup([ip.address for ip in ipam.ips], conf.name, args.container_id, args.ifname,
                           conf.ip_masq_exclude)
                undo.callback(masq.teardown, conf.name, args.container_id, args.ifname)
            undo.pop_all()
        pod_index = len(interfaces) - 1
        ips = tuple(replace(ip, interface=pod_index) for ip in ipam.ips)
        log.info("ADD container=%s ifname=%s ips=%s", args.container_id, args.ifname,
                 ",".join(str(ip.address) for ip in ips))
        return Result(args.cni_version, tuple(interfaces), ips, routes, _merge_dns(args.conf.get("dns"), ipam.dns))

    @contextmanager
    def _pod(self, args: CmdArgs) -> Iterator[IPRoute]:
        from pynet.netlink.errors import NetnsNotFound
        from pynet.netlink.handle import iproute

        handle = ExitStack()
        try:  # only opening it is translated: errors of the work inside keep their own meaning
            pod = handle.enter_context(iproute(args.netns, nsexec=self.nsexec))
        except NetnsNotFound as err:
            raise CniError(ErrCode.UNKNOWN_CONTAINER, f"network namespace {args.netns} does not exist") from err
        with handle:
            yield pod

    def _refuse_taken_ifname(self, args: CmdArgs, pod: IPRoute) -> None:
        """Fail before IPAM when the pod already has ``CNI_IFNAME``: otherwise the rollback's IPAM DEL
        would release the address of the attachment that owns that interface (a repeated ADD)."""
        from pynet.netlink.links import link_exists

        if link_exists(pod, args.ifname):
            raise CniError(ErrCode.INTERNAL, f"interface {args.ifname} already exists in {args.netns}",
                           f"container {args.container_id}: DEL the existing attachment first")

    def delete(self, args: CmdArgs) -> None:
        conf = _conf_for_delete(args)
        if conf.ipam_type:
            delegate.delegate("DEL", conf.ipam_type, args)
        netns = args.netns if args.netns and os.path.exists(args.netns) else ""
        get_driver(conf.mode).detach(replace(self._spec(conf, args), netns=netns, prev=conf.prev_result))
        if conf.ip_masq:
            masq.teardown(conf.name, args.container_id, args.ifname)

    def check(self, args: CmdArgs) -> None:
        conf = _conf(args)
        if conf.prev_result is None:
            raise CniError(ErrCode.INVALID_NETWORK_CONFIG, "invalid network config: CHECK needs prevResult")
        _require_netns(args)
        delegate.delegate("CHECK", conf.ipam_type, args)
        get_driver(conf.mode).check(self._spec(conf, args, conf.prev_result), conf.prev_result)
        if conf.ip_masq:
            want = masq.comment_for(conf.name, args.container_id, args.ifname)
            if want not in masq.list_records():
                raise CniError(CHECK_FAILED, f"CHECK failed: masquerade record {want} is missing")

    def gc(self, args: CmdArgs) -> None:
        conf = _conf(args)
        raw = args.conf.get(VALID_ATTACHMENTS, [])
        if not isinstance(raw, list) or not all(isinstance(a, dict) for a in raw):
            raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"invalid network config: {VALID_ATTACHMENTS} must be "
                           "a list of {containerID, ifname} objects")
        valid = {(str(a.get("containerID", "")), str(a.get("ifname", ""))) for a in raw}
        delegate.delegate("GC", conf.ipam_type, args)
        removed = masq.gc(conf.name, valid)
        if removed:
            log.info("GC removed %d stale masquerade records of network %s", removed, conf.name)

    def status(self, args: CmdArgs) -> None:
        conf = _conf(args)
        try:
            delegate.delegate("STATUS", conf.ipam_type, args)
        except CniError as err:
            # A pre-1.1 IPAM plugin (the reference host-local) cannot answer STATUS: it has no
            # opinion, which is not a failure of ours.
            if err.code != ErrCode.INCOMPATIBLE_VERSION:
                raise

    def funcs(self) -> PluginFuncs:
        return PluginFuncs(add=self.add, delete=self.delete, check=self.check, gc=self.gc, status=self.status)


def _release(conf: NetConf, args: CmdArgs) -> None:
    try:
        delegate.delegate("DEL", conf.ipam_type, args)
    except CniError as err:  # N.B. best effort during rollback, like bridge.go's deferred ipam.ExecDel
        log.warning("rollback: IPAM DEL failed container=%s: %s", args.container_id, err.msg)


_DEFAULT = Commands()
cmd_add = _DEFAULT.add
cmd_del = _DEFAULT.delete
cmd_check = _DEFAULT.check
cmd_gc = _DEFAULT.gc
cmd_status = _DEFAULT.status
FUNCS = _DEFAULT.funcs()
