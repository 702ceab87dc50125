"""RecordingBackend: a Backend that programs nothing and remembers every sync (tests, benchmarks).

Use it in-process (``Agent(config, backend=RecordingBackend())``) or from the command line as
``pynet agent --backend pynet.testing.recording:RecordingBackend``; with ``PYNET_RECORD_FILE`` set,
each sync also writes a JSON summary there (atomically), so a test can watch a real agent process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

from pynet.proxy.backends.base import SyncError
from pynet.proxy.model import NamespacedName
from pynet.proxy.state import ProxyState

__all__ = ["RecordedSync", "RecordingBackend", "summarize"]


@dataclass(frozen=True)
class RecordedSync:
    state: ProxyState
    changed: frozenset[NamespacedName]
    full: bool
    at: float  # time.time() when sync() was called


def summarize(state: ProxyState) -> dict[str, object]:
    """A JSON-friendly view: service port -> cluster IP:port and its endpoints."""
    return {
        "node_ips": [str(ip) for ip in state.node_ips],
        "services": {
            str(k): {
                "cluster_ip": str(sp.cluster_ip),
                "port": sp.port,
                "node_port": sp.node_port,
                "endpoints": [
                    f"{e}{'' if e.ready else '(not-ready)'}{'(local)' if e.is_local else ''}"
                    for e in state.endpoints_of(k)
                ],
            }
            for k, sp in sorted(state.services.items())
        },
    }


class RecordingBackend:
    name: ClassVar[str] = "recording"

    def __init__(self) -> None:
        self.syncs: list[RecordedSync] = []
        self.fail_next = 0  # make the next N syncs raise SyncError
        self.cleaned = False
        self.total = 0  # syncs ever recorded (``syncs`` may be trimmed by PYNET_RECORD_KEEP)
        self.setup_calls = 0
        self._cond = threading.Condition()
        self._keep = int(os.environ.get("PYNET_RECORD_KEEP", "0") or 0)  # 0: keep all

    @classmethod
    def probe(cls) -> None:
        return None

    def setup(self) -> None:
        self.setup_calls += 1

    def sync(self, state: ProxyState, changed: frozenset[NamespacedName], full: bool) -> None:
        at = time.time()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise SyncError("injected failure")
        with self._cond:
            self.syncs.append(RecordedSync(state, changed, full, at))
            self.total += 1
            if self._keep and len(self.syncs) > self._keep:
                del self.syncs[: -self._keep]
            self._cond.notify_all()
        path = os.environ.get("PYNET_RECORD_FILE")
        if path:
            doc = {"count": self.total, "full": full, "changed": sorted(map(str, changed)), "at": at}
            if os.environ.get("PYNET_RECORD_STATE", "1") != "0":
                doc["state"] = summarize(state)
            tmp = f"{path}.tmp"
            with open(tmp, "w") as fh:
                json.dump(doc, fh)
            os.replace(tmp, path)

    def cleanup(self) -> None:
        self.cleaned = True

    @property
    def last(self) -> RecordedSync:
        return self.syncs[-1]

    def wait_for(self, predicate: object, timeout: float = 5.0, *, after: int = 0) -> RecordedSync:
        """Block until a sync numbered ``after`` or later satisfies ``predicate(RecordedSync)``.

        Returns the most recent match; AssertionError on timeout.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in reversed(self.syncs[after:]):
                    if callable(predicate) and predicate(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching sync within {timeout}s ({len(self.syncs)} syncs recorded)"
                    )
                self._cond.wait(left)
