"""FakeApi: scripted list/watch callables for Informer tests in virtual time (no HTTP).

``FakeApi`` holds objects per kind and a script of watch streams. Each ``watch_fn(rv)`` call pops the
next scripted stream: a list of :class:`WatchEvent` or exceptions (raised when reached), so a test
can say "two events, then the stream breaks", "an ERROR 410", "the list fails twice". When the script
is empty, the watch blocks until ``stop`` is set (as a quiet server would).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pynet.k8s.convert import InvalidObject
from pynet.k8s.errors import ApiError
from pynet.k8s.events import Kind
from pynet.k8s.informer import WatchEvent

__all__ = ["FakeApi", "RecordingHandler", "event", "fail"]


def event(etype: str, obj: Mapping[str, Any], rv: int | None = None) -> WatchEvent:
    obj = dict(obj)
    if rv is not None:
        meta = dict(obj.get("metadata") or {})
        meta["resourceVersion"] = str(rv)
        obj["metadata"] = meta
    return WatchEvent(etype, obj)


class FakeApi:
    def __init__(self, stop: threading.Event) -> None:
        self.items: list[Mapping[str, Any]] = []
        self.rv = 1
        self.list_failures: list[BaseException] = []
        self.streams: list[list[WatchEvent | BaseException]] = []
        self.list_calls = 0
        self.watch_calls: list[str] = []
        self._stop = stop

    def list_fn(self) -> tuple[Iterable[Mapping[str, Any]], str]:
        self.list_calls += 1
        if self.list_failures:
            raise self.list_failures.pop(0)
        return list(self.items), str(self.rv)

    def watch_fn(self, rv: str) -> Iterator[WatchEvent]:
        self.watch_calls.append(rv)
        if not self.streams:
            self._stop.set()  # script exhausted: end the informer's run()
            return iter(())
        script = self.streams.pop(0)

        def gen() -> Iterator[WatchEvent]:
            for step in script:
                if isinstance(step, BaseException):
                    raise step
                yield step

        return gen()


def fail(message: str = "boom", status: int = 500) -> ApiError:
    return ApiError(message, status)


class RecordingHandler:
    """Records handler calls as readable tuples."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []
        self.synced: list[Kind] = []
        self.invalid: list[InvalidObject] = []

    @staticmethod
    def _id(obj: Any) -> Any:
        if obj is None:
            return None
        return str(obj.name)

    def on_service_update(self, old: Any, new: Any) -> None:
        self.calls.append(("svc", self._id(old), self._id(new)))

    def on_endpointslice_update(self, old: Any, new: Any) -> None:
        self.calls.append(("slice", self._id(old), self._id(new)))

    def on_node_update(self, old: Any, new: Any) -> None:
        self.calls.append(("node", self._id(old), self._id(new)))

    def on_synced(self, kind: Kind) -> None:
        self.synced.append(kind)

    def on_invalid(self, err: InvalidObject) -> None:
        self.invalid.append(err)

    def take(self) -> list[tuple[str, Any, Any]]:
        out, self.calls = self.calls, []
        return out
