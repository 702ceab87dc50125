"""Spec values: interfaces, IP configs, routes, DNS and the ADD result, in and out of every version.

A :class:`Result` is version-neutral in memory; :meth:`Result.to_dict` shapes it for a cniVersion:

* 0.1.0/0.2.0: ``ip4``/``ip6`` objects (routes sorted by family), no interfaces;
* 0.3.x/0.4.0: ``interfaces`` + ``ips`` whose entries carry ``"version": "4"|"6"``;
* 1.0.0: the same without ``version``;
* 1.1.0: also route ``mtu``/``advmss``/``priority``/``table``/``scope`` and interface
  ``mtu``/``socketPath``/``pciID`` (dropped for older versions).

:meth:`Result.from_dict` reads any of these (prevResult, a delegated IPAM plugin's output).
Invalid input raises :class:`~pynet.cni.errors.CniError` with code 6 (decode).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Any

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.version import parse_version

__all__ = ["DNS", "IPAddress", "IPConfig", "IPInterface", "IPNetwork", "Interface", "Result", "Route"]

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network


def _decode_error(what: str, err: Exception | None = None) -> CniError:
    return CniError(ErrCode.DECODE, f"cannot decode {what}", str(err) if err else "")


def _ip(value: Any, what: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError as err:
        raise _decode_error(what, err) from err


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None
    socket_path: str = ""
    pci_id: str = ""

    def to_dict(self, version: tuple[int, int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if version >= (1, 1, 0):
            if self.mtu:
                out["mtu"] = self.mtu
            if self.socket_path:
                out["socketPath"] = self.socket_path
            if self.pci_id:
                out["pciID"] = self.pci_id
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Interface:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise _decode_error("interface (needs a name)")
        mtu = d.get("mtu")
        return cls(d["name"], str(d.get("mac", "")), str(d.get("sandbox", "")),
                   mtu if isinstance(mtu, int) else None, str(d.get("socketPath", "")), str(d.get("pciID", "")))


@dataclass(frozen=True, slots=True)
class IPConfig:
    """An address with its prefix (``10.0.0.2/24``), optional gateway and index into ``interfaces``."""

    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    @property
    def family(self) -> int:
        return self.address.version

    def to_dict(self, version: tuple[int, int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if version < (1, 0, 0):
            out["version"] = str(self.address.version)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> IPConfig:
        if not isinstance(d, dict):
            raise _decode_error("ips entry")
        try:
            addr = ipaddress.ip_interface(d["address"])
        except (KeyError, ValueError, TypeError) as err:
            raise _decode_error("ips entry address", err) from err
        gw = _ip(d["gateway"], "gateway") if d.get("gateway") else None
        iface = d.get("interface")
        return cls(addr, gw, iface if isinstance(iface, int) else None)


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None

    def to_dict(self, version: tuple[int, int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if version >= (1, 1, 0):
            for key in ("mtu", "advmss", "priority", "table", "scope"):
                value = getattr(self, key)
                if value is not None:
                    out[key] = value
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Route:
        if not isinstance(d, dict):
            raise _decode_error("route")
        try:
            dst = ipaddress.ip_network(d["dst"], strict=False)
        except (KeyError, ValueError, TypeError) as err:
            raise _decode_error("route dst", err) from err
        gw = _ip(d["gw"], "route gw") if d.get("gw") else None
        ints = {k: d[k] for k in ("mtu", "advmss", "priority", "table", "scope") if isinstance(d.get(k), int)}
        return cls(dst, gw, **ints)


@dataclass(frozen=True, slots=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> DNS:
        if not isinstance(d, dict):
            return cls()

        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key)
            return tuple(str(x) for x in v) if isinstance(v, list) else ()

        return cls(strs("nameservers"), str(d.get("domain", "") or ""), strs("search"), strs("options"))


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of ADD (and the ``prevResult`` a chained plugin receives)."""

    cni_version: str = "1.1.0"
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    def with_version(self, version: str) -> Result:
        return replace(self, cni_version=version)

    def to_dict(self, version: str | None = None) -> dict[str, Any]:
        """The JSON object for ``version`` (default: this result's own)."""
        ver_s = version or self.cni_version
        ver = parse_version(ver_s)
        if ver < (0, 3, 0):
            return self._to_legacy(ver_s)
        out: dict[str, Any] = {"cniVersion": ver_s}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(ver) for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_dict(ver) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict(ver) for r in self.routes]
        if self.dns:
            out["dns"] = self.dns.to_dict()
        return out

    def _to_legacy(self, ver_s: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": ver_s}
        for family, key in ((4, "ip4"), (6, "ip6")):
            ipc = next((ip for ip in self.ips if ip.family == family), None)
            if ipc is None:
                continue
            entry: dict[str, Any] = {"ip": str(ipc.address)}
            if ipc.gateway is not None:
                entry["gateway"] = str(ipc.gateway)
            routes = [r.to_dict((0, 2, 0)) for r in self.routes if r.dst.version == family]
            if routes:
                entry["routes"] = routes
            out[key] = entry
        if self.dns:
            out["dns"] = self.dns.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Any, default_version: str = "1.1.0") -> Result:
        """Parse a result of any supported version; raises CniError(DECODE)."""
        if not isinstance(d, dict):
            raise _decode_error("result (not an object)")
        ver_s = str(d.get("cniVersion") or default_version)
        try:
            ver = parse_version(ver_s)
        except ValueError as err:
            raise _decode_error("result cniVersion", err) from err
        dns = DNS.from_dict(d.get("dns"))
        if ver < (0, 3, 0):
            ips: list[IPConfig] = []
            routes: list[Route] = []
            for key in ("ip4", "ip6"):
                entry = d.get(key)
                if isinstance(entry, dict):
                    ips.append(IPConfig.from_dict({"address": entry.get("ip"), "gateway": entry.get("gateway")}))
                    routes.extend(Route.from_dict(r) for r in entry.get("routes") or [])
            return cls(ver_s, (), tuple(ips), tuple(routes), dns)

        def items(key: str) -> list[Any]:
            value = d.get(key) or []
            if not isinstance(value, list):
                raise _decode_error(f"result {key} (not a list)")
            return value

        return cls(
            ver_s,
            tuple(Interface.from_dict(i) for i in items("interfaces")),
            tuple(IPConfig.from_dict(i) for i in items("ips")),
            tuple(Route.from_dict(r) for r in items("routes")),
            dns,
        )
