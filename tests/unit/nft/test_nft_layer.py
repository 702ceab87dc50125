"""pynet.nft without a kernel: rendering, the sticky-error transaction, FakeNft's kernel-like
semantics (atomicity, ENOENT/EEXIST/EBUSY, reference checks), the error predicates, dump order,
the JSON-expression reader the real runner uses for listings, and the runner's hand-off of large
transactions to an ``nft -f -`` process (with a stand-in binary; the kernel path is the benchmark's)."""

from __future__ import annotations

from pathlib import Path

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
    runner,
)
from pynet.nft.runner import Nft, _json_expr, release_free_heap


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


def test_rules_go_as_chain_blocks_and_elements_into_declared_maps() -> None:
    """The forms libnftables 1.0.6 applies without dumping every chain first (see transaction.py)."""
    tx = Transaction("ip", "pynet")
    tx.declare(Map("m", "inet_proto . inet_service : verdict", comment="dispatch"))
    tx.add(Set("aff", "ipv4_addr", ("dynamic", "timeout"), 60))
    tx.add(Chain("c"))
    tx.add(Rule("c", "ip saddr @aff goto d"))
    tx.add(Rule("c", "goto d", comment="last"))
    tx.flush(Chain("d"))
    tx.add(Rule("d", "accept"))
    tx.flush(Chain("e"))
    tx.add(Element("m", "tcp . 80", "goto c"))
    tx.add(Element("m", "tcp . 81", "goto d"))
    assert str(tx).splitlines() == [
        "add set ip pynet aff { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }",
        "add chain ip pynet c",
        'add chain ip pynet c { ip saddr @aff goto d ; goto d comment "last" ; }',
        "flush chain ip pynet d",
        "add chain ip pynet d { accept ; }",
        "flush chain ip pynet e",
        'add map ip pynet m { type inet_proto . inet_service : verdict ; comment "dispatch" ; '
        "elements = { tcp . 80 : goto c, tcp . 81 : goto d } ; }",
    ]
    assert not tx.needs_chain_cache
    assert len(tx) == 9


@pytest.mark.parametrize(
    ("build", "line"),
    [
        (lambda tx: tx.add(Rule("c", "ip saddr @elsewhere accept")), "add rule ip pynet c ip saddr @elsewhere accept"),
        (lambda tx: tx.add(Rule("other", "accept")), "add rule ip pynet other accept"),
        (lambda tx: tx.add(Element("undeclared", "10.0.0.1")), "add element ip pynet undeclared { 10.0.0.1 }"),
        (lambda tx: tx.delete(Chain("c")), "delete chain ip pynet c"),
        (lambda tx: tx.insert(Rule("c", "accept")), "insert rule ip pynet c accept"),
        (lambda tx: tx.add(Table(comment="x")), 'add table ip pynet { comment "x" ; }'),
    ],
    ids=["rule-with-unknown-set", "rule-for-a-chain-not-added-or-flushed", "element-of-undeclared-set", "delete", "insert", "table-with-comment"],
)
def test_commands_that_need_the_chain_cache_keep_their_form(build: object, line: str) -> None:
    tx = Transaction("ip", "pynet")
    tx.add(Chain("c"))
    assert not tx.needs_chain_cache
    build(tx)  # type: ignore[operator]
    assert str(tx).splitlines()[-1] == line
    assert tx.needs_chain_cache


def test_a_rule_with_a_command_separator_is_a_sticky_error() -> None:
    tx = Transaction("ip", "pynet")
    tx.add(Rule("c", "accept ; delete table ip other"))
    assert tx.err is not None and "may not contain" in str(tx.err)
    assert len(tx) == 0


def _fake_nft_binary(tmp_path: Path, rc: int) -> Path:
    """A stand-in for /usr/sbin/nft that records its arguments and stdin (the batch it was given)."""
    script = tmp_path / "nft"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {tmp_path}/argv\n'
        f"cat > {tmp_path}/stdin\n"
        f'[ {rc} -eq 0 ] || echo "/dev/stdin:1:1: Error: Could not process rule: No such file or directory" >&2\n'
        f"exit {rc}\n"
    )
    script.chmod(0o755)
    return script


def _big_transaction(nft: Nft, n: int) -> Transaction:
    tx = nft.new_transaction()
    for i in range(n):
        tx.add(Element("cluster-ips", f"10.96.{i // 250}.{i % 250 + 1}"))
    return tx


def test_a_large_transaction_goes_to_one_nft_process_as_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nft = Nft()
    nft._nft_binary = str(_fake_nft_binary(tmp_path, 0))
    monkeypatch.setattr(runner, "EXTERNAL_OPS", 10)
    nft._ctx = None  # the in-process context must not be used for this one
    tx = _big_transaction(nft, 10)
    nft.run(tx)
    assert (tmp_path / "argv").read_text().split() == ["-f", "-"]
    assert (tmp_path / "stdin").read_text() == str(tx)


def test_a_failed_nft_process_is_an_nft_error_with_its_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nft = Nft()
    nft._nft_binary = str(_fake_nft_binary(tmp_path, 1))
    monkeypatch.setattr(runner, "EXTERNAL_OPS", 10)
    with pytest.raises(NftError) as info:
        nft.run(_big_transaction(nft, 10))
    assert is_not_found(info.value) and "first command: 'add element ip pynet cluster-ips" in str(info.value)


def test_release_free_heap_works_on_glibc() -> None:
    assert release_free_heap() is True
