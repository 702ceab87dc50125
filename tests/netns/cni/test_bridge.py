"""The real ``cni-bin/pynet`` in bridge mode, run as a runtime runs it, checked against the kernel.

Each test makes its own node and pod namespaces (the plugin runs inside the node netns: that is
the "host"), its own IPAM data directory and subnet. Covered: result shape per cniVersion,
addresses, routes, MTU, hairpin, promisc, the masquerade record (present, then gone), pod-to-gateway
and pod-to-pod ping, CHECK ok then CHECK failing after drift, DEL cleanup (no veth, no allocation,
no rule), DEL twice, DEL with the netns gone, rollback when ``vlan`` cannot be honoured, GC, STATUS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pynet.testing.cni import PluginRun, bridge_conf, run_plugin
from pynet.testing.netns import TestNetns

VERSIONS = ["0.4.0", "1.0.0", "1.1.0"]


def links(ns: TestNetns) -> dict[str, Any]:
    return {link["ifname"]: link for link in json.loads(ns.run("ip", "-d", "-j", "link", "show").stdout)}


def veths(node: TestNetns) -> list[str]:
    return [name for name, link in links(node).items() if link.get("linkinfo", {}).get("info_kind") == "veth"]


def allocations(data: Path, net: str) -> list[str]:
    d = data / net
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit() or ":" in p.name) if d.exists() else []


def masq_rules(node: TestNetns) -> list[str]:
    proc = node.run("nft", "list", "table", "inet", "pynet-cni", check=False)
    return [ln.strip() for ln in proc.stdout.splitlines() if "masquerade" in ln] if proc.returncode == 0 else []


def ping(ns: TestNetns, dst: str) -> bool:
    return ns.run("busybox", "ping", "-c", "1", "-W", "2", dst, check=False).returncode == 0


def with_prev(conf: dict[str, Any], prev: Any) -> dict[str, Any]:
    return {**conf, "prevResult": prev}


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del_lifecycle(make_netns: Callable[..., TestNetns], tmp_path: Path, version: str) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("life", "10.77.1.0/24", tmp_path, version, mtu=1400, hairpinMode=True, promiscMode=True,
                       ipMasq=True)
    add = run_plugin(node, "ADD", conf, "ctr-life", pod.path)
    assert add.code == 0, add
    res = add.out
    assert res["cniVersion"] == version
    bridge, host, podif = res["interfaces"]
    assert bridge["name"] == "pynet0" and "sandbox" not in host and podif == {**podif, "name": "eth0",
                                                                           "sandbox": pod.path}
    assert all(itf.get("mac") for itf in res["interfaces"])  # podman rejects results without mac
    ip = res["ips"][0]
    assert ip["address"] == "10.77.1.2/24" and ip["gateway"] == "10.77.1.1" and ip["interface"] == 2
    assert ("version" in ip) is (version == "0.4.0")
    assert ("mtu" in podif) is (version == "1.1.0")
    # kernel state, pod side
    eth0 = links(pod)["eth0"]
    assert eth0["mtu"] == 1400 and eth0["address"] == podif["mac"]
    assert "10.77.1.2/24" in pod.run("ip", "-4", "-br", "addr", "show", "eth0").stdout
    assert "default via 10.77.1.1 dev eth0" in pod.run("ip", "route").stdout
    assert pod.run("sysctl", "-n", "net.ipv4.conf.eth0.arp_notify").stdout.strip() == "1"
    # node side
    node_links = links(node)
    hv = node_links[host["name"]]
    assert hv["mtu"] == 1400 and hv["master"] == "pynet0"
    assert hv["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert "PROMISC" in node_links["pynet0"]["flags"]
    assert "10.77.1.1/24" in node.run("ip", "-br", "addr", "show", "pynet0").stdout
    assert node.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    assert masq_rules(node) == [
        'ip saddr 10.77.1.2 ip daddr != 10.77.1.0/24 ip daddr != 224.0.0.0/4 masquerade comment "life/ctr-life/eth0"']
    assert allocations(tmp_path, "life") == ["10.77.1.2"]
    assert ping(pod, "10.77.1.1")
    # CHECK: fine, then drift
    assert run_plugin(node, "CHECK", with_prev(conf, res), "ctr-life", pod.path).code == 0
    pod.run("ip", "addr", "del", "10.77.1.2/24", "dev", "eth0")
    drift = run_plugin(node, "CHECK", with_prev(conf, res), "ctr-life", pod.path)
    assert drift.code == 1 and drift.out["code"] == 100 and "10.77.1.2/24 is missing" in drift.out["msg"], drift
    # DEL, twice
    for _ in range(2):
        gone = run_plugin(node, "DEL", with_prev(conf, res), "ctr-life", pod.path)
        assert (gone.code, gone.out) == (0, None), gone
    assert veths(node) == [] and "eth0" not in links(pod)
    assert allocations(tmp_path, "life") == []
    assert masq_rules(node) == []
    assert node.run("nft", "list", "table", "inet", "pynet-cni", check=False).returncode != 0  # last user gone


def test_two_pods_ping_and_del_with_netns_gone(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod_a, pod_b = make_netns("cnode"), make_netns("cpod"), make_netns("cpod")
    conf = bridge_conf("pair", "10.77.2.0/24", tmp_path, ipMasq=True)
    a = run_plugin(node, "ADD", conf, "ctr-a", pod_a.path)
    b = run_plugin(node, "ADD", conf, "ctr-b", pod_b.path)
    assert a.ok and b.ok, (a, b)
    ip_a, ip_b = (r.out["ips"][0]["address"].split("/")[0] for r in (a, b))
    assert ip_a != ip_b
    assert ping(pod_a, ip_b) and ping(pod_b, ip_a) and ping(pod_b, "10.77.2.1")
    assert len(masq_rules(node)) == 2
    pod_b.destroy()  # the runtime lost the netns before DEL
    gone = run_plugin(node, "DEL", conf, "ctr-b", pod_b.path)
    assert gone.code == 0, gone
    assert allocations(tmp_path, "pair") == [ip_a]
    assert len(masq_rules(node)) == 1 and len(veths(node)) == 1
    # DEL without CNI_NETNS at all is fine too; prevResult names the host end, which goes
    assert run_plugin(node, "DEL", with_prev(conf, a.out), "ctr-a", "").code == 0
    assert allocations(tmp_path, "pair") == [] and masq_rules(node) == [] and veths(node) == []


def test_vxlan_device_is_ensured_and_shared(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("ovl", "10.77.3.0/24", tmp_path, vxlan={"vni": 4242, "port": 4789})
    add = run_plugin(node, "ADD", conf, "ctr-v", pod.path)
    assert add.ok, add
    vx = links(node)["pynet-vxlan"]
    data = vx["linkinfo"]["info_data"]
    assert (data["id"], data["port"], data.get("learning")) == (4242, 4789, False)
    # no underlay default route in this node: 1500 - 50
    assert vx["mtu"] == 1450 and links(pod)["eth0"]["mtu"] == 1450
    assert run_plugin(node, "DEL", conf, "ctr-v", pod.path).ok
    assert "pynet-vxlan" in links(node)  # shared: DEL never removes it
    clash = run_plugin(node, "ADD", bridge_conf("ovl", "10.77.3.0/24", tmp_path, vxlan={"vni": 7}), "ctr-w", pod.path)
    assert clash.code == 1 and "vni 4242" in clash.out["msg"], clash
    assert allocations(tmp_path, "ovl") == [] and veths(node) == []


def test_vlan_unsupported_rolls_back_everything(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    """This kernel has no bridge VLAN filtering: ADD must fail with code 2 and leave nothing behind."""
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("vl", "10.77.4.0/24", tmp_path, vlan=100, ipMasq=True)
    add = run_plugin(node, "ADD", conf, "ctr-vl", pod.path)
    assert add.code == 1 and add.out["code"] == 2 and "vlan" in add.out["msg"], add
    assert veths(node) == [] and "eth0" not in links(pod)
    assert allocations(tmp_path, "vl") == [] and masq_rules(node) == []


def test_gc_and_status(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod_a, pod_b = make_netns("cnode"), make_netns("cpod"), make_netns("cpod")
    conf = bridge_conf("gcnet", "10.77.5.0/30", tmp_path, "1.1.0", ipMasq=True)  # one usable address
    assert run_plugin(node, "STATUS", conf).code == 0
    a = run_plugin(node, "ADD", conf, "ctr-keep", pod_a.path)
    assert a.ok, a
    full = run_plugin(node, "STATUS", conf)
    assert full.code == 1 and full.out["code"] == 50, full  # IPAM cannot allocate any more
    exhausted = run_plugin(node, "ADD", conf, "ctr-b", pod_b.path)
    assert exhausted.code != 0 and veths(node) != [] and len(veths(node)) == 1
    gc_conf = {**conf, "cni.dev/valid-attachments": []}
    assert run_plugin(node, "GC", gc_conf).code == 0
    assert allocations(tmp_path, "gcnet") == [] and masq_rules(node) == []
    assert run_plugin(node, "STATUS", conf).code == 0


BAD: list[tuple[str, dict[str, Any], bytes | None, int]] = [
    ("malformed-json", {}, b'{"cniVersion": "1.0.0", "name": ', 6),
    ("ifname-too-long", {"ifname": "a-very-long-ifname"}, None, 4),
    ("containerid-path", {"container_id": "../../x"}, None, 4),
    ("unsupported-version", {}, b'{"cniVersion": "0.9.0", "name": "bad", "type": "pynet"}', 1),
    ("missing-ipam", {}, b'{"cniVersion": "1.0.0", "name": "bad", "type": "pynet"}', 7),
    ("bad-mtu", {}, b'{"cniVersion": "1.0.0", "name": "bad", "type": "pynet", "mtu": "big", "ipam": {"type": "x"}}',
     7),
    ("ipam-plugin-missing", {}, b'{"cniVersion": "1.0.0", "name": "bad", "type": "pynet", "ipam": {"type": "nope"}}',
     7),
]


@pytest.mark.parametrize(("kw", "stdin", "code"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_changes_nothing(make_netns: Callable[..., TestNetns], tmp_path: Path, kw: dict[str, Any],
                                   stdin: bytes | None, code: int) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf: dict[str, Any] | bytes = stdin if stdin is not None else bridge_conf("bad", "10.77.6.0/24", tmp_path)
    args = {"container_id": "ctr-bad", "netns": pod.path, **kw}
    run: PluginRun = run_plugin(node, "ADD", conf, args["container_id"], args["netns"], kw.get("ifname", "eth0"))
    assert run.code == 1 and run.out["code"] == code, run
    assert run.out["msg"] and set(run.out) <= {"cniVersion", "code", "msg", "details"}
    assert set(links(node)) == {"lo"} and set(links(pod)) == {"lo"} and not (tmp_path / "bad").exists()


def test_add_into_missing_netns_is_unknown_container(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node = make_netns("cnode")
    run = run_plugin(node, "ADD", bridge_conf("nons", "10.77.7.0/24", tmp_path), "ctr-x", "/run/netns/no-such-ns")
    assert run.code == 1 and run.out["code"] == 3
    assert allocations(tmp_path, "nons") == []


def test_dual_stack(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("dual", "10.77.8.0/24", tmp_path, "1.1.0", ipMasq=True)
    conf["ipam"]["ranges"] = [[{"subnet": "10.77.8.0/24"}], [{"subnet": "fd00:77:8::/64"}]]
    add = run_plugin(node, "ADD", conf, "ctr-ds", pod.path)
    assert add.ok, add
    assert [ip["address"] for ip in add.out["ips"]] == ["10.77.8.2/24", "fd00:77:8::2/64"]
    assert {r["dst"] for r in add.out["routes"]} == {"0.0.0.0/0", "::/0"}
    assert "default via fd00:77:8::1 dev eth0" in pod.run("ip", "-6", "route").stdout
    assert "fd00:77:8::1/64" in node.run("ip", "-6", "-br", "addr", "show", "pynet0").stdout
    assert node.run("sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    assert pod.run("sysctl", "-n", "net.ipv6.conf.eth0.accept_ra").stdout.strip() == "0"
    assert any("ip6 saddr fd00:77:8::2" in r for r in masq_rules(node)) and len(masq_rules(node)) == 2
    ok = False
    for _ in range(30):  # the bridge's own IPv6 address may still be in DAD
        if pod.run("busybox", "ping", "-6", "-c", "1", "-W", "1", "fd00:77:8::1", check=False).returncode == 0:
            ok = True
            break
    assert ok and ping(pod, "10.77.8.1")
    assert run_plugin(node, "CHECK", with_prev(conf, add.out), "ctr-ds", pod.path).ok
    assert run_plugin(node, "DEL", with_prev(conf, add.out), "ctr-ds", pod.path).ok
    assert masq_rules(node) == [] and allocations(tmp_path, "dual") == []


def test_repeated_add_fails_without_hurting_the_live_attachment(make_netns: Callable[..., TestNetns],
                                                                 tmp_path: Path) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("again", "10.77.9.0/24", tmp_path, ipMasq=True)
    first = run_plugin(node, "ADD", conf, "ctr-1", pod.path)
    assert first.ok, first
    second = run_plugin(node, "ADD", conf, "ctr-1", pod.path)
    assert second.code == 1 and "already exists" in second.out["msg"], second
    assert allocations(tmp_path, "again") == ["10.77.9.2"] and len(masq_rules(node)) == 1
    assert ping(pod, "10.77.9.1")
