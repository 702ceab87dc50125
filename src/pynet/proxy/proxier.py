"""Proxier: cluster events in, one ``backend.sync(state, changed, full)`` per sync out.

Threads: source threads call the ``on_*`` handlers, which only touch the locked trackers and ask
the runner for a sync. The sync thread (the runner's loop) calls :meth:`Proxier.sync_rules`, the
only code that talks to the backend, so exactly one thread programs the kernel.

Sync phases (no early return once applying starts): apply tracker changes to the maps, build an
immutable :class:`ProxyState`, call the backend, then clear stale UDP conntrack. A failure is
logged and counted, forces the next sync to be full, and is re-raised so the runner retries.
Nothing is synced before every source kind reported synced (an empty cache must not wipe rules).

A full sync happens on the first sync, after a failure, when this node's Node object changed,
and every ``sync_period`` seconds (to repair drift); otherwise only changed services are passed.

One Proxier serves one IP family; dual-stack runs two (their backends are separate instances).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import MappingProxyType

from pynet._clock import REAL_CLOCK, Clock
from pynet._log import get_logger
from pynet.k8s.convert import InvalidObject
from pynet.k8s.events import ALL_KINDS, Kind
from pynet.proxy.backends.base import Backend
from pynet.proxy.changes import (
    EndpointsChangeTracker,
    EndpointsMap,
    ServiceChangeTracker,
    ServicePortMap,
)
from pynet.proxy.conntrack import ConntrackCleaner, lookup_in, stale_filters
from pynet.proxy.metrics import ProxyMetrics
from pynet.proxy.model import (
    EndpointSlice,
    IPAddress,
    IPFamily,
    IPNetwork,
    NamespacedName,
    Node,
    Service,
)
from pynet.proxy.runner import BoundedFrequencyRunner
from pynet.proxy.state import ProxyState

__all__ = ["NodeObserver", "Proxier"]

log = get_logger("pynet.proxy.proxier")

#: called on the sync thread with (this node or None, all nodes) whenever the node set changed
NodeObserver = Callable[[Node | None, Sequence[Node]], None]


def _same_node(a: Node | None, b: Node | None) -> bool:
    """Equality ignoring resourceVersion (it changes on every kubelet heartbeat)."""
    if a is None or b is None:
        return a is b
    return (a.addresses, a.pod_cidrs, a.labels, a.annotations) == (
        b.addresses,
        b.pod_cidrs,
        b.labels,
        b.annotations,
    )


class Proxier:
    def __init__(
        self,
        backend: Backend,
        *,
        node_name: str,
        family: IPFamily = IPFamily.V4,
        cluster_cidrs: Sequence[IPNetwork] = (),
        nodeport_addresses: Sequence[IPNetwork] = (),
        min_sync_period: float = 1.0,
        sync_period: float = 30.0,
        metrics: ProxyMetrics | None = None,
        conntrack: ConntrackCleaner | None = None,
        clock: Clock = REAL_CLOCK,
        fallback_node_ips: Callable[[], Sequence[IPAddress]] | None = None,
        node_observers: Sequence[NodeObserver] = (),
        required_kinds: frozenset[Kind] = ALL_KINDS,
        request_sync: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.node_name = node_name
        self.family = family
        self.cluster_cidrs = tuple(c for c in cluster_cidrs if c.version == family)
        self.nodeport_addresses = tuple(c for c in nodeport_addresses if c.version == family)
        self.sync_period = sync_period
        self.metrics = metrics or ProxyMetrics()
        self.conntrack = conntrack
        self._clock = clock
        self._fallback_node_ips = fallback_node_ips
        self.node_observers = list(node_observers)
        self._required = required_kinds

        self.svc_tracker = ServiceChangeTracker(family)
        self.ep_tracker = EndpointsChangeTracker(family, node_name)
        self.svc_map = ServicePortMap()
        self.ep_map = EndpointsMap()

        self._lock = threading.Lock()
        self._synced_kinds: set[Kind] = set()
        self._nodes: dict[str, Node] = {}
        self._nodes_dirty = True
        self._needs_full = True
        self._last_full: float | None = None
        self.last_success: float | None = None  # clock time of the last successful sync
        self.last_success_wall: float | None = None
        self.last_error: str | None = None
        self.sync_count = 0
        self.all_synced = threading.Event()
        self.runner = BoundedFrequencyRunner(
            f"sync-{family.name.lower()}",
            self._sync_from_runner,
            min_interval=min_sync_period,
            retry_interval=max(min_sync_period, 1.0) if min_sync_period > 0 else 1.0,
            max_interval=sync_period,
            clock=clock,
        )
        #: how handlers ask for a sync: this proxier's own runner, or a MetaProxier's shared one
        self.request_sync = request_sync if request_sync is not None else self.runner.run

    # ------------------------------------------------------------------ handlers (source threads)

    def on_service_update(self, old: Service | None, new: Service | None) -> None:
        if self.svc_tracker.update(old, new):
            self._request()

    def on_endpointslice_update(self, old: EndpointSlice | None, new: EndpointSlice | None) -> None:
        if self.ep_tracker.update(old, new):
            self._request()

    def on_node_update(self, old: Node | None, new: Node | None) -> None:
        node = new or old
        if node is None:
            return
        with self._lock:
            before = self._nodes.get(node.name)
            if new is None:
                self._nodes.pop(node.name, None)
            else:
                self._nodes[node.name] = new
            if _same_node(before, new):
                return
            self._nodes_dirty = True
            if node.name == self.node_name:
                self._needs_full = True  # node IPs feed NodePorts of every service
        self._request()

    def on_synced(self, kind: Kind) -> None:
        with self._lock:
            self._synced_kinds.add(kind)
            done = self._required <= self._synced_kinds
        log.info("source synced", extra={"kv": {"kind": kind.value}})
        if done and not self.all_synced.is_set():
            self.all_synced.set()
            self.request_sync()

    def on_invalid(self, err: InvalidObject) -> None:
        what = "service" if err.kind == "Service" else err.kind.lower()
        ident = f"{err.namespace}/{err.name}" if err.namespace else err.name
        log.warning(
            "skipping invalid object",
            extra={"kv": {what: ident, "kind": err.kind, "reason": repr(err.reason)}},
        )
        self.metrics.invalid.labels(err.kind, err.namespace, err.name).inc()

    def _request(self) -> None:
        self.metrics.pending.set(self.svc_tracker.pending() + self.ep_tracker.pending())
        if self.all_synced.is_set():
            self.request_sync()

    # ------------------------------------------------------------------ sync thread

    @property
    def local_node(self) -> Node | None:
        with self._lock:
            return self._nodes.get(self.node_name)

    def _sync_from_runner(self) -> None:
        if self.all_synced.is_set():
            self.sync_rules()

    def node_ips(self) -> tuple[IPAddress, ...]:
        node = self.local_node
        if node is not None:
            ips = tuple(ip for ip in node.addresses if ip.version == self.family)
            if ips:
                return ips
        if self._fallback_node_ips is not None:
            return tuple(ip for ip in self._fallback_node_ips() if ip.version == self.family)
        return ()

    def _sync_nodes(self) -> None:
        with self._lock:
            if not self._nodes_dirty:
                return
            self._nodes_dirty = False
            local = self._nodes.get(self.node_name)
            nodes = sorted(self._nodes.values(), key=lambda n: n.name)
        for observer in self.node_observers:
            try:
                observer(local, nodes)
            except Exception as err:
                with self._lock:
                    self._nodes_dirty = True  # try again on the next sync
                self.metrics.overlay_errors.inc()
                log.error("node observer failed", extra={"kv": {"error": repr(err)}}, exc_info=True)

    def sync_rules(self, *, force_full: bool = False) -> None:
        """One sync. Raises the backend's error after recording it (the runner retries)."""
        if not self.all_synced.is_set():
            log.debug("sources not synced yet; not syncing")
            return
        start = self._clock.monotonic()
        t0 = time.perf_counter()
        with self._lock:
            full = force_full or self._needs_full
            self._needs_full = False
            if self._last_full is None or start - self._last_full >= self.sync_period:
                full = True
            if full:
                # node observers (overlay) reconcile against the kernel: a full sync repairs
                # hand-deleted FDB entries and routes too, not only service rules
                self._nodes_dirty = True
        self._sync_nodes()
        svc_result = self.svc_map.apply(self.svc_tracker)
        ep_result = self.ep_map.apply(self.ep_tracker)
        changed = svc_result.updated | ep_result.updated
        self.metrics.pending.set(self.svc_tracker.pending() + self.ep_tracker.pending())
        state = self.build_state()
        mode = "full" if full else "partial"
        try:
            self.backend.sync(state, changed, full)
        except Exception as err:
            with self._lock:
                self._needs_full = True
            self.last_error = f"{type(err).__name__}: {err}"
            self.metrics.sync_errors.inc()
            log.error(
                "sync failed", extra={"kv": {"mode": mode, "changed": len(changed), "error": repr(err)}}
            )
            raise
        elapsed = time.perf_counter() - t0
        if full:
            self._last_full = start
        self.last_success = self._clock.monotonic()
        self.last_success_wall = time.time()
        self.last_error = None
        self.sync_count += 1
        m = self.metrics
        m.sync_duration.labels(mode).observe(elapsed)
        m.syncs.labels(mode).inc()
        m.last_sync.set(self.last_success_wall)
        # counts are kept incrementally by the maps: no per-sync walk over 10,000 services
        m.service_ports.set(len(state.services))
        m.services.set(self.svc_map.service_count)
        m.endpoints.set(self.ep_map.endpoint_count)
        log.info(
            "synced",
            extra={
                "kv": {
                    "mode": mode,
                    "changed": len(changed),
                    "ports": len(state.services),
                    "seconds": f"{elapsed:.4f}",
                }
            },
        )
        if self.conntrack is not None and (ep_result.deleted_udp or ep_result.newly_active_udp):
            filters = stale_filters(ep_result, lookup_in(self.svc_map, svc_result.removed))
            try:
                self.conntrack.clear(filters)
                m.conntrack_filters.inc(len(filters))
            except Exception as err:  # never fail a sync over conntrack
                log.warning("conntrack clean-up failed", extra={"kv": {"error": repr(err)}})

    def build_state(self) -> ProxyState:
        # plain dict copies reuse the stored hashes (no re-hashing of 10,000 keys); the map only holds
        # ports with a cluster IP, and endpoints of ports without a service are simply never looked up
        services = self.svc_map.copy()
        endpoints = self.ep_map.copy()
        return ProxyState(
            family=self.family,
            node_name=self.node_name,
            node_ips=self.node_ips(),
            cluster_cidrs=self.cluster_cidrs,
            nodeport_addresses=self.nodeport_addresses,
            services=MappingProxyType(services),
            endpoints=MappingProxyType(endpoints),
        )

    def changed_services(self) -> frozenset[NamespacedName]:  # for introspection/tests
        return frozenset(k.service for k in self.svc_map)
