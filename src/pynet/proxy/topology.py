"""Endpoint categorisation: which endpoints serve which traffic (kube-proxy's CategorizeEndpoints).

Pure and central, so that every backend gets the same semantics:

* usable endpoints are the *ready* ones; when a policy's candidate set has no ready endpoint, it falls
  back to endpoints that are *serving and terminating* (KEP-1669, graceful termination);
* ``cluster`` endpoints serve traffic under the Cluster policy: all usable endpoints;
* ``local`` endpoints serve traffic under the Local policy: usable endpoints on this node;
* ``internal``/``external`` are what internally- and externally-originated traffic should use, per
  ``internalTrafficPolicy`` and ``externalTrafficPolicy``;
* an empty list means "no usable endpoint": the backend REJECTs (or, for Local external traffic
  with endpoints elsewhere, drops, as kube-proxy does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pynet.proxy.model import Endpoint, ServicePort

__all__ = ["Categorized", "categorize_endpoints"]


@dataclass(frozen=True, slots=True)
class Categorized:
    cluster: tuple[Endpoint, ...]
    local: tuple[Endpoint, ...]
    internal: tuple[Endpoint, ...]  # for traffic from inside the cluster
    external: tuple[Endpoint, ...]  # for NodePort / ExternalIP / LoadBalancer traffic
    has_any: bool  # the port has at least one endpoint at all (even unusable)


def _usable(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    ready = tuple(ep for ep in endpoints if ep.ready)
    if ready:
        return ready
    return tuple(ep for ep in endpoints if ep.serving and ep.terminating)


def categorize_endpoints(port: ServicePort, endpoints: Sequence[Endpoint]) -> Categorized:
    """Split ``endpoints`` of ``port`` by the traffic each should serve.

    >>> from ipaddress import ip_address as ip
    >>> from pynet.proxy.model import *
    >>> spn = ServicePortName(NamespacedName("d", "s"), "", Protocol.TCP)
    >>> sp = ServicePort(spn, IPFamily.V4, ip("10.96.0.1"), 80, Protocol.TCP, external_policy_local=True, node_port=30080)
    >>> eps = [Endpoint(ip("10.0.1.2"), 80, is_local=True), Endpoint(ip("10.0.2.2"), 80)]
    >>> c = categorize_endpoints(sp, eps)
    >>> [str(e) for e in c.internal], [str(e) for e in c.external]
    (['10.0.1.2:80', '10.0.2.2:80'], ['10.0.1.2:80'])
    """
    ordered = sorted(endpoints)
    cluster = _usable(ordered)
    local = _usable([ep for ep in ordered if ep.is_local])
    internal = local if port.internal_policy_local else cluster
    external = local if port.external_policy_local else cluster
    return Categorized(cluster=cluster, local=local, internal=internal, external=external, has_any=bool(ordered))
