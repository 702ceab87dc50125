"""pynet.iptables: restore rendering and quoting, save parsing, variant detection, the runner's error
translation, ipset diffs, and the fake's kernel-like checks (missing chains, -X of referenced or
non-empty chains, sets in use, per-table atomic COMMIT)."""

from __future__ import annotations

import doctest

import pytest

from pynet.iptables import (
    ExecResult,
    FakeIptables,
    Ipset,
    Iptables,
    IptablesError,
    RestoreInput,
    Table,
    Variant,
    detect_variant,
    parse_save,
    quote,
    restore,
    tools_for,
)


def test_restore_doctest() -> None:
    assert doctest.testmod(restore).failed == 0


def test_render_orders_declarations_rules_and_deletions_per_table() -> None:
    r = RestoreInput()
    r.write_chain(Table.FILTER, "PYNET-F", ["-j REJECT"])
    r.delete_chain(Table.NAT, "PYNET-OLD")
    r.write_chain(Table.NAT, "PYNET-A", ["-d 10.0.0.1/32 -j PYNET-B", "-j RETURN"])
    r.insert(Table.NAT, "PREROUTING", "-j PYNET-A")
    assert r.render() == (
        "*nat\n:PYNET-OLD - [0:0]\n:PYNET-A - [0:0]\n"
        "-A PYNET-A -d 10.0.0.1/32 -j PYNET-B\n-A PYNET-A -j RETURN\n-I PREROUTING 1 -j PYNET-A\n"
        "-X PYNET-OLD\nCOMMIT\n"
        "*filter\n:PYNET-F - [0:0]\n-A PYNET-F -j REJECT\nCOMMIT\n"
    )
    assert RestoreInput().render() == "" and RestoreInput().is_empty()


def test_quote_round_trips_through_the_save_parser() -> None:
    assert quote("plain") == "plain"
    assert quote('ns/a b "x"') == '"ns/a b \\"x\\""'
    saved = parse_save(f"*nat\n:C - [0:0]\n-A C -m comment --comment {quote('a b')} -j RETURN\nCOMMIT\n")
    assert saved["nat"].rules[0].target == "RETURN"
    assert saved["nat"].chains == {"C": "-"}


def test_tools_per_variant_and_family() -> None:
    assert tools_for(Variant.NFT, 4).restore == "iptables-nft-restore"
    assert tools_for(Variant.LEGACY, 6).save == "ip6tables-legacy-save"


@pytest.mark.parametrize("variant", ["nft", "legacy"])
def test_detect_variant_follows_the_iptables_command(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYNET_IPTABLES_VARIANT", raising=False)
    assert detect_variant(FakeIptables(variant)) == Variant(variant)


def test_detect_variant_override_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeIptables("nft")
    assert detect_variant(fake, "legacy") == Variant.LEGACY
    monkeypatch.setenv("PYNET_IPTABLES_VARIANT", "legacy")
    assert detect_variant(fake) == Variant.LEGACY
    with pytest.raises(IptablesError):
        detect_variant(fake, "bogus")


def test_detect_variant_unknown_output() -> None:
    with pytest.raises(IptablesError):
        detect_variant(lambda argv, input=None: ExecResult(0, "something else", ""), None)


def test_runner_reports_the_failing_line() -> None:
    fake = FakeIptables()
    ipt = Iptables(4, Variant.NFT, fake)
    with pytest.raises(IptablesError) as exc:
        ipt.restore("*nat\n:PYNET-A - [0:0]\n-A PYNET-A -j PYNET-MISSING\nCOMMIT\n")
    assert exc.value.line == 3 and "PYNET-MISSING" in str(exc.value)
    assert "PYNET-A" not in fake.chains(4, "nat")  # nothing of the failed table was committed


def test_fake_enforces_chain_deletion_rules() -> None:
    fake = FakeIptables()
    ipt = Iptables(4, Variant.NFT, fake)
    ipt.restore("*nat\n:PYNET-A - [0:0]\n:PYNET-B - [0:0]\n-A PYNET-A -j PYNET-B\nCOMMIT\n")
    with pytest.raises(IptablesError, match="referenced"):
        ipt.restore("*nat\n-X PYNET-B\nCOMMIT\n")
    with pytest.raises(IptablesError, match="not empty"):
        ipt.restore("*nat\n-X PYNET-A\nCOMMIT\n")
    ipt.restore("*nat\n:PYNET-A - [0:0]\n-X PYNET-B\n-X PYNET-A\nCOMMIT\n")  # flush then delete
    assert set(fake.chains(4, "nat")) == {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}


def test_fake_noflush_keeps_other_chains_and_flush_mode_does_not() -> None:
    fake = FakeIptables()
    ipt = Iptables(4, Variant.NFT, fake)
    ipt.restore("*filter\n:FOREIGN - [0:0]\n-A FOREIGN -j ACCEPT\nCOMMIT\n")
    ipt.restore("*filter\n:PYNET-X - [0:0]\nCOMMIT\n")
    assert fake.chains(4, "filter")["FOREIGN"] == ["-j ACCEPT"]
    ipt.restore("*filter\n:PYNET-X - [0:0]\nCOMMIT\n", noflush=False)
    assert "FOREIGN" not in fake.chains(4, "filter")


def test_save_parses_back_into_the_fake_state() -> None:
    fake = FakeIptables()
    ipt = Iptables(4, Variant.NFT, fake)
    ipt.restore("*nat\n:PYNET-A - [0:0]\n-A PYNET-A -m comment --comment \"a b\" -j RETURN\n"
                "-I PREROUTING 1 -j PYNET-A\nCOMMIT\n")
    saved = ipt.save(Table.NAT)["nat"]
    assert [r.spec for r in saved.rules_of("PREROUTING")] == ["-j PYNET-A"]
    assert saved.rules_of("PYNET-A")[0].spec == '-m comment --comment "a b" -j RETURN'
    ipt.restore(f"*nat\n-D PREROUTING {saved.rules_of('PREROUTING')[0].spec}\nCOMMIT\n")
    assert fake.chains(4, "nat")["PREROUTING"] == []


def test_ipset_diff_and_in_use_protection() -> None:
    fake = FakeIptables()
    sets = Ipset(fake)
    sets.apply("pynet-svc-v4", "hash:ip,port", "inet", add=["10.96.0.1,tcp:80", "10.96.0.2,udp:53"], create=True)
    sets.apply("pynet-svc-v4", "hash:ip,port", "inet", delete=["10.96.0.2,udp:53"])
    assert sets.members("pynet-svc-v4") == {"10.96.0.1,tcp:80"}
    Iptables(4, Variant.NFT, fake).restore(
        "*nat\n:PYNET-S - [0:0]\n-A PYNET-S -m set --match-set pynet-svc-v4 dst,dst -j RETURN\nCOMMIT\n")
    with pytest.raises(IptablesError, match="in use"):
        sets.destroy("pynet-svc-v4")
    with pytest.raises(IptablesError):
        sets.apply("x" * 32, "hash:ip,port", "inet", create=True)


def test_fake_rejects_rules_using_missing_sets() -> None:
    with pytest.raises(IptablesError, match="does not exist"):
        Iptables(4, Variant.NFT, FakeIptables()).restore(
            "*nat\n:PYNET-S - [0:0]\n-A PYNET-S -m set --match-set nope dst,dst -j RETURN\nCOMMIT\n")
