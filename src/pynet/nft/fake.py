"""FakeNft: an in-memory nftables table with the same interface as :class:`pynet.nft.runner.Nft`.

It applies transactions with the kernel's semantics that matter to callers: all-or-nothing (the
state is copied, the operations applied to the copy, and the copy committed only if every one
succeeded), ENOENT for missing objects, EEXIST for ``create`` of an existing object and for adding a
map element whose key exists with other data, EBUSY for deleting a chain that still has rules or is
still referenced (``jump``/``goto`` in a rule or a map element) or a set a rule still uses.

``dump()`` renders the table as a canonical, sorted list of nft commands: the golden-test form.
``last_transaction`` keeps the last transaction run, so tests can assert what a sync touched.
"""

from __future__ import annotations

import builtins
import copy
import re
from dataclasses import dataclass, field
from typing import Literal

from pynet.nft.errors import NftError
from pynet.nft.objects import Chain, Element, Map, Rule, Set, Table
from pynet.nft.transaction import Transaction

__all__ = ["FakeNft"]

_REF = re.compile(r"\b(?:goto|jump)\s+([A-Za-z_][A-Za-z0-9/_.\-]*)")
_SETREF = re.compile(r"@([A-Za-z_][A-Za-z0-9/_.\-]*)")


@dataclass
class _ChainState:
    chain: Chain
    rules: list[Rule] = field(default_factory=list)


@dataclass
class _SetState:
    obj: Set | Map
    elements: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _TableState:
    table: Table
    chains: dict[str, _ChainState] = field(default_factory=dict)
    sets: dict[str, _SetState] = field(default_factory=dict)


def _enoent(what: str) -> NftError:
    return NftError(f"{what} not found", detail="Error: Could not process rule: No such file or directory")


def _eexist(what: str) -> NftError:
    return NftError(f"{what} exists", detail="Error: Could not process rule: File exists")


def _ebusy(what: str) -> NftError:
    return NftError(f"{what} in use", detail="Error: Could not process rule: Device or resource busy")


class FakeNft:
    def __init__(self, family: str = "ip", table: str = "pynet") -> None:
        self.family = family
        self.table = table
        self.state: _TableState | None = None
        self.last_transaction: Transaction | None = None
        self.transactions = 0
        #: set to an NftError to make the next run() fail with it (fault injection)
        self.fail_next: NftError | None = None

    def new_transaction(self) -> Transaction:
        return Transaction(self.family, self.table)

    # ------------------------------------------------------------------ apply
    def run(self, tx: Transaction) -> None:
        if tx.err is not None:
            raise tx.err
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            raise err
        new = self._apply(tx)
        self.state = new
        self.last_transaction = tx
        self.transactions += 1

    def check(self, tx: Transaction) -> None:
        if tx.err is not None:
            raise tx.err
        self._apply(tx)

    def _apply(self, tx: Transaction) -> _TableState | None:
        if (tx.family, tx.table) != (self.family, self.table):
            raise NftError(f"transaction for {tx.family} {tx.table} run on {self.family} {self.table}")
        st = copy.deepcopy(self.state)
        for op in tx.operations:
            st = self._one(st, op.verb, op.obj)
        return st

    def _one(self, st: _TableState | None, verb: str, obj: object) -> _TableState | None:
        if isinstance(obj, Table):
            if verb == "add":
                return st or _TableState(obj)
            if verb == "create":
                if st is not None:
                    raise _eexist("table")
                return _TableState(obj)
            if st is None:
                raise _enoent("table")
            if verb == "delete":
                return None
            for c_st in st.chains.values():  # flush table: rules and elements, objects stay
                c_st.rules.clear()
            for ss in st.sets.values():
                ss.elements.clear()
            return st
        if st is None:
            raise _enoent("table")
        if isinstance(obj, Chain):
            self._chain(st, verb, obj)
        elif isinstance(obj, Rule):
            cs = st.chains.get(obj.chain)
            if cs is None:
                raise _enoent(f"chain {obj.chain}")
            self._check_refs(st, obj.rule)
            if verb == "insert":
                cs.rules.insert(0, obj)
            else:
                cs.rules.append(obj)
        elif isinstance(obj, (Set, Map)):
            self._set(st, verb, obj)
        elif isinstance(obj, Element):
            self._element(st, verb, obj)
        return st

    def _check_refs(self, st: _TableState, text: str) -> None:
        for name in _REF.findall(text):
            if name not in st.chains:
                raise _enoent(f"chain {name}")
        for name in _SETREF.findall(text):
            if name not in st.sets:
                raise _enoent(f"set {name}")

    def _chain(self, st: _TableState, verb: str, obj: Chain) -> None:
        cs = st.chains.get(obj.name)
        if verb in ("add", "create"):
            if cs is None:
                st.chains[obj.name] = _ChainState(obj)
            elif verb == "create":
                raise _eexist(f"chain {obj.name}")
            return
        if cs is None:
            raise _enoent(f"chain {obj.name}")
        if verb == "flush":
            cs.rules.clear()
            return
        if cs.rules:
            raise _ebusy(f"chain {obj.name} (not empty)")
        for other in st.chains.values():
            for rule in other.rules:
                if obj.name in _REF.findall(rule.rule):
                    raise _ebusy(f"chain {obj.name} (jumped to from {other.chain.name})")
        for ss in st.sets.values():
            for value in ss.elements.values():
                if value is not None and obj.name in _REF.findall(value):
                    raise _ebusy(f"chain {obj.name} (referenced from map {ss.obj.name})")
        del st.chains[obj.name]

    def _set(self, st: _TableState, verb: str, obj: Set | Map) -> None:
        ss = st.sets.get(obj.name)
        if verb in ("add", "create"):
            if ss is None:
                st.sets[obj.name] = _SetState(obj)
            elif verb == "create":
                raise _eexist(f"{obj.kind} {obj.name}")
            return
        if ss is None:
            raise _enoent(f"{obj.kind} {obj.name}")
        if verb == "flush":
            ss.elements.clear()
            return
        for cs in st.chains.values():
            for rule in cs.rules:
                if obj.name in _SETREF.findall(rule.rule):
                    raise _ebusy(f"{obj.kind} {obj.name} (used by chain {cs.chain.name})")
        del st.sets[obj.name]

    def _element(self, st: _TableState, verb: str, obj: Element) -> None:
        ss = st.sets.get(obj.container)
        if ss is None:
            raise _enoent(f"set/map {obj.container}")
        if isinstance(ss.obj, Map) != (obj.value is not None) and verb != "delete":
            raise NftError(f"element {obj.key!r} does not fit {ss.obj.kind} {obj.container}")
        if verb == "delete":
            if obj.key not in ss.elements:
                raise _enoent(f"element {obj.key} in {obj.container}")
            del ss.elements[obj.key]
            return
        if obj.value is not None:
            self._check_refs(st, obj.value)
        if obj.key in ss.elements:
            if verb == "create" or ss.elements[obj.key] != obj.value:
                raise _eexist(f"element {obj.key} in {obj.container}")
            return
        ss.elements[obj.key] = obj.value

    # ------------------------------------------------------------------ read
    def table_exists(self) -> bool:
        return self.state is not None

    def list(self, kind: Literal["chains", "sets", "maps"]) -> builtins.list[str]:
        if self.state is None:
            return []
        if kind == "chains":
            return sorted(self.state.chains)
        want = Set if kind == "sets" else Map
        return sorted(n for n, s in self.state.sets.items() if isinstance(s.obj, want))

    def list_elements(self, kind: Literal["set", "map"], name: str) -> builtins.list[Element]:
        if self.state is None or name not in self.state.sets:
            raise _enoent(f"{kind} {name}")
        ss = self.state.sets[name]
        return [Element(name, k, v) for k, v in sorted(ss.elements.items())]

    def rules(self, chain: str) -> builtins.list[str]:
        """The rules of ``chain`` as text (KeyError when the chain does not exist)."""
        assert self.state is not None
        return [r.rule for r in self.state.chains[chain].rules]

    def elements(self, name: str) -> dict[str, str | None]:
        assert self.state is not None
        return dict(self.state.sets[name].elements)

    def dump(self) -> str:
        """The whole table as canonical nft commands: table, sets/maps, chains, rules, elements.

        Chains and sets are sorted by name and elements by key; rules keep their order (it matters).
        """
        if self.state is None:
            return ""
        f, t = self.family, self.table
        out = [self.state.table.render("add", f, t)]
        for name in sorted(self.state.sets):
            out.append(self.state.sets[name].obj.render("add", f, t))
        for name in sorted(self.state.chains):
            out.append(self.state.chains[name].chain.render("add", f, t))
        for name in sorted(self.state.chains):
            out.extend(r.render("add", f, t) for r in self.state.chains[name].rules)
        for name in sorted(self.state.sets):
            for key, value in sorted(self.state.sets[name].elements.items()):
                out.append(Element(name, key, value).render("add", f, t))
        return "".join(line + "\n" for line in out)
