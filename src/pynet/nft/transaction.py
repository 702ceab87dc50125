"""Transaction: an ordered batch of nftables operations applied atomically (knftables' shape).

Build it with :meth:`add`, :meth:`create`, :meth:`flush`, :meth:`delete`; render it with ``str()``
(one nft command per line, the exact text libnftables receives, also what logs and tests see). A
transaction is bound to one family and table, so nothing built here can touch another table.

Sticky error: an invalid operation (a rule given to ``flush``, a bad name) does not raise at the call
site, where it would break a long rendering loop halfway; it is remembered, later operations are
ignored, and the runner raises it before sending anything to the kernel.

Command forms (why the text is not one line per operation): libnftables 1.0.6 decides per batch which
kernel objects to load into its cache before evaluating it (``nft_cache_evaluate`` in its cache.c), and
``add rule``, ``add element`` and every ``delete`` make it dump every chain of every table first: about
6 µs per chain, 0.25 s with 10,000 services. ``add chain``/``add set``/``add map`` need only the table
list, so the renderer sends
  * consecutive ``add`` rules of one chain as ``add chain T C { rule ; rule ; }`` (appends, same as
    ``add rule``) when this batch added or flushed C before (a block would create a missing chain,
    where ``add rule`` fails with ENOENT; after ``add``/``flush chain`` both behave alike), unless a
    rule names a set this batch does not add (``@s``: it must be in the cache), and
  * element additions to a set or map whose declaration is known (added in this transaction, or
    given to :meth:`Transaction.declare`) as ``add map T M { <declaration> ; elements = { ... } ; }``
    (the declaration is identical, so the kernel keeps the map and adds the elements).
:attr:`Transaction.needs_chain_cache` says whether the batch still has a command that costs the dump.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar, NamedTuple

from pynet.nft.errors import NftError
from pynet.nft.objects import Chain, Element, Map, Rule, Set, Table, _quote

__all__ = ["ELEMENT_BATCH", "NftObject", "Operation", "Transaction"]

_SETREF = re.compile(r"@([A-Za-z_][A-Za-z0-9/_.\-]*)")

#: most elements rendered into one ``add element`` / ``delete element`` command
ELEMENT_BATCH = 1000

NftObject = Table | Chain | Rule | Set | Map | Element

# exact types (a set lookup is cheaper than isinstance, and a full sync makes 160,000 operations)
_ALLOWED: dict[str, frozenset[type]] = {
    "add": frozenset((Table, Chain, Rule, Set, Map, Element)),
    "create": frozenset((Table, Chain, Set, Map, Element)),
    "insert": frozenset((Rule,)),
    "flush": frozenset((Table, Chain, Set, Map)),
    "delete": frozenset((Table, Chain, Set, Map, Element)),
}


class Operation(NamedTuple):
    """One operation (a NamedTuple, not a frozen dataclass: a full sync builds 160,000 of them)."""

    verb: str
    obj: NftObject


class Transaction:
    """Operations for table ``family``/``table``, in order.

    >>> tx = Transaction("ip", "pynet")
    >>> tx.add(Table(comment="demo"))
    >>> tx.add(Chain("services"))
    >>> tx.add(Rule("services", "ip daddr 10.96.0.1 tcp dport 80 accept"))
    >>> print(tx, end="")
    add table ip pynet { comment "demo" ; }
    add chain ip pynet services
    add chain ip pynet services { ip daddr 10.96.0.1 tcp dport 80 accept ; }
    """

    #: False renders one ``add rule`` / ``add element`` per command as before (benchmarks compare both)
    compact: ClassVar[bool] = True

    def __init__(self, family: str, table: str) -> None:
        self.family = family
        self.table = table
        self._ops: list[tuple[str, NftObject]] = []  # plain tuples: cheapest to build
        self.err: NftError | None = None
        #: set/map declarations known to the renderer (no operation; see declare())
        self.declared: dict[str, Set | Map] = {}
        self._full: bool | None = None  # needs_chain_cache, once a rendering has run to the end

    def declare(self, *objs: Set | Map) -> None:
        """Make these sets/maps' declarations known, so element additions to them can be sent in the
        form that needs no chain cache. Adds no operation: the objects must already exist (or be added).
        """
        for obj in objs:
            self.declared[obj.name] = obj
        self._full = None

    def _op(self, verb: str, obj: NftObject) -> None:
        if self.err is not None:
            return
        kind = type(obj)
        if kind not in _ALLOWED[verb]:
            self.err = NftError(f"cannot {verb} a {kind.__name__}")
            return
        if isinstance(obj, Rule) and (";" in obj.rule or "\n" in obj.rule):
            # nft separates commands (and the rules of a chain block) with ';' or newlines
            self.err = NftError(f"a rule may not contain ';' or newlines: {obj.rule!r}")
            return
        self._ops.append((verb, obj))
        self._full = None

    def add(self, obj: NftObject) -> None:
        self._op("add", obj)

    def create(self, obj: NftObject) -> None:
        self._op("create", obj)

    def insert(self, obj: Rule) -> None:
        self._op("insert", obj)

    def flush(self, obj: NftObject) -> None:
        self._op("flush", obj)

    def delete(self, obj: NftObject) -> None:
        self._op("delete", obj)

    @property
    def operations(self) -> list[Operation]:
        """The operations, in order (a fresh list)."""
        return [Operation(verb, obj) for verb, obj in self._ops]

    def __len__(self) -> int:
        return len(self._ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def lines(self) -> Iterator[str]:
        """The commands libnftables receives (see the module docstring for their forms), rendered
        as they are consumed (a 10,000-service full sync is 16 MB of text: never held twice).

        Consecutive element operations with the same verb and set/map become one command (up to
        ELEMENT_BATCH elements): libnftables' cost is per command, and 10,000 single-element commands
        take seconds. Consecutive rule additions to one chain become one chain block.
        """
        return self._render_now()

    @property
    def needs_chain_cache(self) -> bool:
        """True when libnftables 1.0.6 will dump every chain of the ruleset before applying this."""
        if self._full is None:
            for _ in self._render_now():
                pass
        assert self._full is not None
        return self._full

    def _render_now(self) -> Iterator[str]:
        fam, table = self.family, self.table
        ops = self._ops
        full = False
        specs: dict[str, Set | Map] = dict(self.declared)
        in_batch: set[str] = set()  # sets/maps libnftables will have in its cache for this batch
        chains: set[str] = set()  # chains added or flushed earlier in this batch
        compact = self.compact
        n = len(ops)
        i = 0
        while i < n:
            verb, obj = ops[i]
            j = i + 1
            kind = type(obj)
            if kind is Element:
                container = obj.container  # type: ignore[union-attr]
                while j < n and j - i < ELEMENT_BATCH:
                    v, o = ops[j]
                    if v != verb or type(o) is not Element or o.container != container:
                        break
                    j += 1
                bodies = ", ".join(o.body(verb) for _, o in ops[i:j])  # type: ignore[union-attr]
                spec = specs.get(container)
                if verb == "add" and spec is not None and compact:
                    yield f"{spec.render('add', fam, table)[:-1]}elements = {{ {bodies} }} ; }}"
                    in_batch.add(container)
                else:
                    yield f"{verb} element {fam} {table} {container} {{ {bodies} }}"
                    full = True
            elif (kind is Rule and verb == "add" and compact and obj.chain in chains  # type: ignore[union-attr]
                  and _refs_known(obj, in_batch)):  # type: ignore[arg-type]
                chain = obj.chain  # type: ignore[union-attr]
                rules = [_block_rule(obj)]  # type: ignore[arg-type]
                while j < n:
                    v, o = ops[j]
                    if v != "add" or type(o) is not Rule or o.chain != chain or not _refs_known(o, in_batch):
                        break
                    rules.append(_block_rule(o))
                    j += 1
                yield f"add chain {fam} {table} {chain} {{ {' ; '.join(rules)} ; }}"
            else:
                yield obj.render(verb, fam, table)
                if kind is Chain and verb in ("add", "create", "flush"):
                    chains.add(obj.name)  # type: ignore[union-attr]
                if isinstance(obj, (Set, Map)) and verb in ("add", "create"):
                    specs[obj.name] = obj
                    in_batch.add(obj.name)
                full = full or verb in ("delete", "insert") or kind is Rule or (
                    kind is Table and verb in ("add", "create") and obj.comment is not None)  # type: ignore[union-attr]
            i = j
        self._full = full

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self._render_now())


def _refs_known(rule: Rule, in_batch: set[str]) -> bool:
    return "@" not in rule.rule or all(name in in_batch for name in _SETREF.findall(rule.rule))


def _block_rule(rule: Rule) -> str:
    return f"{rule.rule} comment {_quote(rule.comment)}" if rule.comment else rule.rule
