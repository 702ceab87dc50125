"""Informer: list, report synced, then watch from the list's resourceVersion; repeat as needed.

One informer per resource, each on its own thread, feeding an :class:`ObjectCache` (which converts,
diffs and calls the handler). The protocol, as client-go's reflector does it:

1. ``list_fn()`` -> all objects and the list's resourceVersion; the cache is *replaced* (objects
   missing from the list are delivered as deletes), then the kind is marked synced (first time only);
2. ``watch_fn(rv)`` -> a stream of events; ADDED/MODIFIED/DELETED update the cache and advance rv,
   BOOKMARK only advances rv, an ERROR event with code 410 means "relist";
3. a stream that ends normally (server timeout) is re-opened from the last rv; a stream that breaks
   mid-way (:class:`StreamBroken`) is re-opened from the last rv too, after a short backoff;
4. :class:`Gone` -> relist at once; any other error -> exponential backoff (``initial_backoff`` doubling
   up to ``max_backoff``, reset after a successful watch), then relist.

Time comes from the injected clock (``clock.wait(stop, delay)``), so tests run in virtual time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pynet._clock import REAL_CLOCK, Clock
from pynet._log import get_logger
from pynet.k8s.cache import ObjectCache
from pynet.k8s.errors import ApiError, Gone, StreamBroken
from pynet.k8s.events import ClusterHandler, Kind

__all__ = ["Informer", "ListFn", "WatchEvent", "WatchFn"]

log = get_logger("pynet.k8s.informer")


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK | ERROR
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str | None:
        meta = self.object.get("metadata") if isinstance(self.object, Mapping) else None
        rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        return rv if isinstance(rv, str) and rv else None


#: () -> (raw items, list resourceVersion)
ListFn = Callable[[], tuple[Iterable[Mapping[str, Any]], str]]
#: (resourceVersion) -> events; may raise Gone / StreamBroken / ApiError
WatchFn = Callable[[str], Iterator[WatchEvent]]


class Informer:
    def __init__(
        self,
        kind: Kind,
        list_fn: ListFn,
        watch_fn: WatchFn,
        handler: ClusterHandler,
        *,
        clock: Clock = REAL_CLOCK,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
    ) -> None:
        self.kind = kind
        self._list = list_fn
        self._watch = watch_fn
        self.cache = ObjectCache(kind, handler)
        self._clock = clock
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.resource_version: str | None = None
        self.lists = 0
        self.watches = 0

    def run(self, stop: threading.Event) -> None:
        """List and watch until ``stop`` is set. Never raises."""
        backoff = self.initial_backoff
        rv: str | None = None
        while not stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch_from(rv, stop)
                backoff = self.initial_backoff
            except Gone:
                log.info("resource version expired; relisting", extra={"kv": {"kind": self.kind.value}})
                rv = None
            except StreamBroken as err:
                log.info(
                    "watch stream broke; re-watching",
                    extra={"kv": {"kind": self.kind.value, "error": str(err)}},
                )
                rv = self.resource_version  # events before the break were applied
                self._clock.wait(stop, min(backoff, 1.0))
            except ApiError as err:
                log.warning(
                    "list/watch failed",
                    extra={"kv": {"kind": self.kind.value, "error": str(err), "retry_in": f"{backoff:.1f}s"}},
                )
                rv = None
                self._clock.wait(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as err:  # never let the thread die: treat like an API error
                log.exception("informer error", extra={"kv": {"kind": self.kind.value, "error": repr(err)}})
                rv = None
                self._clock.wait(stop, backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _relist(self) -> str:
        items, rv = self._list()
        self.lists += 1
        self.cache.replace_raw(items)
        self.cache.mark_synced()
        self.resource_version = rv
        log.debug("listed", extra={"kv": {"kind": self.kind.value, "rv": rv, "objects": len(self.cache)}})
        return rv

    def _watch_from(self, rv: str, stop: threading.Event) -> str:
        self.watches += 1
        for event in self._watch(rv):
            if stop.is_set():
                break
            if event.type == "ERROR":
                code = event.object.get("code") if isinstance(event.object, Mapping) else None
                if code == 410:
                    raise Gone(str(event.object.get("message", "resource version too old")))
                raise ApiError(
                    f"watch error event: {dict(event.object)}", code if isinstance(code, int) else None
                )
            new_rv = event.resource_version
            if event.type in ("ADDED", "MODIFIED"):
                self.cache.upsert_raw(event.object)
            elif event.type == "DELETED":
                self.cache.delete_raw(event.object)
            elif event.type != "BOOKMARK":
                log.debug("unknown watch event ignored", extra={"kv": {"type": event.type}})
            if new_rv is not None:
                rv = new_rv
                self.resource_version = rv
        return rv
