"""EndpointSliceCache: all EndpointSlices of one IP family, merged per service.

A service's endpoints may be spread over several slices (the API caps a slice at 100 endpoints, and
during updates an endpoint can sit in two slices at once). The merge is deterministic: slices are
visited in name order, each endpoint contributes its first address, duplicates (same ``ip:port``
for the same service port) are dropped, preferring a ready copy over a not-ready one.

``Endpoint.is_local`` is set here, from the endpoint's ``nodeName`` against this node's name.
Pure (stdlib and :mod:`pynet.proxy.model` only); not thread-safe, the change tracker locks around it.
"""

from __future__ import annotations

from pynet.proxy.model import (
    Endpoint,
    EndpointSlice,
    IPFamily,
    NamespacedName,
    ServicePortName,
)

__all__ = ["EndpointSliceCache", "PortEndpoints"]

PortEndpoints = dict[ServicePortName, tuple[Endpoint, ...]]


class EndpointSliceCache:
    def __init__(self, family: IPFamily, node_name: str) -> None:
        self.family = family
        self.node_name = node_name
        self._slices: dict[NamespacedName, dict[str, EndpointSlice]] = {}

    def update(self, old: EndpointSlice | None, new: EndpointSlice | None) -> NamespacedName | None:
        """Record a slice change; returns the affected service (None when not of this family)."""
        if old is not None and old.family == self.family:
            per = self._slices.get(old.service)
            if per is not None:
                per.pop(old.name.name, None)
                if not per:
                    del self._slices[old.service]
        if new is not None and new.family == self.family:
            self._slices.setdefault(new.service, {})[new.name.name] = new
        for s in (new, old):
            if s is not None and s.family == self.family:
                return s.service
        return None

    def services(self) -> list[NamespacedName]:
        return list(self._slices)

    def slice_count(self) -> int:
        return sum(len(v) for v in self._slices.values())

    def endpoints_for(self, service: NamespacedName) -> PortEndpoints:
        """The merged, deduplicated endpoints of every port of ``service`` (sorted per port)."""
        merged: dict[ServicePortName, dict[tuple[object, int], Endpoint]] = {}
        for _, sl in sorted(self._slices.get(service, {}).items()):
            for port in sl.ports:
                spn = ServicePortName(service, port.name, port.protocol)
                bucket = merged.setdefault(spn, {})
                for ep in sl.endpoints:
                    ip = ep.addresses[0]
                    key = (ip, port.port)
                    seen = bucket.get(key)
                    if seen is not None and (seen.ready or not ep.ready):
                        continue
                    bucket[key] = Endpoint(
                        ip=ip,
                        port=port.port,
                        ready=ep.ready,
                        serving=ep.serving,
                        terminating=ep.terminating,
                        node_name=ep.node_name,
                        zone=ep.zone,
                        is_local=ep.node_name is not None and ep.node_name == self.node_name,
                    )
        return {spn: tuple(sorted(bucket.values())) for spn, bucket in merged.items()}
