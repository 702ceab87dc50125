"""The agent's Prometheus metrics, on a registry of its own (never the process-global one).

Names follow kube-proxy's where one exists (``sync_proxy_rules_*``), under the ``pynet_`` prefix.
``invalid_objects_total`` carries the object's identity as labels so that an operator can find
the bad object from the metric alone; cardinality is bounded by the number of bad objects.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ProxyMetrics"]


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_duration = Histogram(
            "pynet_sync_proxy_rules_duration_seconds",
            "Time one sync of the service rules took (rendering and applying), by mode.",
            ["mode"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.last_sync = Gauge(
            "pynet_sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful sync.",
            registry=r,
        )
        self.sync_errors = Counter("pynet_sync_proxy_rules_errors_total", "Syncs that failed.", registry=r)
        self.syncs = Counter(
            "pynet_sync_proxy_rules_total", "Successful syncs, by mode.", ["mode"], registry=r
        )
        self.services = Gauge(
            "pynet_services_programmed", "Services with at least one port programmed.", registry=r
        )
        self.service_ports = Gauge("pynet_service_ports_programmed", "Service ports programmed.", registry=r)
        self.endpoints = Gauge(
            "pynet_endpoints_programmed", "Endpoints (ip:port per service port) programmed.", registry=r
        )
        self.pending = Gauge("pynet_pending_changes", "Services with changes not yet synced.", registry=r)
        self.invalid = Counter(
            "pynet_invalid_objects_total",
            "Cluster objects skipped because they failed validation.",
            ["kind", "namespace", "name"],
            registry=r,
        )
        self.conntrack_filters = Counter(
            "pynet_conntrack_cleared_total", "Stale UDP conntrack filters applied after syncs.", registry=r
        )
        self.overlay_errors = Counter(
            "pynet_overlay_sync_errors_total", "Overlay syncs that failed.", registry=r
        )
