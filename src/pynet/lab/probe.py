"""Client side of the lab checks, run inside a pod or node namespace (stdlib only).

``python -m pynet.lab.probe TARGET...`` prints one JSON object per target, in order::

    tcp:IP:PORT          connect, read one line            {"ok": true, "reply": "pod-2-1 10.244.1.2"}
    bulk:IP:PORT:BYTES   ask for BYTES bytes, count them     {"ok": true, "bytes": 2097152, "seconds": 0.03}

Every attempt is bounded by a timeout (``--timeout``, default 3 s per target, a few retries for
the first packets of a fresh path).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from typing import Any

__all__ = ["main", "probe"]

#: pause between attempts: a refused connection returns at once, rules may still be landing
RETRY_PAUSE = 0.3


def _tcp(host: str, port: int, timeout: float) -> dict[str, Any]:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
    reply = data.decode(errors="replace").strip()
    return {"ok": bool(reply), "reply": reply}


def _bulk(host: str, port: int, want: int, timeout: float) -> dict[str, Any]:
    start = time.monotonic()
    got = 0
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"{want}\n".encode())
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += len(chunk)
    return {"ok": got == want, "bytes": got, "seconds": round(time.monotonic() - start, 4)}


def probe(target: str, timeout: float = 3.0, attempts: int = 3) -> dict[str, Any]:
    kind, _, rest = target.partition(":")
    result: dict[str, Any] = {"target": target, "ok": False}
    for attempt in range(attempts):
        if attempt:
            time.sleep(RETRY_PAUSE)
        try:
            if kind == "tcp":
                host, port = rest.rsplit(":", 1)
                result.update(_tcp(host, int(port), timeout))
            elif kind == "bulk":
                host, port, n = rest.rsplit(":", 2)
                result.update(_bulk(host, int(port), int(n), timeout))
            else:
                result["error"] = f"unknown probe kind {kind!r}"
                return result
        except (OSError, ValueError) as err:
            result["error"] = f"{type(err).__name__}: {err}"
            continue
        if result["ok"]:
            result.pop("error", None)
            return result
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pynet-lab-probe")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    ok = True
    for t in args.targets:
        r = probe(t, args.timeout, args.attempts)
        ok &= bool(r["ok"])
        print(json.dumps(r), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
