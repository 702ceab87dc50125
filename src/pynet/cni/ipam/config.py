"""The IPAM section of a network config, parsed and validated into one frozen :class:`IpamConfig`.

Keys (host-local's, plus two of pynet's): ``ranges`` (a list of range sets, each a list of
``{subnet, rangeStart, rangeEnd, gateway}``), the legacy single-range ``subnet``/``rangeStart``/
``rangeEnd``/``gateway`` at the top of ``ipam`` (prepended as range set 0, as host-local does),
``routes``, ``dataDir``, ``resolvConf``, and ``podCidrFile``.

``"subnet": "usePodCidr"`` (in a range, or at the top) stands for the node's pod CIDR(s), read from
``podCidrFile`` (default :data:`DEFAULT_POD_CIDR_FILE`): one CIDR per line, IPv4 and/or IPv6, blank
lines and ``#`` comments ignored; the agent writes it from ``Node.spec.podCIDRs``. Such a range must
be alone in its range set; it becomes one range set per address family found in the file (so a
dual-stack node gives each pod one IPv4 and one IPv6 address). A missing or empty file is error 11
("try again later"), since the agent has not published the CIDR yet.

Requested addresses come from CNI_ARGS ``IP=a,b``, the config's ``args.cni.ips`` and the runtime's
``ips`` capability (``runtimeConfig.ips``), merged in that order, like host-local. CNI_ARGS with keys
other than the known ones fail unless ``IgnoreUnknown=1`` (or ``true``) is among them.

Errors are :class:`~pynet.cni.errors.CniError`: 7 for bad config, 4 for bad CNI_ARGS, 11 for a pod
CIDR not yet published. Only the network name and ``dataDir`` are needed to release addresses
(:func:`load_store_location`), so DEL and GC keep working when the rest of the config went bad.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam.filestore import DEFAULT_DATA_DIR
from pynet.cni.ipam.ranges import (
    IPAddress,
    IPNetwork,
    RangeSet,
    check_no_overlap,
    make_range_set,
    parse_range,
    parse_subnet,
)
from pynet.cni.types import DNS, Route

__all__ = [
    "DEFAULT_POD_CIDR_FILE",
    "USE_POD_CIDR",
    "IpamConfig",
    "load_ipam_config",
    "load_store_location",
    "parse_cni_args",
    "parse_resolv_conf",
    "read_pod_cidrs",
]

DEFAULT_POD_CIDR_FILE = "/run/pynet/pod-cidr"
USE_POD_CIDR = "usePodCidr"
#: CNI_ARGS keys pynet-ipam understands (the K8S_* ones are the runtime conventions it tolerates)
KNOWN_CNI_ARGS = frozenset({"IgnoreUnknown", "IP", "K8S_POD_NAME", "K8S_POD_NAMESPACE",
                            "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"})
# The spec's network name rule; the name is also a directory name under dataDir.
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def _config_error(msg: str, details: str = "") -> CniError:
    return CniError(ErrCode.INVALID_NETWORK_CONFIG, msg, details)


@dataclass(frozen=True, slots=True)
class IpamConfig:
    network: str
    data_dir: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)
    requested: tuple[IPAddress, ...] = ()


def _ipam_section(netconf: Mapping[str, Any]) -> Mapping[str, Any]:
    ipam = netconf.get("ipam")
    if not isinstance(ipam, Mapping):
        raise _config_error("network config has no \"ipam\" object")
    return ipam


def load_store_location(netconf: Mapping[str, Any]) -> tuple[str, str]:
    """``(network name, dataDir)``: all that releasing needs."""
    name = netconf.get("name")
    if not isinstance(name, str) or not _NETWORK_NAME.fullmatch(name):
        raise _config_error(f"network name {name!r} is invalid (letters, digits, '_', '.', '-'; "
                            "it must start with a letter or digit)")
    data_dir = _ipam_section(netconf).get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str) or not data_dir.startswith("/"):
        raise _config_error(f"ipam dataDir must be an absolute path, got {data_dir!r}")
    return name, data_dir


def parse_cni_args(text: str) -> dict[str, str]:
    """``"IgnoreUnknown=1;IP=10.0.0.5"`` -> a dict; unknown keys are an error unless ignored.

    >>> parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web;FOO=bar")["FOO"]
    'bar'
    """
    out: dict[str, str] = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrCode.INVALID_ENV, f"CNI_ARGS: invalid pair {pair!r} (want KEY=VALUE)")
        out[key] = value
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = sorted(set(out) - KNOWN_CNI_ARGS)
    if unknown and not ignore:
        raise CniError(ErrCode.INVALID_ENV, f"CNI_ARGS: unknown key(s) {', '.join(unknown)} "
                       "(add IgnoreUnknown=1 to ignore them)")
    return out


def read_pod_cidrs(path: str) -> list[IPNetwork]:
    """The node's pod CIDRs from the agent's file; error 11 while it is missing or empty."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    except OSError as err:
        raise CniError(ErrCode.IO_FAILURE, f"cannot read pod CIDR file {path}", str(err)) from err
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    cidrs: list[IPNetwork] = []
    for line in filter(None, lines):
        try:
            cidrs.append(parse_subnet(line))
        except CniError as err:
            raise _config_error(f"pod CIDR file {path}: {err.msg}", err.details) from err
    if not cidrs:
        raise CniError(ErrCode.TRY_AGAIN_LATER,
                       f"the node's pod CIDR is not known yet: {path} is missing or empty",
                       "the pynet agent writes it from the Node's spec.podCIDRs (--pod-cidr-file)")
    return cidrs


def parse_resolv_conf(path: str) -> DNS:
    """DNS settings from a resolv.conf-style file (nameserver, domain, search, options)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise _config_error(f"cannot read resolvConf {path}", str(err)) from err
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    domain = ""
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver":
            servers.append(values[0])
        elif key == "domain":
            domain = values[0]
        elif key == "search":
            search = values  # the last search line wins, as in resolv.conf(5)
        elif key == "options":
            options.extend(values)
    return DNS(tuple(servers), domain, tuple(search), tuple(options))


def _range_sets(ipam: Mapping[str, Any]) -> list[RangeSet]:
    raw_sets: list[Any] = []
    if ipam.get("subnet"):
        raw_sets.append([{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}])
    ranges = ipam.get("ranges")
    if ranges is not None:
        if not isinstance(ranges, list):
            raise _config_error(f"ipam ranges must be a list of range sets, got {ranges!r}")
        raw_sets.extend(ranges)
    if not raw_sets:
        raise _config_error("ipam needs \"ranges\" (or \"subnet\"): there is nothing to allocate from")
    pod_cidr_file = ipam.get("podCidrFile") or DEFAULT_POD_CIDR_FILE
    if not isinstance(pod_cidr_file, str):
        raise _config_error(f"ipam podCidrFile must be a path, got {pod_cidr_file!r}")
    sets: list[RangeSet] = []
    for raw in raw_sets:
        if not isinstance(raw, list) or not raw:
            raise _config_error(f"each range set must be a non-empty list of ranges, got {raw!r}")
        if any(isinstance(r, Mapping) and r.get("subnet") == USE_POD_CIDR for r in raw):
            if len(raw) != 1:
                raise _config_error(f"a \"{USE_POD_CIDR}\" range must be alone in its range set: {raw!r}")
            by_family: dict[int, list[IPNetwork]] = {}
            for net in read_pod_cidrs(pod_cidr_file):
                by_family.setdefault(net.version, []).append(net)
            for family in sorted(by_family):
                sets.append(make_range_set([parse_range(raw[0], net) for net in by_family[family]]))
        else:
            sets.append(make_range_set(raw))
    check_no_overlap(sets)
    return sets


def _routes(ipam: Mapping[str, Any]) -> tuple[Route, ...]:
    raw = ipam.get("routes") or []
    if not isinstance(raw, list):
        raise _config_error(f"ipam routes must be a list, got {raw!r}")
    try:
        return tuple(Route.from_dict(r) for r in raw)
    except CniError as err:
        raise _config_error(f"ipam routes: {err.msg}", err.details) from err


def _requested(netconf: Mapping[str, Any], cni_args: Mapping[str, str]) -> tuple[IPAddress, ...]:
    texts: list[Any] = [t for t in cni_args.get("IP", "").split(",") if t]
    args = netconf.get("args")
    if isinstance(args, Mapping) and isinstance(args.get("cni"), Mapping):
        texts.extend(args["cni"].get("ips") or [])
    runtime = netconf.get("runtimeConfig")
    if isinstance(runtime, Mapping):
        texts.extend(runtime.get("ips") or [])
    out: list[IPAddress] = []
    for text in texts:
        try:
            # the "ips" capability sends CIDRs ("10.1.2.3/24"); CNI_ARGS sends bare addresses
            ip = ipaddress.ip_interface(text).ip if isinstance(text, str) else None
        except ValueError:
            ip = None
        if ip is None:
            raise _config_error(f"requested IP {text!r} is not an IP address")
        if ip not in out:
            out.append(ip)
    return tuple(out)


def load_ipam_config(netconf: Mapping[str, Any], cni_args: str = "") -> IpamConfig:
    """Everything ADD and STATUS need; raises CniError (7, 4 or 11)."""
    name, data_dir = load_store_location(netconf)
    ipam = _ipam_section(netconf)
    args = parse_cni_args(cni_args)
    resolv = ipam.get("resolvConf")
    if resolv is not None and not isinstance(resolv, str):
        raise _config_error(f"ipam resolvConf must be a path, got {resolv!r}")
    return IpamConfig(
        network=name,
        data_dir=data_dir,
        range_sets=tuple(_range_sets(ipam)),
        routes=_routes(ipam),
        dns=parse_resolv_conf(resolv) if resolv else DNS(),
        requested=_requested(netconf, args),
    )
