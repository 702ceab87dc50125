"""The cluster objects pynet cares about, as frozen values.

These are the *validated* forms of Kubernetes Services, EndpointSlices and Nodes: every address is an
``ipaddress`` object, every port is in range, every protocol is known. Conversion from API objects or
manifests (and rejection of malformed ones) happens once, in :mod:`pynet.k8s.convert`; nothing past
that boundary sees a raw dict.

From ``Service`` + ``EndpointSlice`` the change trackers derive the per-port view the backends render:
``ServicePort`` (one per service port *and IP family*) and ``Endpoint``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = [
    "Endpoint",
    "EndpointSlice",
    "IPAddress",
    "IPFamily",
    "IPNetwork",
    "NamespacedName",
    "Node",
    "Protocol",
    "Service",
    "ServicePort",
    "ServicePortName",
    "ServicePortSpec",
    "ServiceType",
    "SliceEndpoint",
    "SlicePort",
    "TrafficPolicy",
    "family_of",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: kube-proxy's default when sessionAffinity is ClientIP and no timeout is given (3 hours)
DEFAULT_AFFINITY_TIMEOUT = 10800


class Protocol(enum.StrEnum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class IPFamily(enum.IntEnum):
    V4 = 4
    V6 = 6


def family_of(addr: IPAddress | IPNetwork) -> IPFamily:
    return IPFamily.V4 if addr.version == 4 else IPFamily.V6


class TrafficPolicy(enum.StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class ServiceType(enum.StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"
    EXTERNAL_NAME = "ExternalName"


@dataclass(frozen=True, slots=True, order=True)
class NamespacedName:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


# --------------------------------------------------------------------------- API-level objects


@dataclass(frozen=True, slots=True)
class ServicePortSpec:
    """One entry of ``spec.ports``."""

    name: str
    protocol: Protocol
    port: int
    target_port: int | str  # a number or a named container port
    node_port: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    """A validated Service (``spec`` fields only, plus identity)."""

    name: NamespacedName
    type: ServiceType
    cluster_ips: tuple[IPAddress, ...]  # empty for headless (clusterIP: None)
    ports: tuple[ServicePortSpec, ...]
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()  # status.loadBalancer.ingress[].ip
    load_balancer_source_ranges: tuple[IPNetwork, ...] = ()
    session_affinity_timeout: int | None = None  # None: no ClientIP affinity
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    internal_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    health_check_node_port: int = 0
    resource_version: str = ""

    @property
    def headless(self) -> bool:
        return not self.cluster_ips


@dataclass(frozen=True, slots=True)
class SlicePort:
    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True, slots=True)
class SliceEndpoint:
    addresses: tuple[IPAddress, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = None
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class EndpointSlice:
    name: NamespacedName  # the slice's own name
    service: NamespacedName  # from label kubernetes.io/service-name
    family: IPFamily
    ports: tuple[SlicePort, ...]
    endpoints: tuple[SliceEndpoint, ...]
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    addresses: tuple[IPAddress, ...]  # InternalIP first, then ExternalIP
    pod_cidrs: tuple[IPNetwork, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    #: annotations under the ``pynet.io/`` prefix (VTEP MAC and address for the overlay)
    annotations: tuple[tuple[str, str], ...] = ()
    resource_version: str = ""

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)


# --------------------------------------------------------------------------- the per-port view


@dataclass(frozen=True, slots=True, order=True)
class ServicePortName:
    service: NamespacedName
    port: str  # the port's name ("" when the service has a single unnamed port)
    protocol: Protocol

    def __str__(self) -> str:
        suffix = f":{self.port}" if self.port else ""
        return f"{self.service}{suffix}/{self.protocol.value.lower()}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """Everything a backend needs to render one service port in one IP family."""

    name: ServicePortName
    family: IPFamily
    cluster_ip: IPAddress | None  # None for a headless service (nothing to render)
    port: int
    protocol: Protocol
    node_port: int = 0
    external_ips: tuple[IPAddress, ...] = ()
    load_balancer_ips: tuple[IPAddress, ...] = ()
    load_balancer_source_ranges: tuple[IPNetwork, ...] = ()
    session_affinity_timeout: int | None = None
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def has_external(self) -> bool:
        """True when some destination of this port is reachable from outside the cluster."""
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    ip: IPAddress
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str | None = field(default=None, compare=True)
    zone: str | None = field(default=None, compare=False)
    is_local: bool = False  # on this node (set by the tracker from node_name)

    def __str__(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{host}:{self.port}"
