"""NftablesBackend through FakeNft: one golden whole-ruleset per scenario, partial syncs that touch
only the changed service (and converge to exactly what a full sync renders), failure handling
(a failed transaction forces a full sync), stale-chain grace, element conflicts, and cleanup."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address, ip_network
from pathlib import Path
from types import MappingProxyType

import pytest

from pynet.nft import FakeNft, NftError
from pynet.proxy.backends.base import SyncError
from pynet.proxy.backends.nftables import NftablesBackend
from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName
from pynet.proxy.state import ProxyState
from pynet.testing.golden import assert_golden

GOLDEN = Path(__file__).parent / "golden" / "nftables"
NODE = "node-1"


def port(name: str, cip: str | None, p: int = 80, proto: Protocol = Protocol.TCP, pname: str = "", **kw: object) -> ServicePort:
    spn = ServicePortName(NamespacedName("ns", name), pname, proto)
    return ServicePort(spn, IPFamily.V4, ip_address(cip) if cip else None, p, proto, **kw)  # type: ignore[arg-type]


def ep(ip: str, p: int = 8080, local: bool = True, **kw: object) -> Endpoint:
    return Endpoint(ip_address(ip), p, node_name=NODE if local else "node-2", is_local=local, **kw)  # type: ignore[arg-type]


def state(ports: Iterable[tuple[ServicePort, tuple[Endpoint, ...]]], **kw: object) -> ProxyState:
    items = list(ports)
    return ProxyState(
        IPFamily.V4, NODE,
        node_ips=kw.pop("node_ips", (ip_address("172.31.0.1"),)),  # type: ignore[arg-type]
        cluster_cidrs=kw.pop("cluster_cidrs", (ip_network("10.244.0.0/16"),)),  # type: ignore[arg-type]
        services=MappingProxyType({sp.name: sp for sp, _ in items}),
        endpoints=MappingProxyType({sp.name: eps for sp, eps in items}),
    )


def svc(name: str) -> NamespacedName:
    return NamespacedName("ns", name)


A, B, C = ep("10.244.1.11"), ep("10.244.1.12"), ep("10.244.2.13", local=False)

SCENARIOS: dict[str, list[tuple[ServicePort, tuple[Endpoint, ...]]]] = {
    "clusterip": [
        (port("web", "10.96.0.10", pname="http"), (A, B)),
        (port("dns", "10.96.0.11", 53, Protocol.UDP), (A,)),
        (port("assoc", "10.96.0.12", 7777, Protocol.SCTP), (C,)),
        (port("headless", None), (A,)),
    ],
    "nodeport_externalip": [
        (port("np", "10.96.0.20", node_port=30080, external_ips=(ip_address("192.0.2.20"),)), (A, C)),
    ],
    "loadbalancer_source_ranges": [
        (port("lb", "10.96.0.30", node_port=30081, load_balancer_ips=(ip_address("198.51.100.30"),),
              load_balancer_source_ranges=(ip_network("203.0.113.0/24"), ip_network("172.31.0.2/32"))), (B,)),
    ],
    "session_affinity": [(port("aff", "10.96.0.40", session_affinity_timeout=600), (A, B, C))],
    "external_policy_local": [
        (port("etp", "10.96.0.50", node_port=30082, external_policy_local=True), (A, C)),
        (port("etp-remote", "10.96.0.51", node_port=30083, external_policy_local=True), (C,)),
    ],
    "internal_policy_local": [
        (port("itp", "10.96.0.60", internal_policy_local=True), (A, C)),
        (port("itp-remote", "10.96.0.61", internal_policy_local=True), (C,)),
    ],
    "no_endpoints": [
        (port("none", "10.96.0.70", node_port=30084, external_ips=(ip_address("192.0.2.70"),)), ()),
        (port("unready", "10.96.0.71"), (ep("10.244.1.11", ready=False, serving=False),)),
    ],
    "terminating_fallback": [
        (port("term", "10.96.0.80"), (ep("10.244.1.11", ready=False, serving=True, terminating=True),
                                      ep("10.244.1.12", ready=False, serving=False, terminating=True))),
        (port("mixed", "10.96.0.81"), (ep("10.244.1.11", ready=False, serving=True, terminating=True), B)),
    ],
}


def full_dump(st: ProxyState) -> str:
    nft = FakeNft()
    NftablesBackend(nft, stale_chain_grace=0).sync(st, frozenset(), True)
    return nft.dump()


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden_ruleset(scenario: str) -> None:
    assert_golden(full_dump(state(SCENARIOS[scenario])), GOLDEN / f"{scenario}.nft")


def test_everything_at_once_is_the_union_of_the_scenarios() -> None:
    together = full_dump(state(p for ports in SCENARIOS.values() for p in ports))
    for scenario, ports in SCENARIOS.items():
        for line in full_dump(state(ports)).splitlines():
            assert line in together, (scenario, line)


def test_setup_is_idempotent_and_cleanup_removes_only_the_table() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft)
    backend.setup()
    first = nft.dump()
    backend.setup()
    assert nft.dump() == first and "chain ip pynet nat-prerouting" in first
    backend.cleanup()
    assert not nft.table_exists()
    backend.cleanup()  # idempotent
    assert nft.transactions == 3


def test_partial_sync_touches_only_the_changed_service() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0)
    ports = SCENARIOS["clusterip"] + SCENARIOS["session_affinity"]
    backend.sync(state(ports), frozenset(), True)
    web, web_eps = ports[0]
    changed = [(web, (A,)) if sp is web else (sp, eps) for sp, eps in ports]
    backend.sync(state(changed), frozenset({svc("web")}), False)
    tx = str(nft.last_transaction)
    assert tx.strip(), "nothing was sent"
    for line in tx.splitlines():
        assert "/web/" in line, f"partial sync touched something else: {line}"
    assert "10.244.1.12" in tx  # the removed endpoint's chain went
    assert backend.last_transaction_size < 10


def test_partial_sync_skips_chains_whose_rules_did_not_change() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0)
    ports = SCENARIOS["clusterip"]
    backend.sync(state(ports), frozenset(), True)
    backend.sync(state(ports), frozenset({svc("web"), svc("dns")}), False)
    assert nft.last_transaction is not None and len(nft.last_transaction) == 0


STEPS: list[list[tuple[ServicePort, tuple[Endpoint, ...]]]] = [
    SCENARIOS["clusterip"],
    SCENARIOS["clusterip"] + SCENARIOS["session_affinity"],           # add a service
    [(p, (B,)) for p, _ in SCENARIOS["clusterip"]] + SCENARIOS["session_affinity"],  # move endpoints
    [(p, ()) for p, _ in SCENARIOS["clusterip"]],                       # delete one, empty the rest
    SCENARIOS["external_policy_local"] + SCENARIOS["clusterip"],       # endpoints back, externals
    [(port("aff", "10.96.0.40", session_affinity_timeout=60), (A, B))],  # timeout change renames sets
    [],
]


def test_partial_syncs_converge_to_what_a_full_sync_renders() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0, stale_chain_linger=0)
    backend.sync(state(STEPS[0]), frozenset(), True)
    previous = {sp.name.service for sp, _ in STEPS[0]}
    for step in STEPS[1:]:
        now = {sp.name.service for sp, _ in step}
        backend.sync(state(step), frozenset(previous | now), False)
        assert nft.dump() == full_dump(state(step))
        previous = now


def test_a_failed_transaction_keeps_the_old_rules_and_forces_a_full_sync() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0)
    backend.sync(state(STEPS[0]), frozenset(), True)
    before = nft.dump()
    nft.fail_next = NftError("kernel said no")
    with pytest.raises(SyncError, match="kernel said no"):
        backend.sync(state(STEPS[1]), frozenset({svc("aff")}), False)
    assert nft.dump() == before
    backend.sync(state(STEPS[1]), frozenset(), False)  # nothing "changed", yet it must be full
    assert nft.dump() == full_dump(state(STEPS[1]))


def test_node_wide_changes_force_a_full_sync() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0)
    backend.sync(state(SCENARIOS["nodeport_externalip"]), frozenset(), True)
    moved = state(SCENARIOS["nodeport_externalip"], node_ips=(ip_address("172.31.0.9"),))
    backend.sync(moved, frozenset(), False)
    assert nft.elements("nodeport-ips") == {"172.31.0.9": None}


def test_full_sync_removes_foreign_leftovers_in_our_table_only() -> None:
    nft = FakeNft()
    NftablesBackend(nft, stale_chain_grace=0).sync(state(STEPS[1]), frozenset(), True)
    fresh = NftablesBackend(nft, stale_chain_grace=0)  # an agent restart: no memory of the old rules
    fresh.sync(state(STEPS[0]), frozenset(), True)
    assert nft.dump() == full_dump(state(STEPS[0]))


def test_stale_chains_wait_for_the_grace_period_on_old_kernels() -> None:
    now = [100.0]
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=5.0, stale_chain_linger=0, monotonic=lambda: now[0])
    backend.sync(state(STEPS[0]), frozenset(), True)
    backend.sync(state([]), frozenset({svc("web"), svc("dns"), svc("assoc"), svc("headless")}), False)
    leftover = [c for c in nft.list("chains") if "/web/" in c]
    assert leftover and all(nft.rules(c) == [] for c in leftover)  # flushed, still there
    now[0] += 5.0
    backend.sync(state([]), frozenset(), False)
    assert not [c for c in nft.list("chains") if "/ns/" in c or "ns/" in c]
    assert nft.dump() == full_dump(state([]))


def test_an_endpoint_change_needs_no_chain_dump_and_its_old_chain_lingers() -> None:
    """The partial transaction of an endpoint move has only forms libnftables 1.0.6 applies without
    dumping every chain; the old endpoint chain is flushed now and deleted later (module docstring)."""
    now = [100.0]
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0, stale_chain_linger=10.0, monotonic=lambda: now[0])
    ports = SCENARIOS["clusterip"] + SCENARIOS["session_affinity"]
    backend.sync(state(ports), frozenset(), True)
    # N.B. "aff" stays unchanged: dropping an endpoint of an affinity service deletes its set at once
    moved = [(sp, (A, C)) if sp.name.service == svc("web") else (sp, eps) for sp, eps in ports]
    backend.sync(state(moved), frozenset({svc("web")}), False)
    tx = nft.last_transaction
    assert tx is not None and not tx.needs_chain_cache, str(tx)
    assert "add chain ip pynet service-" in str(tx) and "add rule" not in str(tx)
    old = [c for c in nft.list("chains") if "/web/" in c and c.endswith("__10.244.1.12/8080")]
    assert len(old) == 1 and all(nft.rules(c) == [] for c in old)  # flushed, not yet deleted
    transactions = nft.transactions
    now[0] += 10.0  # lingered long enough: a no-op sync sends the deletions on their own
    backend.sync(state(moved), frozenset(), False)
    assert nft.transactions == transactions + 2
    assert nft.last_transaction is not None and {op.verb for op in nft.last_transaction} == {"delete"}
    assert nft.dump() == full_dump(state(moved))


def test_lingering_chains_ride_along_with_a_transaction_that_needs_the_chain_dump() -> None:
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0, stale_chain_linger=1000.0)
    backend.sync(state(STEPS[0]), frozenset(), True)
    web_moved = [(sp, (B,)) if sp.name.service == svc("web") else (sp, eps) for sp, eps in STEPS[0]]
    backend.sync(state(web_moved), frozenset({svc("web")}), False)
    assert nft.dump() != full_dump(state(web_moved))  # the old endpoint chains linger, flushed
    without_dns = [(sp, eps) for sp, eps in web_moved if sp.name.service != svc("dns")]
    backend.sync(state(without_dns), frozenset({svc("dns")}), False)  # removes map elements
    assert nft.last_transaction is not None and nft.last_transaction.needs_chain_cache
    assert nft.dump() == full_dump(state(without_dns))


def test_two_services_claiming_one_address_port_do_not_break_the_sync() -> None:
    clash = [
        (port("first", "10.96.0.90", external_ips=(ip_address("192.0.2.90"),)), (A,)),
        (port("second", "10.96.0.91", external_ips=(ip_address("192.0.2.90"),)), (B,)),
    ]
    nft = FakeNft()
    backend = NftablesBackend(nft, stale_chain_grace=0)
    backend.sync(state(clash), frozenset(), True)
    assert nft.elements("service-ips")["192.0.2.90 . tcp . 80"].startswith("goto external-")
    assert "/first/" in nft.elements("service-ips")["192.0.2.90 . tcp . 80"]  # type: ignore[operator]
    backend.sync(state(clash), frozenset({svc("second")}), False)
    assert "/first/" in nft.elements("service-ips")["192.0.2.90 . tcp . 80"]  # type: ignore[operator]


def test_wrong_family_is_a_sync_error() -> None:
    v6 = ProxyState(IPFamily.V6, NODE)
    with pytest.raises(SyncError):
        NftablesBackend(FakeNft()).sync(v6, frozenset(), True)


def test_ipv6_renders_into_an_ip6_table() -> None:
    spn = ServicePortName(NamespacedName("ns", "v6"), "", Protocol.TCP)
    sp = ServicePort(spn, IPFamily.V6, ip_address("fd00:96::10"), 80, Protocol.TCP, node_port=30090)
    st = ProxyState(
        IPFamily.V6, NODE, node_ips=(ip_address("fd00:31::1"),), cluster_cidrs=(ip_network("fd00:244::/48"),),
        services=MappingProxyType({spn: sp}),
        endpoints=MappingProxyType({spn: (Endpoint(ip_address("fd00:244:1::11"), 8080, is_local=True),)}),
    )
    nft = FakeNft("ip6", "pynet")
    NftablesBackend(nft, family=IPFamily.V6, stale_chain_grace=0).sync(st, frozenset(), True)
    dump = nft.dump()
    assert "add table ip6 pynet" in dump
    assert "meta l4proto tcp dnat to [fd00:244:1::11]:8080" in dump
    assert "ip6 saddr != { fd00:244::/48 } jump mark-for-masquerade" in dump
    assert "add element ip6 pynet service-ips { fd00:96::10 . tcp . 80 : goto service-" in dump
    assert "add element ip6 pynet nodeport-ips { fd00:31::1 }" in dump
