"""The iptables backend against the real kernel, in throwaway namespaces, for BOTH iptables variants.

Covers: the chosen variant is the one programmed (the other variant stays empty); rules survive a
foreign chain and foreign rules added between syncs (partial and full), with exactly one hook jump per
built-in chain; foreign chains, rules and ipsets are untouched by sync and by cleanup; cleanup leaves
zero PYNET- chains, zero jumps to them and zero pynet- ipsets; and real connections through the
backend driven in-process (ClusterIP from a pod without masquerade, from outside with masquerade,
NodePort, ClientIP affinity, REJECT without endpoints, a port of no service refused).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from types import MappingProxyType

import pytest

from pynet.iptables import netns_exec
from pynet.proxy.backends.iptables import IptablesBackend
from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName
from pynet.proxy.state import ProxyState
from pynet.testing.netns import TestNetns
from pynet.testing.services import BRIDGE_IP, EXT_IP, NODE_IP, POD_IPS, Reply, ServiceLab

VARIANTS = ["nft", "legacy"]
OTHER = {"nft": "legacy", "legacy": "nft"}


def spn(name: str) -> ServicePortName:
    return ServicePortName(NamespacedName("t", name), "", Protocol.TCP)


def port(name: str, ip: str, **kw: object) -> ServicePort:
    return ServicePort(spn(name), IPFamily.V4, ip_address(ip), 80, Protocol.TCP, **kw)  # type: ignore[arg-type]


def pod(name: str, local: bool = True) -> Endpoint:
    return Endpoint(ip_address(POD_IPS[name]), 8080, node_name="node-1" if local else "node-2", is_local=local)


def make_state(ports: list[ServicePort], eps: dict[str, tuple[Endpoint, ...]]) -> ProxyState:
    services = {p.name: p for p in ports}
    return ProxyState(
        IPFamily.V4, "node-1", node_ips=(ip_address(NODE_IP),), cluster_cidrs=(ip_network("10.244.0.0/16"),),
        services=MappingProxyType(services),
        endpoints=MappingProxyType({k: eps[k.service.name] for k in services if k.service.name in eps}),
    )


def save(ns: TestNetns, variant: str) -> str:
    return ns.run(f"iptables-{variant}-save").stdout


def pynet_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "PYNET-" in line]


def foreign_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "FOREIGN" in line or "9999" in line]


@pytest.mark.parametrize("variant", VARIANTS)
def test_foreign_rules_survive_and_cleanup_is_exact(variant: str, make_netns: Callable[..., TestNetns]) -> None:
    node = make_netns("iptnode")
    b = IptablesBackend(exec=netns_exec(node.name), variant=variant)
    assert b.variant.value == variant
    web, np = port("web", "10.96.0.10"), port("np", "10.96.0.11", node_port=30080)
    eps = {"web": (pod("pod-a"), pod("pod-b")), "np": (pod("pod-c"),)}
    b.setup()
    b.sync(make_state([web, np], eps), frozenset(), True)
    first = save(node, variant)
    assert "-A PREROUTING -j PYNET-SERVICES" in first and "-A PYNET-SERVICES -m set --match-set pynet-svc-v4" in first
    assert not pynet_lines(save(node, OTHER[variant])), "rules went to the other iptables variant"

    # someone else adds a chain, rules in built-in chains and an ipset between our syncs
    ipt = f"iptables-{variant}"
    node.sh(f"set -e; {ipt} -t nat -N FOREIGN; {ipt} -t nat -A FOREIGN -p tcp --dport 9999 -j RETURN; "
            f"{ipt} -t nat -I PREROUTING 1 -j FOREIGN; {ipt} -t filter -N FOREIGN-F; "
            f"{ipt} -t filter -A FOREIGN-F -p tcp --dport 9999 -j ACCEPT; {ipt} -A INPUT -j FOREIGN-F; "
            "ipset create foreign-set hash:ip; ipset add foreign-set 192.0.2.99")
    foreign = foreign_lines(save(node, variant))
    assert len(foreign) == 6, foreign

    eps2 = dict(eps, web=(pod("pod-a"), pod("pod-c")))
    b.sync(make_state([web, np], eps2), frozenset({web.name.service}), False)  # partial
    b.sync(make_state([web], eps2), frozenset({np.name.service}), False)  # partial, service gone
    b.sync(make_state([web], eps2), frozenset(), True)  # full
    after = save(node, variant)
    assert foreign_lines(after) == foreign
    for builtin, chain in (("PREROUTING", "PYNET-SERVICES"), ("OUTPUT", "PYNET-SERVICES"),
                           ("POSTROUTING", "PYNET-POSTROUTING"), ("INPUT", "PYNET-INPUT"),
                           ("FORWARD", "PYNET-FORWARD")):
        assert after.count(f"-A {builtin} -j {chain}\n") == 1, (builtin, after)
    assert "10.96.0.11" not in after and "30080" not in after  # the gone service's rules went away
    assert "10.244.1.13:8080" in after  # the changed endpoint is in
    assert "10.96.0.10,tcp:80" in node.run("ipset", "list", "pynet-svc-v4").stdout

    b.cleanup()
    cleaned = save(node, variant)
    assert pynet_lines(cleaned) == []
    assert foreign_lines(cleaned) == foreign
    sets = node.run("ipset", "list", "-n").stdout.split()
    assert sets == ["foreign-set"]
    b.cleanup()  # idempotent
    assert pynet_lines(save(node, variant)) == [] and pynet_lines(save(node, OTHER[variant])) == []


@pytest.fixture(scope="module")
def lab() -> Iterator[ServiceLab]:
    the_lab = ServiceLab.create()
    try:
        yield the_lab
    finally:
        the_lab.destroy()


def names(replies: list[Reply]) -> Counter[str]:
    return Counter(r.name if r.result == "ok" else r.result for r in replies)


@pytest.mark.parametrize("variant", VARIANTS)
def test_real_traffic(variant: str, lab: ServiceLab) -> None:
    b = IptablesBackend(exec=netns_exec(lab.node.name), variant=variant)
    ports = [port("a", "10.96.3.1"), port("np", "10.96.3.2", node_port=30301), port("empty", "10.96.3.3"),
             port("aff", "10.96.3.4", session_affinity_timeout=60)]
    eps = {"a": (pod("pod-a"),), "np": (pod("pod-b"),), "aff": (pod("pod-a"), pod("pod-b"), pod("pod-c"))}
    try:
        b.setup()
        b.sync(make_state(ports, eps), frozenset(), True)
        ok_a = lab.wait_reply("client", "10.96.3.1", 80, lambda r: r.result == "ok", "cluster IP from a pod")
        assert (ok_a.name, ok_a.peer) == ("pod-a", POD_IPS["client"])
        outside = lab.wait_reply("ext", "10.96.3.1", 80, lambda r: r.result == "ok", "cluster IP from outside")
        assert (outside.name, outside.peer) == ("pod-a", BRIDGE_IP)  # masqueraded
        nodeport = lab.wait_reply("ext", NODE_IP, 30301, lambda r: r.result == "ok", "NodePort", src=EXT_IP)
        assert nodeport.name == "pod-b"
        refused = lab.connect("client", "10.96.3.3", 80)[0]
        assert refused.result == "refused" and refused.elapsed < 0.4, refused
        assert lab.connect("client", "10.96.3.1", 81)[0].result == "refused"  # a port of no service
        assert len(names(lab.connect("client", "10.96.3.4", 80, count=12))) == 1  # affinity holds
        # a partial sync moves the service to another endpoint
        b.sync(make_state(ports, dict(eps, a=(pod("pod-c"),))), frozenset({spn("a").service}), False)
        moved = lab.wait_reply("client", "10.96.3.1", 80, lambda r: r.name == "pod-c", "moved to pod-c")
        assert moved.result == "ok"
    finally:
        b.cleanup()
    assert pynet_lines(save(lab.node, variant)) == []


def test_ipv6_rules_apply_and_clean_up(make_netns: Callable[..., TestNetns]) -> None:
    node = make_netns("ipt6node")
    b = IptablesBackend(exec=netns_exec(node.name))
    key = ServicePortName(NamespacedName("t", "v6"), "", Protocol.TCP)
    sp = ServicePort(key, IPFamily.V6, ip_address("fd00:96::10"), 80, Protocol.TCP, node_port=30080,
                     session_affinity_timeout=30)
    st = ProxyState(IPFamily.V6, "node-1", node_ips=(ip_address("fd00:31::1"),),
                    cluster_cidrs=(ip_network("fd00:244::/48"),), services=MappingProxyType({key: sp}),
                    endpoints=MappingProxyType({key: (Endpoint(ip_address("fd00:244:1::11"), 8080),)}))
    b.setup()
    b.sync(st, frozenset(), True)
    saved = node.run("ip6tables-save").stdout
    assert "--to-destination [fd00:244:1::11]:8080" in saved and "-A PREROUTING -j PYNET-SERVICES" in saved
    assert "fd00:96::10,tcp:80" in node.run("ipset", "list", "pynet-svc-v6").stdout
    b.cleanup()
    assert pynet_lines(node.run("ip6tables-save").stdout) == []
    assert node.run("ipset", "list", "-n").stdout.split() == []
