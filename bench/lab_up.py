#!/usr/bin/env python3
"""Time ``pynet lab up`` (3 nodes x 10 pods by default, real plugin and agents, nftables + vxlan),
and ``pynet lab down``, REPEAT times; prints medians. Readiness is included: ``up`` returns only
when every node routes to every other node's pods and the services answer. The reference, in the
same run and alternating: the same lab with the reference plugins (``/usr/lib/cni/bridge`` +
``host-local``) in place of ``cni-bin/pynet`` + ``pynet-ipam`` (same agents, same overlay).

    .venv/bin/python bench/lab_up.py [--nodes 3] [--pods 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pynet.testing.netns import random_suffix


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    name = f"bu{random_suffix(5)}"
    pynet = [sys.executable, "-m", "pynet", "lab"]
    ref = Path(tempfile.mkdtemp(prefix="pynet-bench-")) / "ref.conflist"
    ref.write_text(json.dumps({"cniVersion": "1.0.0", "name": "ref", "plugins": [
        {"type": "bridge", "bridge": "pynet0", "isGateway": True, "isDefaultGateway": True, "mtu": 1450,
         "ipam": {"type": "host-local"}}]}))
    variants = {"pynet plugin": [], "reference bridge + host-local": []}
    times: dict[str, dict[str, list[float]]] = {v: {"up": [], "down": []} for v in variants}
    try:
        for _ in range(args.repeat):
            for variant, extra in (("pynet plugin", []), ("reference bridge + host-local", ["--conflist", str(ref)])):
                t0 = time.monotonic()
                subprocess.run([*pynet, "up", "--name", name, "--nodes", str(args.nodes), "--pods-per-node",
                                str(args.pods), *extra], check=True, stdout=subprocess.DEVNULL)
                times[variant]["up"].append(time.monotonic() - t0)
                check = subprocess.run([*pynet, "check", "--name", name, "--no-bulk"], capture_output=True, text=True)
                if check.returncode != 0:
                    print(check.stdout, file=sys.stderr)
                    return 1
                t0 = time.monotonic()
                subprocess.run([*pynet, "down", "--name", name], check=True, stdout=subprocess.DEVNULL)
                times[variant]["down"].append(time.monotonic() - t0)
    finally:
        subprocess.run([*pynet, "down", "--name", name], stdout=subprocess.DEVNULL)
    print(f"pynet lab up/down, {args.nodes} nodes x {args.pods} pods, {args.repeat} runs per variant, alternating")
    print("| variant | step | median s | runs | ratio to reference |")
    print("| --- | --- | --- | --- | --- |")
    for variant, steps in times.items():
        for step, vals in steps.items():
            ratio = statistics.median(vals) / statistics.median(times["reference bridge + host-local"][step])
            print(f"| {variant} | {step} | {statistics.median(vals):.1f} | {', '.join(f'{v:.1f}' for v in vals)} "
                  f"| {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
