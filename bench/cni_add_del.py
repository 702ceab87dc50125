#!/usr/bin/env python3
"""CNI ADD/DEL latency: pynet against the reference bridge + host-local, same machine, same run.

Each implementation gets its own bridge and subnet inside ONE throwaway node netns; every ADD goes
into a throwaway pod netns. The timing loop itself runs inside the node netns (the script re-executes
itself under ``ip netns exec``), so a measured call is one fork+exec of the plugin, as a runtime
does it. Implementations are interleaved call by call, so background load hits them alike.

Modes: ``seq`` (one call at a time, ``--count`` pods) and ``par`` (``--parallel`` calls started
together, ``--rounds`` times; each call's own latency is recorded). Reported: median and p95 per
implementation, phase and mode, and the ratio to the reference.

Implementations (``--impl``, repeatable; default all that apply):
  ref          /usr/lib/cni/bridge with ipam host-local        (Go reference)
  pynet        cni-bin/pynet with ipam pynet-ipam, no agent: the launcher finds no socket and
               does the work in-process (pyroute2 imported per call)
  pynet-agent  the same executable while the agent's CNI server (pynet.cni.server.CniServer)
               listens in the node netns: the launcher's stdlib-only client hands the request over
               (socket name passed as PYNET_CNI_SOCKET); skip with --no-agent
  ref-ipam / pynet-ipam   the IPAM plugins alone (host-local vs pynet-ipam); with pynet-ipam the
               same allocations are also timed in-process (pynet-ipam-inproc: ipam_add/ipam_del
               called directly, as the main plugin and the agent do)

Example (as root): .venv/bin/python bench/cni_add_del.py --count 30 --parallel 16 --rounds 3
Nothing touches the root netns; every namespace made here is removed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pynet.testing.cni import cni_server  # noqa: E402
from pynet.testing.netns import STANDARD_PATH, TestNetns, random_suffix  # noqa: E402

REF_DIR = "/usr/lib/cni"
IMPLS: dict[str, dict[str, Any]] = {
    "ref": {"plugin": f"{REF_DIR}/bridge", "ipam": "host-local", "subnet": "10.201.0.0/16", "bridge": "bref0"},
    "pynet": {"plugin": str(REPO / "cni-bin" / "pynet"), "ipam": "pynet-ipam", "subnet": "10.202.0.0/16",
              "bridge": "bpyn0"},
    "pynet-agent": {"plugin": str(REPO / "cni-bin" / "pynet"), "ipam": "pynet-ipam", "subnet": "10.203.0.0/16",
                    "bridge": "bpag0"},
    "ref-ipam": {"plugin": f"{REF_DIR}/host-local", "ipam": "host-local", "subnet": "10.204.0.0/16"},
    "pynet-ipam": {"plugin": str(REPO / "cni-bin" / "pynet-ipam"), "ipam": "pynet-ipam",
                   "subnet": "10.205.0.0/16"},
}
REFERENCE_OF = {"pynet": "ref", "pynet-agent": "ref", "pynet-ipam": "ref-ipam", "pynet-ipam-inproc": "ref-ipam"}


def netconf(impl: str, data_dir: str) -> dict[str, Any]:
    spec = IMPLS[impl]
    ipam = {"type": spec["ipam"], "dataDir": data_dir, "ranges": [[{"subnet": spec["subnet"]}]]}
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": f"bench-{impl}", "ipam": ipam}
    if "bridge" in spec:
        conf.update(type=Path(spec["plugin"]).name, bridge=spec["bridge"], isGateway=True)
    else:
        conf["type"] = spec["ipam"]
    return conf


# -- worker: runs inside the node netns ------------------------------------------------------------

def _call(plugin: str, env: dict[str, str], stdin: bytes) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the plugin's process tree): wait4 gives the child's own rusage,
    which, unlike wall time, hardly depends on what else the machine is doing."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([plugin], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{plugin} {env['CNI_COMMAND']} failed: {out.decode(errors='replace')}")
    return elapsed, usage.ru_utime + usage.ru_stime


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    impls: list[str] = spec["impls"]
    pods: dict[str, list[str]] = spec["pods"]
    confs = {i: json.dumps(netconf(i, spec["data_dir"])).encode() for i in impls}
    cni_path = f"{REPO / 'cni-bin'}:{REF_DIR}"

    def env(impl: str, command: str, n: int) -> dict[str, str]:
        e = {"PATH": STANDARD_PATH, "CNI_COMMAND": command, "CNI_CONTAINERID": f"bench-{impl}-{n}",
             "CNI_NETNS": f"/run/netns/{pods[impl][n]}", "CNI_IFNAME": "eth0", "CNI_PATH": cni_path}
        if impl == "pynet-agent":
            e["PYNET_CNI_SOCKET"] = spec["agent_socket"]
        return e

    out: dict[str, Any] = {}

    def record(impl: str, phase: str, mode: str, value: float | tuple[float, float]) -> None:
        wall, cpu = value if isinstance(value, tuple) else (value, None)
        out.setdefault(impl, {}).setdefault(f"{mode}/{phase}", []).append(wall)
        if cpu is not None:
            out[impl].setdefault(f"cpu-{mode}/{phase}", []).append(cpu)

    # warm the page cache and create each bridge once, outside the measurement
    for impl in impls:
        _call(IMPLS[impl]["plugin"], env(impl, "ADD", 0), confs[impl])
        _call(IMPLS[impl]["plugin"], env(impl, "DEL", 0), confs[impl])
    count, par, rounds = spec["count"], spec["parallel"], spec["rounds"]
    for phase in ("ADD", "DEL"):
        for n in range(count):
            for impl in impls:
                record(impl, phase, "seq", _call(IMPLS[impl]["plugin"], env(impl, phase, n), confs[impl]))
    with ThreadPoolExecutor(max_workers=par) as pool:
        for _ in range(rounds):
            for impl in impls:
                for phase in ("ADD", "DEL"):
                    t0 = time.perf_counter()
                    lat = list(pool.map(lambda n, impl=impl, phase=phase: _call(
                        IMPLS[impl]["plugin"], env(impl, phase, n), confs[impl]), range(par)))
                    for v in lat:
                        record(impl, phase, "par", v)
                    record(impl, phase, "par-batch", time.perf_counter() - t0)
    if "pynet-ipam" in impls:
        # the same IPAM without the exec: what the main plugin and the agent pay per call
        from pynet.cni.ipam import ipam_add, ipam_del
        from pynet.cni.skel import CmdArgs

        conf = netconf("pynet-ipam", spec["data_dir"]) | {"name": "bench-inproc"}
        for phase, fn in (("ADD", ipam_add), ("DEL", ipam_del)):
            for n in range(count):
                a = CmdArgs(command=phase, container_id=f"inproc-{n}", netns="", ifname="eth0", args="",
                            path=(), stdin=b"")
                t0 = time.perf_counter()
                fn(conf, a)
                record("pynet-ipam-inproc", phase, "seq", time.perf_counter() - t0)
    return out


# -- driver ------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`", "",
             f"seq: {args.count} sequential calls; par: {args.rounds} rounds of {args.parallel} calls started "
             "together (per-call latency); par-batch: wall time of a whole round; cpu-*: user+sys CPU of the "
             "executed plugin's process tree (for pynet-agent the agent's own work is not in it)", "",
             "| impl | mode/phase | n | median ms | p95 ms | median vs reference |",
             "| --- | --- | --- | --- | --- | --- |"]
    for impl, series in results.items():
        for key, values in sorted(series.items()):
            med = statistics.median(values) * 1000
            ref = REFERENCE_OF.get(impl)
            ratio = ""
            if ref in results and key in results[ref]:
                ratio = f"{med / (statistics.median(results[ref][key]) * 1000):.2f}x"
            lines.append(f"| {impl} | {key} | {len(values)} | {med:.1f} | {pct(values, 0.95) * 1000:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", action="append", choices=sorted(IMPLS))
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-agent", action="store_true", help="do not measure the agent fast path")
    ap.add_argument("--json", help="also write raw samples here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    impls = args.impl or ["ref", "pynet", "ref-ipam", "pynet-ipam"] + ([] if args.no_agent else ["pynet-agent"])
    made: list[TestNetns] = []
    try:
        node = TestNetns.create("bnode")
        made.append(node)
        npods = max(args.count, args.parallel)
        pods: dict[str, list[str]] = {}
        for impl in impls:
            pods[impl] = []
            for _ in range(npods):
                if "bridge" in IMPLS[impl]:
                    ns = TestNetns(f"bpod-{random_suffix()}")
                    subprocess.run(["ip", "netns", "add", ns.name], check=True)
                    made.append(ns)
                    pods[impl].append(ns.name)
                else:
                    pods[impl].append(node.name)  # IPAM alone never enters the netns
        socket_name = f"pynet-bench-{random_suffix()}"
        with tempfile.TemporaryDirectory(prefix="pynet-bench-") as tmp, contextlib.ExitStack() as stack:
            if "pynet-agent" in impls:
                stack.enter_context(cni_server(node, socket_name))
            spec = {"impls": impls, "pods": pods, "data_dir": f"{tmp}/ipam", "count": args.count,
                    "parallel": args.parallel, "rounds": args.rounds, "agent_socket": socket_name}
            spec_file = Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps(spec))
            proc = node.run(sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file), timeout=3600)
            results = json.loads(proc.stdout)
        if args.json:
            Path(args.json).write_text(json.dumps(results))
        print(report(results, args))
        return 0
    finally:
        for ns in reversed(made):
            ns.destroy()


if __name__ == "__main__":
    sys.exit(main())
