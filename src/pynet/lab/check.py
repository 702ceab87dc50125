"""``pynet lab check``: prove the lab works, from the packets' point of view, and print a table.

Checks (every one bounded by timeouts; failures are reported, never hidden):

- ``pod->pod``: every pod connects over TCP to the first pod of every OTHER node; the answer must
  come from that pod and name the caller's own address (pod-to-pod is never masqueraded);
- ``ping``: the first pod of each node pings the first pod of the next node (ICMP over the overlay);
- ``pod->ClusterIP``: the first pod of every node reaches ``echo`` (10.96.0.10:80) and its own
  ``away-node<i>`` service, whose endpoints all live on OTHER nodes (the answer must come from one);
- ``external->NodePort``: the external namespace reaches ``<node IP>:30080`` of every node;
- ``mtu`` (``--bulk``): a 2 MiB transfer between pods of different nodes completes.

Probes run as ``python -m pynet.lab.probe`` inside the source namespace, one process per source,
all sources in parallel.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pynet.lab import netns
from pynet.lab.manifests import away_service_ip
from pynet.lab.plan import ECHO_CLUSTER_IP, ECHO_NODE_PORT, POD_BULK_PORT, POD_ECHO_PORT, LabPlan, NodePlan
from pynet.lab.state import LabState

__all__ = ["BULK_BYTES", "CheckResult", "format_table", "quick_ready", "run_checks"]

BULK_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class CheckResult:
    check: str
    source: str
    target: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class _Probe:
    check: str
    source: str  # display name
    ns: str
    target: str  # probe spec
    shown: str  # display target
    expect_from: tuple[str, ...] = ()  # acceptable answering pods (empty: any)
    expect_peer: str | None = None  # the address the server must see


def _probe_batch(ns: str, probes: Sequence[_Probe], timeout: float, attempts: int) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "pynet.lab.probe", "--timeout", str(timeout), "--attempts", str(attempts),
            *(p.target for p in probes)]
    proc = netns.run(ns, argv, check=False, timeout=timeout * attempts * len(probes) + 30)
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    while len(out) < len(probes):
        out.append({"ok": False, "error": (proc.stderr.strip().splitlines() or ["probe failed"])[-1]})
    return out


def _judge(p: _Probe, r: dict[str, Any]) -> CheckResult:
    if not r.get("ok"):
        return CheckResult(p.check, p.source, p.shown, False, str(r.get("error", "no answer")))
    if "bytes" in r:
        secs = float(r.get("seconds", 0)) or 1e-9
        return CheckResult(p.check, p.source, p.shown, True, f"{r['bytes']} bytes in {secs:.3f}s")
    reply = str(r.get("reply", ""))
    who, _, peer = reply.partition(" ")
    if p.expect_from and who not in p.expect_from:
        return CheckResult(p.check, p.source, p.shown, False, f"answered by {who}, expected one of {', '.join(p.expect_from)}")
    if who == p.source and p.check == "pod->ClusterIP":
        # hairpin: a pod reaching itself through its service must be masqueraded (kube-proxy does so)
        ok = peer != p.expect_peer
        return CheckResult(p.check, p.source, p.shown, ok,
                           f"{who} (itself: hairpin) saw {peer}" + ("" if ok else ", expected masquerade"))
    if p.expect_peer is not None and peer != p.expect_peer:
        return CheckResult(p.check, p.source, p.shown, False, f"{who} saw {peer}, expected {p.expect_peer} (masqueraded?)")
    return CheckResult(p.check, p.source, p.shown, True, f"{who} saw {peer}")


def _live_nodes(plan: LabPlan, state: LabState) -> list[NodePlan]:
    return [n for n in plan.nodes if n.name not in state.removed_nodes and n.pods]


def build_probes(plan: LabPlan, state: LabState, *, bulk: bool = False) -> list[_Probe]:
    nodes = _live_nodes(plan, state)
    probes: list[_Probe] = []
    ip = state.pod_ips
    for node in nodes:
        for pod in node.pods:
            for other in nodes:
                if other is node:
                    continue
                dst = other.pods[0]
                probes.append(_Probe("pod->pod", pod.name, pod.netns, f"tcp:{ip[dst.name]}:{POD_ECHO_PORT}",
                                     f"{dst.name} {ip[dst.name]}", (dst.name,), ip[pod.name]))
        src = node.pods[0]
        probes.append(_Probe("pod->ClusterIP", src.name, src.netns, f"tcp:{ECHO_CLUSTER_IP}:80",
                             f"echo {ECHO_CLUSTER_IP}:80", (), ip[src.name]))
        if len(nodes) > 1:
            away = tuple(p.name for o in nodes if o is not node for p in o.pods)
            probes.append(_Probe("pod->ClusterIP", src.name, src.netns, f"tcp:{away_service_ip(node.index)}:80",
                                 f"away-{node.name} {away_service_ip(node.index)}:80", away, ip[src.name]))
        probes.append(_Probe("external->NodePort", "external", plan.external_netns,
                             f"tcp:{node.ip}:{ECHO_NODE_PORT}", f"{node.name} {node.ip}:{ECHO_NODE_PORT}"))
    if bulk and len(nodes) > 1:
        a, b = nodes[0].pods[0], nodes[1].pods[0]
        probes.append(_Probe("mtu", a.name, a.netns, f"bulk:{ip[b.name]}:{POD_BULK_PORT}:{BULK_BYTES}",
                             f"{b.name} {BULK_BYTES // 1024} KiB"))
    return probes


def _pings(plan: LabPlan, state: LabState) -> list[CheckResult]:
    nodes = _live_nodes(plan, state)
    if len(nodes) < 2:
        return []
    pairs = [(nodes[i].pods[0], nodes[(i + 1) % len(nodes)].pods[0]) for i in range(len(nodes))]

    def ping(pair: tuple[Any, Any]) -> CheckResult:
        src, dst = pair
        dst_ip = state.pod_ips[dst.name]
        proc = netns.run(src.netns, ["busybox", "ping", "-c", "1", "-W", "2", dst_ip], check=False, timeout=10)
        if proc.returncode != 0:  # one retry: the first packet of a fresh path may race neighbour set-up
            proc = netns.run(src.netns, ["busybox", "ping", "-c", "1", "-W", "2", dst_ip], check=False, timeout=10)
        replies = [ln.split(": ", 1)[-1] for ln in proc.stdout.splitlines() if "time=" in ln]
        ok = proc.returncode == 0
        return CheckResult("ping", src.name, f"{dst.name} {dst_ip}", ok, replies[0] if ok and replies else "no reply")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(ping, pairs))


def run_checks(plan: LabPlan, state: LabState, *, bulk: bool = True, timeout: float = 2.0,
               attempts: int = 3) -> list[CheckResult]:
    probes = build_probes(plan, state, bulk=bulk)
    by_ns: dict[str, list[_Probe]] = {}
    for p in probes:
        by_ns.setdefault(p.ns, []).append(p)
    results: dict[int, CheckResult] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {ns: pool.submit(_probe_batch, ns, ps, timeout, attempts) for ns, ps in by_ns.items()}
        for ns, ps in by_ns.items():
            for p, r in zip(ps, futures[ns].result(), strict=True):
                results[id(p)] = _judge(p, r)
    ordered = [results[id(p)] for p in probes]
    pings = _pings(plan, state)
    order = ["pod->pod", "ping", "pod->ClusterIP", "external->NodePort", "mtu"]
    return sorted([*ordered, *pings], key=lambda c: order.index(c.check))


def quick_ready(plan: LabPlan, state: LabState) -> bool:
    """Every live node's first pod reaches the echo ClusterIP, and the outside reaches every NodePort."""
    probes = [p for p in build_probes(plan, state) if p.check != "pod->pod"]
    by_ns: dict[str, list[_Probe]] = {}
    for p in probes:
        by_ns.setdefault(p.ns, []).append(p)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda item: _probe_batch(item[0], item[1], 1.0, 1), by_ns.items()))
    return all(r.get("ok") for out in outs for r in out)


def format_table(results: Sequence[CheckResult]) -> str:
    rows = [("CHECK", "FROM", "TO", "RESULT", "DETAIL")]
    rows += [(r.check, r.source, r.target, "ok" if r.ok else "FAIL", r.detail) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows]
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} checks passed" + ("" if passed == len(results) else f", {len(results) - passed} FAILED"))
    return "\n".join(lines)
