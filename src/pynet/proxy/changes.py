"""Change tracking: Services and EndpointSlices in, per-port maps and the changed-service set out.

Event handlers (source threads) call ``tracker.update(old, new)``; the sync thread calls
``map.apply(tracker)``. A tracker keeps, per service, the *previous* per-port view (as of the last
apply) and the *current* one; an update that brings a service back to its previous view is dropped,
so bursts that cancel out cost nothing. ``apply`` yields the services that really changed: that set
is what makes a partial sync possible (kube-proxy's ``UpdatedServices``).

One tracker per IP family: a dual-stack service contributes one ServicePort per family, and each
family's proxier only sees its own. Pure stdlib; the trackers lock, the maps belong to the sync thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from pynet.proxy.model import (
    Endpoint,
    EndpointSlice,
    IPFamily,
    NamespacedName,
    Protocol,
    Service,
    ServicePort,
    ServicePortName,
    ServiceType,
    TrafficPolicy,
)
from pynet.proxy.slicecache import EndpointSliceCache, PortEndpoints

__all__ = [
    "EndpointsChangeTracker",
    "EndpointsMap",
    "EndpointsUpdateResult",
    "ServiceChangeTracker",
    "ServicePortMap",
    "UpdateResult",
    "service_ports",
]

Ports = dict[ServicePortName, ServicePort]


def service_ports(svc: Service | None, family: IPFamily) -> Ports:
    """The per-port view of ``svc`` in ``family``; empty for headless/ExternalName or other-family services."""
    if svc is None or svc.type is ServiceType.EXTERNAL_NAME:
        return {}
    cluster_ip = next((ip for ip in svc.cluster_ips if ip.version == family), None)
    if cluster_ip is None:
        return {}
    external = svc.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
    ext_ips = tuple(ip for ip in svc.external_ips if ip.version == family)
    lb_ips = tuple(ip for ip in svc.load_balancer_ips if ip.version == family)
    ranges = tuple(n for n in svc.load_balancer_source_ranges if n.version == family)
    out: Ports = {}
    for p in svc.ports:
        spn = ServicePortName(svc.name, p.name, p.protocol)
        out[spn] = ServicePort(
            name=spn,
            family=family,
            cluster_ip=cluster_ip,
            port=p.port,
            protocol=p.protocol,
            node_port=p.node_port if external else 0,
            external_ips=ext_ips,
            load_balancer_ips=lb_ips,
            load_balancer_source_ranges=ranges if lb_ips else (),
            session_affinity_timeout=svc.session_affinity_timeout,
            external_policy_local=svc.external_traffic_policy is TrafficPolicy.LOCAL
            and bool(p.node_port and external or ext_ips or lb_ips),
            internal_policy_local=svc.internal_traffic_policy is TrafficPolicy.LOCAL,
            health_check_node_port=svc.health_check_node_port,
        )
    return out


@dataclass(frozen=True)
class UpdateResult:
    updated: frozenset[NamespacedName] = frozenset()
    #: the ports removed or replaced by this apply, as they were (conntrack needs deleted services)
    removed: Mapping[ServicePortName, ServicePort] = field(default_factory=dict)


class ServiceChangeTracker:
    def __init__(self, family: IPFamily) -> None:
        self.family = family
        self._lock = threading.Lock()
        self._items: dict[NamespacedName, tuple[Ports, Ports]] = {}

    def update(self, previous: Service | None, current: Service | None) -> bool:
        """Record a change; True when this service now has a pending (non-no-op) change."""
        svc = current or previous
        if svc is None:
            return False
        now = service_ports(current, self.family)
        with self._lock:
            item = self._items.get(svc.name)
            before = item[0] if item is not None else service_ports(previous, self.family)
            if before == now:
                self._items.pop(svc.name, None)
                return False
            self._items[svc.name] = (before, now)
            return True

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def drain(self) -> dict[NamespacedName, tuple[Ports, Ports]]:
        with self._lock:
            items, self._items = self._items, {}
        return items


class ServicePortMap(dict[ServicePortName, ServicePort]):
    """Every service port of one family with a cluster IP; ``service_count`` is kept incrementally."""

    service_count: int = 0

    def apply(self, tracker: ServiceChangeTracker) -> UpdateResult:
        changes = tracker.drain()
        removed: dict[ServicePortName, ServicePort] = {}
        for before, now in changes.values():
            for key in before:
                old = self.pop(key, None)
                if old is not None:
                    removed[key] = old
            self.update(now)
            self.service_count += (1 if now else 0) - (1 if before else 0)
        return UpdateResult(frozenset(changes), removed)


@dataclass(frozen=True)
class EndpointsUpdateResult:
    updated: frozenset[NamespacedName] = frozenset()
    #: (service port, endpoint) pairs whose ready endpoint went away: stale UDP conntrack candidates
    deleted_udp: tuple[tuple[ServicePortName, Endpoint], ...] = ()
    #: UDP service ports that went from no ready endpoint to at least one
    newly_active_udp: frozenset[ServicePortName] = field(default_factory=frozenset)


class EndpointsChangeTracker:
    def __init__(self, family: IPFamily, node_name: str) -> None:
        self.family = family
        self._lock = threading.Lock()
        self._cache = EndpointSliceCache(family, node_name)
        self._items: dict[NamespacedName, tuple[PortEndpoints, PortEndpoints]] = {}

    def update(self, old: EndpointSlice | None, new: EndpointSlice | None) -> bool:
        sl = new or old
        if sl is None or sl.family != self.family:
            return False
        with self._lock:
            service = sl.service
            item = self._items.get(service)
            before = item[0] if item is not None else self._cache.endpoints_for(service)
            self._cache.update(old, new)
            now = self._cache.endpoints_for(service)
            if before == now:
                self._items.pop(service, None)
                return False
            self._items[service] = (before, now)
            return True

    def pending(self) -> int:
        with self._lock:
            return len(self._items)

    def drain(self) -> dict[NamespacedName, tuple[PortEndpoints, PortEndpoints]]:
        with self._lock:
            items, self._items = self._items, {}
        return items


class EndpointsMap(dict[ServicePortName, tuple[Endpoint, ...]]):
    """Endpoints per service port (of any service, present or not); ``endpoint_count`` kept incrementally."""

    endpoint_count: int = 0

    def apply(self, tracker: EndpointsChangeTracker) -> EndpointsUpdateResult:
        changes = tracker.drain()
        deleted: list[tuple[ServicePortName, Endpoint]] = []
        active: set[ServicePortName] = set()
        for before, now in changes.values():
            for spn in before:
                self.endpoint_count -= len(self.pop(spn, ()))
            self.update(now)
            self.endpoint_count += sum(map(len, now.values()))
            for spn in set(before) | set(now):
                if spn.protocol is not Protocol.UDP:
                    continue
                old_ready = {(e.ip, e.port): e for e in before.get(spn, ()) if e.ready}
                new_ready = {(e.ip, e.port) for e in now.get(spn, ()) if e.ready}
                deleted.extend(
                    (spn, e)
                    for k, e in sorted(old_ready.items(), key=lambda kv: str(kv[1]))
                    if k not in new_ready
                )
                if not old_ready and new_ready:
                    active.add(spn)
        return EndpointsUpdateResult(frozenset(changes), tuple(deleted), frozenset(active))
