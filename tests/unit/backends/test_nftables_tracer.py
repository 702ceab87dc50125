"""SHARED_FLOWS through the nftables rules (FakeNft + the nft packet tracer): for every flow, the
set of endpoints reachable, REJECT/DROP, and masquerading must be exactly what the table says."""

from __future__ import annotations

import pytest

from pynet.nft import FakeNft
from pynet.proxy.backends.nftables import NftablesBackend
from pynet.testing.flows import NODE_IP, SHARED_FLOWS, PacketFlow, shared_state
from pynet.testing.tracer.nft import Packet, UnknownRule, trace


@pytest.fixture(scope="module")
def nft() -> FakeNft:
    fake = FakeNft()
    NftablesBackend(fake, stale_chain_grace=0).sync(shared_state(), frozenset(), True)
    return fake


@pytest.mark.parametrize("flow", SHARED_FLOWS, ids=[f.name for f in SHARED_FLOWS])
def test_shared_flow(nft: FakeNft, flow: PacketFlow) -> None:
    outcomes = trace(nft, Packet(flow.src, flow.dst, flow.proto, flow.dport, flow.origin), local_ips=frozenset({NODE_IP}))
    if flow.output <= {"REJECT", "DROP", "ACCEPT"}:
        assert {o.verdict.upper() for o in outcomes} == set(flow.output), outcomes
        return
    assert {o.verdict for o in outcomes} == {"accept"}, outcomes
    assert {o.dnat for o in outcomes} == set(flow.output)
    assert {o.masquerade for o in outcomes} == {flow.masq}


def test_unknown_rule_shapes_fail_loudly(nft: FakeNft) -> None:
    from pynet.nft import Chain, Rule

    tx = nft.new_transaction()
    tx.add(Chain("odd"))
    tx.add(Rule("odd", "tcp flags syn counter"))
    tx.add(Rule("services", "jump odd"))
    odd = FakeNft()
    odd.state = nft.state
    odd.check(tx)  # valid nft for the fake ...
    odd.run(tx)
    with pytest.raises(UnknownRule):  # ... but not a shape the tracer knows
        trace(odd, Packet("10.244.1.20", "10.1.1.1", "tcp", 1))
