"""The in-process IPAM API: what ``pynet-ipam`` does per CNI command, callable without an exec.

The main plugin (or the agent's fast path) can call these directly with the parsed network config
and the invocation's arguments instead of executing ``pynet-ipam``; the results and errors are the
same ones the executable prints::

    result = ipam_add(conf, args)          # -> pynet.cni.types.Result (ips, routes, dns)
    ipam_del(conf, args)                   # idempotent
    ipam_check(conf, args)                 # raises CniError when the allocation is gone
    freed = ipam_gc(conf)                  # conf carries "cni.dev/valid-attachments"
    ipam_status(conf)                      # raises CniError(50) when no address is free
    ipam_command("ADD", cmd_args)          # any verb, from a CmdArgs (its .conf): Result or None

:func:`ipam_command` has the shape of ``pynet.cni.delegate.InProcess``, so registering it as
``IN_PROCESS["pynet-ipam"] = ipam_command`` skips the exec of the IPAM plugin.

``conf`` is the whole network config (``name``, ``cniVersion``, ``ipam``, ``runtimeConfig``,
``args``); ``args`` is anything with ``container_id``, ``ifname`` and ``args`` (the CNI_ARGS string),
such as :class:`pynet.cni.skel.CmdArgs`. Every function takes an optional ``store`` (default: the
:class:`~pynet.cni.ipam.filestore.FileStore` of ``dataDir``/``name``). All failures are
:class:`~pynet.cni.errors.CniError` with the spec's codes; OS errors on the data directory become
code 5 (I/O failure).

Invariants: ADD either reserves one address per range set or, on any failure, frees what it
reserved in this call; the whole ADD/DEL/GC runs under the store's one lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam.allocator import IPAllocator
from pynet.cni.ipam.config import load_ipam_config, load_store_location
from pynet.cni.ipam.filestore import FileStore
from pynet.cni.ipam.ranges import IPAddress
from pynet.cni.ipam.store import Owner, Store
from pynet.cni.skel import validate_container_id, validate_ifname
from pynet.cni.types import IPConfig, Result
from pynet.cni.version import CURRENT

__all__ = ["IpamArgs", "IpamCmdArgs", "StoreFactory", "ipam_add", "ipam_check", "ipam_command", "ipam_del", "ipam_gc",
           "ipam_status"]

VALID_ATTACHMENTS = "cni.dev/valid-attachments"

StoreFactory = Callable[[str, str], Store]  # (dataDir, network name) -> Store


class IpamArgs(Protocol):
    @property
    def container_id(self) -> str: ...
    @property
    def ifname(self) -> str: ...
    @property
    def args(self) -> str: ...


class IpamCmdArgs(IpamArgs, Protocol):
    @property
    def conf(self) -> dict[str, Any]: ...


@contextlib.contextmanager
def _io_errors(what: str) -> Iterator[None]:
    """Translate OS errors on the data directory, once, into spec error 5."""
    try:
        yield
    except OSError as err:
        raise CniError(ErrCode.IO_FAILURE, f"IPAM store: cannot {what}", str(err)) from err


def _owner(args: IpamArgs) -> Owner:
    """The attachment, validated here too: its id and ifname become file names in the store."""
    validate_container_id(args.container_id)
    validate_ifname(args.ifname)
    return Owner(args.container_id, args.ifname)


def _open(conf: Mapping[str, Any], store: Store | None, factory: StoreFactory | None, *,
          create: bool = True) -> Store:
    if store is not None:
        return store
    network, data_dir = load_store_location(conf)
    if factory is not None:
        return factory(data_dir, network)
    return FileStore(data_dir, network, create=create)


def ipam_add(conf: Mapping[str, Any], args: IpamArgs, *, store: Store | None = None,
             store_factory: StoreFactory | None = None) -> Result:
    """Allocate one address per range set for ``(container_id, ifname)``."""
    cfg = load_ipam_config(conf, args.args)
    owner = _owner(args)
    requested = list(cfg.requested)
    picks: list[IPAddress | None] = []
    for rs in cfg.range_sets:
        pick = next((ip for ip in requested if ip in rs), None)
        if pick is not None:
            requested.remove(pick)
        picks.append(pick)
    if requested:
        raise CniError(ErrCode.INVALID_NETWORK_CONFIG,
                       f"requested IP(s) {', '.join(map(str, requested))} fit no range set of network "
                       f"{cfg.network} (or two fall in one range set)")
    st = _open(conf, store, store_factory)
    ips: list[IPConfig] = []
    with _io_errors("allocate"), st:
        fresh: list[IPAddress] = []
        try:
            for i, (rs, pick) in enumerate(zip(cfg.range_sets, picks, strict=True)):
                ipc, new = IPAllocator(rs, st, str(i), cfg.network).get(owner, pick)
                ips.append(ipc)
                if new:
                    fresh.append(ipc.address.ip)
        except BaseException:
            for ip in fresh:  # N.B. best effort rollback of this call's reservations only
                with contextlib.suppress(OSError):
                    st.release_ip(ip)
            raise
    return Result(str(conf.get("cniVersion") or CURRENT), ips=tuple(ips), routes=cfg.routes, dns=cfg.dns)


def ipam_del(conf: Mapping[str, Any], args: IpamArgs, *, store: Store | None = None,
             store_factory: StoreFactory | None = None) -> list[IPAddress]:
    """Free every address of ``(container_id, ifname)`` in this network; nothing held is fine."""
    st = _open(conf, store, store_factory, create=False)
    with _io_errors("release"), st:
        return st.release(_owner(args))


def ipam_check(conf: Mapping[str, Any], args: IpamArgs, *, store: Store | None = None,
               store_factory: StoreFactory | None = None) -> None:
    """The owner still holds its addresses (and, given a prevResult, exactly those it reports)."""
    owner = _owner(args)
    st = _open(conf, store, store_factory, create=False)
    with _io_errors("read allocations"), st:
        held = st.owned_by(owner)
    network = conf.get("name")
    if not held:
        raise CniError(ErrCode.INTERNAL, f"no IP address is allocated to {owner} in network {network}")
    prev = conf.get("prevResult")
    if isinstance(prev, Mapping):
        # Only addresses of our own subnets count: a chained plugin may have added others.
        try:
            subnets = [r.subnet for rs in load_ipam_config(conf, args.args).range_sets for r in rs.ranges]
        except CniError:
            subnets = []  # N.B. without a usable config (e.g. no pod CIDR file) only presence is checked
        reported = {ipc.address.ip for ipc in Result.from_dict(dict(prev)).ips
                    if any(ipc.address.ip in net for net in subnets)}
        missing = sorted(map(str, reported - set(held)))
        if missing:
            raise CniError(ErrCode.INTERNAL, f"{owner} no longer holds {', '.join(missing)} in network "
                           f"{network} (it holds {', '.join(map(str, held))})")


def ipam_gc(conf: Mapping[str, Any], *, store: Store | None = None,
            store_factory: StoreFactory | None = None) -> list[IPAddress]:
    """Free every address of this network whose owner is not in ``cni.dev/valid-attachments``."""
    raw = conf.get(VALID_ATTACHMENTS)
    if not isinstance(raw, list):
        # Without the list, "free what is not listed" would free everything: refuse instead.
        raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"GC needs \"{VALID_ATTACHMENTS}\" (a list)")
    valid: set[Owner] = set()
    for entry in raw:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("containerID"), str):
            raise CniError(ErrCode.INVALID_NETWORK_CONFIG, f"bad {VALID_ATTACHMENTS} entry {entry!r}")
        valid.add(Owner(entry["containerID"], str(entry.get("ifname", ""))))
    valid_ids = {o.container_id for o in valid}
    st = _open(conf, store, store_factory, create=False)
    freed: list[IPAddress] = []
    with _io_errors("garbage-collect"), st:
        for ip, owner in sorted(st.allocations().items(), key=lambda kv: (kv[0].version, kv[0])):
            # a record without ifname (host-local's oldest format) is kept if its container lives
            keep = owner in valid if owner.ifname else owner.container_id in valid_ids
            if not keep:
                st.release_ip(ip)
                freed.append(ip)
        sweep = getattr(st, "sweep", None)
        if callable(sweep):
            sweep()
    return freed


def ipam_status(conf: Mapping[str, Any], *, store: Store | None = None,
                store_factory: StoreFactory | None = None) -> None:
    """Raise CniError(50) unless every range set has a free address (i.e. ADD can succeed)."""
    try:
        cfg = load_ipam_config(conf)
    except CniError as err:
        if err.code == ErrCode.TRY_AGAIN_LATER:
            raise CniError(ErrCode.PLUGIN_NOT_AVAILABLE, err.msg, err.details) from err
        raise
    st = _open(conf, store, store_factory)
    with _io_errors("read allocations"), st:
        taken = st.allocations()
    for i, rs in enumerate(cfg.range_sets):
        used = 0
        for ip in taken:
            r = rs.range_for(ip)
            used += r is not None and ip != r.gateway
        if used >= rs.size:
            raise CniError(ErrCode.PLUGIN_NOT_AVAILABLE,
                           f"no free IP address in range set {i} [{rs}] of network {cfg.network}: "
                           f"all {rs.size} are allocated")


def ipam_command(command: str, args: IpamCmdArgs) -> Result | None:
    """Run one CNI verb against ``args.conf``: ADD returns the Result, the others None."""
    if command == "ADD":
        return ipam_add(args.conf, args)
    if command == "DEL":
        ipam_del(args.conf, args)
    elif command == "CHECK":
        ipam_check(args.conf, args)
    elif command == "GC":
        ipam_gc(args.conf)
    elif command == "STATUS":
        ipam_status(args.conf)
    else:
        raise CniError(ErrCode.INVALID_ENV, f"pynet-ipam: unknown command {command!r}")
    return None
