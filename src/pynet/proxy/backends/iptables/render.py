"""Pure rendering of service ports into iptables rule text (kube-proxy's structure, PYNET- names).

One :class:`PortFragment` per service port holds everything that port contributes: its own chains
(``SVC``/``SVL``/``EXT``/``FW``/``SEP``), its destinations for the nat dispatch, its NodePort rules and its
filter-table REJECT/DROP rules. The backend caches fragments, so a partial sync re-renders only the
ports of changed services and rebuilds the shared chains from the cache.

Semantics come from :func:`pynet.proxy.topology.categorize_endpoints`, as in kube-proxy:

* no usable endpoint at all -> REJECT in the filter table for every destination of the port;
* ``internalTrafficPolicy: Local`` without a local endpoint -> DROP for the cluster IP;
* ``externalTrafficPolicy: Local`` without a local endpoint -> DROP for external destinations, except
  that pod traffic (from ``cluster_cidrs``) and the node's own traffic are short-circuited to the
  cluster-wide endpoints, the node's own masqueraded;
* traffic to a cluster IP from outside ``cluster_cidrs`` is masqueraded; so is all external traffic
  under the Cluster policy, and hairpin traffic (an endpoint reaching itself);
* ``loadBalancerSourceRanges``: the FW chain accepts only those sources; the rest is dropped in the
  filter table (it was not DNATed, so it still carries the load-balancer destination).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from types import MappingProxyType

from pynet.iptables import quote
from pynet.proxy.backends.iptables import naming as n
from pynet.proxy.model import Endpoint, IPAddress, IPFamily, IPNetwork, Protocol, ServicePort
from pynet.proxy.topology import categorize_endpoints

__all__ = ["DispatchEntry", "PortFragment", "RenderContext", "host", "proto_match", "render_port", "static_chains"]


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What every port's rules depend on besides the port itself (a change forces a full sync)."""

    family: IPFamily
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    nodeport_ips: tuple[IPAddress, ...] = ()
    masq_mark: int = 0x4000


@dataclass(frozen=True, slots=True)
class DispatchEntry:
    """One destination (ip, protocol, port) that the nat dispatch sends to ``target``.

    The rule text and the ipset member are rendered once, here: the dispatch tree is rebuilt from
    thousands of cached entries on every sync.
    """

    ip: IPAddress
    protocol: str  # "tcp" | "udp" | "sctp"
    port: int
    target: str
    comment: str
    text: str = field(default="", compare=False)
    set_member: str = field(default="", compare=False)
    key: tuple[int, str, int] = field(default=(0, "", 0), compare=False)  # sort order: by address

    @classmethod
    def make(cls, ip: IPAddress, protocol: str, port: int, target: str, comment: str) -> DispatchEntry:
        text = f"-m comment --comment {quote(comment)} -d {host(ip)} {proto_match(protocol, port)} -j {target}"
        return cls(ip, protocol, port, target, comment, text, f"{ip},{protocol}:{port}", (int(ip), protocol, port))

    def rule(self) -> str:
        return self.text or DispatchEntry.make(self.ip, self.protocol, self.port, self.target, self.comment).text


def _empty_chains() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PortFragment:
    nat_chains: Mapping[str, tuple[str, ...]] = field(default_factory=_empty_chains)
    dispatch: tuple[DispatchEntry, ...] = ()
    nodeports: tuple[str, ...] = ()  # nat PYNET-NODEPORTS rules
    filter_services: tuple[str, ...] = ()  # filter PYNET-SERVICES (cluster IPs)
    filter_external: tuple[str, ...] = ()  # filter PYNET-EXTERNAL-SERVICES (external IPs, LB IPs)
    filter_nodeports: tuple[str, ...] = ()  # filter PYNET-NODEPORTS
    cluster_ip: str = ""  # for the "known cluster IP, unknown port" REJECT


def host(ip: IPAddress | IPNetwork) -> str:
    if isinstance(ip, IPv4Network | IPv6Network):
        return str(ip)
    return f"{ip}/{ip.max_prefixlen}"


def proto_match(protocol: str, port: int) -> str:
    return f"-p {protocol} -m {protocol} --dport {port}"


_PROTO = {p: p.value.lower() for p in Protocol}


def _balance(chains: Sequence[str], affinity: int | None) -> list[str]:
    """The rules of a SVC/SVL chain: affinity checks first, then statistic-mode random choice."""
    rules: list[str] = []
    if affinity is not None:
        rules.extend(f"-m recent --name {c} --rcheck --seconds {affinity} --reap -j {c}" for c in chains)
    count = len(chains)
    for i, c in enumerate(chains):
        if i < count - 1:
            rules.append(f"-m statistic --mode random --probability {1.0 / (count - i):0.10f} -j {c}")
        else:
            rules.append(f"-j {c}")
    return rules


def _sep_rules(ep: Endpoint, chain: str, protocol: str, affinity: int | None) -> tuple[str, ...]:
    recent = f"-m recent --name {chain} --set " if affinity is not None else ""
    ip = str(ep.ip)
    if ep.ip.version == 6:
        src, to = f"{ip}/128", f"[{ip}]:{ep.port}"
    else:
        src, to = f"{ip}/32", f"{ip}:{ep.port}"
    return (
        f"-s {src} -j {n.MARK_MASQ}",  # hairpin: the endpoint reaching itself
        f"-p {protocol} {recent}-m {protocol} -j DNAT --to-destination {to}",
    )


def render_port(sp: ServicePort, endpoints: Iterable[Endpoint], ctx: RenderContext) -> PortFragment:
    """Everything one service port contributes to the ruleset (pure)."""
    if sp.cluster_ip is None:
        return PortFragment()
    cat = categorize_endpoints(sp, tuple(endpoints))
    proto = _PROTO[sp.protocol]
    name = sp.name
    label = n.port_key(name)
    svc, svl, ext, fw = (n.chain_for(k, name) for k in ("SVC", "SVL", "EXT", "FW"))
    cip = host(sp.cluster_ip)
    match = proto_match(proto, sp.port)
    has_endpoints = bool(cat.cluster)
    externals: list[IPAddress] = [*sp.external_ips, *sp.load_balancer_ips]

    chains: dict[str, tuple[str, ...]] = {}
    dispatch: list[DispatchEntry] = []
    nodeports: list[str] = []
    f_services: list[str] = []
    f_external: list[str] = []
    f_nodeports: list[str] = []
    affinity = sp.session_affinity_timeout

    def endpoint_chains(eps: Sequence[Endpoint]) -> list[str]:
        out = []
        for ep in eps:
            c = n.endpoint_chain(name, ep)
            if c not in chains:
                chains[c] = _sep_rules(ep, c, proto, affinity)
            out.append(c)
        return out

    uses_svc = has_endpoints and (not sp.internal_policy_local or sp.has_external)
    uses_svl = bool(cat.local) and (sp.internal_policy_local or (sp.has_external and sp.external_policy_local))
    masq_cluster = (f"-d {cip} {match} -j {n.MARK_NONCLUSTER}",) if ctx.cluster_cidrs else ()
    if uses_svc:
        lead = masq_cluster if not sp.internal_policy_local else ()
        chains[svc] = (*lead, *_balance(endpoint_chains(cat.cluster), affinity))
    if uses_svl:
        lead = masq_cluster if sp.internal_policy_local else ()
        chains[svl] = (*lead, *_balance(endpoint_chains(cat.local), affinity))

    # cluster IP
    if cat.internal:
        target = svl if sp.internal_policy_local else svc
        dispatch.append(DispatchEntry.make(sp.cluster_ip, proto, sp.port, target, f"{label} cluster IP"))
    elif not has_endpoints:
        f_services.append(f"-m comment --comment {quote(label + ' has no endpoints')} -d {cip} {match} -j REJECT")
    else:
        f_services.append(f"-m comment --comment {quote(label + ' has no local endpoints')} -d {cip} {match} -j DROP")

    # external destinations: ExternalIPs, LoadBalancer IPs, NodePorts
    if sp.has_external:
        if not has_endpoints:
            verdict, why = "REJECT", "has no endpoints"
        elif not cat.external:
            verdict, why = "DROP", "has no local endpoints"
        else:
            verdict, why = "", ""
        if has_endpoints:
            rules: list[str] = []
            if sp.external_policy_local:
                rules.extend(f"-s {cidr} -j {svc}" for cidr in ctx.cluster_cidrs)  # pods: short-circuit
                rules.append(f"-m addrtype --src-type LOCAL -j {n.MARK_MASQ}")
                rules.append(f"-m addrtype --src-type LOCAL -j {svc}")
                if cat.external:
                    rules.append(f"-j {svl}")
            else:
                rules.append(f"-j {n.MARK_MASQ}")
                rules.append(f"-j {svc}")
            chains[ext] = tuple(rules)
            for ip in sp.external_ips:
                dispatch.append(DispatchEntry.make(ip, proto, sp.port, ext, f"{label} external IP"))
            lb_target = ext
            if sp.load_balancer_source_ranges and sp.load_balancer_ips:
                lb_target = fw
                chains[fw] = tuple(f"-s {cidr} -j {ext}" for cidr in sp.load_balancer_source_ranges)
            for ip in sp.load_balancer_ips:
                dispatch.append(DispatchEntry.make(ip, proto, sp.port, lb_target, f"{label} loadbalancer IP"))
            if sp.node_port:
                nodeports.append(f"-m comment --comment {quote(label)} {proto_match(proto, sp.node_port)} -j {ext}")
        if verdict:
            comment = quote(f"{label} {why}")
            f_external.extend(f"-m comment --comment {comment} -d {host(ip)} {match} -j {verdict}" for ip in externals)
            if sp.node_port:
                f_nodeports.append(f"-m comment --comment {comment} {proto_match(proto, sp.node_port)} -j {verdict}")
        elif sp.load_balancer_source_ranges:
            comment = quote(f"{label} traffic not accepted by {fw}")
            f_external.extend(f"-m comment --comment {comment} -d {host(ip)} {match} -j DROP"
                              for ip in sp.load_balancer_ips)

    return PortFragment(
        nat_chains=MappingProxyType(chains), dispatch=tuple(dispatch), nodeports=tuple(nodeports),
        filter_services=tuple(f_services), filter_external=tuple(f_external), filter_nodeports=tuple(f_nodeports),
        cluster_ip=cip.partition("/")[0],
    )


def static_chains(ctx: RenderContext) -> dict[tuple[str, str], tuple[str, ...]]:
    """The chains whose rules do not depend on services (only on the context)."""
    mark = f"{ctx.masq_mark:#x}"
    new = "-m conntrack --ctstate NEW"
    return {
        ("nat", n.MARK_MASQ): (f"-j MARK --or-mark {mark}",),
        ("nat", n.MARK_NONCLUSTER): (
            *(f"-s {cidr} -j RETURN" for cidr in ctx.cluster_cidrs), f"-j {n.MARK_MASQ}",
        ),
        ("nat", n.POSTROUTING): (
            f"-m mark ! --mark {mark}/{mark} -j RETURN",
            f"-j MARK --xor-mark {mark}",  # clear it, so a re-routed packet is not masqueraded twice
            "-j MASQUERADE --random-fully",
        ),
        ("filter", n.FILTER_INPUT): (f"{new} -j {n.EXTERNAL_SERVICES}",),
        ("filter", n.FILTER_OUTPUT): (f"{new} -j {n.FILTER_SERVICES}", f"{new} -j {n.EXTERNAL_SERVICES}"),
        ("filter", n.FILTER_FORWARD): (
            f"{new} -j {n.FILTER_SERVICES}",
            f"{new} -j {n.EXTERNAL_SERVICES}",
            f"-m mark --mark {mark}/{mark} -j ACCEPT",
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ),
    }
