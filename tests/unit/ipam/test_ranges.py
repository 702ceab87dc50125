"""Range canonicalisation (host-local's defaults and checks), overlap rules and round-robin iteration."""

from __future__ import annotations

import doctest
from ipaddress import ip_address, ip_network

import pytest

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam import ranges
from pynet.cni.ipam.ranges import check_no_overlap, make_range_set, parse_range


def test_doctests() -> None:
    assert doctest.testmod(ranges).failed == 0


@pytest.mark.parametrize(
    ("entry", "start", "end", "gateway"),
    [
        ({"subnet": "10.1.2.0/24"}, "10.1.2.1", "10.1.2.254", "10.1.2.1"),
        ({"subnet": "10.1.2.0/30"}, "10.1.2.1", "10.1.2.2", "10.1.2.1"),
        ({"subnet": "10.1.0.0/16", "rangeStart": "10.1.5.10", "rangeEnd": "10.1.5.20", "gateway": "10.1.0.254"},
         "10.1.5.10", "10.1.5.20", "10.1.0.254"),
        ({"subnet": "fd00:1::/64"}, "fd00:1::1", "fd00:1::ffff:ffff:ffff:ffff", "fd00:1::1"),
        ({"subnet": "fd00::/126"}, "fd00::1", "fd00::3", "fd00::1"),
    ],
    ids=["v4-defaults", "v4-smallest", "v4-explicit", "v6-defaults", "v6-smallest"],
)
def test_canonical_defaults(entry: dict[str, str], start: str, end: str, gateway: str) -> None:
    r = parse_range(entry)
    assert (r.start, r.end, r.gateway) == (ip_address(start), ip_address(end), ip_address(gateway))
    assert r.subnet == ip_network(entry["subnet"])


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"subnet": "10.1.2.3/24"}, "host bits set; the network is 10.1.2.0/24"),
        ({"subnet": "10.1.2.0/31"}, "too small"),
        ({"subnet": "fd00::/127"}, "too small"),
        ({"subnet": "nonsense"}, "not a CIDR"),
        ({"subnet": 42}, "must be a CIDR string"),
        ({}, "must be a CIDR string"),
        ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.1"}, "rangeStart 10.1.3.1 is not in subnet"),
        ({"subnet": "10.1.2.0/24", "gateway": "10.9.9.9"}, "gateway 10.9.9.9 is not in subnet"),
        ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.50", "rangeEnd": "10.1.2.40"}, "is after rangeEnd"),
        ({"subnet": "10.1.2.0/24", "rangeEnd": "x"}, "not an IP address"),
    ],
)
def test_bad_ranges_are_config_errors(entry: dict[str, object], fragment: str) -> None:
    with pytest.raises(CniError) as exc:
        parse_range(entry)
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG
    assert fragment in exc.value.msg


def test_range_set_rejects_mixed_families_and_overlaps() -> None:
    with pytest.raises(CniError, match="mixes IPv4 and IPv6"):
        make_range_set([{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/120"}])
    with pytest.raises(CniError, match="overlaps"):
        make_range_set([{"subnet": "10.0.0.0/24"},
                        {"subnet": "10.0.0.0/16", "rangeStart": "10.0.0.200", "rangeEnd": "10.0.1.10"}])
    with pytest.raises(CniError, match="non-empty list"):
        make_range_set([])
    # same subnet, disjoint slices: fine
    rs = make_range_set([{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.9"},
                         {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10"}])
    assert rs.size == 8 + 245  # the gateway .1 sits in the first slice


def test_range_sets_must_not_overlap_each_other() -> None:
    a = make_range_set([{"subnet": "10.0.0.0/24"}])
    b = make_range_set([{"subnet": "10.0.0.0/25"}])
    c = make_range_set([{"subnet": "10.0.1.0/24"}])
    check_no_overlap([a, c])
    with pytest.raises(CniError, match="range set 0 .* overlaps range set 1"):
        check_no_overlap([a, b])


def _walk(rs: ranges.RangeSet, last: str | None) -> list[str]:
    return [str(ip) for ip, _ in rs.iter_from(ip_address(last) if last else None)]


def test_iteration_skips_gateway_and_wraps_across_ranges() -> None:
    rs = make_range_set([
        {"subnet": "10.0.0.0/29"},                                             # .1 gw, .2-.6
        {"subnet": "10.0.1.0/24", "rangeStart": "10.0.1.10", "rangeEnd": "10.0.1.11"},
    ])
    assert _walk(rs, None) == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6",
                               "10.0.1.10", "10.0.1.11"]
    # after the last address of range 0 comes range 1, then the wrap back to range 0
    assert _walk(rs, "10.0.0.6") == ["10.0.1.10", "10.0.1.11", "10.0.0.2", "10.0.0.3", "10.0.0.4",
                                     "10.0.0.5", "10.0.0.6"]
    assert _walk(rs, "10.0.1.10")[:3] == ["10.0.1.11", "10.0.0.2", "10.0.0.3"]
    # a remembered address outside every range (config changed) restarts at the beginning
    assert _walk(rs, "192.168.0.1")[0] == "10.0.0.2"
    assert rs.size == 7


def test_gateway_inside_range_is_never_yielded_and_size_counts_it_out() -> None:
    rs = make_range_set([{"subnet": "10.0.0.0/28", "gateway": "10.0.0.5"}])
    walked = _walk(rs, None)
    assert "10.0.0.5" not in walked and "10.0.0.1" in walked
    assert len(walked) == rs.size == 13


def test_large_v6_range_iterates_lazily() -> None:
    rs = make_range_set([{"subnet": "fd00::/64"}])
    it = rs.iter_from(ip_address("fd00::ffff:ffff:ffff:fffe"))
    assert [str(next(it)[0]) for _ in range(3)] == ["fd00::ffff:ffff:ffff:ffff", "fd00::2", "fd00::3"]
