#!/usr/bin/env python3
"""Agent benchmark: resident memory with N services x 3 endpoints, and edit-to-sync latency.

Runs the real ``pynet agent --source DIR`` as a subprocess and measures
  (a) RSS (VmRSS) and peak RSS (VmHWM) after the first full sync, against the same agent with an
      empty manifest directory, measured in the same run (the reference);
  (b) latency from one endpoint change (rewrite of one slice file) to ``backend.sync`` being called,
      using the recording backend's timestamp, over ``--edits`` edits (median, p90).

Default backend: the recording backend (programs nothing, keeps only the last sync). With
``--backend nftables`` the agent runs inside a throwaway netns with the real nftables backend (root
needed) and only (a) is measured, with the first sync detected by polling ``nft``; the kernel side
of (b) is the nftables helper's benchmark.

Usage: .venv/bin/python bench/agent_memory.py [--services 10000] [--edits 15] [--backend recording|nftables]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pynet.testing.builders import make_node, make_service, make_slice, port  # noqa: E402

PER_FILE = 100


def service_objects(i: int) -> list[dict[str, Any]]:
    name = f"svc-{i:05d}"
    ip = f"10.96.{i // 250}.{i % 250 + 1}"
    eps = [f"10.{244 + (j % 2)}.{(i * 3 + j) // 250 % 250}.{(i * 3 + j) % 250 + 1}" for j in range(3)]
    return [
        make_service(name, ip, [port(80, name="http")]),
        make_slice(
            name, eps, [{"name": "http", "port": 8080, "protocol": "TCP"}], name=f"{name}-s1", node_name="n1"
        ),
    ]


def write_dir(d: Path, services: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "node.json").write_text(json.dumps(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"])))
    for f in range(0, services, PER_FILE):
        items = [o for i in range(f, min(f + PER_FILE, services)) for o in service_objects(i)]
        (d / f"svc-{f // PER_FILE:04d}.json").write_text(
            json.dumps({"kind": "List", "apiVersion": "v1", "items": items})
        )


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


class AgentRun:
    def __init__(self, src: Path, record: Path, backend: str, netns: str | None, extra: list[str]) -> None:
        argv = [
            sys.executable,
            "-m",
            "pynet",
            "agent",
            "--source",
            str(src),
            "--node-name",
            "n1",
            "--backend",
            backend,
            "--cluster-cidr",
            "10.244.0.0/15",
            "--metrics-address",
            "0",
            "--healthz-address",
            "0",
            "--no-cni-server",
            "--pod-cidr-file",
            "",
            "--log-level",
            "WARNING",
            *extra,
        ]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        env = {
            **os.environ,
            "PYNET_RECORD_FILE": str(record),
            "PYNET_RECORD_KEEP": "1",
            "PYNET_RECORD_STATE": "0",
        }
        self.record = record
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)

    def pid(self) -> int:
        # with `ip netns exec`, the agent is the exec'd process itself (ip execs the command)
        return self.proc.pid

    def wait_sync(self, count: int, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"agent exited {self.proc.returncode}: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            try:
                doc = json.loads(self.record.read_text())
                if doc["count"] >= count:
                    return doc
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        raise TimeoutError("agent did not sync in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_nft(netns: str, services: int, timeout: float = 600) -> dict[str, Any]:
    """Wait until table pynet holds ``services`` cluster-IP dispatch elements (nftables mode)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "list", "table", "ip", "pynet"],
            capture_output=True,
            text=True,
        ).stdout
        if out and (services == 0 or out.count(" . tcp . 80 : goto") >= services):
            return {"full": True}
        time.sleep(0.5)
    raise TimeoutError("nftables rules did not appear")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--backend", choices=("recording", "nftables"), default="recording")
    ap.add_argument("--poll", type=float, default=0.05, help="--source-poll-interval for the latency run")
    ap.add_argument(
        "--per-file", type=int, default=100, help="services per manifest file (an edit re-parses one file)"
    )
    args = ap.parse_args()
    global PER_FILE
    PER_FILE = args.per_file
    backend = "pynet.testing.recording:RecordingBackend"
    netns = None
    ns_obj = None
    if args.backend == "nftables":
        from pynet.testing.netns import TestNetns

        ns_obj = TestNetns.create("agbench")
        netns = ns_obj.name
        backend = "nftables"
        print(
            "note: nftables backend in a netns: memory only (the kernel-side latency is the nft benchmark)",
            file=sys.stderr,
        )
    try:
        with tempfile.TemporaryDirectory(prefix="pynet-agent-bench-") as tmp:
            base = Path(tmp)
            empty, full = base / "empty", base / "full"
            write_dir(empty, 0)
            write_dir(full, args.services)

            ref = AgentRun(empty, base / "ref.json", backend, netns, [])
            ref.wait_sync(1) if netns is None else wait_nft(netns, 0)
            time.sleep(0.5)
            ref_rss, ref_hwm = rss_kib(ref.pid())
            ref.stop()

            run = AgentRun(
                full,
                base / "full.json",
                backend,
                netns,
                ["--min-sync-period", "0", "--source-poll-interval", str(args.poll)],
            )
            first = run.wait_sync(1) if netns is None else wait_nft(netns, args.services)
            startup = time.monotonic() - run.t0
            time.sleep(1.0)
            rss, hwm = rss_kib(run.pid())
            if netns is not None:
                args.edits = 0
                latencies = [float("nan")]

            latencies = latencies if netns is not None else []
            target = full / f"svc-{min(42, (args.services - 1) // PER_FILE):04d}.json"
            for n in range(args.edits):
                doc = json.loads(target.read_text())
                sl = next(o for o in doc["items"] if o["kind"] == "EndpointSlice")
                sl["endpoints"][0]["addresses"] = [f"10.246.0.{n + 1}"]
                count = json.loads(run.record.read_text())["count"]
                data = json.dumps(doc)
                t_edit = time.time()
                target.write_text(data)
                rec = run.wait_sync(count + 1, timeout=30)
                latencies.append(rec["at"] - t_edit)
                assert rec["changed"] == [
                    f"default/{sl['metadata']['labels']['kubernetes.io/service-name']}"
                ], rec["changed"]
                assert rec["full"] is False
                time.sleep(0.2)
            run.stop()
    finally:
        if ns_obj is not None:
            ns_obj.destroy()

    lat = sorted(latencies)
    p90 = lat[max(0, int(round(0.9 * len(lat))) - 1)]
    print(
        f"services={args.services} endpoints={3 * args.services} backend={args.backend} per_file={PER_FILE}"
    )
    print(f"startup_to_first_sync_s={startup:.2f} (first sync full={first['full']})")
    print(f"rss_mib={rss / 1024:.1f} peak_rss_mib={hwm / 1024:.1f}")
    print(f"reference_empty_rss_mib={ref_rss / 1024:.1f} reference_peak_mib={ref_hwm / 1024:.1f}")
    print(f"rss_over_reference_mib={(rss - ref_rss) / 1024:.1f} ratio={rss / ref_rss:.2f}")
    print(
        f"edit_to_sync_ms median={statistics.median(lat) * 1000:.1f} p90={p90 * 1000:.1f} min={lat[0] * 1000:.1f} max={lat[-1] * 1000:.1f} n={len(lat)} poll={args.poll}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
