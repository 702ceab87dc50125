#!/usr/bin/env python3
"""Benchmark the iptables backend (issue 4), everything in throwaway network namespaces.

Part 1, sync cost, per iptables variant and size (--sync-plan; two endpoints per service): the backend's full sync (render + iptables-save + ipset + ONE iptables-restore) in a fresh
netns against the floor, ``iptables-restore --noflush`` of the very same rules from a file into another
fresh netns (sets pre-created, untimed); then a one-endpoint change at that size (a partial sync).

Part 2, first-packet cost: TCP connect latency from a pod to a ClusterIP at 10 and at 10,000 services,
for pynet's iptables backend (ipset gate + prefix-tree dispatch), the same backend in kube-proxy's
linear layout (one PYNET-SERVICES rule per destination), and the nftables backend (verdict maps), all
in the same run and the same lab. The target service is the LAST one of the linear chain (worst case).
A connect straight to the pod IP (non-service traffic) is timed too: the linear layout makes every new
connection walk the whole chain.

    .venv/bin/python bench/iptables_bench.py [--sync-plan nft:1000,legacy:10000] [--runs 3] [--connects 400]

Prints a Markdown report (medians) and writes JSON with every sample to --json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName
from pynet.proxy.state import ProxyState

HERE = Path(__file__).resolve()
PY = sys.executable
CLUSTER_BASE = int(ip_address("10.96.0.1"))


# ------------------------------------------------------------------------------------------ states
def make_state(n: int, endpoints: Sequence[tuple[str, int]], *, node_ip: str = "172.31.0.1",
               shift: int = 0) -> ProxyState:
    """``n`` ClusterIP services s00000.., each port 80/TCP with ``endpoints`` (shift rotates one of s0's)."""
    services: dict[ServicePortName, ServicePort] = {}
    eps: dict[ServicePortName, tuple[Endpoint, ...]] = {}
    for i in range(n):
        key = ServicePortName(NamespacedName("bench", f"s{i:05d}"), "", Protocol.TCP)
        services[key] = ServicePort(key, IPFamily.V4, ip_address(CLUSTER_BASE + i), 80, Protocol.TCP)
        eps[key] = tuple(Endpoint(ip_address(ip), port) for ip, port in endpoints)
    if shift:
        first = next(iter(services))
        eps[first] = (Endpoint(ip_address("10.245.0.0") + shift, 8080), *eps[first][1:])
    return ProxyState(IPFamily.V4, "node-1", node_ips=(ip_address(node_ip),),
                      cluster_cidrs=(ip_network("10.244.0.0/16"),),
                      services=MappingProxyType(services), endpoints=MappingProxyType(eps))


def synthetic_endpoints(i: int) -> list[tuple[str, int]]:
    return [(f"10.244.{(i >> 8) & 255}.{i & 255}", 8080), (f"10.244.{128 + ((i >> 8) & 127)}.{i & 255}", 8080)]


# ------------------------------------------------------------------------------------------ workers (inside the node netns)
def worker_sync(n: int, variant: str, partial_runs: int, save_to: str) -> dict[str, Any]:
    """Backend full sync (after setup) and one-endpoint partial syncs; saves the rules and sets."""
    import pynet.iptables.exec as exec_mod
    from pynet.iptables import Ipset, subprocess_exec
    from pynet.proxy.backends.iptables import IptablesBackend

    exec_mod.DEFAULT_TIMEOUT = 3600.0  # iptables-nft 1.8.9 needs minutes at 10,000 services
    restores: list[str] = []
    spent: dict[str, float] = {"restore": 0.0, "save": 0.0, "ipset": 0.0}

    def recording(argv: Sequence[str], input: str | None = None) -> Any:
        if argv[0].endswith("-restore") and input:
            restores.append(input)
        kind = "ipset" if argv[0] == "ipset" else "restore" if argv[0].endswith("-restore") else "save"
        t0 = time.perf_counter()
        try:
            return subprocess_exec(argv, input)
        finally:
            spent[kind] += time.perf_counter() - t0

    state = make_state(n, [("10.244.1.10", 8080), ("10.244.2.10", 8080)])
    b = IptablesBackend(exec=recording, variant=variant)
    b.setup()
    for k in spent:
        spent[k] = 0.0
    t0 = time.perf_counter()
    b.sync(state, frozenset(), True)
    full = time.perf_counter() - t0
    breakdown = dict(spent)
    rules_text = restores[-1]
    partial: list[float] = []
    changed = frozenset({NamespacedName("bench", "s00000")})
    for k in range(1, partial_runs + 1):
        st = make_state(n, [("10.244.1.10", 8080), ("10.244.2.10", 8080)], shift=k)
        t0 = time.perf_counter()
        b.sync(st, changed, False)
        partial.append(time.perf_counter() - t0)
    sets = Ipset(subprocess_exec)
    members = {name: sorted(sets.members(name)) for name in sets.list_names() if name.startswith("pynet-svc-")}
    Path(save_to).write_text(json.dumps({"rules": rules_text, "sets": members}))
    return {"full": full, "breakdown": breakdown, "partial": partial, "rules_lines": rules_text.count("\n"),
            "partial_bytes": len(restores[-1])}


def worker_floor(variant: str, saved: str) -> dict[str, Any]:
    """The floor: the same rules from a file into a fresh namespace (the sets are made first, untimed)."""
    from pynet.iptables import Ipset, subprocess_exec

    data = json.loads(Path(saved).read_text())
    sets = Ipset(subprocess_exec)
    for name, mem in data["sets"].items():
        sets.apply(name, "hash:ip" if "-cip-" in name else "hash:ip,port", "inet", add=mem, create=True)
    rules = Path(saved).with_suffix(".rules")
    rules.write_text(data["rules"])
    t0 = time.perf_counter()
    with rules.open() as fh:
        subprocess.run([f"iptables-{variant}-restore", "-w", "--noflush"], stdin=fh, check=True)
    return {"floor": time.perf_counter() - t0}


def _backend(mode: str, variant: str) -> Any:
    if mode == "nftables":
        from pynet.proxy.backends.nftables import NftablesBackend

        return NftablesBackend()
    from pynet.proxy.backends.iptables import IptablesBackend

    return IptablesBackend(dispatch="linear" if mode == "iptables-linear" else "tree", variant=variant)


def worker_apply(mode: str, n: int, pod: str, variant: str) -> dict[str, Any]:
    b = _backend(mode, variant)
    b.setup()
    t0 = time.perf_counter()
    b.sync(make_state(n, [(pod, 8080)]), frozenset(), True)
    return {"sync": time.perf_counter() - t0}


def worker_cleanup(mode: str, variant: str) -> dict[str, Any]:
    _backend(mode, variant).cleanup()
    return {}


def worker_connect(dst: str, port: int, count: int) -> dict[str, Any]:
    samples: list[float] = []
    errors = 0
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            s = socket.create_connection((dst, port), timeout=2)
        except OSError:
            errors += 1
            continue
        samples.append(time.perf_counter() - t0)
        s.close()
    return {"samples": samples, "errors": errors}


# ------------------------------------------------------------------------------------------ orchestration
def in_netns(ns: str, *args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(["ip", "netns", "exec", ns, PY, str(HERE), *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def us(x: float) -> str:
    return f"{x * 1e6:.0f}"


def bench_sync(plan: list[tuple[str, int]], runs: int, partial_runs: int) -> dict[str, Any]:
    from pynet.testing.netns import TestNetns

    results: dict[str, Any] = {}
    for variant, n in plan:
        samples = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="iptbench-") as tmp:
                saved = str(Path(tmp) / "saved.json")
                ns = TestNetns.create("iptbench")
                try:
                    sample = in_netns(ns.name, "worker-sync", str(n), variant, str(partial_runs), saved)
                finally:
                    ns.destroy()
                ns = TestNetns.create("iptfloor")
                try:
                    sample.update(in_netns(ns.name, "worker-floor", variant, saved))
                finally:
                    ns.destroy()
            samples.append(sample)
        results[f"{variant}/{n}"] = samples
        full = statistics.median(s["full"] for s in samples)
        floor = statistics.median(s["floor"] for s in samples)
        part = statistics.median(p for s in samples for p in s["partial"])
        print(f"sync {variant:6} n={n:6}: full {ms(full)} ms, floor {ms(floor)} ms (x{full / floor:.2f}), "
              f"one-endpoint partial {ms(part)} ms, {samples[0]['rules_lines']} restore lines", file=sys.stderr)
    return results


def bench_latency(sizes: list[int], connects: int, variant: str, rounds: int) -> dict[str, Any]:
    """Rotate the data planes ``rounds`` times per size (apply, measure, clean up), to spread noise."""
    from pynet.testing.services import POD_IPS, ServiceLab

    lab = ServiceLab.create()
    results: dict[str, Any] = {}
    pod = POD_IPS["pod-a"]
    client = lab.pods["client"].name
    try:
        for n in sizes:
            target = str(ip_address(CLUSTER_BASE + n - 1))  # last service: the end of a linear chain
            for _ in range(rounds):
                for mode in ("iptables", "iptables-linear", "nftables"):
                    applied = in_netns(lab.node.name, "worker-apply", mode, str(n), pod, variant)
                    try:
                        in_netns(client, "worker-connect", target, "80", "20")  # warm up ARP, caches
                        svc = in_netns(client, "worker-connect", target, "80", str(connects))
                        direct = in_netns(client, "worker-connect", pod, "8080", str(connects))
                    finally:
                        in_netns(lab.node.name, "worker-cleanup", mode, variant)
                    r = results.setdefault(f"{mode}/{n}", {"sync": [], "service": [], "direct": [], "errors": 0})
                    r["sync"].append(applied["sync"])
                    r["service"].extend(svc["samples"])
                    r["direct"].extend(direct["samples"])
                    r["errors"] += svc["errors"] + direct["errors"]
                    print(f"latency {mode:16} n={n:6}: ClusterIP median {us(statistics.median(svc['samples']))} us, "
                          f"pod IP median {us(statistics.median(direct['samples']))} us", file=sys.stderr)
    finally:
        lab.destroy()
    return results


def report(sync: dict[str, Any], lat: dict[str, Any]) -> str:
    out = ["| variant | services | full sync (ms) | of which restore / ipset / save (ms) | floor: iptables-restore of the same file (ms) | full / floor | one-endpoint partial sync (ms) | restore lines |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, samples in sync.items():
        variant, n = key.split("/")
        full = statistics.median(s["full"] for s in samples)
        floor = statistics.median(s["floor"] for s in samples)
        part = statistics.median(p for s in samples for p in s["partial"])
        bd = {k: statistics.median(s["breakdown"][k] for s in samples) for k in ("restore", "ipset", "save")}
        out.append(f"| {variant} | {int(n):,} | {ms(full)} | {ms(bd['restore'])} / {ms(bd['ipset'])} / {ms(bd['save'])} | "
                   f"{ms(floor)} | {full / floor:.2f} | {ms(part)} | {samples[0]['rules_lines']:,} |")
    out += ["", "| data plane | services | ClusterIP connect median (us) | p90 (us) | pod-IP connect median (us) | samples | full sync median (ms) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in lat.items():
        mode, n = key.split("/")
        s = sorted(r["service"])
        p90 = s[int(len(s) * 0.9)]
        out.append(f"| {mode} | {int(n):,} | {us(statistics.median(s))} | {us(p90)} | "
                   f"{us(statistics.median(r['direct']))} | {len(s)} | {ms(statistics.median(r['sync']))} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].startswith("worker-"):
        kind, rest = args[0], args[1:]
        if kind == "worker-sync":
            res = worker_sync(int(rest[0]), rest[1], int(rest[2]), rest[3])
        elif kind == "worker-floor":
            res = worker_floor(rest[0], rest[1])
        elif kind == "worker-apply":
            res = worker_apply(rest[0], int(rest[1]), rest[2], rest[3])
        elif kind == "worker-cleanup":
            res = worker_cleanup(rest[0], rest[1])
        else:
            res = worker_connect(rest[0], int(rest[1]), int(rest[2]))
        print(json.dumps(res))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sync-plan", default="nft:1000,nft:2000,legacy:1000,legacy:10000",
                    help="variant:services pairs (iptables-nft 1.8.9's restore is superlinear in chains: "
                         "10,000 services take minutes even for the floor, see RESULTS.md)")
    ap.add_argument("--latency-sizes", default="10,10000")
    ap.add_argument("--latency-variant", default="legacy", help="iptables variant for the latency part")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--partial-runs", type=int, default=5)
    ap.add_argument("--connects", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3, help="latency: rotations over the data planes")
    ap.add_argument("--json", default="")
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    opts = ap.parse_args(args)
    plan = [(v, int(n)) for v, n in (item.split(":") for item in opts.sync_plan.split(","))]
    lat_sizes = [int(x) for x in opts.latency_sizes.split(",")]
    sync = {} if opts.skip_sync else bench_sync(plan, opts.runs, opts.partial_runs)
    lat = {} if opts.skip_latency else bench_latency(lat_sizes, opts.connects, opts.latency_variant, opts.rounds)
    print(report(sync, lat))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"sync": sync, "latency": lat}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
