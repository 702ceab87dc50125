"""IptablesBackend through FakeIptables (no root).

Covers: golden whole restore input per scenario (ClusterIP with affinity, NodePort, ExternalIP and
LoadBalancer with source ranges under ETP Local, ITP Local without local endpoints, no endpoints,
terminating fallback, IPv6, the linear kube-proxy layout, a dispatch tree); partial syncs touching only
the changed services' chains (endpoint change, service removal, service addition); forced full sync
after a failure or a context change; hooks inserted once; stale chains removed by a full sync; foreign
chains untouched by sync and cleanup; cleanup golden; bounded dispatch walk at 10,000 services;
chain-name limits. Regenerate goldens with ``PYNET_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import MappingProxyType

import pytest

from pynet.iptables import FakeIptables, jump_target, split_args
from pynet.proxy.backends import SyncError, load_backend
from pynet.proxy.backends.iptables import IptablesBackend
from pynet.proxy.backends.iptables import naming as n
from pynet.proxy.backends.iptables.dispatch import build_tree
from pynet.proxy.backends.iptables.render import DispatchEntry
from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName
from pynet.proxy.state import ProxyState

GOLDEN = Path(__file__).resolve().parents[1] / "iptables" / "golden"
NODE_IP = ip_address("172.18.0.2")
CLUSTER = (ip_network("10.244.0.0/16"),)


def spn(name: str, port: str = "http", proto: Protocol = Protocol.TCP, ns: str = "default") -> ServicePortName:
    return ServicePortName(NamespacedName(ns, name), port, proto)


def sport(name: str, ip: str, port: int = 80, proto: Protocol = Protocol.TCP, **kw: object) -> ServicePort:
    addr = ip_address(ip)
    fam = IPFamily.V4 if addr.version == 4 else IPFamily.V6
    return ServicePort(spn(name, proto=proto), fam, addr, port, proto, **kw)  # type: ignore[arg-type]


def ep(ip: str, port: int = 8080, local: bool = False, **kw: object) -> Endpoint:
    return Endpoint(ip_address(ip), port, is_local=local, node_name="n1" if local else "n2", **kw)  # type: ignore[arg-type]


def state(ports: Iterable[ServicePort], eps: dict[str, tuple[Endpoint, ...]], family: IPFamily = IPFamily.V4,
          cluster: tuple[object, ...] = CLUSTER, node_ips: tuple[object, ...] = (NODE_IP,)) -> ProxyState:
    services = {p.name: p for p in ports}
    endpoints = {k: eps[k.service.name] for k in services if k.service.name in eps}
    return ProxyState(family, "n1", node_ips=node_ips, cluster_cidrs=cluster,  # type: ignore[arg-type]
                      services=MappingProxyType(services), endpoints=MappingProxyType(endpoints))


def backend(fake: FakeIptables, **kw: object) -> IptablesBackend:
    return IptablesBackend(exec=fake, **kw)  # type: ignore[arg-type]


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("PYNET_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with PYNET_UPDATE_GOLDEN=1"
    assert text == path.read_text()


WEB = sport("web", "10.96.0.10", session_affinity_timeout=60)
NP = sport("np", "10.96.0.11", node_port=30080)
LB = sport("lb", "10.96.0.12", external_ips=(ip_address("192.0.2.10"),), load_balancer_ips=(ip_address("192.0.2.1"),),
           load_balancer_source_ranges=(ip_network("198.51.100.0/24"),), external_policy_local=True, node_port=30081)
ITPL = sport("itpl", "10.96.0.13", internal_policy_local=True)
EMPTY = sport("empty", "10.96.0.14", proto=Protocol.UDP, port=53, node_port=30053)
TERM = sport("term", "10.96.0.15", proto=Protocol.SCTP, port=9000)
V6 = sport("v6", "fd00:10:96::10", node_port=30080)

SCENARIOS: dict[str, ProxyState] = {
    "clusterip_affinity": state([WEB], {"web": (ep("10.244.1.2", local=True), ep("10.244.2.2"), ep("10.244.2.3"))}),
    "nodeport": state([NP], {"np": (ep("10.244.2.5"),)}),
    "lb_etp_local": state([LB], {"lb": (ep("10.244.1.7", local=True), ep("10.244.2.7"))}),
    "lb_etp_local_no_local": state([LB], {"lb": (ep("10.244.2.7"),)}),
    "itp_local_no_local": state([ITPL], {"itpl": (ep("10.244.2.8"),)}),
    "no_endpoints": state([EMPTY], {}),
    "terminating_fallback": state([TERM], {"term": (ep("10.244.2.9", 9000, ready=False, serving=True, terminating=True),
                                                   ep("10.244.2.10", 9000, ready=False, serving=False, terminating=True))}),
    "ipv6": state([V6], {"v6": (ep("fd00:10:244:1::2", local=True),)}, family=IPFamily.V6,
                  cluster=(ip_network("fd00:10:244::/48"),), node_ips=(ip_address("fd00:172:18::2"),)),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_full_sync(name: str) -> None:
    fake = FakeIptables()
    st = SCENARIOS[name]
    backend(fake).sync(st, frozenset(), True)
    family, text = fake.restores[-1]
    assert family == int(st.family)
    members = fake.ipset.sets[n.service_set(st.family)][2]
    assert_golden(f"full_{name}", text + "# ipset members: " + " ".join(sorted(members)) + "\n")


def test_golden_linear_layout() -> None:
    fake = FakeIptables()
    backend(fake, dispatch="linear").sync(state([WEB, NP, LB], {"web": (ep("10.244.2.2"),), "np": (ep("10.244.2.5"),),
                                                                "lb": (ep("10.244.2.7"),)}), frozenset(), True)
    assert_golden("full_linear", fake.restores[-1][1])
    assert not fake.ipset.sets  # no set in the kube-proxy layout


def many(count: int, base: str = "10.96.0.0") -> list[ServicePort]:
    start = int(ip_address(base))
    return [sport(f"s{i}", str(ip_address(start + 1 + i))) for i in range(count)]


def test_golden_dispatch_tree() -> None:
    fake = FakeIptables()
    ports = many(40)
    backend(fake).sync(state(ports, {p.name.service.name: (ep("10.244.2.2"),) for p in ports}), frozenset(), True)
    text = fake.restores[-1][1]
    assert_golden("full_tree40", "\n".join(line for line in text.splitlines() if "DSP" in line or "PYNET-SERVICES" in line) + "\n")


# ---------------------------------------------------------------------------------------- partial syncs
def declared(text: str) -> set[str]:
    return {line[1:].split()[0] for line in text.splitlines() if line.startswith(":")}


def deleted(text: str) -> set[str]:
    return {line.split()[1] for line in text.splitlines() if line.startswith("-X ")}


BASE = {"web": (ep("10.244.1.2", local=True), ep("10.244.2.2")), "np": (ep("10.244.2.5"),), "lb": (ep("10.244.1.7", local=True),)}


def synced(fake: FakeIptables) -> IptablesBackend:
    b = backend(fake)
    b.sync(state([WEB, NP, LB], BASE), frozenset(), True)
    return b


def test_endpoint_change_rewrites_only_that_service() -> None:
    fake = FakeIptables()
    b = synced(fake)
    before = fake.dump()
    eps = dict(BASE, web=(ep("10.244.1.2", local=True), ep("10.244.2.3")))
    b.sync(state([WEB, NP, LB], eps), frozenset({WEB.name.service}), False)
    text = fake.restores[-1][1]
    old_sep, new_sep = n.endpoint_chain(WEB.name, ep("10.244.2.2")), n.endpoint_chain(WEB.name, ep("10.244.2.3"))
    kept_sep = n.endpoint_chain(WEB.name, ep("10.244.1.2", local=True))
    assert declared(text) == {n.chain_for("SVC", WEB.name), kept_sep, new_sep, old_sep}
    assert deleted(text) == {old_sep}
    assert "*filter" not in text  # nothing shared changed
    # every chain of the other services is byte-identical
    after = fake.dump()
    for svc in (NP, LB):
        for line in before.splitlines():
            if n.chain_for("SVC", svc.name) in line.split(" ")[1:2]:
                assert line in after
    assert fake.ipset.sets["pynet-svc-v4"][2] == {"10.96.0.10,tcp:80", "10.96.0.11,tcp:80", "10.96.0.12,tcp:80",
                                                   "192.0.2.10,tcp:80", "192.0.2.1,tcp:80"}


def test_service_removal_deletes_its_chains_and_set_members() -> None:
    fake = FakeIptables()
    b = synced(fake)
    b.sync(state([WEB, NP], BASE), frozenset({LB.name.service}), False)
    text = fake.restores[-1][1]
    lb_chains = {n.chain_for(k, LB.name) for k in ("SVC", "SVL", "EXT", "FW")}
    lb_chains.add(n.endpoint_chain(LB.name, ep("10.244.1.7", local=True)))
    assert {c for c in deleted(text) if not c.startswith("PYNET-DSP-")} == lb_chains
    nat = fake.chains(4, "nat")
    assert not lb_chains & set(nat)
    assert not any("10.96.0.12" in r or n.chain_for("EXT", LB.name) in r for rules in nat.values() for r in rules)
    assert fake.ipset.sets["pynet-svc-v4"][2] == {"10.96.0.10,tcp:80", "10.96.0.11,tcp:80"}
    # a full sync of the same state changes nothing
    dump = fake.dump()
    b.sync(state([WEB, NP], BASE), frozenset(), True)
    assert fake.dump() == dump


def test_service_addition_writes_its_chains_and_the_touched_dispatch_only() -> None:
    fake = FakeIptables()
    ports = many(100)
    eps = {p.name.service.name: (ep("10.244.2.2"),) for p in ports}
    b = backend(fake)
    b.sync(state(ports, eps), frozenset(), True)
    extra = sport("extra", "10.96.0.120")  # inside the tree's root prefix
    b.sync(state([*ports, extra], dict(eps, extra=(ep("10.244.2.9"),))), frozenset({extra.name.service}), False)
    text = fake.restores[-1][1]
    svc_chains = {c for c in declared(text) if not c.startswith("PYNET-DSP-")}
    assert svc_chains == {n.chain_for("SVC", extra.name), n.endpoint_chain(extra.name, ep("10.244.2.9"))}
    dsp = {c for c in declared(text) if c.startswith("PYNET-DSP-")}
    assert 1 <= len(dsp) <= 3  # the path to the new destination, not the whole tree
    assert "10.96.0.120,tcp:80" in fake.ipset.sets["pynet-svc-v4"][2]
    full = FakeIptables()
    backend(full).sync(state([*ports, extra], dict(eps, extra=(ep("10.244.2.9"),))), frozenset(), True)
    assert fake.dump() == full.dump()  # partial == full


def test_failure_forces_a_full_sync_and_keeps_old_rules() -> None:
    fake = FakeIptables()
    b = synced(fake)
    before = fake.dump()
    fake.chains(4, "nat")["PREROUTING"].append("-j PYNET-NOT-A-CHAIN")  # make the next restore fail? no: corrupt a referenced chain
    del fake.chains(4, "nat")[n.MARK_MASQ]  # someone deleted one of our chains behind our back
    with pytest.raises(SyncError):
        b.sync(state([WEB, NP, LB], dict(BASE, np=(ep("10.244.2.6"),))), frozenset({NP.name.service}), False)
    assert n.chain_for("SVC", NP.name) in fake.chains(4, "nat")
    fake.chains(4, "nat")["PREROUTING"].remove("-j PYNET-NOT-A-CHAIN")
    b.sync(state([WEB, NP, LB], dict(BASE, np=(ep("10.244.2.6"),))), frozenset(), False)  # forced full
    assert n.MARK_MASQ in fake.chains(4, "nat")
    assert before != fake.dump()


def test_context_change_forces_full_sync() -> None:
    fake = FakeIptables()
    b = synced(fake)
    b.sync(state([WEB, NP, LB], BASE, node_ips=(ip_address("172.18.0.3"),)), frozenset(), False)
    text = fake.restores[-1][1]
    assert n.chain_for("SVC", WEB.name) in declared(text)  # everything rewritten
    assert "-A PYNET-SERVICES -d 172.18.0.3/32 -j PYNET-NODEPORTS" in text


def test_hooks_once_and_foreign_rules_untouched() -> None:
    fake = FakeIptables()
    fake(["iptables-nft-restore", "--noflush"], "*nat\n:FOREIGN - [0:0]\n-A FOREIGN -j RETURN\n"
         "-A PREROUTING -j FOREIGN\nCOMMIT\n*filter\n:KUBE-X - [0:0]\n-A INPUT -j KUBE-X\nCOMMIT\n")
    b = synced(fake)
    b.setup()
    b.sync(state([WEB, NP, LB], BASE), frozenset(), True)
    nat, flt = fake.chains(4, "nat"), fake.chains(4, "filter")
    assert nat["PREROUTING"] == ["-j PYNET-SERVICES", "-j FOREIGN"]
    assert nat["OUTPUT"] == ["-j PYNET-SERVICES"] and nat["POSTROUTING"] == ["-j PYNET-POSTROUTING"]
    assert flt["INPUT"] == ["-j PYNET-INPUT", "-j KUBE-X"]
    assert nat["FOREIGN"] == ["-j RETURN"] and flt["KUBE-X"] == []
    b.cleanup()
    assert fake.dump() == (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-X - [0:0]\n"
        "-A INPUT -j KUBE-X\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:FOREIGN - [0:0]\n-A PREROUTING -j FOREIGN\n-A FOREIGN -j RETURN\nCOMMIT\n"
    )
    assert not fake.ipset.sets


def test_cleanup_golden_and_idempotent() -> None:
    fake = FakeIptables()
    synced(fake).cleanup()
    assert_golden("cleanup", fake.restores[-1][1])
    count = len(fake.restores)
    backend(fake).cleanup()
    assert len(fake.restores) == count  # nothing left to remove: no restore at all


def test_full_sync_removes_stale_pynet_chains_and_duplicate_hooks() -> None:
    fake = FakeIptables()
    fake(["iptables-nft-restore", "--noflush"], "*nat\n:PYNET-SVC-STALE - [0:0]\n:PYNET-SERVICES - [0:0]\n"
         "-A PREROUTING -j PYNET-SERVICES\n-A PREROUTING -j PYNET-SERVICES\n-A OUTPUT -j PYNET-SVC-STALE\nCOMMIT\n")
    synced(fake)
    nat = fake.chains(4, "nat")
    assert "PYNET-SVC-STALE" not in nat
    assert nat["PREROUTING"] == ["-j PYNET-SERVICES"] and nat["OUTPUT"] == ["-j PYNET-SERVICES"]


def test_setup_creates_base_chains_without_flushing() -> None:
    fake = FakeIptables()
    b = synced(fake)
    dump = fake.dump()
    b.setup()
    assert fake.dump() == dump
    fresh = FakeIptables()
    backend(fresh).setup()
    assert fresh.chains(4, "nat")["PREROUTING"] == ["-j PYNET-SERVICES"]
    assert fresh.chains(6, "filter")["FORWARD"] == ["-j PYNET-FORWARD"]


def test_registry_loads_the_backend() -> None:
    assert load_backend("iptables") is IptablesBackend
    assert IptablesBackend.name == "iptables"


# ---------------------------------------------------------------------------------------- dispatch bound
def walk(chains: dict[str, list[str]], root: str, dst: int) -> tuple[str | None, int]:
    """Follow the tree for destination ``dst`` (an int address); (service target, rules visited)."""
    visited, chain = 0, root
    while True:
        for rule in chains[chain]:
            visited += 1
            args = split_args(rule)
            d = ip_network(args[args.index("-d") + 1])
            if int(d.network_address) <= dst <= int(d.broadcast_address):
                target = jump_target(rule)
                assert target is not None
                if target.startswith("PYNET-DSP-"):
                    chain = target
                    break
                return target, visited
        else:
            return None, visited


def test_dispatch_tree_visits_a_bounded_number_of_rules() -> None:
    start = int(ip_address("10.96.0.1"))
    entries = [DispatchEntry.make(ip_address(start + i * 3), "tcp", 80, f"T{i}", "c") for i in range(10_000)]
    root, chains = build_tree(entries)
    assert root is not None
    worst = 0
    for e in entries[::37]:
        target, visited = walk(chains, root, int(e.ip))
        assert target == e.target
        worst = max(worst, visited)
    assert worst <= 64, worst
    assert max(len(r) for r in chains.values()) <= 32
    assert walk(chains, root, int(ip_address("10.200.0.1")))[0] is None


def test_chain_names_fit_iptables() -> None:
    long = spn("x" * 63, "p" * 15, ns="n" * 63)
    for kind in ("SVC", "SVL", "EXT", "FW"):
        assert len(n.chain_for(kind, long)) <= n.CHAIN_NAME_MAX
    assert len(n.endpoint_chain(long, ep("10.0.0.1"))) <= n.CHAIN_NAME_MAX
    assert n.chain_for("SVC", long) == n.chain_for("SVC", long)  # stable


def test_untracked_change_falls_back_to_a_full_sync() -> None:
    fake = FakeIptables()
    b = backend(fake)
    b.sync(state([WEB], BASE), frozenset(), True)
    b.sync(state([WEB, NP], BASE), frozenset(), False)  # NP appeared but nobody said so
    assert n.chain_for("SVC", NP.name) in fake.chains(4, "nat")
    full = FakeIptables()
    backend(full).sync(state([WEB, NP], BASE), frozenset(), True)
    assert fake.dump() == full.dump()


def test_naming_doctest() -> None:
    import doctest

    assert doctest.testmod(n).failed == 0


def test_one_instance_per_family_as_the_agent_builds_them() -> None:
    fake = FakeIptables()
    v4 = backend(fake, family=IPFamily.V4)
    v6 = backend(fake, family=IPFamily.V6)
    v4.sync(SCENARIOS["nodeport"], frozenset(), True)
    v6.sync(SCENARIOS["ipv6"], frozenset(), True)
    with pytest.raises(SyncError):
        v4.sync(SCENARIOS["ipv6"], frozenset(), True)
    v6.cleanup()
    assert not any(c.startswith("PYNET-") for c in fake.chains(6, "nat"))
    assert n.SERVICES in fake.chains(4, "nat") and "pynet-svc-v4" in fake.ipset.sets
    assert "pynet-svc-v6" not in fake.ipset.sets
    v4.cleanup()
    assert not fake.ipset.sets and not any(c.startswith("PYNET-") for c in fake.chains(4, "nat"))
