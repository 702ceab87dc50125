"""pynet.nft without a kernel: rendering, the sticky-error transaction, FakeNft's kernel-like
semantics (atomicity, ENOENT/EEXIST/EBUSY, reference checks), the error predicates, dump order,
and the JSON-expression reader the real runner uses for listings."""

from __future__ import annotations

import pytest

from pynet.nft import (
    Chain,
    Element,
    FakeNft,
    Map,
    NftError,
    Rule,
    Set,
    Table,
    Transaction,
    check_name,
    is_already_exists,
    is_busy,
    is_not_found,
)
from pynet.nft.runner import _json_expr


def base(nft: FakeNft) -> Transaction:
    tx = nft.new_transaction()
    tx.add(Table(comment="t"))
    tx.add(Map("m", "ipv4_addr . inet_proto . inet_service : verdict"))
    tx.add(Set("s", "ipv4_addr", flags=("dynamic", "timeout"), timeout=60))
    tx.add(Chain("nat-prerouting", "nat", "prerouting", -100))
    tx.add(Chain("target"))
    tx.add(Rule("nat-prerouting", "ip daddr . meta l4proto . th dport vmap @m"))
    tx.add(Rule("target", "update @s { ip saddr }"))
    tx.add(Element("m", "10.96.0.1 . tcp . 80", "goto target"))
    return tx


@pytest.mark.parametrize(
    ("obj", "verb", "text"),
    [
        (Table(comment='a "b"'), "add", "add table ip pynet { comment \"a 'b'\" ; }"),
        (Table(), "delete", "delete table ip pynet"),
        (Chain("c", "nat", "output", -100), "add", "add chain ip pynet c { type nat hook output priority -100 ; }"),
        (Chain("c"), "flush", "flush chain ip pynet c"),
        (Rule("c", "accept", comment="x"), "add", 'add rule ip pynet c accept comment "x"'),
        (Set("s", "ipv4_addr", ("dynamic", "timeout"), 30), "add",
         "add set ip pynet s { type ipv4_addr ; flags dynamic,timeout ; timeout 30s ; }"),
        (Map("m", "inet_proto . inet_service : verdict"), "add", "add map ip pynet m { type inet_proto . inet_service : verdict ; }"),
        (Element("m", "tcp . 80", "drop"), "add", "add element ip pynet m { tcp . 80 : drop }"),
        (Element("m", "tcp . 80", "drop"), "delete", "delete element ip pynet m { tcp . 80 }"),
    ],
    ids=["table", "delete-table", "base-chain", "flush-chain", "rule-comment", "set", "map", "map-element", "delete-element"],
)
def test_render(obj: object, verb: str, text: str) -> None:
    tx = Transaction("ip", "pynet")
    getattr(tx, verb)(obj)
    assert str(tx) == text + "\n"


def test_sticky_error_stops_the_transaction() -> None:
    tx = Transaction("ip", "pynet")
    tx.flush(Rule("c", "accept"))
    tx.add(Table())
    assert tx.err is not None and "cannot flush a Rule" in str(tx.err)
    assert len(tx) == 0
    with pytest.raises(NftError):
        FakeNft().run(tx)


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError):
        Chain("bad name")
    with pytest.raises(ValueError):
        check_name("x" * 300)
    assert check_name("endpoint-ABC-ns/svc/tcp/p__10.0.0.1/80")


def test_fake_applies_and_dumps_canonically() -> None:
    nft = FakeNft()
    nft.run(base(nft))
    assert nft.dump().splitlines() == [
        'add table ip pynet { comment "t" ; }',
        "add map ip pynet m { type ipv4_addr . inet_proto . inet_service : verdict ; }",
        "add set ip pynet s { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }",
        "add chain ip pynet nat-prerouting { type nat hook prerouting priority -100 ; }",
        "add chain ip pynet target",
        "add rule ip pynet nat-prerouting ip daddr . meta l4proto . th dport vmap @m",
        "add rule ip pynet target update @s { ip saddr }",
        "add element ip pynet m { 10.96.0.1 . tcp . 80 : goto target }",
    ]
    assert nft.list("chains") == ["nat-prerouting", "target"]
    assert nft.list("maps") == ["m"] and nft.list("sets") == ["s"]
    assert nft.list_elements("map", "m") == [Element("m", "10.96.0.1 . tcp . 80", "goto target")]


def test_fake_is_all_or_nothing() -> None:
    nft = FakeNft()
    nft.run(base(nft))
    before = nft.dump()
    tx = nft.new_transaction()
    tx.add(Chain("new"))
    tx.add(Rule("missing", "accept"))
    with pytest.raises(NftError) as info:
        nft.run(tx)
    assert is_not_found(info.value)
    assert nft.dump() == before


@pytest.mark.parametrize(
    ("ops", "predicate"),
    [
        ([("delete", Chain("target"))], is_busy),  # has rules
        ([("flush", Chain("target")), ("delete", Chain("target"))], is_busy),  # a map element points at it
        ([("delete", Set("s", "ipv4_addr"))], is_busy),  # a rule uses it
        ([("add", Element("m", "10.96.0.1 . tcp . 80", "drop"))], is_already_exists),
        ([("create", Chain("target"))], is_already_exists),
        ([("delete", Element("m", "10.9.9.9 . tcp . 1", None))], is_not_found),
        ([("add", Rule("target", "goto nowhere"))], is_not_found),
        ([("add", Element("nomap", "1", None))], is_not_found),
    ],
    ids=["chain-with-rules", "chain-referenced-by-map", "set-in-use", "element-other-value", "create-existing",
         "missing-element", "jump-to-missing-chain", "missing-set"],
)
def test_fake_refuses_like_the_kernel(ops: list[tuple[str, object]], predicate: object) -> None:
    nft = FakeNft()
    nft.run(base(nft))
    tx = nft.new_transaction()
    for verb, obj in ops:
        getattr(tx, verb)(obj)
    with pytest.raises(NftError) as info:
        nft.run(tx)
    assert predicate(info.value)  # type: ignore[operator]


def test_fake_deletes_in_the_right_order() -> None:
    nft = FakeNft()
    nft.run(base(nft))
    tx = nft.new_transaction()
    tx.delete(Element("m", "10.96.0.1 . tcp . 80", "goto target"))
    tx.flush(Chain("target"))
    tx.delete(Chain("target"))
    tx.delete(Set("s", "ipv4_addr"))
    nft.run(tx)
    assert nft.list("chains") == ["nat-prerouting"] and nft.list("sets") == []


def test_fake_fault_injection_and_last_transaction() -> None:
    nft = FakeNft()
    nft.fail_next = NftError("boom")
    with pytest.raises(NftError, match="boom"):
        nft.run(base(nft))
    assert not nft.table_exists()
    tx = base(nft)
    nft.run(tx)
    assert nft.last_transaction is tx and nft.transactions == 1


def test_fake_rejects_other_tables() -> None:
    tx = Transaction("ip", "other")
    tx.add(Table())
    with pytest.raises(NftError):
        FakeNft().run(tx)


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ({"concat": ["10.96.0.1", "tcp", 80]}, "10.96.0.1 . tcp . 80"),
        ({"goto": {"target": "svc-x"}}, "goto svc-x"),
        ({"drop": None}, "drop"),
        ({"prefix": {"addr": "10.0.0.0", "len": 8}}, "10.0.0.0/8"),
        ({"elem": {"val": "1.2.3.4", "timeout": 5}}, "1.2.3.4"),
    ],
)
def test_json_expressions_read_back_as_nft_text(expr: object, text: str) -> None:
    assert _json_expr(expr) == text


def test_consecutive_element_operations_share_one_command() -> None:
    tx = Transaction("ip", "pynet")
    tx.add(Element("m", "tcp . 80", "drop"))
    tx.add(Element("m", "tcp . 81", "goto x"))
    tx.add(Element("s", "10.0.0.1"))
    tx.delete(Element("m", "tcp . 82", "drop"))
    tx.delete(Element("m", "tcp . 83", "drop"))
    assert str(tx).splitlines() == [
        "add element ip pynet m { tcp . 80 : drop, tcp . 81 : goto x }",
        "add element ip pynet s { 10.0.0.1 }",
        "delete element ip pynet m { tcp . 82, tcp . 83 }",
    ]
    assert len(tx) == 5  # still five operations for the fake and for metrics
