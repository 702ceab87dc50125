#!/usr/bin/env python3
"""Where a pynet CNI call spends its time: interpreter start, the thin client, the agent's work.

Measured inside one throwaway node netns (the script re-executes itself there, so every timed call
is a plain fork+exec of the plugin, as a runtime does), interleaving the variants call by call:

  python -IS         /usr/bin/python3 -IS -c pass               (the floor of any Python plugin)
  VERSION local      cni-bin/pynet VERSION, no agent             (launcher + skel, no pyroute2)
  VERSION agent      cni-bin/pynet VERSION through the CniServer (launcher + client round trip)
  ADD/DEL ref        /usr/lib/cni/bridge + host-local            (Go reference)
  ADD/DEL local      cni-bin/pynet + pynet-ipam in-process       (lean pyroute2 import per call)
  ADD/DEL agent      cni-bin/pynet through the CniServer         (the fast path)

Example (as root): .venv/bin/python bench/cni_fastpath.py --count 40
Prints medians and p95 in ms and the ratio of each ADD/DEL median to the reference's.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pynet.testing.cni import CNI_PATH, PYNET  # noqa: E402
from pynet.testing.netns import STANDARD_PATH, TestNetns, random_suffix  # noqa: E402

SOCKET = f"pynet-cni-bench-{random_suffix()}"
IFNAME = {"ref": "eth0", "local": "eth1", "agent": "eth2"}  # one pod netns per round holds all three


def timed(argv: list[str], env: dict[str, str], data: bytes) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, input=data, env=env, capture_output=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stdout!r} {proc.stderr[-400:]!r}")
    return took


def env_for(cmd: str, cid: str = "", netns: str = "", sock: str = "none", ifname: str = "eth0") -> dict[str, str]:
    env = {"PATH": STANDARD_PATH, "CNI_COMMAND": cmd, "CNI_PATH": CNI_PATH, "PYNET_CNI_SOCKET": sock}
    if cid:
        env.update(CNI_CONTAINERID=cid, CNI_NETNS=netns, CNI_IFNAME=ifname)
    return env


def worker(count: int, work: Path) -> dict[str, list[float]]:
    pods = [TestNetns.create("bfpod") for _ in range(count)]
    results: dict[str, list[float]] = {}
    confs = {
        "ref": ("/usr/lib/cni/bridge", {"cniVersion": "1.0.0", "name": "bref", "type": "bridge", "bridge": "bref0",
                                         "isGateway": True, "ipMasq": True,
                                         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.211.0.0/16"}]],
                                                  "dataDir": str(work / "ref")}}),
        "local": (PYNET, {"cniVersion": "1.0.0", "name": "bloc", "type": "pynet", "bridge": "bloc0",
                          "isGateway": True, "ipMasq": True,
                          "ipam": {"type": "pynet-ipam", "ranges": [[{"subnet": "10.212.0.0/16"}]],
                                   "dataDir": str(work / "loc")}}),
        "agent": (PYNET, {"cniVersion": "1.0.0", "name": "bagt", "type": "pynet", "bridge": "bagt0",
                          "isGateway": True, "ipMasq": True,
                          "ipam": {"type": "pynet-ipam", "ranges": [[{"subnet": "10.213.0.0/16"}]],
                                   "dataDir": str(work / "agt")}}),
    }
    try:
        with cni_server_here(SOCKET):
            for i in range(count):
                results.setdefault("python -IS", []).append(
                    timed(["/usr/bin/python3", "-IS", "-c", "pass"], {"PATH": STANDARD_PATH}, b""))
                results.setdefault("VERSION local", []).append(timed([PYNET], env_for("VERSION"), b"{}"))
                results.setdefault("VERSION agent", []).append(
                    timed([PYNET], env_for("VERSION", sock=SOCKET), b"{}"))
                for impl, (exe, conf) in confs.items():
                    sock = SOCKET if impl == "agent" else "none"
                    data = json.dumps(conf).encode()
                    cid = f"{impl}-{i}"
                    results.setdefault(f"ADD {impl}", []).append(
                        timed([exe], env_for("ADD", cid, pods[i].path, sock, IFNAME[impl]), data))
            for i in range(count):
                for impl, (exe, conf) in confs.items():
                    sock = SOCKET if impl == "agent" else "none"
                    results.setdefault(f"DEL {impl}", []).append(
                        timed([exe], env_for("DEL", f"{impl}-{i}", pods[i].path, sock, IFNAME[impl]),
                              json.dumps(conf).encode()))
    finally:
        for pod in pods:
            pod.destroy()
    return results


class cni_server_here:  # noqa: N801 - a tiny context manager: CniServer in this process's netns
    def __init__(self, name: str) -> None:
        from pynet.cni.server import CniServer

        self.server = CniServer(name)

    def __enter__(self) -> None:
        self.server.start()

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


def report(results: dict[str, list[float]]) -> str:
    lines = ["| variant | median ms | p95 ms | vs reference |", "| --- | ---: | ---: | ---: |"]
    for name, values in results.items():
        ms = sorted(v * 1e3 for v in values)
        med = statistics.median(ms)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
        ratio = ""
        verb = name.split()[0]
        if verb in ("ADD", "DEL") and not name.endswith("ref"):
            ratio = f"{med / statistics.median(v * 1e3 for v in results[f'{verb} ref']):.2f}x"
        lines.append(f"| {name} | {med:.1f} | {p95:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.worker:
        with tempfile.TemporaryDirectory(prefix="pynet-bench-fp-") as work:
            print(json.dumps(worker(opts.count, Path(work))))
        return 0
    node = TestNetns.create("bfnode")
    try:
        proc = node.run(sys.executable, str(Path(__file__).resolve()), "--worker", "--count", str(opts.count),
                        timeout=1800)
        print(report(json.loads(proc.stdout.strip().splitlines()[-1])))
    finally:
        node.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
