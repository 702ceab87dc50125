"""How long the DaemonSet's init container takes: ``pynet install-cni`` into a temp root.

Measures, interleaved, N rounds of: a first install with the ``--home-dir`` code bundle into an
empty root (a new node), a rerun on the same root (a pod restart: nothing written), and, as the
reference measured in the same run, the bare start-up of the same interpreter with the CLI module
imported (``python -c "import pynet.cli"``). Prints medians and ratios.

    .venv/bin/python bench/install_cni_time.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    py = sys.executable
    first: list[float] = []
    rerun: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pynet-bench-install-") as tmp:
        for i in range(args.rounds):
            root = Path(tmp) / f"r{i}"
            cmd = [
                py,
                "-m",
                "pynet",
                "install-cni",
                "--root",
                str(root),
                "--home-dir",
                "/opt/pynet",
                "--log-level",
                "WARNING",
            ]
            bare.append(_timed([py, "-c", "import pynet.cli"]))
            first.append(_timed(cmd))
            rerun.append(_timed(cmd))
            shutil.rmtree(root)
    ref = statistics.median(bare)
    for name, values in (
        ("interpreter + pynet.cli import (reference)", bare),
        ("first install (new node)", first),
        ("rerun, nothing to write (pod restart)", rerun),
    ):
        med = statistics.median(values)
        print(f"{name:45s} median {med * 1000:7.1f} ms  ({med / ref:4.1f}x reference)  n={len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
