"""What a source of cluster state calls: the handler protocol shared by every source.

Sources (the manifest directory, the API informers) turn raw objects into validated model values and
call a :class:`ClusterHandler`. Guarantees to the handler:

* ``on_*_update(old, new)``: ``old is None`` is an add, ``new is None`` a delete; no-op updates
  (equal values) are not delivered;
* ``on_synced(kind)`` is called once per kind, after the first complete listing of that kind has
  been delivered;
* ``on_invalid(err)`` names an object that failed validation; the source then behaves as if the
  object did not exist (a previously valid version is delivered as a delete);
* calls may come from several threads (one per source or resource): handlers must lock.
"""

from __future__ import annotations

import enum
from typing import Protocol

from pynet.k8s.convert import InvalidObject
from pynet.proxy.model import EndpointSlice, Node, Service

__all__ = ["ALL_KINDS", "ClusterHandler", "Kind"]


class Kind(enum.StrEnum):
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    NODE = "Node"


ALL_KINDS = frozenset(Kind)


class ClusterHandler(Protocol):
    def on_service_update(self, old: Service | None, new: Service | None) -> None: ...
    def on_endpointslice_update(self, old: EndpointSlice | None, new: EndpointSlice | None) -> None: ...
    def on_node_update(self, old: Node | None, new: Node | None) -> None: ...
    def on_synced(self, kind: Kind) -> None: ...
    def on_invalid(self, err: InvalidObject) -> None: ...
