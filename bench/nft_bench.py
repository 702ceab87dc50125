#!/usr/bin/env python3
"""Benchmarks of the nftables backend, each inside throwaway network namespaces.

  (a) full sync of N services x 3 endpoints (N = 1,000 and 10,000) against the floor: ``nft -f``
      loading the very same transaction text from a file, measured in the same run;
  (b) a partial sync after one endpoint change, at 10,000 services;
  (c) TCP connect latency to a ClusterIP with 10,000 services installed, against connecting
      straight to the pod IP (connect() = SYN to SYN-ACK; alternating blocks, medians).

Run as root from the repository root:  .venv/bin/python bench/nft_bench.py [--quick] [connect]
Nothing touches the root namespace: the script re-executes itself inside namespaces it creates.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, ip_address, ip_network
from pathlib import Path
from types import MappingProxyType

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pynet.nft import Nft, Table, Transaction  # noqa: E402
from pynet.proxy.backends.nftables import NftablesBackend  # noqa: E402
from pynet.proxy.model import (  # noqa: E402
    Endpoint,
    IPFamily,
    NamespacedName,
    Protocol,
    ServicePort,
    ServicePortName,
)
from pynet.proxy.state import ProxyState  # noqa: E402

PY = sys.executable


class RecordingNft(Nft):
    """The real runner, keeping the last transaction: its text is the floor's input. The text is
    rendered only when asked for, after the timed sync (rendering it inside the sync, as earlier
    versions of this script did, added the bench's own 0.3-0.5 s to the backend's time)."""

    last_tx: Transaction | None = None
    count = 0

    def run(self, tx: Transaction) -> None:
        self.last_tx = tx
        self.count += 1
        super().run(tx)

    @property
    def last_text(self) -> str:
        return str(self.last_tx) if self.last_tx is not None else ""

    @property
    def last_needs_chain_cache(self) -> bool:
        return self.last_tx is not None and self.last_tx.needs_chain_cache


def build_state(n: int, eps_per: int = 3, first_endpoint: str | None = None) -> ProxyState:
    services: dict[ServicePortName, ServicePort] = {}
    endpoints: dict[ServicePortName, tuple[Endpoint, ...]] = {}
    for i in range(n):
        spn = ServicePortName(NamespacedName(f"ns{i % 50}", f"svc{i}"), "http", Protocol.TCP)
        cip = IPv4Address(int(IPv4Address("10.96.0.0")) + i + 1)
        services[spn] = ServicePort(spn, IPFamily.V4, cip, 80, Protocol.TCP)
        base = int(IPv4Address("10.200.0.0")) + i * eps_per
        endpoints[spn] = tuple(Endpoint(IPv4Address(base + k), 8080, is_local=True) for k in range(eps_per))
    if first_endpoint:
        first = next(iter(services))
        endpoints[first] = (Endpoint(ip_address(first_endpoint), 8080, is_local=True),)
    return ProxyState(
        IPFamily.V4, "bench", node_ips=(ip_address("172.31.0.1"),), cluster_cidrs=(ip_network("10.244.0.0/16"),),
        services=MappingProxyType(services), endpoints=MappingProxyType(endpoints),
    )


def delete_table(nft: Nft) -> None:
    if nft.table_exists():
        tx = nft.new_transaction()
        tx.delete(Table())
        nft.run(tx)


# ------------------------------------------------------------------ inner benchmarks (in a netns)
def inner_sync(n: int, rounds: int, partial_rounds: int) -> dict[str, object]:
    st = build_state(n)
    nft = RecordingNft()
    full_times, floor_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ruleset.nft"
        for _ in range(rounds):
            delete_table(nft)
            backend = NftablesBackend(nft)
            t0 = time.perf_counter()
            backend.sync(st, frozenset(), True)
            full_times.append(time.perf_counter() - t0)
            path.write_text(nft.last_text)
            delete_table(nft)
            t0 = time.perf_counter()
            subprocess.run(["nft", "-f", str(path)], check=True)
            floor_times.append(time.perf_counter() - t0)
        ops = path.read_text().count("\n")
    result: dict[str, object] = {
        "services": n, "endpoints": 3 * n, "operations": ops,
        "full_sync_s": statistics.median(full_times), "nft_f_floor_s": statistics.median(floor_times),
        "full_runs": [round(t, 3) for t in full_times], "floor_runs": [round(t, 3) for t in floor_times],
    }
    result["ratio"] = round(result["full_sync_s"] / result["nft_f_floor_s"], 3)  # type: ignore[operator]
    if partial_rounds:
        delete_table(nft)
        backend = NftablesBackend(nft)
        backend.sync(st, frozenset(), True)
        key = list(st.services)[n // 2]
        # alternate rounds: the current command forms (no chain dump, old chains linger) and the
        # previous ones (add rule / add element, old chains deleted at once), in the same run
        times: dict[bool, list[float]] = {True: [], False: []}
        cpu: dict[bool, list[float]] = {True: [], False: []}
        dumps, cleanups, first_text = 0, 0, ""
        for r in range(2 * partial_rounds):
            compact = r % 2 == 0
            Transaction.compact = compact
            backend.stale_chain_linger = 10.0 if compact else 0.0
            eps = dict(st.endpoints)
            moved = tuple(st.endpoints[key][:2]) + (Endpoint(IPv4Address(int(IPv4Address("10.250.0.0")) + r), 8080),)
            eps[key] = moved
            st2 = ProxyState(st.family, st.node_name, st.node_ips, st.cluster_cidrs, services=st.services,
                             endpoints=MappingProxyType(eps))
            sent = nft.count
            c0, t0 = os.times(), time.perf_counter()
            backend.sync(st2, frozenset({key.service}), False)
            t1, c1 = time.perf_counter(), os.times()
            times[compact].append(t1 - t0)
            cpu[compact].append(c1.user + c1.system - c0.user - c0.system)
            if compact:
                first_text = first_text or nft.last_text
                cleanups += nft.count - sent - 1  # a second transaction: lingering chains deleted
                dumps += nft.last_needs_chain_cache
        Transaction.compact = True
        for compact, label in ((True, "partial_sync"), (False, "partial_sync_old_forms")):
            result[f"{label}_ms_median"] = round(statistics.median(times[compact]) * 1000, 2)
            result[f"{label}_ms_max"] = round(max(times[compact]) * 1000, 2)
            # CPU time (user+system, the kernel's share included) is far less sensitive to load
            result[f"{label}_cpu_ms_median"] = round(statistics.median(cpu[compact]) * 1000, 2)
        result["partial_ratio_new_to_old"] = round(
            statistics.median(times[True]) / statistics.median(times[False]), 3)
        result["partial_ops"] = backend.last_transaction_size
        result["partial_text"] = first_text
        result["partial_rounds_needing_chain_dump"] = dumps
        result["partial_rounds_with_cleanup_tx"] = cleanups
        # the floor of any write at this size: one set element through the same libnftables context
        from pynet.nft import Element

        floor = []
        for r in range(partial_rounds):
            for verb in ("add", "delete"):
                tx = nft.new_transaction()
                getattr(tx, verb)(Element("cluster-ips", str(IPv4Address(int(IPv4Address("10.251.0.0")) + r))))
                t0 = time.perf_counter()
                nft.run(tx)
                if verb == "add":
                    floor.append(time.perf_counter() - t0)
        result["one_element_write_ms_median"] = round(statistics.median(floor) * 1000, 2)
    delete_table(nft)
    return result


def inner_install(n: int, endpoint: str) -> dict[str, object]:
    nft = Nft()
    backend = NftablesBackend(nft)
    st = build_state(n, first_endpoint=endpoint)
    backend.sync(st, frozenset(), True)
    return {"cluster_ip": str(next(iter(st.services.values())).cluster_ip)}


def inner_connect(dst: str, port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(2)
        t0 = time.perf_counter()
        s.connect((dst, port))
        times.append(time.perf_counter() - t0)
        s.close()
    return times


# ------------------------------------------------------------------ outer driver
def in_netns(ns: object, *args: str, timeout: float = 900) -> object:
    out = ns.run(PY, __file__, *args, timeout=timeout)  # type: ignore[attr-defined]
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_sync(quick: bool) -> list[dict[str, object]]:
    from pynet.testing.netns import TestNetns

    results = []
    for n, rounds, partial in ((1000, 5, 0), (10000, 3 if not quick else 1, 30)):
        ns = TestNetns.create("benchnft")
        try:
            results.append(in_netns(ns, "inner-sync", str(n), str(rounds), str(partial)))
        finally:
            ns.destroy()
    return results  # type: ignore[return-value]


def bench_connect(blocks: int, per_block: int) -> dict[str, object]:
    from pynet.testing.services import VENV_PYTHON, ServiceLab

    lab = ServiceLab.create()
    try:
        info = in_netns(lab.node, "inner-install", "10000", "10.244.1.11")
        cip = info["cluster_ip"]  # type: ignore[index]
        svc_t: list[float] = []
        pod_t: list[float] = []
        client = lab.pods["client"]
        for _ in range(blocks):
            for dst, port, sink in ((cip, 80, svc_t), ("10.244.1.11", 8080, pod_t)):
                out = client.run(VENV_PYTHON, __file__, "inner-connect", dst, str(port), str(per_block), timeout=300)
                sink.extend(json.loads(out.stdout.strip().splitlines()[-1]))
        svc_med, pod_med = statistics.median(svc_t), statistics.median(pod_t)
        return {
            "connects_each": len(svc_t), "clusterip_median_us": round(svc_med * 1e6, 1),
            "pod_median_us": round(pod_med * 1e6, 1), "ratio": round(svc_med / pod_med, 3),
            "clusterip_p90_us": round(statistics.quantiles(svc_t, n=10)[-1] * 1e6, 1),
            "pod_p90_us": round(statistics.quantiles(pod_t, n=10)[-1] * 1e6, 1),
        }
    finally:
        lab.destroy()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", nargs="?", default="all")
    p.add_argument("args", nargs="*")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    if a.cmd == "inner-sync":
        print(json.dumps(inner_sync(int(a.args[0]), int(a.args[1]), int(a.args[2]))))
    elif a.cmd == "inner-install":
        print(json.dumps(inner_install(int(a.args[0]), a.args[1])))
    elif a.cmd == "inner-connect":
        print(json.dumps(inner_connect(a.args[0], int(a.args[1]), int(a.args[2]))))
    elif a.cmd == "connect":  # (c) alone
        print(json.dumps(bench_connect(5 if not a.quick else 2, 400), indent=2))
    else:
        out = {"sync": bench_sync(a.quick), "connect": bench_connect(5 if not a.quick else 2, 400)}
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
