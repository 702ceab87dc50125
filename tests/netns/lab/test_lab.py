"""Multi-node labs end to end: the real ``cni-bin/pynet`` (through the shipped conflist) and one real
``pynet agent`` per node, built by :func:`pynet.lab.lab.up` under a random lab name.

- VXLAN + nftables, 3 nodes x 2 pods: every check of ``pynet lab check`` passes (cross-node pod TCP
  with the caller's own address seen, ping, ``away-node<i>`` services whose endpoints all live on the
  two other nodes reached from node *i*, NodePort from the external namespace, a 2 MiB transfer
  across nodes); MTU 1450 on the VXLAN device and the pods' eth0; node3 removed from the manifests
  -> its route, FDB entry and neighbour entry gone on node1 and node2, node2 still reached.
- host-gw + iptables, 3 nodes x 1 pod: every check passes; routes via node IPs, no tunnel device;
  a removed node's route goes.
- ``up`` twice in a row, and ``up`` after a "crash" (state file lost, processes and namespaces left
  behind) both succeed and leave exactly one lab; ``pynet lab status`` shows it; a dead pod server
  makes ``pynet lab check`` print FAIL rows and exit 1; ``down`` leaves nothing (namespaces, PIDs, dir).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from pynet.lab import netns
from pynet.lab.check import format_table, run_checks
from pynet.lab.lab import down, remove_node, up
from pynet.lab.plan import LabPlan
from pynet.lab.state import LabState, pid_is_ours
from pynet.overlay import vtep_mac_for
from pynet.testing.netns import random_suffix


@pytest.fixture
def make_lab() -> Iterator[Callable[..., tuple[LabPlan, LabState]]]:
    plans: list[LabPlan] = []

    def factory(**kw: object) -> tuple[LabPlan, LabState]:
        plan = LabPlan.build(f"t{random_suffix(6)}", **kw)  # type: ignore[arg-type]
        plans.append(plan)
        return plan, up(plan)

    yield factory
    for plan in plans:
        down(plan)
        assert not netns.list_with_prefix(plan.prefix)


def poll(cond: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def in_ns(ns: str, *argv: str) -> str:
    return netns.run(ns, list(argv)).stdout


def test_vxlan_lab_with_nftables(make_lab: Callable[..., tuple[LabPlan, LabState]]) -> None:
    plan, state = make_lab(nodes=3, pods_per_node=2, backend="nftables", overlay="vxlan")
    results = run_checks(plan, state, bulk=True)
    assert all(r.ok for r in results), format_table(results)
    kinds = {r.check for r in results}
    assert kinds == {"pod->pod", "ping", "pod->ClusterIP", "external->NodePort", "mtu"}
    away1 = next(r for r in results if r.target.startswith("away-node1"))
    assert away1.detail.split()[0] in {"pod-2-1", "pod-2-2", "pod-3-1", "pod-3-2"}

    n1, n2, n3 = plan.nodes
    for node in plan.nodes:
        link = json.loads(in_ns(node.netns, "ip", "-d", "-j", "link", "show", "pynet-vxlan"))[0]
        assert link["mtu"] == 1450 and link["address"] == vtep_mac_for(node.name)
        assert link["linkinfo"]["info_data"]["learning"] is False
    pod_link = json.loads(in_ns(n1.pods[0].netns, "ip", "-j", "link", "show", "eth0"))[0]
    assert pod_link["mtu"] == 1450

    # node3 leaves the cluster: node1 and node2 drop everything that pointed at it
    remove_node(plan, state, "node3")
    for node in (n1, n2):
        assert poll(lambda ns=node.netns: "10.244.3.0/24" not in in_ns(ns, "ip", "route")), in_ns(node.netns, "ip", "route")
        assert "192.168.100.13" not in in_ns(node.netns, "bridge", "fdb", "show", "dev", "pynet-vxlan")
        assert "10.244.3.0 " not in in_ns(node.netns, "ip", "neigh", "show", "dev", "pynet-vxlan")
        assert "10.244.1.0/24" in in_ns(n2.netns, "ip", "route")
    assert n3.name in state.removed_nodes
    after = run_checks(plan, state, bulk=False)
    assert all(r.ok for r in after), format_table(after)
    assert not any("pod-3-" in r.target or r.source.startswith("pod-3-") for r in after)


def test_host_gw_lab_with_iptables(make_lab: Callable[..., tuple[LabPlan, LabState]]) -> None:
    plan, state = make_lab(nodes=3, pods_per_node=1, backend="iptables", overlay="host-gw")
    results = run_checks(plan, state, bulk=True)
    assert all(r.ok for r in results), format_table(results)
    n1 = plan.nodes[0]
    routes = in_ns(n1.netns, "ip", "route")
    assert "10.244.2.0/24 via 192.168.100.12 dev eth0 proto 112" in routes
    assert "10.244.3.0/24 via 192.168.100.13 dev eth0 proto 112" in routes
    assert netns.run(n1.netns, ["ip", "link", "show", "pynet-vxlan"], check=False).returncode != 0
    remove_node(plan, state, "node2")
    assert poll(lambda: "10.244.2.0/24" not in in_ns(n1.netns, "ip", "route"))
    assert "10.244.3.0/24 via 192.168.100.13" in in_ns(n1.netns, "ip", "route")


def test_up_twice_and_after_a_crash(make_lab: Callable[..., tuple[LabPlan, LabState]]) -> None:
    plan, first = make_lab(nodes=2, pods_per_node=1)
    second = up(plan)
    assert not any(pid_is_ours(pid, str(plan.root)) for pid in first.agents.values())
    assert sorted(netns.list_with_prefix(plan.prefix)) == sorted(plan.all_netns())

    # a crash: the state file is gone, the processes and namespaces are still there
    plan.state_file.unlink()
    third = up(plan)
    assert sorted(netns.list_with_prefix(plan.prefix)) == sorted(plan.all_netns())
    assert all(pid_is_ours(pid, str(plan.root)) for pid in third.agents.values())
    assert not any(pid_is_ours(pid, str(plan.root)) for pid in second.agents.values())
    results = run_checks(plan, third, bulk=False)
    assert all(r.ok for r in results), format_table(results)

    cli = [sys.executable, "-m", "pynet", "lab"]
    status = subprocess.run([*cli, "status", "--name", plan.name], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    for text in ("node2", "192.168.100.12/24", "10.244.2.0/24", third.pod_ips["pod-2-1"], "lab/echo", "10.96.0.10:80"):
        assert text in status.stdout, status.stdout
    os.kill(third.servers["pod-2-1"], signal.SIGKILL)  # pod-2-1 stops answering
    check = subprocess.run([*cli, "check", "--name", plan.name, "--no-bulk"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1, check.stdout
    failed = [ln for ln in check.stdout.splitlines() if " FAIL " in ln]
    assert failed and all("pod-2-1" in ln or "away-node1" in ln or "echo" in ln or "NodePort" in ln for ln in failed), check.stdout

    down(plan)
    assert not netns.list_with_prefix(plan.prefix) and not plan.root.exists()
    assert not any(pid_is_ours(pid, str(plan.root)) for pid in (*third.agents.values(), *third.servers.values()))
