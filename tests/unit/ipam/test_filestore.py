"""FileStore on tmp_path: host-local's on-disk layout, persistence, the owner index, crash leftovers,
and 24 processes allocating and releasing at once without ever sharing an address."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from ipaddress import ip_address
from pathlib import Path

import pytest
from ipam_helpers import Args, make_conf

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam import FileStore, Owner, ipam_add, ipam_check, ipam_del, ipam_gc

V4 = [{"subnet": "10.5.0.0/24"}]
V6 = [{"subnet": "fd00:5::/120"}]


def net_dir(data: Path) -> Path:
    return data / "net1"


def test_layout_is_host_locals(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, V4, V6)
    ipam_add(conf, Args("c1"))
    d = net_dir(tmp_path)
    assert (d / "10.5.0.2").read_bytes() == b"c1\r\neth0"
    assert (d / "fd00:5::2").read_bytes() == b"c1\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == "10.5.0.2"
    assert (d / "last_reserved_ip.1").read_text() == "fd00:5::2"
    assert (d / "lock").exists()
    assert (d / "by-owner" / "c1:eth0").read_text() == "10.5.0.2\nfd00:5::2\n"
    assert not [p for p in os.listdir(d) if p.startswith(".tmp")]


def test_state_survives_a_new_process_view(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, V4)
    ipam_add(conf, Args("c1"))
    ipam_add(conf, Args("c2"))
    ipam_del(conf, Args("c1"))
    # a fresh store object (as after a reboot) continues round-robin after .3 and sees c2
    res = ipam_add(conf, Args("c3"), store=FileStore(tmp_path, "net1"))
    assert str(res.ips[0].address) == "10.5.0.4/24"
    with FileStore(tmp_path, "net1") as st:
        assert st.owned_by(Owner("c2", "eth0")) == [ip_address("10.5.0.3")]


def test_records_written_by_host_local_are_respected_and_released(tmp_path: Path) -> None:
    d = net_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "10.5.0.2").write_bytes(b"hl-pod\r\neth0")   # as host-local leaves it: no owner index
    (d / "10.5.0.3").write_bytes(b"ancient-pod")      # host-local's oldest format: id only
    conf = make_conf(tmp_path, V4)
    assert str(ipam_add(conf, Args("new")).ips[0].address) == "10.5.0.4/24"
    assert ipam_del(conf, Args("hl-pod")) == [ip_address("10.5.0.2")]
    assert ipam_del(conf, Args("ancient-pod", "net7")) == [ip_address("10.5.0.3")]
    assert sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) == ["10.5.0.4"]


def test_stale_index_never_frees_someone_elses_address(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, V4)
    ipam_add(conf, Args("a"))                         # 10.5.0.2
    d = net_dir(tmp_path)
    # a crash left a's index naming .3, which b now holds
    (d / "by-owner" / "a:eth0").write_text("10.5.0.2\n10.5.0.3\n")
    (d / "10.5.0.3").write_bytes(b"b\r\neth0")
    assert ipam_del(conf, Args("a")) == [ip_address("10.5.0.2")]
    assert (d / "10.5.0.3").read_bytes() == b"b\r\neth0"


def test_gc_sweeps_crash_leftovers(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, V4)
    ipam_add(conf, Args("a"))
    d = net_dir(tmp_path)
    (d / ".tmp.999.deadbeef").write_text("half written")
    (d / "by-owner" / "ghost:eth0").write_text("10.5.0.99\n")
    assert ipam_gc(dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})) == []
    assert sorted(os.listdir(d / "by-owner")) == ["a:eth0"]
    assert not [p for p in os.listdir(d) if p.startswith(".tmp")]


def test_store_refuses_use_without_lock_and_lock_is_exclusive(tmp_path: Path) -> None:
    st = FileStore(tmp_path, "net1")
    with pytest.raises(RuntimeError, match="outside"):
        st.allocations()
    with st:
        fd = os.open(net_dir(tmp_path) / "lock", os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_unusable_data_dir_is_io_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(CniError) as exc:
        ipam_add(make_conf(tmp_path / "file" / "sub", V4), Args("a"))
    assert exc.value.code == ErrCode.IO_FAILURE
    assert "cannot allocate" in exc.value.msg


# -- many processes at once ----------------------------------------------------------------------

PROCS = 24
PER_PROC = 4


def _worker(data: str, n: int, barrier: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:  # type: ignore[name-defined, type-arg]
    conf = make_conf(data, [{"subnet": "10.7.0.0/24"}], [{"subnet": "fd00:7::/120"}])
    barrier.wait(timeout=120)
    got = []
    for i in range(PER_PROC):
        res = ipam_add(conf, Args(f"p{n}-{i}"))
        got.append((f"p{n}-{i}", [str(x.address.ip) for x in res.ips]))
        if i % 2:  # every other pod leaves again, so releases race with allocations
            ipam_del(conf, Args(f"p{n}-{i}"))
    out.put(got)


def test_concurrent_processes_never_share_an_address(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCS)
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), n, barrier, out)) for n in range(PROCS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    held = {cid: ips for got in results for cid, ips in got if not int(cid.rsplit("-", 1)[1]) % 2}
    assert len(held) == PROCS * PER_PROC // 2
    flat = [ip for ips in held.values() for ip in ips]
    assert len(flat) == len(set(flat)) == PROCS * PER_PROC  # unique, one v4 + one v6 each
    d = net_dir(tmp_path)
    on_disk = {p.name: p.read_bytes().split(b"\r\n")[0].decode() for p in d.iterdir() if p.name[0] in "1f"}
    assert on_disk == {ip: cid for cid, ips in held.items() for ip in ips}
    assert sorted(os.listdir(d / "by-owner")) == sorted(f"{cid}:eth0" for cid in held)


def test_gc_keeps_id_only_records_of_live_containers(tmp_path: Path) -> None:
    d = net_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "10.5.0.7").write_bytes(b"live-old")   # host-local's oldest format: no ifname
    (d / "10.5.0.8").write_bytes(b"dead-old")
    conf = make_conf(tmp_path, V4)
    gc_conf = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "live-old", "ifname": "eth0"}]})
    assert ipam_gc(gc_conf) == [ip_address("10.5.0.8")]
    assert (d / "10.5.0.7").exists() and not (d / "10.5.0.8").exists()


def test_release_check_and_gc_never_create_the_data_dir(tmp_path: Path) -> None:
    conf = make_conf(tmp_path / "absent", V4)
    assert ipam_del(conf, Args("x")) == []
    assert ipam_gc(dict(conf, **{"cni.dev/valid-attachments": []})) == []
    with pytest.raises(CniError, match="no IP address is allocated"):
        ipam_check(conf, Args("x"))
    assert not (tmp_path / "absent").exists()
