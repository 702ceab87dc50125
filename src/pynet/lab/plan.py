"""The lab's plan: every name and address of a lab, computed from a few parameters. Pure.

Address plan (documented once, here, and in docs/lab.md):

- underlay: one bridge ``br0`` in the namespace ``pynetlab-<lab>-ul``; 192.168.100.0/24
- node *i* (1-based): namespace ``pynetlab-<lab>-node<i>``, ``eth0`` = 192.168.100.(10+i)/24,
  pod CIDR 10.244.<i>.0/24, VTEP address 10.244.<i>.0/32 on ``pynet-vxlan``
- pod *j* on node *i*: namespace ``pynetlab-<lab>-n<i>p<j>``, address from the node's IPAM
- the "external" client: namespace ``pynetlab-<lab>-ext``, 192.168.100.200/24
- services: 10.96.0.0/16 (``echo`` 10.96.0.10 with NodePort 30080 over every pod; ``away-node<i>``
  10.96.1.<i> over the pods NOT on node *i*)

Lab names are 1-12 characters of ``[a-z0-9]``: no dash, so the prefix ``pynetlab-<lab>-`` of one lab
can never match the namespaces of another, and every namespace name stays under 30 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from pynet.errors import ConfigError

__all__ = [
    "BACKENDS",
    "CLUSTER_CIDR",
    "ECHO_CLUSTER_IP",
    "ECHO_NODE_PORT",
    "EXTERNAL_IP",
    "LAB_ROOT",
    "OVERLAYS",
    "POD_BULK_PORT",
    "POD_ECHO_PORT",
    "SERVICE_CIDR",
    "LabPlan",
    "NodePlan",
    "PodPlan",
    "validate_name",
]

LAB_ROOT = Path("/run/pynet-lab")
NETNS_PREFIX = "pynetlab"
UNDERLAY_NET = IPv4Network("192.168.100.0/24")
EXTERNAL_IP = IPv4Interface("192.168.100.200/24")
CLUSTER_CIDR = IPv4Network("10.244.0.0/16")
SERVICE_CIDR = IPv4Network("10.96.0.0/16")
ECHO_CLUSTER_IP = IPv4Address("10.96.0.10")
ECHO_SERVICE_PORT = 80
ECHO_NODE_PORT = 30080
POD_ECHO_PORT = 8080
POD_BULK_PORT = 8081
UNDERLAY_MTU = 1500
MAX_NODES = 50
MAX_PODS = 50
BACKENDS = ("nftables", "iptables")
OVERLAYS = ("vxlan", "host-gw")
_NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ConfigError(f"lab name {name!r}: use 1-12 characters of a-z and 0-9 (no dashes)")
    return name


@dataclass(frozen=True, slots=True)
class PodPlan:
    node: int
    index: int
    name: str  # the Kubernetes-style pod name
    netns: str
    container_id: str


@dataclass(frozen=True, slots=True)
class NodePlan:
    index: int
    name: str  # node<i>: the Node object's name and --node-name
    netns: str
    address: IPv4Interface
    pod_cidr: IPv4Network
    underlay_port: str  # the veth end on the underlay bridge
    pods: tuple[PodPlan, ...]

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip


@dataclass(frozen=True, slots=True)
class LabPlan:
    name: str
    nodes: tuple[NodePlan, ...]
    backend: str
    overlay: str
    root: Path

    @classmethod
    def build(cls, name: str, *, nodes: int = 3, pods_per_node: int = 2, backend: str = "nftables",
              overlay: str = "vxlan", root: Path = LAB_ROOT) -> LabPlan:
        validate_name(name)
        if not 1 <= nodes <= MAX_NODES:
            raise ConfigError(f"--nodes must be 1..{MAX_NODES}")
        if not 0 <= pods_per_node <= MAX_PODS:
            raise ConfigError(f"--pods-per-node must be 0..{MAX_PODS}")
        if backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}")
        if overlay not in OVERLAYS:
            raise ConfigError(f"--overlay must be one of {', '.join(OVERLAYS)}")
        base = f"{NETNS_PREFIX}-{name}"
        node_plans = []
        for i in range(1, nodes + 1):
            pods = tuple(
                PodPlan(node=i, index=j, name=f"pod-{i}-{j}", netns=f"{base}-n{i}p{j}", container_id=f"{base}-n{i}p{j}")
                for j in range(1, pods_per_node + 1)
            )
            node_plans.append(NodePlan(
                index=i, name=f"node{i}", netns=f"{base}-node{i}",
                address=IPv4Interface(f"{UNDERLAY_NET.network_address + 10 + i}/{UNDERLAY_NET.prefixlen}"),
                pod_cidr=IPv4Network(f"10.244.{i}.0/24"), underlay_port=f"n{i}", pods=pods,
            ))
        return cls(name=name, nodes=tuple(node_plans), backend=backend, overlay=overlay, root=root / name)

    # ---------------------------------------------------------------- names and paths

    @property
    def prefix(self) -> str:
        """Every namespace of this lab starts with this (and no other lab's does)."""
        return f"{NETNS_PREFIX}-{self.name}-"

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}ul"

    @property
    def external_netns(self) -> str:
        return f"{self.prefix}ext"

    @property
    def manifest_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def node_dir(self, node: NodePlan) -> Path:
        return self.root / node.name

    def pods(self) -> list[PodPlan]:
        return [p for n in self.nodes for p in n.pods]

    def node(self, index: int) -> NodePlan:
        return self.nodes[index - 1]

    def all_netns(self) -> list[str]:
        return [self.underlay_netns, self.external_netns, *(n.netns for n in self.nodes),
                *(p.netns for p in self.pods())]
