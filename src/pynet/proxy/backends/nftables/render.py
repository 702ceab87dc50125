"""Pure rendering of the nftables backend: the static skeleton and one service's objects.

Layout of table ``ip pynet`` (``ip6 pynet`` for IPv6), after kube-proxy's nftables proxier:

* dispatch maps, O(1) whatever the number of services:
  ``service-ips`` (daddr . l4proto . dport : verdict) for cluster IPs, external IPs and LoadBalancer
  IPs; ``service-nodeports`` (l4proto . dport : verdict), consulted only for daddr in the
  ``nodeport-ips`` set; ``no-endpoint-services`` / ``no-endpoint-nodeports`` (reject or drop for
  ports without usable endpoints), ``firewall-ips`` (loadBalancerSourceRanges) and the
  ``cluster-ips`` set (reject traffic to a cluster IP on a port that is not a service port);
* base chains: ``nat-prerouting``/``nat-output`` (dstnat) jump to ``services``;
  ``nat-postrouting`` (srcnat) masquerades packets carrying MASQ_MARK; ``filter-*`` chains (priority
  filter-10, before/after DNAT) run the endpoint, firewall and cluster-IP checks for new connections;
* per service port: ``service-*`` (cluster policy: masquerade off-cluster clients of the cluster IP,
  session affinity, then ``numgen random mod N-i 0 goto`` rules choosing an endpoint chain
  uniformly), ``local-*`` (the same over local
  endpoints, for internalTrafficPolicy/externalTrafficPolicy Local), ``external-*`` (NodePort,
  external and LB IPs: masquerade, or with ETP Local keep the client address and use local
  endpoints), ``firewall-*`` (source ranges), ``endpoint-*`` (hairpin masquerade, affinity update,
  DNAT) and ``affinity-*`` sets (ClientIP affinity with the service's timeout).

Semantics (which endpoints serve what) come only from :func:`pynet.proxy.topology.categorize_endpoints`.
Everything here is a pure function of its arguments, so it is unit-tested without a kernel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pynet.nft.objects import Chain, Map, Set
from pynet.proxy.backends.nftables.naming import affinity_set, endpoint_chain, port_chain, port_chains
from pynet.proxy.model import Endpoint, IPAddress, IPFamily, IPNetwork, ServicePort
from pynet.proxy.topology import categorize_endpoints

__all__ = [
    "BASE_CHAINS",
    "MASQ_MARK",
    "REJECT_CHAIN",
    "STATIC_CHAINS",
    "Globals",
    "Rendered",
    "render_base_maps",
    "render_service_port",
    "static_rules",
]

#: the packet mark bit meaning "masquerade me in postrouting" (kube-proxy's 0x4000)
MASQ_MARK = 0x4000
REJECT_CHAIN = "reject-chain"
MARK_CHAIN = "mark-for-masquerade"

# (name, type, hook, priority): filter chains at filter-10 run before conntrack-confirmed DNAT'd
# packets reach other filter chains; output-post-dnat (-90) sees the translated destination.
BASE_CHAINS: tuple[Chain, ...] = (
    Chain("filter-prerouting", "filter", "prerouting", -110),
    Chain("filter-input", "filter", "input", -110),
    Chain("filter-forward", "filter", "forward", -110),
    Chain("filter-output", "filter", "output", -110),
    Chain("filter-output-post-dnat", "filter", "output", -90),
    Chain("nat-prerouting", "nat", "prerouting", -100),
    Chain("nat-output", "nat", "output", -100),
    Chain("nat-postrouting", "nat", "postrouting", 100),
)
STATIC_CHAINS: tuple[Chain, ...] = (
    Chain("services"),
    Chain("firewall-check"),
    Chain("service-endpoints-check"),
    Chain("nodeport-endpoints-check"),
    Chain("cluster-ips-check"),
    Chain(MARK_CHAIN),
    Chain("masquerading"),
    Chain(REJECT_CHAIN),
)


@dataclass(frozen=True, slots=True)
class Globals:
    """The node-wide inputs that every service's rendering depends on."""

    family: IPFamily
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    nodeport_ips: tuple[IPAddress, ...] = ()

    @property
    def ip(self) -> str:
        return "ip" if self.family == IPFamily.V4 else "ip6"

    @property
    def addr_type(self) -> str:
        return "ipv4_addr" if self.family == IPFamily.V4 else "ipv6_addr"


def render_base_maps(g: Globals) -> list[Set | Map]:
    a = g.addr_type
    return [
        Set("cluster-ips", a, comment="active cluster IPs"),
        Set("nodeport-ips", a, comment="addresses NodePorts answer on"),
        Map("service-ips", f"{a} . inet_proto . inet_service : verdict", comment="ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        Map("service-nodeports", "inet_proto . inet_service : verdict", comment="NodePort traffic"),
        Map("no-endpoint-services", f"{a} . inet_proto . inet_service : verdict", comment="services without usable endpoints"),
        Map("no-endpoint-nodeports", "inet_proto . inet_service : verdict", comment="NodePorts without usable endpoints"),
        Map("firewall-ips", f"{a} . inet_proto . inet_service : verdict", comment="destinations with loadBalancerSourceRanges"),
    ]


def static_rules(g: Globals) -> dict[str, list[str]]:
    """Rules of the base and static chains (they depend only on the family)."""
    ip = g.ip
    return {
        "filter-prerouting": ["ct state new jump firewall-check"],
        "filter-input": ["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"],
        "filter-forward": ["ct state new jump service-endpoints-check", "ct state new jump cluster-ips-check"],
        "filter-output": ["ct state new jump service-endpoints-check", "ct state new jump firewall-check"],
        "filter-output-post-dnat": ["ct state new jump cluster-ips-check"],
        "nat-prerouting": ["jump services"],
        "nat-output": ["jump services"],
        "nat-postrouting": ["jump masquerading"],
        "services": [
            f"{ip} daddr . meta l4proto . th dport vmap @service-ips",
            f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        ],
        "firewall-check": [f"{ip} daddr . meta l4proto . th dport vmap @firewall-ips"],
        "service-endpoints-check": [f"{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"],
        "nodeport-endpoints-check": [f"{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"],
        # kube-proxy's cluster-ips-check: a cluster IP on a port that is no service port (packets to
        # real service ports were DNATed before this runs)
        "cluster-ips-check": [f"{ip} daddr @cluster-ips reject"],
        MARK_CHAIN: [f"meta mark set meta mark | {MASQ_MARK:#x}"],
        "masquerading": [
            f"meta mark & {MASQ_MARK:#x} == 0 return",
            f"meta mark set meta mark ^ {MASQ_MARK:#x}",
            "masquerade fully-random",
        ],
        REJECT_CHAIN: ["meta l4proto tcp reject with tcp reset", "reject"],
    }


@dataclass
class Rendered:
    """Everything one service owns: chains with their rules, affinity sets, map/set elements."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets: dict[str, Set] = field(default_factory=dict)
    #: (set or map name, key) -> value (None for set elements)
    elements: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def merge(self, other: Rendered) -> None:
        self.chains.update(other.chains)
        self.sets.update(other.sets)
        for k, v in other.elements.items():
            self.elements.setdefault(k, v)


def _set_literal(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def _policy_chain(
    sp: ServicePort, eps: Sequence[Endpoint], g: Globals, out: Rendered, *, masq_cluster_ip: bool
) -> tuple[str, ...]:
    ip, proto = g.ip, sp.protocol.value.lower()
    rules: list[str] = []
    if masq_cluster_ip and g.cluster_cidrs and sp.cluster_ip is not None:
        rules.append(
            f"{ip} daddr {sp.cluster_ip} meta l4proto {proto} th dport {sp.port} "
            f"{ip} saddr != {_set_literal(g.cluster_cidrs)} jump {MARK_CHAIN}"
        )
    ip_texts = [str(ep.ip) for ep in eps]  # str() of an address is slow; each is used 3-4 times
    chains = [endpoint_chain(sp, ep, ip_text=t) for ep, t in zip(eps, ip_texts, strict=True)]
    if sp.session_affinity_timeout is not None:
        for ep, chain in zip(eps, chains, strict=True):
            rules.append(f"{ip} saddr @{affinity_set(sp, ep, sp.session_affinity_timeout)} goto {chain}")
    # Uniform choice without sets: rule i matches with probability 1/(N-i), the last one always.
    # (An anonymous `numgen ... vmap { }` per service would be one anonymous set each, and the
    # kernel's anonymous-set naming scans every set of the table: quadratic, 77 s at 10,000.)
    for i, chain in enumerate(chains):
        left = len(chains) - i
        rules.append(f"numgen random mod {left} 0 goto {chain}" if left > 1 else f"goto {chain}")
    for ep, chain, ip_text in zip(eps, chains, ip_texts, strict=True):
        if chain in out.chains:
            continue
        ep_rules = [f"{ip} saddr {ip_text} jump {MARK_CHAIN}"]  # hairpin: a pod reaching itself
        if sp.session_affinity_timeout is not None:
            name = affinity_set(sp, ep, sp.session_affinity_timeout)
            out.sets[name] = Set(name, g.addr_type, flags=("dynamic", "timeout"), timeout=sp.session_affinity_timeout)
            ep_rules.append(f"update @{name} {{ {ip} saddr }}")
        host = f"[{ip_text}]" if ep.ip.version == 6 else ip_text  # str(ep), without a second str(ip)
        ep_rules.append(f"meta l4proto {proto} dnat to {host}:{ep.port}")
        out.chains[chain] = tuple(ep_rules)
    return tuple(rules)


def render_service_port(sp: ServicePort, endpoints: Sequence[Endpoint], g: Globals) -> Rendered:
    """All objects of one service port (empty for a headless port)."""
    out = Rendered()
    if sp.cluster_ip is None:
        return out
    cat = categorize_endpoints(sp, endpoints)
    proto = sp.protocol.value.lower()
    cluster_chain, local_chain, external_chain = port_chains(sp)
    uses_cluster = bool(cat.cluster) and (not sp.internal_policy_local or sp.has_external)
    uses_local = bool(cat.local) and (sp.internal_policy_local or (sp.has_external and sp.external_policy_local))
    if uses_cluster:
        out.chains[cluster_chain] = _policy_chain(sp, cat.cluster, g, out, masq_cluster_ip=True)
    if uses_local:
        out.chains[local_chain] = _policy_chain(sp, cat.local, g, out, masq_cluster_ip=False)

    def key(addr: IPAddress, port: int) -> str:
        return f"{addr} . {proto} . {port}"

    # --- internal traffic: the cluster IP
    cip = key(sp.cluster_ip, sp.port)
    out.elements[("cluster-ips", str(sp.cluster_ip))] = None
    if cat.internal:
        out.elements[("service-ips", cip)] = f"goto {local_chain if sp.internal_policy_local else cluster_chain}"
    else:
        out.elements[("no-endpoint-services", cip)] = f"goto {REJECT_CHAIN}"

    if not sp.has_external:
        return out
    # --- external traffic: NodePort, external IPs, LoadBalancer IPs
    externals = [key(a, sp.port) for a in (*sp.external_ips, *sp.load_balancer_ips)]
    nodeport = f"{proto} . {sp.node_port}" if sp.node_port else None
    if cat.external:
        rules: list[str] = []
        if not sp.external_policy_local:
            rules += [f"jump {MARK_CHAIN}", f"goto {cluster_chain}"]
        else:
            if g.cluster_cidrs:  # pods may use any endpoint: short-circuit to the cluster chain
                rules.append(f"{g.ip} saddr {_set_literal(g.cluster_cidrs)} goto {cluster_chain}")
            # the node itself has no "local" client IP worth keeping: masquerade, cluster-wide
            rules += [f"fib saddr type local jump {MARK_CHAIN}", f"fib saddr type local goto {cluster_chain}"]
            rules.append(f"goto {local_chain}")
        out.chains[external_chain] = tuple(rules)
        for k in externals:
            out.elements[("service-ips", k)] = f"goto {external_chain}"
        if nodeport:
            out.elements[("service-nodeports", nodeport)] = f"goto {external_chain}"
    else:
        # ETP Local with endpoints only elsewhere: drop (the LB should not pick this node); else reject
        verdict = "drop" if sp.external_policy_local and cat.cluster else f"goto {REJECT_CHAIN}"
        for k in externals:
            out.elements[("no-endpoint-services", k)] = verdict
        if nodeport:
            out.elements[("no-endpoint-nodeports", nodeport)] = verdict
    if sp.load_balancer_source_ranges and sp.load_balancer_ips:
        fw = port_chain("firewall", sp)
        out.chains[fw] = (f"{g.ip} saddr != {_set_literal(sp.load_balancer_source_ranges)} drop",)
        for a in sp.load_balancer_ips:
            out.elements[("firewall-ips", key(a, sp.port))] = f"goto {fw}"
    return out
