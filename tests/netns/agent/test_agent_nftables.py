"""The real `pynet agent` with the real nftables backend (and the hosted CNI server) inside a throwaway node netns:
--source --once programs the good services and skips a malformed one; --kubeconfig --once against
an in-netns API server; a running agent follows a manifest edit and a SIGTERM leaves the rules in
place; --cleanup removes table `pynet`. Rules are read back with `nft` inside the namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.netns import TestNetns

PY = sys.executable
HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]


def manifests() -> list[dict[str, object]]:
    return [
        make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"]),
        make_service("web", "10.96.0.10", [port(80, name="http")]),
        make_slice("web", ["10.244.1.5"], HTTP, node_name="n1"),
        make_service("dns", "10.96.0.53", [port(53, name="dns", protocol="UDP")]),
        make_slice("dns", ["10.244.1.7"], [{"name": "dns", "port": 5353, "protocol": "UDP"}], node_name="n1"),
        make_service("bad", "10.96.0.66", [port(123456)]),
    ]


def agent(*args: str) -> list[str]:
    return [
        PY,
        "-m",
        "pynet",
        "agent",
        "--node-name",
        "n1",
        "--backend",
        "nftables",
        "--cluster-cidr",
        "10.244.0.0/16",
        *args,
    ]


def ruleset(ns: TestNetns) -> str:
    return ns.run("nft", "list", "table", "ip", "pynet", check=False).stdout


def poll(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_source_once_programs_good_services_skips_bad(
    make_netns: Callable[..., TestNetns], tmp_path: Path
) -> None:
    ns = make_netns("agnode")
    src = tmp_path / "src"
    src.mkdir()
    (src / "all.yaml").write_text(yaml.safe_dump_all(manifests()))
    res = ns.run(
        *agent(
            "--source",
            str(src),
            "--once",
            "--metrics-address",
            "0",
            "--healthz-address",
            "0",
            "--pod-cidr-file",
            str(tmp_path / "cidr"),
        ),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    rules = ruleset(ns)
    assert "10.96.0.10 . tcp . 80" in rules and "dnat to 10.244.1.5:8080" in rules
    assert "10.96.0.53 . udp . 53" in rules and "dnat to 10.244.1.7:5353" in rules
    assert "10.96.0.66" not in rules
    assert "service=default/bad" in res.stderr and "123456 out of range" in res.stderr
    assert (tmp_path / "cidr").read_text() == "10.244.1.0/24\n"

    cleanup = ns.run(PY, "-m", "pynet", "agent", "--cleanup", "--node-name", "n1", check=False)
    assert cleanup.returncode == 0, cleanup.stderr
    assert "pynet" not in ns.run("nft", "list", "tables").stdout


def test_kubeconfig_once_in_netns(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    ns = make_netns("agnode")
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(manifests()))
    kubeconfig = tmp_path / "kubeconfig"
    server = ns.popen(
        [PY, "-m", "pynet.testing.apiserver", "--objects", str(objects), "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert poll(kubeconfig.exists, 20), "API server did not start"
        res = ns.run(
            *agent(
                "--kubeconfig",
                str(kubeconfig),
                "--once",
                "--metrics-address",
                "0",
                "--healthz-address",
                "0",
                "--pod-cidr-file",
                "",
            ),
            check=False,
        )
        assert res.returncode == 0, res.stderr
        rules = ruleset(ns)
        assert "10.96.0.10 . tcp . 80" in rules and "dnat to 10.244.1.5:8080" in rules
        assert "10.96.0.66" not in rules and "service=default/bad" in res.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_running_agent_follows_edit_and_keeps_rules_on_sigterm(
    make_netns: Callable[..., TestNetns], tmp_path: Path
) -> None:
    ns = make_netns("agnode")
    src = tmp_path / "src"
    src.mkdir()
    (src / "all.yaml").write_text(yaml.safe_dump_all(manifests()))
    proc = ns.popen(
        agent(
            "--source",
            str(src),
            "--min-sync-period",
            "0.05",
            "--source-poll-interval",
            "0.05",
            "--pod-cidr-file",
            "",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert poll(lambda: "dnat to 10.244.1.5:8080" in ruleset(ns), 30), "first sync did not happen"
        health = ns.run(
            "python3",
            "-c",
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:10256/healthz', timeout=5).read().decode())",
            check=False,
        )
        assert health.returncode == 0 and "last successful sync" in health.stdout, health.stderr
        (src / "extra.yaml").write_text(
            yaml.safe_dump(make_slice("web", ["10.244.1.6"], HTTP, name="web-extra", node_name="n1"))
        )
        assert poll(lambda: "dnat to 10.244.1.6:8080" in ruleset(ns), 10), "edit not followed"
        (src / "extra.yaml").unlink()
        assert poll(lambda: "dnat to 10.244.1.6:8080" not in ruleset(ns), 10), "delete not followed"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "dnat to 10.244.1.5:8080" in ruleset(ns)  # rules stay after a clean stop, like kube-proxy
    assert "CNI fast-path server started" in err  # hosted in the node namespace


def test_node_ips_fall_back_to_namespace_addresses(
    make_netns: Callable[..., TestNetns], tmp_path: Path
) -> None:
    """Without a Node object for --node-name, NodePorts use the namespace's own global addresses."""
    ns = make_netns("agnode")
    ns.sh(
        "ip link add veth-a type veth peer name veth-b && ip addr add 192.168.77.1/24 dev veth-a && ip link set veth-a up && ip link set veth-b up"
    )
    src = tmp_path / "src"
    src.mkdir()
    (src / "svc.yaml").write_text(
        yaml.safe_dump(make_service("np", "10.96.0.80", [port(80, node_port=30080)], type="NodePort"))
    )
    record = tmp_path / "record.json"
    res = ns.run(
        "env",
        f"PYNET_RECORD_FILE={record}",
        PY,
        "-m",
        "pynet",
        "agent",
        "--source",
        str(src),
        "--node-name",
        "absent",
        "--backend",
        "pynet.testing.recording:RecordingBackend",
        "--once",
        "--metrics-address",
        "0",
        "--healthz-address",
        "0",
        "--pod-cidr-file",
        "",
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(record.read_text())["state"]["node_ips"] == ["192.168.77.1"]


def test_switching_backend_removes_the_previous_backends_rules(
    make_netns: Callable[..., TestNetns], tmp_path: Path
) -> None:
    """Like kube-proxy's CleanupLeftovers: an agent started with nftables removes the PYNET- chains an
    earlier iptables agent left in this namespace (and the reverse), and nothing foreign."""
    ns = make_netns("agswitch")
    src = tmp_path / "src"
    src.mkdir()
    (src / "all.yaml").write_text(yaml.safe_dump_all(manifests()))
    ns.run("iptables", "-t", "nat", "-N", "FOREIGN-CHAIN")
    common = [
        "--source",
        str(src),
        "--once",
        "--metrics-address",
        "0",
        "--healthz-address",
        "0",
        "--pod-cidr-file",
        str(tmp_path / "cidr"),
    ]

    def run_with(backend: str) -> None:
        argv = agent(*common)
        argv[argv.index("--backend") + 1] = backend
        res = ns.run(*argv, check=False)
        assert res.returncode == 0, res.stderr

    run_with("iptables")
    assert "PYNET-SERVICES" in ns.run("iptables-save", "-t", "nat").stdout
    run_with("nftables")
    assert "10.96.0.10 . tcp . 80" in ruleset(ns)
    nat = ns.run("iptables-save", "-t", "nat").stdout
    assert "PYNET-" not in nat and ":FOREIGN-CHAIN" in nat
    run_with("iptables")
    assert "PYNET-SERVICES" in ns.run("iptables-save", "-t", "nat").stdout
    assert "pynet" not in ns.run("nft", "list", "tables").stdout.split()
