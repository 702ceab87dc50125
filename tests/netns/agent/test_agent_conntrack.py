"""Stale UDP conntrack clean-up by the real agent in a node netns: when an endpoint of a UDP service
goes away, entries DNATed to it (reply source = endpoint) are deleted and the others stay; when a UDP
port gets its first endpoint, entries to the service address/port (cached REJECTs) are deleted.
Entries are made with `conntrack -I` inside the namespace and read back with `conntrack -L`."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.netns import TestNetns

DNS = [{"name": "dns", "port": 5353, "protocol": "UDP"}]


def insert(ns: TestNetns, dst: str, dport: int, sport: int, reply_src: str, reply_sport: int) -> None:
    ns.run(
        "conntrack",
        "-I",
        "-p",
        "udp",
        "-s",
        "10.244.1.9",
        "-d",
        dst,
        "--sport",
        str(sport),
        "--dport",
        str(dport),
        "--reply-src",
        reply_src,
        "--reply-dst",
        "10.244.1.9",
        "--reply-port-src",
        str(reply_sport),
        "--reply-port-dst",
        str(sport),
        "--timeout",
        "300",
    )


def sports(ns: TestNetns) -> set[int]:
    out = ns.run("conntrack", "-L", "-p", "udp", check=False).stdout
    return {
        int(tok.split("=")[1])
        for line in out.splitlines()
        for tok in line.split()[:6]
        if tok.startswith("sport=")
    }


def poll(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_stale_udp_entries_cleared(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    ns = make_netns("agct")
    src = tmp_path / "src"
    src.mkdir()
    (src / "base.yaml").write_text(
        yaml.safe_dump_all(
            [
                make_node("n1", ["192.168.50.1"]),
                make_service("dns", "10.96.0.53", [port(53, name="dns", protocol="UDP")]),
                make_service("empty", "10.96.0.54", [port(53, name="dns", protocol="UDP")]),
            ]
        )
    )
    (src / "slice.yaml").write_text(
        yaml.safe_dump(make_slice("dns", ["10.244.1.7", "10.244.1.8"], DNS, node_name="n1"))
    )
    proc = ns.popen(
        [
            sys.executable,
            "-m",
            "pynet",
            "agent",
            "--source",
            str(src),
            "--node-name",
            "n1",
            "--backend",
            "nftables",
            "--cluster-cidr",
            "10.244.0.0/16",
            "--min-sync-period",
            "0.05",
            "--source-poll-interval",
            "0.05",
            "--metrics-address",
            "0",
            "--healthz-address",
            "0",
            "--pod-cidr-file",
            "",
            "--no-cni-server",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert poll(
            lambda: (
                "10.96.0.53 . udp . 53" in ns.run("nft", "list", "table", "ip", "pynet", check=False).stdout
            ),
            30,
        )
        insert(ns, "10.96.0.53", 53, 40001, "10.244.1.7", 5353)  # to the endpoint that will go
        insert(ns, "10.96.0.53", 53, 40002, "10.244.1.8", 5353)  # to the endpoint that stays
        insert(ns, "10.96.0.54", 53, 40003, "10.96.0.54", 53)  # a flow to a port with no endpoint yet
        assert sports(ns) == {40001, 40002, 40003}

        (src / "slice.yaml").write_text(
            yaml.safe_dump(make_slice("dns", ["10.244.1.8"], DNS, node_name="n1"))
        )
        assert poll(lambda: sports(ns) == {40002, 40003}, 10), sports(ns)

        (src / "empty.yaml").write_text(
            yaml.safe_dump(make_slice("empty", ["10.244.1.20"], DNS, node_name="n1"))
        )
        assert poll(lambda: sports(ns) == {40002}, 10), sports(ns)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
