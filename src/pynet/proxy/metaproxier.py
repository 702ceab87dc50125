"""MetaProxier: dual-stack as two single-family Proxiers behind one handler and one sync thread.

Handlers fan out to every family's proxier (each tracker keeps only its own family). Invalid
objects are logged and counted once. One BoundedFrequencyRunner drives all families, so a single
thread still programs the kernel; a failure in one family does not skip the others, and the first
error is re-raised afterwards so the runner retries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pynet._clock import REAL_CLOCK, Clock
from pynet.k8s.convert import InvalidObject
from pynet.k8s.events import Kind
from pynet.proxy.model import EndpointSlice, Node, Service
from pynet.proxy.proxier import Proxier
from pynet.proxy.runner import BoundedFrequencyRunner

__all__ = ["MetaProxier"]


class MetaProxier:
    def __init__(
        self,
        make: Callable[[Callable[[], None]], Sequence[Proxier]],
        *,
        min_sync_period: float,
        sync_period: float,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        """``make(request_sync)`` builds the per-family proxiers, wired to the shared runner."""
        self.runner = BoundedFrequencyRunner(
            "sync",
            self.sync_rules,
            min_interval=min_sync_period,
            retry_interval=max(min_sync_period, 1.0),
            max_interval=sync_period,
            clock=clock,
        )
        self.proxiers = list(make(self.runner.run))
        if not self.proxiers:
            raise ValueError("MetaProxier needs at least one proxier")
        self.primary = self.proxiers[0]
        self.all_synced = self.primary.all_synced

    def on_service_update(self, old: Service | None, new: Service | None) -> None:
        for p in self.proxiers:
            p.on_service_update(old, new)

    def on_endpointslice_update(self, old: EndpointSlice | None, new: EndpointSlice | None) -> None:
        for p in self.proxiers:
            p.on_endpointslice_update(old, new)

    def on_node_update(self, old: Node | None, new: Node | None) -> None:
        for p in self.proxiers:
            p.on_node_update(old, new)

    def on_synced(self, kind: Kind) -> None:
        for p in self.proxiers:
            p.on_synced(kind)

    def on_invalid(self, err: InvalidObject) -> None:
        self.primary.on_invalid(err)

    def sync_rules(self, *, force_full: bool = False) -> None:
        first: Exception | None = None
        for p in self.proxiers:
            try:
                p.sync_rules(force_full=force_full)
            except Exception as err:  # sync the other family anyway
                first = first or err
        if first is not None:
            raise first
