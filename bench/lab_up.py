#!/usr/bin/env python3
"""Time ``pynet lab up`` (3 nodes x 10 pods by default, real plugin and agents, nftables + vxlan),
and ``pynet lab down``, REPEAT times; prints medians. Readiness is included: ``up`` returns only
when every node routes to every other node's pods and the services answer.

    .venv/bin/python bench/lab_up.py [--nodes 3] [--pods 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from pynet.testing.netns import random_suffix


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    name = f"bu{random_suffix(5)}"
    pynet = [sys.executable, "-m", "pynet", "lab"]
    ups, downs = [], []
    try:
        for _ in range(args.repeat):
            t0 = time.monotonic()
            subprocess.run([*pynet, "up", "--name", name, "--nodes", str(args.nodes), "--pods-per-node", str(args.pods)],
                           check=True, stdout=subprocess.DEVNULL)
            ups.append(time.monotonic() - t0)
            check = subprocess.run([*pynet, "check", "--name", name, "--no-bulk"], capture_output=True, text=True)
            if check.returncode != 0:
                print(check.stdout, file=sys.stderr)
                return 1
            t0 = time.monotonic()
            subprocess.run([*pynet, "down", "--name", name], check=True, stdout=subprocess.DEVNULL)
            downs.append(time.monotonic() - t0)
    finally:
        subprocess.run([*pynet, "down", "--name", name], stdout=subprocess.DEVNULL)
    print(f"pynet lab up/down, {args.nodes} nodes x {args.pods} pods, {args.repeat} runs")
    print("| step | median s | runs |")
    print("| --- | --- | --- |")
    print(f"| up (incl. readiness) | {statistics.median(ups):.1f} | {', '.join(f'{v:.1f}' for v in ups)} |")
    print(f"| down | {statistics.median(downs):.1f} | {', '.join(f'{v:.1f}' for v in downs)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
