"""pynet-ipam as a runtime runs it, and IPAM interop with the reference plugins.

Covers: the real ``cni-bin/pynet-ipam`` executed with an almost empty environment inside a node
netns (VERSION, ADD, CHECK, DEL, GC, STATUS, usePodCidr); 24 concurrent ADD processes get distinct
addresses and 24 concurrent DELs free them all; the reference ``bridge`` delegating to
``pynet-ipam`` builds working pods (address, route, ping to the gateway) and DEL frees the records;
the main plugin ``pynet`` delegating to the reference ``host-local`` does the same.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynet.testing.netns import STANDARD_PATH, TestNetns
from pynet.testing.plugin import REPO_ROOT

PYNET_IPAM = str(REPO_ROOT / "cni-bin" / "pynet-ipam")
PYNET = str(REPO_ROOT / "cni-bin" / "pynet")
CNI_PATH = f"{REPO_ROOT / 'cni-bin'}:/usr/lib/cni"


def cni_env(command: str, cid: str = "", netns: str = "", ifname: str = "eth0", args: str = "") -> dict[str, str]:
    env = {"PATH": STANDARD_PATH, "CNI_COMMAND": command, "CNI_PATH": CNI_PATH}
    for key, value in (("CNI_CONTAINERID", cid), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
        if value:
            env[key] = value
    return env


def call(node: TestNetns, plugin: str, command: str, conf: dict[str, Any], **kw: str) -> tuple[int, Any]:
    proc = node.run(plugin, env=cni_env(command, **kw), input=json.dumps(conf), check=False, timeout=30)
    out = proc.stdout.strip()
    return proc.returncode, json.loads(out) if out else None


def ipam_conf(data: Path, version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "ipamnet", "type": "pynet",
            "ipam": {"type": "pynet-ipam", "dataDir": str(data), **ipam}}


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def records(data: Path, net: str) -> dict[str, str]:
    d = data / net
    return {p.name: p.read_bytes().decode() for p in d.iterdir() if _is_ip(p.name)} if d.exists() else {}


def test_executable_lifecycle(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node = make_netns("ipn")
    conf = ipam_conf(tmp_path, "1.1.0", ranges=[[{"subnet": "10.61.0.0/29"}], [{"subnet": "fd00:61::/125"}]],
                     routes=[{"dst": "0.0.0.0/0"}])
    rc, out = call(node, PYNET_IPAM, "VERSION", conf)
    assert rc == 0 and {"0.4.0", "1.0.0", "1.1.0"} <= set(out["supportedVersions"])
    rc, out = call(node, PYNET_IPAM, "ADD", conf, cid="ctr1", netns="/proc/self/ns/net",
                   args="IgnoreUnknown=1;K8S_POD_NAME=web")
    assert (rc, out) == (0, {"cniVersion": "1.1.0", "ips": [
        {"address": "10.61.0.2/29", "gateway": "10.61.0.1"}, {"address": "fd00:61::2/125", "gateway": "fd00:61::1"}],
        "routes": [{"dst": "0.0.0.0/0"}]})
    assert records(tmp_path, "ipamnet") == {"10.61.0.2": "ctr1\r\neth0", "fd00:61::2": "ctr1\r\neth0"}
    assert call(node, PYNET_IPAM, "CHECK", conf, cid="ctr1", netns="/proc/self/ns/net") == (0, None)
    assert call(node, PYNET_IPAM, "STATUS", conf) == (0, None)
    assert call(node, PYNET_IPAM, "DEL", conf, cid="ctr1") == (0, None)
    assert call(node, PYNET_IPAM, "DEL", conf, cid="ctr1") == (0, None)
    assert records(tmp_path, "ipamnet") == {}
    rc, out = call(node, PYNET_IPAM, "CHECK", conf, cid="ctr1", netns="/proc/self/ns/net")
    assert rc != 0 and "no IP address is allocated to ctr1/eth0" in out["msg"]
    call(node, PYNET_IPAM, "ADD", conf, cid="stale", netns="/proc/self/ns/net")
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "other", "ifname": "eth0"}]})
    assert call(node, PYNET_IPAM, "GC", gc) == (0, None)
    assert records(tmp_path, "ipamnet") == {}


def test_use_pod_cidr_through_the_executable(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node = make_netns("ipn")
    cidr_file = tmp_path / "pod-cidr"
    conf = ipam_conf(tmp_path / "data", ranges=[[{"subnet": "usePodCidr"}]], podCidrFile=str(cidr_file))
    rc, out = call(node, PYNET_IPAM, "ADD", conf, cid="early", netns="/proc/self/ns/net")
    assert rc != 0 and out["code"] == 11 and str(cidr_file) in out["msg"]
    cidr_file.write_text("10.244.9.0/24\nfd00:244:9::/64\n")  # what the agent publishes
    rc, out = call(node, PYNET_IPAM, "ADD", conf, cid="late", netns="/proc/self/ns/net")
    assert rc == 0 and [ip["address"] for ip in out["ips"]] == ["10.244.9.2/24", "fd00:244:9::2/64"]


def test_24_concurrent_processes(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node = make_netns("ipn")
    conf = json.dumps(ipam_conf(tmp_path, ranges=[[{"subnet": "10.62.0.0/24"}]]))
    n = 24

    def spawn(command: str, i: int) -> subprocess.Popen[str]:
        env = cni_env(command, cid=f"par{i}", netns="/proc/self/ns/net")
        p = node.popen([PYNET_IPAM], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        assert p.stdin is not None
        p.stdin.write(conf)
        p.stdin.close()
        return p

    procs = [spawn("ADD", i) for i in range(n)]
    outs = []
    for p in procs:
        assert p.stdout is not None
        out = p.stdout.read()
        assert p.wait(timeout=60) == 0, out
        outs.append(json.loads(out)["ips"][0]["address"])
    assert len(set(outs)) == n
    assert sorted(records(tmp_path, "ipamnet").values()) == sorted(f"par{i}\r\neth0" for i in range(n))
    procs = [spawn("DEL", i) for i in range(n)]
    assert [p.wait(timeout=60) for p in procs] == [0] * n
    assert records(tmp_path, "ipamnet") == {}


def _pod_ping(pod: TestNetns, target: str) -> None:
    pod.run("busybox", "ping", "-c", "1", "-W", "2", target)  # iputils is not installed; busybox-static is


def test_reference_bridge_delegates_to_pynet_ipam(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("ipn"), make_netns("ipp")
    conf = {"cniVersion": "1.0.0", "name": "refnet", "type": "bridge", "bridge": "refbr0", "isGateway": True,
            "ipam": {"type": "pynet-ipam", "dataDir": str(tmp_path), "ranges": [[{"subnet": "10.63.0.0/24"}]],
                     "routes": [{"dst": "0.0.0.0/0"}]}}
    rc, out = call(node, "/usr/lib/cni/bridge", "ADD", conf, cid="refpod", netns=pod.path)
    assert rc == 0, out
    assert [ip["address"] for ip in out["ips"]] == ["10.63.0.2/24"]
    assert "inet 10.63.0.2/24" in pod.run("ip", "-4", "addr", "show", "eth0").stdout
    assert "default via 10.63.0.1" in pod.run("ip", "-4", "route").stdout
    _pod_ping(pod, "10.63.0.1")
    assert records(tmp_path, "refnet") == {"10.63.0.2": "refpod\r\neth0"}
    assert call(node, "/usr/lib/cni/bridge", "DEL", conf, cid="refpod", netns=pod.path) == (0, None)
    assert records(tmp_path, "refnet") == {}
    assert "eth0" not in pod.run("ip", "-o", "link").stdout


def test_pynet_delegates_to_reference_host_local(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node, pod = make_netns("ipn"), make_netns("ipp")
    conf = {"cniVersion": "1.0.0", "name": "hlnet", "type": "pynet", "bridge": "hlbr0", "isGateway": True,
            "isDefaultGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path), "ranges": [[{"subnet": "10.64.0.0/24"}]]}}
    rc, out = call(node, PYNET, "ADD", conf, cid="hlpod", netns=pod.path)
    assert rc == 0, out
    assert [ip["address"] for ip in out["ips"]] == ["10.64.0.2/24"]
    assert all(i.get("mac") for i in out["interfaces"])
    assert "inet 10.64.0.2/24" in pod.run("ip", "-4", "addr", "show", "eth0").stdout
    _pod_ping(pod, "10.64.0.1")
    assert records(tmp_path, "hlnet") == {"10.64.0.2": "hlpod\r\neth0"}  # host-local's own record
    assert call(node, PYNET, "DEL", conf, cid="hlpod", netns=pod.path) == (0, None)
    assert records(tmp_path, "hlnet") == {}
    assert call(node, PYNET, "DEL", conf, cid="hlpod", netns=pod.path) == (0, None)
