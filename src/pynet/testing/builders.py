"""Builders for raw Kubernetes objects (the dicts an API server or a manifest holds), for tests and benches.

IP plan used throughout the tests: service cluster IPs in 10.96.0.0/16, pod IPs in 10.244.N.0/24
(node N), node addresses in 192.168.50.0/24, external IPs in 203.0.113.0/24.
Every builder returns a fresh dict; pass ``**spec`` overrides to change ``spec`` fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["make_node", "make_service", "make_slice", "port"]


def port(
    number: int,
    *,
    name: str = "",
    protocol: str = "TCP",
    target: int | str | None = None,
    node_port: int | None = None,
) -> dict[str, Any]:
    p: dict[str, Any] = {"port": number, "protocol": protocol}
    if name:
        p["name"] = name
    if target is not None:
        p["targetPort"] = target
    if node_port is not None:
        p["nodePort"] = node_port
    return p


def make_service(
    name: str,
    cluster_ip: str | None,
    ports: Sequence[Mapping[str, Any]] = (),
    *,
    namespace: str = "default",
    type: str = "ClusterIP",
    lb_ips: Iterable[str] = (),
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, "ports": [dict(p) for p in ports] or [port(80)]}
    if cluster_ip is not None:
        body["clusterIP"] = cluster_ip
        body["clusterIPs"] = [cluster_ip]
    body.update(spec)
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }
    lb = list(lb_ips)
    if lb:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb]}}
    return obj


def make_slice(
    service: str,
    endpoints: Sequence[str | Mapping[str, Any]],
    ports: Sequence[Mapping[str, Any]] = (),
    *,
    name: str | None = None,
    namespace: str = "default",
    address_type: str = "IPv4",
    node_name: str | None = None,
) -> dict[str, Any]:
    """Endpoints are IP strings (ready, on ``node_name``) or full endpoint dicts."""
    eps = []
    for ep in endpoints:
        if isinstance(ep, str):
            d: dict[str, Any] = {
                "addresses": [ep],
                "conditions": {"ready": True, "serving": True, "terminating": False},
            }
            if node_name:
                d["nodeName"] = node_name
            eps.append(d)
        else:
            eps.append(dict(ep))
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service}-abc12",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "ports": [dict(p) for p in ports] or [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": eps,
    }


def make_node(
    name: str,
    addresses: Sequence[str] = (),
    pod_cidrs: Sequence[str] = (),
    *,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "addresses": [{"type": "InternalIP", "address": a} for a in addresses]
            + [{"type": "Hostname", "address": name}]
        },
    }
    if pod_cidrs:
        obj["spec"] = {"podCIDR": pod_cidrs[0], "podCIDRs": list(pod_cidrs)}
    if annotations:
        obj["metadata"]["annotations"] = dict(annotations)
    return obj
