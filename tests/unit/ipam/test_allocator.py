"""Allocation through the in-process API, against both stores: order, round-robin, requested IPs,
idempotent repeats, exhaustion and rollback, DEL, CHECK, GC and STATUS."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from ipam_helpers import Args, make_conf

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam import FileStore, MemStore, Store, ipam_add, ipam_check, ipam_del, ipam_gc, ipam_status

V4_24 = [{"subnet": "10.1.0.0/24"}]
TINY = [{"subnet": "10.3.0.0/29", "rangeEnd": "10.3.0.4"}]  # .2 .3 .4 (the gateway .1 is skipped)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "networks"


@pytest.fixture(params=["mem", "file"])
def store_factory(request: pytest.FixtureRequest, data_dir: Path) -> Callable[[], Store]:
    if request.param == "mem":
        mem = MemStore()
        return lambda: mem
    return lambda: FileStore(data_dir, "net1")


def add(conf: dict[str, Any], sf: Callable[[], Store], cid: str, ifname: str = "eth0", cni_args: str = "") -> list[str]:
    res = ipam_add(conf, Args(cid, ifname, cni_args), store=sf())
    return [str(ipc.address) for ipc in res.ips]


def test_first_addresses_in_order_and_result_shape(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24, [{"subnet": "fd00:1::/120"}], routes=[{"dst": "0.0.0.0/0"}])
    res = ipam_add(conf, Args("c1"), store=store_factory())
    assert res.to_dict() == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"},
                {"address": "fd00:1::2/120", "gateway": "fd00:1::1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert res.to_dict("0.4.0")["ips"][1]["version"] == "6"
    assert add(conf, store_factory, "c2") == ["10.1.0.3/24", "fd00:1::3/120"]


def test_repeated_add_returns_the_same_addresses(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24)
    first = add(conf, store_factory, "c1")
    assert add(conf, store_factory, "c1") == first
    assert add(conf, store_factory, "c1", ifname="net1") != first  # another interface, another address


def test_round_robin_does_not_reuse_a_freed_address_at_once(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, TINY)
    assert add(conf, store_factory, "a") == ["10.3.0.2/29"]
    assert add(conf, store_factory, "b") == ["10.3.0.3/29"]
    ipam_del(conf, Args("a"), store=store_factory())
    assert add(conf, store_factory, "c") == ["10.3.0.4/29"]
    assert add(conf, store_factory, "d") == ["10.3.0.2/29"]  # wrapped around to the freed one


def test_exhaustion_is_try_again_later_naming_the_range(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, TINY)
    for cid in ("a", "b", "c"):
        add(conf, store_factory, cid)
    with pytest.raises(CniError) as exc:
        add(conf, store_factory, "d")
    assert exc.value.code == ErrCode.TRY_AGAIN_LATER
    assert "no free IP address" in exc.value.msg and "10.3.0.0/29 (10.3.0.1-10.3.0.4)" in exc.value.msg
    assert "network net1" in exc.value.msg and "all 3 are allocated" in exc.value.msg


def test_failure_in_second_range_set_rolls_back_the_first(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24, [{"subnet": "fd00::/126"}])  # v6: only fd00::2, fd00::3
    add(conf, store_factory, "a")
    add(conf, store_factory, "b")
    with pytest.raises(CniError, match="no free IP address in range set 1"):
        add(conf, store_factory, "c")
    with store_factory() as st:
        assert sorted(o.container_id for o in st.allocations().values()) == ["a", "a", "b", "b"]


def test_requested_ips(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24, [{"subnet": "fd00::/120"}])
    assert add(conf, store_factory, "a", cni_args="IP=10.1.0.77") == ["10.1.0.77/24", "fd00::2/120"]
    conf_rt = dict(conf, runtimeConfig={"ips": ["fd00::50/120", "10.1.0.50/24"]})
    assert add(conf_rt, store_factory, "b") == ["10.1.0.50/24", "fd00::50/120"]
    cases = [
        ("IP=10.1.0.77", ErrCode.TRY_AGAIN_LATER, "already allocated"),
        ("IP=10.1.0.1", ErrCode.INVALID_NETWORK_CONFIG, "is the gateway"),
        ("IP=10.9.9.9", ErrCode.INVALID_NETWORK_CONFIG, "fit no range set"),
        ("IP=10.1.0.8,10.1.0.9", ErrCode.INVALID_NETWORK_CONFIG, "fit no range set"),
        ("IP=nope", ErrCode.INVALID_NETWORK_CONFIG, "not an IP address"),
        ("FOO=1", ErrCode.INVALID_ENV, "unknown key"),
    ]
    for cni_args, code, fragment in cases:
        with pytest.raises(CniError) as exc:
            add(conf, store_factory, "c", cni_args=cni_args)
        assert (exc.value.code, fragment in exc.value.msg) == (code, True), exc.value.msg
    # a holder asking for a different address than the one it holds is refused, the same one is fine
    with pytest.raises(CniError, match="already holds 10.1.0.77"):
        add(conf, store_factory, "a", cni_args="IP=10.1.0.78")
    assert add(conf, store_factory, "a", cni_args="IP=10.1.0.77")[0] == "10.1.0.77/24"
    with store_factory() as st:
        assert {o.container_id for o in st.allocations().values()} == {"a", "b"}  # "c" got nothing


def test_del_is_idempotent_and_releases_only_the_owner(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24)
    add(conf, store_factory, "a")
    add(conf, store_factory, "a", ifname="net1")
    add(conf, store_factory, "b")
    assert ipam_del(conf, Args("a"), store=store_factory()) == [ip_address("10.1.0.2")]
    assert ipam_del(conf, Args("a"), store=store_factory()) == []
    assert ipam_del(conf, Args("never-added"), store=store_factory()) == []
    with store_factory() as st:
        assert sorted(str(o) for o in st.allocations().values()) == ["a/net1", "b/eth0"]


def test_del_needs_no_valid_ranges(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24)
    add(conf, store_factory, "a")
    broken = make_conf(data_dir, [{"subnet": "usePodCidr"}], podCidrFile=str(data_dir / "absent"))
    assert ipam_del(broken, Args("a"), store=store_factory()) == [ip_address("10.1.0.2")]


def test_check(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24)
    add(conf, store_factory, "a")
    ipam_check(conf, Args("a"), store=store_factory())
    ipam_check(dict(conf, prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}]}),
               Args("a"), store=store_factory())
    with pytest.raises(CniError, match="no longer holds 10.1.0.9"):
        ipam_check(dict(conf, prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.9/24"}]}),
                   Args("a"), store=store_factory())
    # an address outside our ranges (added by another plugin of the chain) is not ours to vouch for
    ipam_check(dict(conf, prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"},
                                                                     {"address": "192.168.9.9/24"}]}),
               Args("a"), store=store_factory())
    with pytest.raises(CniError, match="no IP address is allocated to b/eth0 in network net1"):
        ipam_check(conf, Args("b"), store=store_factory())


def test_gc_frees_everything_not_listed(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, V4_24, [{"subnet": "fd00::/120"}])
    for cid, ifname in [("keep", "eth0"), ("keep", "net1"), ("gone", "eth0"), ("also-gone", "eth0")]:
        add(conf, store_factory, cid, ifname=ifname)
    gc_conf = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}, {"containerID": "unrelated", "ifname": "eth0"}]})
    freed = ipam_gc(gc_conf, store=store_factory())
    assert len(freed) == 6
    with store_factory() as st:
        assert sorted({str(o) for o in st.allocations().values()}) == ["keep/eth0"]
    assert ipam_gc(gc_conf, store=store_factory()) == []
    with pytest.raises(CniError, match="GC needs") as exc:
        ipam_gc(conf, store=store_factory())
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG


def test_status(data_dir: Path, store_factory: Callable[[], Store]) -> None:
    conf = make_conf(data_dir, TINY, version="1.1.0")
    ipam_status(conf, store=store_factory())
    for cid in ("a", "b", "c"):
        add(conf, store_factory, cid)
    with pytest.raises(CniError, match="all 3 are allocated") as exc:
        ipam_status(conf, store=store_factory())
    assert exc.value.code == ErrCode.PLUGIN_NOT_AVAILABLE
    ipam_del(conf, Args("b"), store=store_factory())
    ipam_status(conf, store=store_factory())


def test_status_without_pod_cidr_is_not_available(data_dir: Path) -> None:
    conf = make_conf(data_dir, [{"subnet": "usePodCidr"}], podCidrFile=str(data_dir / "pod-cidr"))
    with pytest.raises(CniError, match="pod CIDR is not known yet") as exc:
        ipam_status(conf, store=MemStore())
    assert exc.value.code == ErrCode.PLUGIN_NOT_AVAILABLE
    data_dir.mkdir()
    (data_dir / "pod-cidr").write_text("10.244.0.0/24\n")
    ipam_status(conf, store=MemStore())
    assert [str(i.address) for i in ipam_add(conf, Args("x"), store=MemStore()).ips] == ["10.244.0.2/24"]


@pytest.mark.parametrize(("cid", "ifname"), [("../escape", "eth0"), ("ok", "a/b"), ("ok", "x" * 16), ("", "eth0")])
def test_in_process_api_validates_the_attachment(data_dir: Path, cid: str, ifname: str) -> None:
    conf = make_conf(data_dir, V4_24)
    for call in (ipam_add, ipam_del, ipam_check):
        with pytest.raises(CniError) as exc:
            call(conf, Args(cid, ifname))
        assert exc.value.code == ErrCode.INVALID_ENV
    assert not data_dir.exists()
