"""The lab's Kubernetes manifests: Nodes, example Services and their EndpointSlices. Pure rendering,
plus one atomic writer.

The agents read these with ``--source DIR`` exactly as they would read a cluster: ``nodes.yaml`` is
written before the agents start (each agent learns its pod CIDR and its peers from it);
``services.yaml`` after the pods exist, since the EndpointSlices list the addresses their IPAM gave.
Files are replaced by rename, so an agent polling the directory never reads half a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from pynet.lab.plan import (
    ECHO_CLUSTER_IP,
    ECHO_NODE_PORT,
    ECHO_SERVICE_PORT,
    POD_ECHO_PORT,
    LabPlan,
    NodePlan,
    PodPlan,
)

__all__ = [
    "NAMESPACE",
    "ServiceInfo",
    "away_service_ip",
    "render_nodes",
    "render_services",
    "service_catalogue",
    "write_manifest",
]

NAMESPACE = "lab"
Doc = dict[str, Any]


def away_service_ip(node_index: int) -> IPv4Address:
    return IPv4Address(f"10.96.1.{node_index}")


def render_node(node: NodePlan) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name, "pynet.io/lab": "true"}},
        "spec": {"podCIDR": str(node.pod_cidr), "podCIDRs": [str(node.pod_cidr)]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": str(node.ip)},
            {"type": "Hostname", "address": node.name},
        ]},
    }


def render_nodes(plan: LabPlan, *, exclude: Sequence[str] = ()) -> list[Doc]:
    return [render_node(n) for n in plan.nodes if n.name not in exclude]


class ServiceInfo:
    """One example service: name, ClusterIP, optional NodePort, and which pods back it."""

    __slots__ = ("cluster_ip", "name", "node_port", "pods")

    def __init__(self, name: str, cluster_ip: IPv4Address, pods: Sequence[PodPlan], node_port: int = 0) -> None:
        self.name = name
        self.cluster_ip = cluster_ip
        self.pods = tuple(pods)
        self.node_port = node_port


def service_catalogue(plan: LabPlan) -> list[ServiceInfo]:
    """``echo`` over every pod (ClusterIP + NodePort), and per node ``away-node<i>`` over the pods of
    the OTHER nodes (proves a node reaches a service whose endpoints all live elsewhere)."""
    pods = plan.pods()
    out = [ServiceInfo("echo", ECHO_CLUSTER_IP, pods, ECHO_NODE_PORT)]
    if len(plan.nodes) > 1:
        for n in plan.nodes:
            out.append(ServiceInfo(f"away-{n.name}", away_service_ip(n.index), [p for p in pods if p.node != n.index]))
    return out


def render_services(plan: LabPlan, pod_ips: Mapping[str, IPv4Address]) -> list[Doc]:
    """Service + EndpointSlice documents; pods without an address are left out of the slices."""
    docs: list[Doc] = []
    for svc in service_catalogue(plan):
        port: Doc = {"name": "http", "protocol": "TCP", "port": ECHO_SERVICE_PORT, "targetPort": POD_ECHO_PORT}
        if svc.node_port:
            port["nodePort"] = svc.node_port
        docs.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": svc.name, "namespace": NAMESPACE},
            "spec": {
                "type": "NodePort" if svc.node_port else "ClusterIP",
                "clusterIP": str(svc.cluster_ip),
                "clusterIPs": [str(svc.cluster_ip)],
                "ipFamilies": ["IPv4"],
                "selector": {"app": svc.name},
                "ports": [port],
            },
        })
        endpoints = [
            {
                "addresses": [str(pod_ips[p.name])],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": f"node{p.node}",
                "targetRef": {"kind": "Pod", "namespace": NAMESPACE, "name": p.name},
            }
            for p in svc.pods
            if p.name in pod_ips
        ]
        docs.append({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{svc.name}-1",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": svc.name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": POD_ECHO_PORT}],
            "endpoints": endpoints,
        })
    return docs


def dump_documents(docs: Sequence[Doc]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def write_manifest(directory: Path, filename: str, docs: Sequence[Doc]) -> Path:
    """Write ``docs`` to ``directory/filename`` atomically (hidden temp file, then rename)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename
    tmp = directory / f".{filename}.tmp"
    tmp.write_text(dump_documents(docs))
    os.replace(tmp, target)
    return target
