"""Kubernetes API objects (plain JSON dicts) -> pynet's validated model.

This is the one boundary where raw cluster input is checked. Every function takes the object as the
API serves it (a ``dict`` decoded from JSON or YAML; the API client hands us raw dicts too, never its
model classes) and returns a frozen :mod:`pynet.proxy.model` value, or raises :class:`InvalidObject`
naming the object and a human-readable reason. Nothing here logs or counts: the caller (a source)
does that once, so one bad object never takes the agent down.

Invariants of the output: addresses are ``ipaddress`` objects, ports are 1..65535 (node ports
0..65535, 0 meaning none), protocols are TCP/UDP/SCTP, traffic policies are Cluster/Local.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from pynet.errors import PynetError
from pynet.proxy.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    EndpointSlice,
    IPAddress,
    IPFamily,
    IPNetwork,
    NamespacedName,
    Node,
    Protocol,
    Service,
    ServicePortSpec,
    ServiceType,
    SliceEndpoint,
    SlicePort,
    TrafficPolicy,
)

__all__ = [
    "ANNOTATION_PREFIX",
    "SERVICE_NAME_LABEL",
    "InvalidObject",
    "UnsupportedObject",
    "object_key",
    "to_endpoint_slice",
    "to_node",
    "to_service",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ANNOTATION_PREFIX = "pynet.io/"
MAX_AFFINITY_TIMEOUT = 86400


class InvalidObject(PynetError):
    """A cluster object failed validation; ``reason`` says why. Only that object is skipped."""

    def __init__(self, kind: str, namespace: str, name: str, reason: str) -> None:
        super().__init__(
            f"invalid {kind} {namespace}/{name}: {reason}"
            if namespace
            else f"invalid {kind} {name}: {reason}"
        )
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.reason = reason


class UnsupportedObject(PynetError):
    """A well-formed object pynet deliberately ignores (an FQDN EndpointSlice); not an error."""


class _Reject(Exception):
    """Internal: raised deep in a field check, turned into InvalidObject with the object's identity."""


# --------------------------------------------------------------------------- small field checks


def _map(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):  # JSON/YAML decoders give dicts; dict is far cheaper than the Mapping ABC
        raise _Reject(f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, what: str) -> Sequence[Any]:
    if value is None:
        return ()
    if type(value) is not list and not isinstance(value, list | tuple):
        raise _Reject(f"{what} must be a list, got {type(value).__name__}")
    return value


def _str(value: Any, what: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise _Reject(f"missing {what}")
        return ""
    if not isinstance(value, str):
        raise _Reject(f"{what} must be a string, got {value!r}")
    return value


def _ip(value: Any, what: str) -> IPAddress:
    if not isinstance(value, str):
        raise _Reject(f"{what} must be an IP address string, got {value!r}")
    try:
        # the concrete class first: ip_address() tries v4 then v6 through exceptions
        return ipaddress.IPv6Address(value.strip()) if ":" in value else ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise _Reject(f"invalid IP address {value!r} in {what}") from None


def _cidr(value: Any, what: str) -> IPNetwork:
    if not isinstance(value, str):
        raise _Reject(f"{what} must be a CIDR string, got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _Reject(f"invalid CIDR {value!r} in {what}") from None


def _port(value: Any, what: str, *, allow_zero: bool = False) -> int:
    if value is None and allow_zero:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Reject(f"{what} must be an integer, got {value!r}")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise _Reject(f"{what} {value} out of range {low}-65535")
    return value


def _protocol(value: Any, what: str) -> Protocol:
    if value is None:
        return Protocol.TCP
    try:
        return Protocol(value)
    except ValueError:
        raise _Reject(f"unknown protocol {value!r} in {what}") from None


def _policy(value: Any, what: str) -> TrafficPolicy:
    if value is None or value == "":
        return TrafficPolicy.CLUSTER
    try:
        return TrafficPolicy(value)
    except ValueError:
        raise _Reject(f"unknown {what} {value!r}") from None


def _identity(obj: Any, *, namespaced: bool) -> tuple[str, str]:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(meta, Mapping):
        return ("default" if namespaced else ""), ""
    raw_name, raw_ns = meta.get("name"), meta.get("namespace")
    name = raw_name if isinstance(raw_name, str) else ""
    ns = raw_ns if isinstance(raw_ns, str) and raw_ns else "default"
    return (ns if namespaced else ""), name


def object_key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(kind, namespace, name)`` of a raw object, best effort (used to key events and diffs)."""
    ns, name = _identity(obj, namespaced=kind != "Node")
    return kind, ns, name


def _guard(kind: str, obj: Any, *, namespaced: bool) -> tuple[str, str, Mapping[str, Any]]:
    ns, name = _identity(obj, namespaced=namespaced)
    if not isinstance(obj, Mapping):
        raise InvalidObject(kind, ns, name, f"not an object: {type(obj).__name__}")
    if not name:
        raise InvalidObject(kind, ns, name, "missing metadata.name")
    return ns, name, obj


# --------------------------------------------------------------------------- Service


def to_service(obj: Any) -> Service:
    """Validate a ``v1/Service``. Raises InvalidObject."""
    ns, name, raw = _guard("Service", obj, namespaced=True)
    try:
        return _service(ns, name, raw)
    except _Reject as err:
        raise InvalidObject("Service", ns, name, str(err)) from None


def _service(ns: str, name: str, raw: Mapping[str, Any]) -> Service:
    meta = _map(raw.get("metadata"), "metadata")
    spec = _map(raw.get("spec"), "spec")
    status = _map(raw.get("status"), "status")
    type_raw = spec.get("type") or "ClusterIP"
    try:
        svc_type = ServiceType(type_raw)
    except ValueError:
        raise _Reject(f"unknown spec.type {type_raw!r}") from None

    cluster_ips: tuple[IPAddress, ...] = ()
    if svc_type is not ServiceType.EXTERNAL_NAME:
        raw_ips = list(_list(spec.get("clusterIPs"), "spec.clusterIPs"))
        if not raw_ips and spec.get("clusterIP") not in (None, ""):
            raw_ips = [spec.get("clusterIP")]
        if raw_ips and raw_ips[0] != "None":
            cluster_ips = tuple(_ip(ip, "spec.clusterIPs") for ip in raw_ips)
            if len({ip.version for ip in cluster_ips}) != len(cluster_ips):
                raise _Reject("spec.clusterIPs has two addresses of the same family")

    ports = []
    seen: set[tuple[str, Protocol, int]] = set()
    for i, p in enumerate(_list(spec.get("ports"), "spec.ports")):
        where = f"spec.ports[{i}]"
        p = _map(p, where)
        port = _port(p.get("port"), f"{where}.port")
        protocol = _protocol(p.get("protocol"), f"{where}.protocol")
        target = p.get("targetPort")
        if target is None or target == "":
            target_port: int | str = port
        elif isinstance(target, str) and not target.isdigit():
            target_port = target
        else:
            target_port = _port(int(target) if isinstance(target, str) else target, f"{where}.targetPort")
        node_port = _port(p.get("nodePort"), f"{where}.nodePort", allow_zero=True)
        pname = _str(p.get("name"), f"{where}.name")
        if (pname, protocol, port) in seen:
            raise _Reject(f"duplicate port {pname or port}/{protocol}")
        seen.add((pname, protocol, port))
        ports.append(ServicePortSpec(pname, protocol, port, target_port, node_port))

    external_ips = tuple(
        _ip(ip, "spec.externalIPs") for ip in _list(spec.get("externalIPs"), "spec.externalIPs")
    )
    lb = _map(status.get("loadBalancer"), "status.loadBalancer")
    lb_ips = tuple(
        _ip(ing.get("ip"), "status.loadBalancer.ingress")
        for ing in (_map(i, "status.loadBalancer.ingress[]") for i in _list(lb.get("ingress"), "ingress"))
        if ing.get("ip")
    )
    ranges = tuple(
        _cidr(r, "spec.loadBalancerSourceRanges")
        for r in _list(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")
    )

    affinity = spec.get("sessionAffinity") or "None"
    timeout: int | None = None
    if affinity == "ClientIP":
        cfg = _map(
            _map(spec.get("sessionAffinityConfig"), "sessionAffinityConfig").get("clientIP"), "clientIP"
        )
        raw_timeout = cfg.get("timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
        if (
            isinstance(raw_timeout, bool)
            or not isinstance(raw_timeout, int)
            or not 1 <= raw_timeout <= MAX_AFFINITY_TIMEOUT
        ):
            raise _Reject(
                f"sessionAffinityConfig.clientIP.timeoutSeconds {raw_timeout!r} not in 1-{MAX_AFFINITY_TIMEOUT}"
            )
        timeout = raw_timeout
    elif affinity != "None":
        raise _Reject(f"unknown spec.sessionAffinity {affinity!r}")

    return Service(
        name=NamespacedName(ns, name),
        type=svc_type,
        cluster_ips=cluster_ips,
        ports=tuple(ports),
        external_ips=external_ips,
        load_balancer_ips=lb_ips if svc_type is ServiceType.LOAD_BALANCER else (),
        load_balancer_source_ranges=ranges,
        session_affinity_timeout=timeout,
        external_traffic_policy=_policy(spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy"),
        internal_traffic_policy=_policy(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy"),
        health_check_node_port=_port(
            spec.get("healthCheckNodePort"), "spec.healthCheckNodePort", allow_zero=True
        ),
        resource_version=_str(meta.get("resourceVersion"), "metadata.resourceVersion"),
    )


# --------------------------------------------------------------------------- EndpointSlice


_ADDRESS_TYPES = {"IPv4": IPFamily.V4, "IPv6": IPFamily.V6}


def to_endpoint_slice(obj: Any) -> EndpointSlice:
    """Validate a ``discovery.k8s.io/v1`` EndpointSlice. Raises InvalidObject; UnsupportedObject for FQDN."""
    ns, name, raw = _guard("EndpointSlice", obj, namespaced=True)
    try:
        return _slice(ns, name, raw)
    except _Reject as err:
        raise InvalidObject("EndpointSlice", ns, name, str(err)) from None


def _slice(ns: str, name: str, raw: Mapping[str, Any]) -> EndpointSlice:
    meta = _map(raw.get("metadata"), "metadata")
    labels = _map(meta.get("labels"), "metadata.labels")
    service = _str(labels.get(SERVICE_NAME_LABEL), f"label {SERVICE_NAME_LABEL}", required=True)
    address_type = raw.get("addressType")
    if address_type == "FQDN":
        raise UnsupportedObject(f"EndpointSlice {ns}/{name}: addressType FQDN is not proxied")
    if address_type not in _ADDRESS_TYPES:
        raise _Reject(f"unknown addressType {address_type!r}")
    family = _ADDRESS_TYPES[address_type]

    ports = []
    for i, p in enumerate(_list(raw.get("ports"), "ports")):
        where = f"ports[{i}]"
        p = _map(p, where)
        ports.append(
            SlicePort(
                _str(p.get("name"), f"{where}.name"),
                _protocol(p.get("protocol"), f"{where}.protocol"),
                _port(p.get("port"), f"{where}.port"),
            )
        )

    endpoints = []
    for i, e in enumerate(_list(raw.get("endpoints"), "endpoints")):
        where = f"endpoints[{i}]"
        e = _map(e, where)
        addrs = tuple(_ip(a, f"{where}.addresses") for a in _list(e.get("addresses"), f"{where}.addresses"))
        if not addrs:
            raise _Reject(f"{where}.addresses is empty")
        if any(a.version != family for a in addrs):
            raise _Reject(f"{where}.addresses do not match addressType {address_type}")
        cond = _map(e.get("conditions"), f"{where}.conditions")
        # API semantics: ready unset means ready; serving unset follows ready; terminating unset is False
        ready = cond.get("ready") is not False
        raw_serving = cond.get("serving")
        serving = raw_serving if isinstance(raw_serving, bool) else ready
        endpoints.append(
            SliceEndpoint(
                addresses=addrs,
                ready=ready,
                serving=serving,
                terminating=cond.get("terminating") is True,
                node_name=_str(e.get("nodeName"), f"{where}.nodeName") or None,
                zone=_str(e.get("zone"), f"{where}.zone") or None,
            )
        )

    return EndpointSlice(
        name=NamespacedName(ns, name),
        service=NamespacedName(ns, service),
        family=family,
        ports=tuple(ports),
        endpoints=tuple(endpoints),
        resource_version=_str(meta.get("resourceVersion"), "metadata.resourceVersion"),
    )


# --------------------------------------------------------------------------- Node


def to_node(obj: Any) -> Node:
    """Validate a ``v1/Node`` (addresses, pod CIDRs, labels, ``pynet.io/`` annotations)."""
    ns, name, raw = _guard("Node", obj, namespaced=False)
    try:
        return _node(name, raw)
    except _Reject as err:
        raise InvalidObject("Node", "", name, str(err)) from None


def _node(name: str, raw: Mapping[str, Any]) -> Node:
    meta = _map(raw.get("metadata"), "metadata")
    spec = _map(raw.get("spec"), "spec")
    status = _map(raw.get("status"), "status")
    internal: list[IPAddress] = []
    external: list[IPAddress] = []
    for i, a in enumerate(_list(status.get("addresses"), "status.addresses")):
        a = _map(a, f"status.addresses[{i}]")
        kind = a.get("type")
        if kind == "InternalIP":
            internal.append(_ip(a.get("address"), f"status.addresses[{i}]"))
        elif kind == "ExternalIP":
            external.append(_ip(a.get("address"), f"status.addresses[{i}]"))
    addresses = tuple(dict.fromkeys(internal + external))
    raw_cidrs = list(_list(spec.get("podCIDRs"), "spec.podCIDRs"))
    if not raw_cidrs and spec.get("podCIDR"):
        raw_cidrs = [spec.get("podCIDR")]
    pod_cidrs = tuple(_cidr(c, "spec.podCIDRs") for c in raw_cidrs)
    labels = _map(meta.get("labels"), "metadata.labels")
    annotations = _map(meta.get("annotations"), "metadata.annotations")
    return Node(
        name=name,
        addresses=addresses,
        pod_cidrs=pod_cidrs,
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        annotations=tuple(
            sorted((str(k), str(v)) for k, v in annotations.items() if str(k).startswith(ANNOTATION_PREFIX))
        ),
        resource_version=_str(meta.get("resourceVersion"), "metadata.resourceVersion"),
    )
