"""Address ranges and range sets, canonicalised the way the reference ``host-local`` plugin does.

A :class:`Range` is one ``{subnet, rangeStart, rangeEnd, gateway}`` entry; a :class:`RangeSet` is one
inner list of ``ranges`` and yields ONE address per ADD. Invariants established by :func:`parse_range`
and :func:`make_range_set` (checked once, at config load):

* the subnet is given without host bits and is at least a /30 (IPv4) or /126 (IPv6): smaller ones leave
  nothing to hand out once the gateway is taken;
* ``gateway`` defaults to the subnet's first address; ``rangeStart`` defaults to that same address (the
  iterator skips the gateway) and ``rangeEnd`` to the last address, minus the broadcast for IPv4;
* start <= end, both inside the subnet; all ranges of a set have one family and never overlap;
  range sets never overlap each other (:func:`check_no_overlap`).

Iteration (:meth:`RangeSet.iter_from`) walks every address of every range exactly once, starting just
after the last reserved one and wrapping around, which gives host-local's round-robin order.
Everything works on integers so a /8 costs no more than a /24.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from pynet.cni.errors import CniError, ErrCode

__all__ = ["IPAddress", "IPNetwork", "Range", "RangeSet", "check_no_overlap", "make_range_set", "parse_range"]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: host bits a subnet must keep, per family: /30 and /126 are the smallest usable subnets
_MIN_HOST_BITS = 2


def _config_error(msg: str, err: Exception | None = None) -> CniError:
    return CniError(ErrCode.INVALID_NETWORK_CONFIG, msg, str(err) if err else "")


@dataclass(frozen=True, slots=True)
class Range:
    """One canonical range: every address in ``[start, end]`` except ``gateway`` can be handed out."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def __contains__(self, ip: object) -> bool:
        return (
            isinstance(ip, IPv4Address | IPv6Address)
            and ip.version == self.subnet.version
            and self.start <= ip <= self.end  # type: ignore[operator]
        )

    @property
    def size(self) -> int:
        """How many addresses this range can hand out (the gateway excluded)."""
        n = int(self.end) - int(self.start) + 1
        return n - 1 if self.start <= self.gateway <= self.end else n  # type: ignore[operator]

    def overlaps(self, other: Range) -> bool:
        return (
            self.subnet.version == other.subnet.version
            and int(self.start) <= int(other.end)
            and int(other.start) <= int(self.end)
        )

    def __str__(self) -> str:
        return f"{self.subnet} ({self.start}-{self.end})"


@dataclass(frozen=True, slots=True)
class RangeSet:
    """Ranges of one family from which a pod gets exactly one address."""

    ranges: tuple[Range, ...]

    @property
    def family(self) -> int:
        return self.ranges[0].subnet.version

    def range_for(self, ip: IPAddress) -> Range | None:
        return next((r for r in self.ranges if ip in r), None)

    def __contains__(self, ip: object) -> bool:
        return any(ip in r for r in self.ranges)

    @property
    def size(self) -> int:
        return sum(r.size for r in self.ranges)

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def iter_from(self, last: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
        """Every allocatable address once, starting after ``last`` (or at the first range's start).

        >>> rs = make_range_set([{"subnet": "10.0.0.0/30"}])
        >>> [str(ip) for ip, _ in rs.iter_from(None)]
        ['10.0.0.2']
        >>> rs = make_range_set([{"subnet": "10.0.0.0/29", "rangeEnd": "10.0.0.4"}])
        >>> [str(ip) for ip, _ in rs.iter_from(ipaddress.ip_address("10.0.0.2"))]
        ['10.0.0.3', '10.0.0.4', '10.0.0.2']
        """
        n = len(self.ranges)
        first_range, first_int = 0, int(self.ranges[0].start)
        if last is not None:
            for i, r in enumerate(self.ranges):
                if last in r:
                    if int(last) < int(r.end):
                        first_range, first_int = i, int(last) + 1
                    else:
                        first_range = (i + 1) % n
                        first_int = int(self.ranges[first_range].start)
                    break
        make = ipaddress.IPv4Address if self.family == 4 else ipaddress.IPv6Address
        # The first range is visited twice: from first_int to its end, and at the very end from its
        # start up to first_int - 1 (the wrap-around).
        for k in range(n + 1):
            r = self.ranges[(first_range + k) % n]
            lo = first_int if k == 0 else int(r.start)
            hi = first_int - 1 if k == n else int(r.end)
            gw = int(r.gateway)
            for value in range(lo, hi + 1):
                if value != gw:
                    yield make(value), r

    def __str__(self) -> str:
        return ", ".join(str(r) for r in self.ranges)


def _parse_ip(value: Any, what: str) -> IPAddress:
    if not isinstance(value, str):
        raise _config_error(f"{what} must be an IP address string, got {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError as err:
        raise _config_error(f"{what} {value!r} is not an IP address", err) from err


def parse_subnet(value: Any) -> IPNetwork:
    """A subnet written without host bits (``10.1.2.0/24``), as host-local insists."""
    if not isinstance(value, str):
        raise _config_error(f"range subnet must be a CIDR string, got {value!r}")
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _config_error(f"range subnet {value!r} is not a CIDR", err) from err
        raise _config_error(f"range subnet {value!r} has host bits set; the network is {net}", err) from err


def parse_range(entry: Mapping[str, Any], subnet: IPNetwork | None = None) -> Range:
    """Canonicalise one ``ranges`` entry; ``subnet`` overrides ``entry["subnet"]`` (usePodCidr).

    >>> str(parse_range({"subnet": "10.1.0.0/24"}))
    '10.1.0.0/24 (10.1.0.1-10.1.0.254)'
    >>> parse_range({"subnet": "fd00::/120"}).end
    IPv6Address('fd00::ff')
    """
    if not isinstance(entry, Mapping):
        raise _config_error(f"each range must be an object, got {entry!r}")
    net = subnet if subnet is not None else parse_subnet(entry.get("subnet"))
    if net.max_prefixlen - net.prefixlen < _MIN_HOST_BITS:
        raise _config_error(f"subnet {net} is too small to allocate from (at least /{net.max_prefixlen - 2})")
    first = net.network_address + 1
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    addrs: dict[str, IPAddress] = {}
    for key in ("rangeStart", "rangeEnd", "gateway"):
        if entry.get(key) in (None, ""):
            continue
        ip = _parse_ip(entry[key], key)
        if ip not in net:
            raise _config_error(f"{key} {ip} is not in subnet {net}")
        addrs[key] = ip
    start = addrs.get("rangeStart", first)
    end = addrs.get("rangeEnd", last)
    if start > end:  # type: ignore[operator]
        raise _config_error(f"rangeStart {start} is after rangeEnd {end} in subnet {net}")
    return Range(net, start, end, addrs.get("gateway", first))


def make_range_set(entries: Sequence[Mapping[str, Any]] | Sequence[Range]) -> RangeSet:
    """A range set from config entries (or already-parsed ranges): one family, no overlaps."""
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise _config_error(f"a range set must be a non-empty list of ranges, got {entries!r}")
    ranges = tuple(e if isinstance(e, Range) else parse_range(e) for e in entries)
    if len({r.subnet.version for r in ranges}) != 1:
        raise _config_error(f"range set mixes IPv4 and IPv6: {', '.join(str(r) for r in ranges)}")
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.overlaps(b):
                raise _config_error(f"range {a} overlaps range {b}")
    return RangeSet(ranges)


def check_no_overlap(sets: Sequence[RangeSet]) -> None:
    """Range sets must be disjoint, or one address would serve two sets."""
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if a.overlaps(sets[j]):
                raise _config_error(f"range set {i} ({a}) overlaps range set {j} ({sets[j]})")
