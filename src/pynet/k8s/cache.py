"""Per-kind object cache that converts raw objects and delivers minimal events to a handler.

Both sources (manifest directory and API informer) feed one :class:`ObjectCache` per kind. It keeps
the last *valid* model value per ``(namespace, name)`` and only ever calls the handler with real
changes. Raw dicts are converted on the way in and then dropped, so memory holds model values only.

A malformed object is reported through ``handler.on_invalid`` and treated as absent: if an earlier
version was valid, the handler sees a delete. Thread-safety: one cache is fed by one thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pynet._log import get_logger
from pynet.k8s.convert import (
    InvalidObject,
    UnsupportedObject,
    object_key,
    to_endpoint_slice,
    to_node,
    to_service,
)
from pynet.k8s.events import ClusterHandler, Kind
from pynet.proxy.model import EndpointSlice, Node, Service

__all__ = ["Converted", "Key", "ObjectCache", "convert"]

log = get_logger("pynet.k8s.cache")

Model = Service | EndpointSlice | Node
#: what a raw object becomes: a model, an InvalidObject (to report) or None (ignored on purpose)
Converted = Model | InvalidObject | None
Key = tuple[str, str]  # (namespace, name); namespace "" for nodes

_CONVERTERS: dict[Kind, Callable[[Any], Model]] = {
    Kind.SERVICE: to_service,
    Kind.ENDPOINT_SLICE: to_endpoint_slice,
    Kind.NODE: to_node,
}


def convert(kind: Kind, raw: Any) -> Converted:
    """Convert ``raw`` to its model; an InvalidObject value (not raised) when malformed."""
    try:
        return _CONVERTERS[kind](raw)
    except InvalidObject as err:
        return err
    except UnsupportedObject as err:
        log.debug("ignored object", extra={"kv": {"reason": str(err)}})
        return None
    except Exception as err:  # a converter bug must not kill a source thread: report as invalid
        _, ns, name = object_key(kind.value, raw) if isinstance(raw, Mapping) else ("", "", "")
        return InvalidObject(kind.value, ns, name, f"conversion failed: {err!r}")


def key_of(kind: Kind, value: Model | InvalidObject) -> Key:
    if isinstance(value, InvalidObject):
        return value.namespace, value.name
    if isinstance(value, Node):
        return "", value.name
    return value.name.namespace, value.name.name


class ObjectCache:
    """The last valid value of every object of one kind, delivering diffs to ``handler``."""

    def __init__(self, kind: Kind, handler: ClusterHandler) -> None:
        self.kind = kind
        self._handler = handler
        self._items: dict[Key, Model] = {}
        self._synced = False
        deliver: dict[Kind, Callable[[Any, Any], None]] = {
            Kind.SERVICE: handler.on_service_update,
            Kind.ENDPOINT_SLICE: handler.on_endpointslice_update,
            Kind.NODE: handler.on_node_update,
        }
        self._deliver = deliver[kind]

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> Model | None:
        return self._items.get(key)

    def set(self, key: Key, value: Converted) -> None:
        """Make ``key`` hold ``value`` (None or an InvalidObject mean: absent)."""
        if isinstance(value, InvalidObject):
            self._handler.on_invalid(value)
            value = None
        old = self._items.get(key)
        if old is value and value is not None:
            return  # the same (reused) conversion: nothing to do
        if value is None:
            if old is not None:
                del self._items[key]
                self._deliver(old, None)
            return
        if old is not None and old == dataclasses.replace(value, resource_version=old.resource_version):
            self._items[key] = value  # only the resourceVersion moved (status churn): no event
            return
        self._items[key] = value
        self._deliver(old, value)

    def upsert_raw(self, raw: Any) -> None:
        converted = convert(self.kind, raw)
        if converted is None:
            _, ns, name = object_key(self.kind.value, raw)
            self.set((ns, name), None)
            return
        self.set(key_of(self.kind, converted), converted)

    def delete_raw(self, raw: Any) -> None:
        _, ns, name = object_key(self.kind.value, raw)
        self.set((ns, name), None)

    def replace(self, values: Iterable[tuple[Key, Converted]]) -> None:
        """Make the cache hold exactly ``values`` (a full listing); deletes what is missing."""
        seen: set[Key] = set()
        for key, value in values:
            seen.add(key)
            self.set(key, value)
        for key in [k for k in self._items if k not in seen]:
            self.set(key, None)

    def replace_raw(self, raws: Iterable[Any]) -> None:
        def pairs() -> Iterable[tuple[Key, Converted]]:
            for raw in raws:
                _, ns, name = object_key(self.kind.value, raw)
                yield (ns, name), convert(self.kind, raw)

        self.replace(pairs())

    def mark_synced(self) -> None:
        if not self._synced:
            self._synced = True
            self._handler.on_synced(self.kind)

    @property
    def synced(self) -> bool:
        return self._synced
