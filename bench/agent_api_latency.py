#!/usr/bin/env python3
"""Agent benchmark: API watch event -> backend.sync latency at N services (no file polling involved).

The in-test API server (pynet.testing.apiserver) runs in this process and holds N services with
3 endpoints each. ``pynet agent --kubeconfig`` runs as a subprocess with the recording backend
(``--min-sync-period 0``). For each of ``--edits`` rounds one EndpointSlice is changed on the server,
and the time until the agent calls ``backend.sync`` (its own timestamp) is recorded. Because the
server and the timestamps share one machine clock, the figure includes JSON encoding, the chunked
HTTP stream, decoding, conversion, tracking and the partial sync.

Usage: .venv/bin/python bench/agent_api_latency.py [--services 10000] [--edits 20]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from agent_memory import service_objects  # noqa: E402

from pynet.testing.apiserver import FakeApiServer  # noqa: E402
from pynet.testing.builders import make_node  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--edits", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pynet-agent-api-bench-") as tmp, FakeApiServer() as srv:
        base = Path(tmp)
        srv.apply(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"]))
        for i in range(args.services):
            for obj in service_objects(i):
                srv.apply(obj)
        record = base / "record.json"
        env = {
            **os.environ,
            "PYNET_RECORD_FILE": str(record),
            "PYNET_RECORD_KEEP": "1",
            "PYNET_RECORD_STATE": "0",
        }
        argv = [
            sys.executable,
            "-m",
            "pynet",
            "agent",
            "--kubeconfig",
            str(srv.write_kubeconfig(base / "kc")),
            "--node-name",
            "n1",
            "--backend",
            "pynet.testing.recording:RecordingBackend",
            "--min-sync-period",
            "0",
            "--metrics-address",
            "0",
            "--healthz-address",
            "0",
            "--no-cni-server",
            "--pod-cidr-file",
            "",
            "--log-level",
            "WARNING",
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)

        def wait(count: int, timeout: float) -> dict[str, object]:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    doc = json.loads(record.read_text())
                    if int(doc["count"]) >= count:
                        return doc  # type: ignore[no-any-return]
                except (OSError, ValueError):
                    pass
                time.sleep(0.002)
            raise TimeoutError("no sync")

        try:
            wait(1, 600)
            startup = time.monotonic() - t0
            srv.wait_watching(timeout=60)
            time.sleep(1.0)
            lat = []
            for n in range(args.edits):
                name = f"svc-{(n * 397) % args.services:05d}"
                sl = srv.get("EndpointSlice", "default", f"{name}-s1")
                assert sl is not None
                sl["endpoints"][0]["addresses"] = [f"10.246.1.{n + 1}"]
                count = int(json.loads(record.read_text())["count"])
                t_edit = time.time()
                srv.apply(sl)
                doc = wait(count + 1, 30)
                lat.append(float(doc["at"]) - t_edit)  # type: ignore[arg-type]
                assert doc["changed"] == [f"default/{name}"] and doc["full"] is False, doc
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.communicate(timeout=20)
    lat.sort()
    p90 = lat[max(0, int(round(0.9 * len(lat))) - 1)]
    print(f"services={args.services} endpoints={3 * args.services} source=api")
    print(f"startup_to_first_sync_s={startup:.2f}")
    print(
        f"event_to_sync_ms median={statistics.median(lat) * 1000:.1f} p90={p90 * 1000:.1f} min={lat[0] * 1000:.1f} max={lat[-1] * 1000:.1f} n={len(lat)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
