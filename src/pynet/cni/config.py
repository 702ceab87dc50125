"""pynet's network configuration: the reference bridge plugin's keys plus ``mode`` and ``vxlan``.

Parsing is strict about types and ranges (code 7, invalid network config, naming the key) and
lenient about unknown keys (the spec lets runtimes and other plugins add their own).

Keys: ``name`` (required), ``mode`` (``bridge`` | ``macvlan``), ``bridge`` (default ``pynet0``),
``isGateway``, ``isDefaultGateway`` (implies isGateway), ``ipMasq``, ``ipMasqExclude`` (pynet's own:
CIDRs that masqueraded traffic must not be NATed towards, typically the cluster CIDR so that
pod-to-pod traffic across nodes keeps its source), ``mtu``, ``hairpinMode``,
``promiscMode``, ``vlan`` (1-4094), ``master``/``macvlanMode`` (macvlan), ``vxlan`` object
(``vni`` required, ``port`` default 8472, ``device`` default ``pynet-vxlan``, ``local``, ``dev``),
``ipam`` object (``type`` required for ADD/CHECK/DEL/GC/STATUS), ``prevResult``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.types import Result

__all__ = ["DEFAULT_BRIDGE", "DEFAULT_VXLAN_DEVICE", "VXLAN_OVERHEAD", "NetConf", "VxlanConf", "parse_netconf"]

DEFAULT_BRIDGE = "pynet0"
DEFAULT_VXLAN_DEVICE = "pynet-vxlan"
DEFAULT_VXLAN_PORT = 8472
#: outer IPv4 + UDP + VXLAN + inner Ethernet headers
VXLAN_OVERHEAD = 50
MODES = ("bridge", "macvlan")


@dataclass(frozen=True, slots=True)
class VxlanConf:
    vni: int
    port: int = DEFAULT_VXLAN_PORT
    device: str = DEFAULT_VXLAN_DEVICE
    local: str | None = None
    dev: str | None = None


@dataclass(frozen=True)
class NetConf:
    name: str
    cni_version: str
    type: str = "pynet"
    mode: str = "bridge"
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    ip_masq: bool = False
    ip_masq_exclude: tuple[IPv4Network | IPv6Network, ...] = ()
    mtu: int | None = None
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    master: str | None = None
    macvlan_mode: str = "bridge"
    vxlan: VxlanConf | None = None
    ipam: dict[str, Any] = field(default_factory=dict)
    prev_result: Result | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ipam_type(self) -> str:
        return str(self.ipam.get("type", ""))


def _bad(key: str, why: str) -> CniError:
    return CniError(ErrCode.INVALID_NETWORK_CONFIG, f"invalid network config: {key} {why}")


def _get(conf: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = conf.get(key, default)
    if value is None:
        return default
    # bool is an int subclass: refuse true for an int key and 1 for a bool key
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise _bad(key, f"must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _ifname(conf: dict[str, Any], key: str, default: str | None) -> Any:
    value = _get(conf, key, str, default)
    if value is not None and (not value or len(value.encode()) > 15 or "/" in value or " " in value):
        raise _bad(key, f"{value!r} is not a valid interface name")
    return value


def _networks(conf: dict[str, Any], key: str) -> tuple[IPv4Network | IPv6Network, ...]:
    out: list[IPv4Network | IPv6Network] = []
    for value in _get(conf, key, list, []):
        if not isinstance(value, str):
            raise _bad(key, f"entry {value!r} is not a CIDR string")
        try:
            out.append(ip_network(value))
        except ValueError as err:
            raise _bad(key, f"entry {value!r} is not a CIDR ({err})") from err
    return tuple(out)


def parse_netconf(conf: dict[str, Any], cni_version: str) -> NetConf:
    """Validate the stdin object; raises CniError(7) (or 6 for an undecodable prevResult)."""
    name = _get(conf, "name", str, "")
    if not name:
        raise _bad("name", "is required")
    mode = _get(conf, "mode", str, "bridge")
    if mode not in MODES:
        raise _bad("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
    mtu = _get(conf, "mtu", int, None)
    if mtu is not None and not 68 <= mtu <= 65535:
        raise _bad("mtu", f"must be between 68 and 65535, got {mtu}")
    vlan = _get(conf, "vlan", int, 0)
    if not 0 <= vlan <= 4094:
        raise _bad("vlan", f"must be between 0 and 4094, got {vlan}")
    vx_raw = _get(conf, "vxlan", dict, None)
    vxlan = None
    if vx_raw is not None:
        vni = _get(vx_raw, "vni", int, None)
        if vni is None or not 1 <= vni <= 0xFFFFFF:
            raise _bad("vxlan.vni", f"must be an integer 1-16777215, got {vx_raw.get('vni')!r}")
        port = _get(vx_raw, "port", int, DEFAULT_VXLAN_PORT)
        if not 1 <= port <= 65535:
            raise _bad("vxlan.port", f"must be 1-65535, got {port}")
        vxlan = VxlanConf(vni, port, _ifname(vx_raw, "device", DEFAULT_VXLAN_DEVICE),
                          _get(vx_raw, "local", str, None), _ifname(vx_raw, "dev", None))
    ipam = _get(conf, "ipam", dict, {})
    if ipam and not isinstance(ipam.get("type"), str):
        raise _bad("ipam.type", "must be a plugin name")
    prev_raw = conf.get("prevResult")
    prev = Result.from_dict(prev_raw, cni_version) if prev_raw else None
    is_default_gw = _get(conf, "isDefaultGateway", bool, False)
    return NetConf(
        name=name,
        cni_version=cni_version,
        type=_get(conf, "type", str, "pynet"),
        mode=mode,
        bridge=_ifname(conf, "bridge", DEFAULT_BRIDGE),
        is_gateway=_get(conf, "isGateway", bool, False) or is_default_gw,
        is_default_gateway=is_default_gw,
        ip_masq=_get(conf, "ipMasq", bool, False),
        ip_masq_exclude=_networks(conf, "ipMasqExclude"),
        mtu=mtu,
        hairpin_mode=_get(conf, "hairpinMode", bool, False),
        promisc_mode=_get(conf, "promiscMode", bool, False),
        vlan=vlan,
        master=_ifname(conf, "master", None),
        macvlan_mode=_get(conf, "macvlanMode", str, "bridge"),
        vxlan=vxlan,
        ipam=ipam,
        prev_result=prev,
        raw=conf,
    )
