"""The real ``cni-bin/pynet`` in macvlan mode, run as a runtime runs it, inside a node namespace.

Set-up per test: a node namespace whose master is a veth end ``m0`` (no dummy links on this kernel),
its peer in a "peer" namespace with 10.10.0.1/24 (the master's segment). Covered: the pod's eth0 is
a macvlan of m0 in the requested mode with the IPAM address and MTU; the pod reaches the peer (ping
and TCP); two pods on one master reach each other in bridge mode and do not in private mode;
CHECK passes; DEL removes the link and frees the address, twice, and with the netns gone; bad
``macvlanMode`` or master is an invalid-config error (code 7) that leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pynet.testing.cni import run_plugin
from pynet.testing.netns import TestNetns


def mv_conf(data: Path, mode: str = "bridge", master: str = "m0", **keys: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0", "name": "mvnet", "type": "pynet", "mode": "macvlan", "master": master,
        "macvlanMode": mode,
        "ipam": {"type": "pynet-ipam", "dataDir": str(data),
                 "ranges": [[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.10", "gateway": "10.10.0.1"}]]},
    }
    conf.update(keys)
    return conf


@pytest.fixture
def segment(make_netns: Callable[[str], TestNetns]) -> tuple[TestNetns, TestNetns]:
    node, peer = make_netns("mvnode"), make_netns("mvpeer")
    node.run("ip", "link", "add", "m0", "type", "veth", "peer", "name", "p0", "netns", peer.name)
    node.run("ip", "link", "set", "m0", "up")
    peer.run("ip", "addr", "add", "10.10.0.1/24", "dev", "p0")
    peer.run("ip", "link", "set", "p0", "up")
    return node, peer


def link(ns: TestNetns, name: str) -> dict[str, Any]:
    return json.loads(ns.run("ip", "-d", "-j", "link", "show", name).stdout)[0]  # type: ignore[no-any-return]


def ping(ns: TestNetns, dst: str) -> bool:
    return ns.run("busybox", "ping", "-c", "1", "-W", "2", dst, check=False).returncode == 0


def allocated(data: Path) -> list[str]:
    d = data / "mvnet"
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_macvlan_pod_reaches_the_masters_segment(segment: tuple[TestNetns, TestNetns], make_netns: Callable[[str], TestNetns],
                                                 tmp_path: Path) -> None:
    node, peer = segment
    pod = make_netns("mvpod")
    conf = mv_conf(tmp_path)
    res = run_plugin(node, "ADD", conf, "ctr-a", pod.path)
    assert res.ok, (res.out, res.stderr)
    assert res.out["ips"][0]["address"] == "10.10.0.10/24"
    iface = res.out["interfaces"][0]
    assert iface["name"] == "eth0" and iface["sandbox"] == pod.path

    eth0 = link(pod, "eth0")
    assert eth0["linkinfo"]["info_kind"] == "macvlan" and eth0["linkinfo"]["info_data"]["mode"] == "bridge"
    assert eth0["address"] == iface["mac"] and eth0["mtu"] == 1500 and eth0["operstate"] in ("UP", "UNKNOWN")
    assert not [n for n in json.loads(node.run("ip", "-j", "link").stdout) if n["ifname"].startswith("mv")]

    assert ping(pod, "10.10.0.1")
    server = subprocess.Popen(peer.argv(sys.executable, "-m", "pynet.lab.podserver", "peer"), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and "listening" in server.stdout.readline()
        out = pod.run(sys.executable, "-m", "pynet.lab.probe", "tcp:10.10.0.1:8080").stdout
        assert json.loads(out)["reply"] == "peer 10.10.0.10"
    finally:
        server.kill()
        server.wait()

    assert run_plugin(node, "CHECK", {**conf, "prevResult": res.out}, "ctr-a", pod.path).ok
    assert allocated(tmp_path) == ["10.10.0.10"]
    dele = run_plugin(node, "DEL", {**conf, "prevResult": res.out}, "ctr-a", pod.path)
    assert dele.ok, dele.out
    assert pod.run("ip", "link", "show", "eth0", check=False).returncode != 0
    assert allocated(tmp_path) == []
    assert run_plugin(node, "DEL", conf, "ctr-a", pod.path).ok  # twice
    pod.destroy()
    assert run_plugin(node, "DEL", conf, "ctr-a", pod.path).ok  # netns gone


@pytest.mark.parametrize(("mode", "pods_see_each_other"), [("bridge", True), ("private", False)])
def test_macvlan_modes_between_pods(segment: tuple[TestNetns, TestNetns], make_netns: Callable[[str], TestNetns],
                                    tmp_path: Path, mode: str, pods_see_each_other: bool) -> None:
    node, _peer = segment
    a, b = make_netns("mva"), make_netns("mvb")
    conf = mv_conf(tmp_path, mode, mtu=1400)
    ra = run_plugin(node, "ADD", conf, "ctr-a", a.path)
    rb = run_plugin(node, "ADD", conf, "ctr-b", b.path)
    assert ra.ok and rb.ok, (ra.out, rb.out)
    assert link(a, "eth0")["linkinfo"]["info_data"]["mode"] == mode and link(a, "eth0")["mtu"] == 1400
    ip_b = rb.out["ips"][0]["address"].split("/")[0]
    assert ping(a, "10.10.0.1")  # the segment, in every mode
    assert ping(a, ip_b) is pods_see_each_other


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [({"macvlanMode": "shared"}, "macvlanMode"), ({"master": "nosuch0"}, "nosuch0"), ({"mtu": 9000}, "mtu")],
    ids=["bad-mode", "missing-master", "mtu-above-master"],
)
def test_invalid_macvlan_config_is_code_7(segment: tuple[TestNetns, TestNetns], make_netns: Callable[[str], TestNetns],
                                          tmp_path: Path, keys: dict[str, Any], fragment: str) -> None:
    node, _peer = segment
    pod = make_netns("mvbad")
    res = run_plugin(node, "ADD", {**mv_conf(tmp_path), **keys}, "ctr-x", pod.path)
    assert res.code != 0 and res.out["code"] == 7 and fragment in res.out["msg"], res.out
    assert pod.run("ip", "link", "show", "eth0", check=False).returncode != 0
    assert allocated(tmp_path) == []
    assert not [n for n in json.loads(node.run("ip", "-j", "link").stdout) if n["ifname"].startswith("mv")]
