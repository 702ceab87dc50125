"""ProxyState: the immutable snapshot a backend renders in one sync."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pynet.proxy.model import (
    Endpoint,
    IPAddress,
    IPFamily,
    IPNetwork,
    NamespacedName,
    ServicePort,
    ServicePortName,
)

__all__ = ["ProxyState"]


def _empty() -> Mapping[ServicePortName, ServicePort]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ProxyState:
    """One IP family's desired service state on one node.

    ``services`` holds every service port with a cluster IP of this family; ``endpoints`` maps the
    same keys to the port's endpoints (possibly empty; missing means empty). Backends must not decide
    endpoint semantics themselves: they call :func:`pynet.proxy.topology.categorize_endpoints`.
    """

    family: IPFamily
    node_name: str
    node_ips: tuple[IPAddress, ...] = ()
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    #: where NodePorts listen; empty means "the node's own addresses" (``node_ips``)
    nodeport_addresses: tuple[IPNetwork, ...] = ()
    services: Mapping[ServicePortName, ServicePort] = field(default_factory=_empty)
    endpoints: Mapping[ServicePortName, tuple[Endpoint, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def endpoints_of(self, name: ServicePortName) -> tuple[Endpoint, ...]:
        return self.endpoints.get(name, ())

    def ports_of(self, service: NamespacedName) -> list[ServicePort]:
        return [sp for key, sp in self.services.items() if key.service == service]

    def nodeport_ips(self) -> tuple[IPAddress, ...]:
        """The concrete local addresses NodePorts answer on."""
        if not self.nodeport_addresses:
            return self.node_ips
        return tuple(ip for ip in self.node_ips if any(ip in net for net in self.nodeport_addresses))
