"""pynet first in a conflist followed by the reference portmap and bandwidth; concurrent ADDs; the
agent fast path (CniServer over the abstract socket) doing the same work as the in-process plugin."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pynet.testing.cni import bridge_conf, cni_server, run_chain, run_plugin
from pynet.testing.netns import TestNetns, random_suffix


def veths(node: TestNetns) -> list[str]:
    out = json.loads(node.run("ip", "-d", "-j", "link", "show").stdout)
    return [lk["ifname"] for lk in out if lk.get("linkinfo", {}).get("info_kind") == "veth"]


def allocations(data: Path, net: str) -> list[str]:
    d = data / net
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_chain_with_reference_portmap_and_bandwidth(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    pynet = bridge_conf("chain", "10.78.1.0/24", tmp_path, ipMasq=True)
    del pynet["cniVersion"], pynet["name"]
    conflist: dict[str, Any] = {"cniVersion": "1.0.0", "name": "chain", "plugins": [
        pynet,
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ]}
    rc = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
          "bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 8_000_000,
                        "egressBurst": 80_000}}
    add = run_chain(node, "ADD", conflist, "ctr-chain", pod.path, runtime_config=rc)
    assert add.ok, add
    result = add.out
    pod_ip = result["ips"][0]["address"].split("/")[0]
    host_veth = result["interfaces"][1]["name"]
    # portmap's DNAT for the hostPort, in the node's netns
    rules = node.run("iptables-save", "-t", "nat").stdout
    assert f"--to-destination {pod_ip}:80" in rules and "--dport 8080" in rules
    # bandwidth's shaping on the host end of pynet's veth (it found it through prevResult)
    assert "tbf" in node.run("tc", "qdisc", "show", "dev", host_veth).stdout
    # traffic to the hostPort reaches the pod
    server = pod.popen(["socat", "-T", "5", "TCP-LISTEN:80,reuseaddr", "SYSTEM:echo hello-from-pod"])
    try:
        reply = ""
        for _ in range(50):  # wait for the listener, bounded
            proc = node.run("socat", "-T", "2", "-", "TCP:10.78.1.1:8080,connect-timeout=1", check=False, timeout=5)
            reply = proc.stdout
            if "hello-from-pod" in reply:
                break
            node.run("sleep", "0.1")
        assert "hello-from-pod" in reply
    finally:
        server.kill()
        server.wait()
    # pynet's CHECK against the chain's final result (which also lists bandwidth's ifb device).
    # (The reference portmap 1.1.1's own CHECK fails here looking for an ip6tables chain it never made.)
    only_pynet = {**conflist, "plugins": conflist["plugins"][:1]}
    check = run_chain(node, "CHECK", only_pynet, "ctr-chain", pod.path, prev=result)
    assert check.ok, check
    gone = run_chain(node, "DEL", conflist, "ctr-chain", pod.path, prev=result, runtime_config=rc)
    assert gone.ok, gone
    assert pod_ip not in node.run("iptables-save", "-t", "nat").stdout
    assert veths(node) == [] and allocations(tmp_path, "chain") == []


@pytest.mark.parametrize("fast", [False, True], ids=["in-process", "agent-socket"])
def test_concurrent_adds_get_unique_addresses(make_netns: Callable[..., TestNetns], tmp_path: Path,
                                              fast: bool) -> None:
    node = make_netns("cnode")
    pods = [make_netns("cpod") for _ in range(20)]
    conf = bridge_conf("many", "10.78.2.0/24", tmp_path, ipMasq=True)
    name = f"pynet-cni-test-{random_suffix()}" if fast else None

    def add(i: int) -> Any:
        return run_plugin(node, "ADD", conf, f"ctr-{i}", pods[i].path, socket_name=name)

    def delete(i: int) -> Any:
        return run_plugin(node, "DEL", conf, f"ctr-{i}", pods[i].path, socket_name=name)

    def body() -> None:
        with ThreadPoolExecutor(max_workers=len(pods)) as pool:
            adds = list(pool.map(add, range(len(pods))))
        assert all(r.ok for r in adds), [r for r in adds if not r.ok][:2]
        ips = [r.out["ips"][0]["address"] for r in adds]
        assert len(set(ips)) == len(pods)
        assert len(allocations(tmp_path, "many")) == len(pods) and len(veths(node)) == len(pods)
        with ThreadPoolExecutor(max_workers=len(pods)) as pool:
            dels = list(pool.map(delete, range(len(pods))))
        assert all(r.ok for r in dels), [r for r in dels if not r.ok][:2]
        assert allocations(tmp_path, "many") == [] and veths(node) == []
        assert node.run("nft", "list", "table", "inet", "pynet-cni", check=False).returncode != 0

    if fast:
        assert name is not None
        with cni_server(node, name) as stats:
            body()
        assert stats["served"] == 2 * len(pods)  # the agent did every request
    else:
        body()


def test_fast_path_lifecycle_and_fallback(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("fast", "10.78.3.0/24", tmp_path, "1.1.0", mtu=1300)
    name = f"pynet-cni-test-{random_suffix()}"
    with cni_server(node, name) as stats:
        add = run_plugin(node, "ADD", conf, "ctr-f", pod.path, socket_name=name)
        assert add.ok, add
        assert json.loads(pod.run("ip", "-j", "link", "show", "eth0").stdout)[0]["mtu"] == 1300
        assert pod.run("busybox", "ping", "-c", "1", "-W", "2", "10.78.3.1", check=False).returncode == 0
        assert pod.run("sysctl", "-n", "net.ipv4.conf.eth0.arp_notify").stdout.strip() == "1"
        assert run_plugin(node, "CHECK", {**conf, "prevResult": add.out}, "ctr-f", pod.path, socket_name=name).ok
        bad = run_plugin(node, "ADD", conf, "ctr-f", pod.path, "x" * 16, socket_name=name)
        assert bad.code == 1 and bad.out["code"] == 4
        assert run_plugin(node, "DEL", conf, "ctr-f", pod.path, socket_name=name).ok
    assert stats["served"] == 4
    assert veths(node) == [] and allocations(tmp_path, "fast") == []
    # nobody listens on that name any more: the launcher does the work itself
    again = run_plugin(node, "ADD", conf, "ctr-g", pod.path, socket_name=name)
    assert again.ok and len(veths(node)) == 1, again
    assert run_plugin(node, "DEL", conf, "ctr-g", pod.path, socket_name=name).ok


def test_shipped_conflist_works(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    """conf/10-pynet.conflist as shipped (pod CIDR from the file the agent writes), through libcni-like chaining."""
    from pynet.testing.cni import REPO_ROOT

    node, pod = make_netns("cnode"), make_netns("cpod")
    conflist = json.loads((REPO_ROOT / "conf" / "10-pynet.conflist").read_text())
    (tmp_path / "pod-cidr").write_text("10.244.7.0/24\n")
    conflist["plugins"][0]["ipam"].update(dataDir=str(tmp_path / "ipam"), podCidrFile=str(tmp_path / "pod-cidr"))
    add = run_chain(node, "ADD", conflist, "ctr-shipped", pod.path, runtime_config={"portMappings": []})
    assert add.ok, add
    assert add.out["ips"][0]["address"] == "10.244.7.2/24"
    vx = json.loads(node.run("ip", "-d", "-j", "link", "show", "pynet-vxlan").stdout)[0]
    assert vx["linkinfo"]["info_data"]["id"] == 1 and vx["mtu"] == 1450
    assert json.loads(pod.run("ip", "-j", "link", "show", "eth0").stdout)[0]["mtu"] == 1450
    assert pod.run("busybox", "ping", "-c", "1", "-W", "2", "10.244.7.1", check=False).returncode == 0
    gone = run_chain(node, "DEL", conflist, "ctr-shipped", pod.path, prev=add.out, runtime_config={"portMappings": []})
    assert gone.ok, gone
    assert veths(node) == [] and allocations(tmp_path / "ipam", "pynet") == []
