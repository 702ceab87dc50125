"""pynet.nft.Nft against the real kernel (inside a throwaway netns): an atomic transaction, the
listings (names, and map elements read back from JSON as nft text, concatenations and verdicts
included), --check as a dry run, the error predicates on real libnftables errors, and probe()."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable

from pynet.testing.netns import TestNetns
from pynet.testing.services import VENV_PYTHON

SCRIPT = textwrap.dedent(
    """
    import json
    from pynet.nft import *
    out = {}
    probe()
    nft = Nft("ip", "pynet")
    out["exists_before"] = nft.table_exists()
    tx = nft.new_transaction()
    tx.add(Table(comment="runner test"))
    tx.add(Map("m", "ipv4_addr . inet_proto . inet_service : verdict"))
    tx.add(Set("s", "ipv4_addr"))
    tx.add(Chain("c"))
    tx.add(Chain("nat-pre", "nat", "prerouting", -100))
    tx.add(Rule("nat-pre", "ip daddr . meta l4proto . th dport vmap @m"))
    tx.add(Rule("c", "ip saddr @s accept"))
    tx.add(Element("m", "10.96.0.1 . tcp . 80", "goto c"))
    tx.add(Element("m", "10.96.0.2 . udp . 53", "drop"))
    tx.add(Element("s", "10.0.0.1"))
    nft.run(tx)
    out["exists_after"] = nft.table_exists()
    out["chains"] = sorted(nft.list("chains"))
    out["sets"] = nft.list("sets")
    out["maps"] = nft.list("maps")
    out["m"] = sorted([e.key, e.value] for e in nft.list_elements("map", "m"))
    out["s"] = [e.key for e in nft.list_elements("set", "s")]
    dry = nft.new_transaction()
    dry.add(Chain("only-checked"))
    nft.check(dry)
    out["after_check"] = "only-checked" in nft.list("chains")
    def err(build):
        t = nft.new_transaction(); build(t)
        try:
            nft.run(t)
        except NftError as e:
            return [is_not_found(e), is_already_exists(e), is_busy(e)]
        return None
    out["not_found"] = err(lambda t: t.add(Rule("absent-chain", "accept")))
    out["exists"] = err(lambda t: t.add(Element("m", "10.96.0.1 . tcp . 80", "drop")))
    out["busy"] = err(lambda t: t.delete(Chain("c")))
    out["untouched"] = sorted(nft.list("chains"))
    print(json.dumps(out))
    """
)


def test_runner_against_the_kernel(make_netns: Callable[..., TestNetns]) -> None:
    ns = make_netns("nftrun")
    out = json.loads(ns.run(VENV_PYTHON, "-c", SCRIPT).stdout)
    assert out["exists_before"] is False and out["exists_after"] is True
    assert out["chains"] == ["c", "nat-pre"]
    assert out["sets"] == ["s"] and out["maps"] == ["m"]
    assert out["m"] == [["10.96.0.1 . tcp . 80", "goto c"], ["10.96.0.2 . udp . 53", "drop"]]
    assert out["s"] == ["10.0.0.1"]
    assert out["after_check"] is False  # --check applies nothing
    assert out["not_found"] == [True, False, False]
    assert out["exists"] == [False, True, False]
    assert out["busy"] == [False, False, True]
    assert out["untouched"] == ["c", "nat-pre"]  # failed transactions left nothing behind
