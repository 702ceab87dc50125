#!/usr/bin/env python3
"""TCP throughput pod-to-pod across nodes (VXLAN, and host-gw) against two pods on one node's bridge.

Builds labs with the real plugin and agents (2 nodes x 2 pods), then runs iperf3 (2-second runs,
addresses inside the lab) alternately over each path, REPEAT times, and prints medians and ratios
against the same-bridge reference measured in the same run. Run as root from the checkout:

    .venv/bin/python bench/lab_throughput.py [--repeat 3] [--seconds 2]

The labs are removed at the end (also on failure).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from pynet.lab import netns
from pynet.lab.lab import down, up
from pynet.lab.plan import LabPlan
from pynet.lab.state import LabState
from pynet.testing.netns import random_suffix


def iperf(plan: LabPlan, state: LabState, src: str, dst: str, seconds: float) -> float:
    """Gbit/s received by the server pod ``dst`` from client pod ``src``."""
    pods = {p.name: p for p in plan.pods()}
    server = subprocess.Popen(netns.argv(pods[dst].netns, ["iperf3", "-s", "-1", "-p", "5201"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # iperf3 has no readiness signal; a bounded wait for its listen()
        out = netns.run(pods[src].netns, ["iperf3", "-c", state.pod_ips[dst], "-p", "5201", "-t", str(seconds), "-J"],
                        timeout=seconds + 20).stdout
    finally:
        server.wait(timeout=10)
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    samples: dict[str, list[float]] = {"same bridge (reference)": [], "cross-node vxlan": [], "cross-node host-gw": []}
    labs = {
        "vxlan": LabPlan.build(f"bv{random_suffix(5)}", nodes=2, pods_per_node=2, overlay="vxlan"),
        "host-gw": LabPlan.build(f"bh{random_suffix(5)}", nodes=2, pods_per_node=2, overlay="host-gw"),
    }
    try:
        states = {k: up(p) for k, p in labs.items()}
        for _ in range(args.repeat):
            pv, sv = labs["vxlan"], states["vxlan"]
            samples["same bridge (reference)"].append(iperf(pv, sv, "pod-1-1", "pod-1-2", args.seconds))
            samples["cross-node vxlan"].append(iperf(pv, sv, "pod-1-1", "pod-2-1", args.seconds))
            samples["cross-node host-gw"].append(iperf(labs["host-gw"], states["host-gw"], "pod-1-1", "pod-2-1", args.seconds))
    finally:
        for p in labs.values():
            down(p)
    ref = statistics.median(samples["same bridge (reference)"])
    print(f"iperf3 TCP, {args.seconds:g}-second runs, {args.repeat} runs per path, alternating; median Gbit/s")
    print("| path | median Gbit/s | runs | ratio to same bridge |")
    print("| --- | --- | --- | --- |")
    for name, vals in samples.items():
        med = statistics.median(vals)
        print(f"| {name} | {med:.2f} | {', '.join(f'{v:.2f}' for v in vals)} | {med / ref:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
