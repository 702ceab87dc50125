"""Transaction: an ordered batch of nftables operations applied atomically (knftables' shape).

Build it with :meth:`add`, :meth:`create`, :meth:`flush`, :meth:`delete`; render it with ``str()``
(one nft command per line, the exact text libnftables receives, also what logs and tests see). A
transaction is bound to one family and table, so nothing built here can touch another table.

Sticky error: an invalid operation (a rule given to ``flush``, a bad name) does not raise at the call
site, where it would break a long rendering loop halfway; it is remembered, later operations are
ignored, and the runner raises it before sending anything to the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pynet.nft.errors import NftError
from pynet.nft.objects import Chain, Element, Map, Rule, Set, Table

__all__ = ["ELEMENT_BATCH", "NftObject", "Operation", "Transaction"]

#: most elements rendered into one ``add element`` / ``delete element`` command
ELEMENT_BATCH = 1000

NftObject = Table | Chain | Rule | Set | Map | Element

_ALLOWED: dict[str, tuple[type, ...]] = {
    "add": (Table, Chain, Rule, Set, Map, Element),
    "create": (Table, Chain, Set, Map, Element),
    "insert": (Rule,),
    "flush": (Table, Chain, Set, Map),
    "delete": (Table, Chain, Set, Map, Element),
}


@dataclass(frozen=True, slots=True)
class Operation:
    verb: str
    obj: NftObject


class Transaction:
    """Operations for table ``family``/``table``, in order.

    >>> tx = Transaction("ip", "pynet")
    >>> tx.add(Table(comment="demo"))
    >>> tx.add(Chain("services"))
    >>> tx.add(Rule("services", "ip daddr 10.96.0.1 tcp dport 80 accept"))
    >>> print(tx)
    add table ip pynet { comment "demo" ; }
    add chain ip pynet services
    add rule ip pynet services ip daddr 10.96.0.1 tcp dport 80 accept
    """

    def __init__(self, family: str, table: str) -> None:
        self.family = family
        self.table = table
        self.operations: list[Operation] = []
        self.err: NftError | None = None

    def _op(self, verb: str, obj: NftObject) -> None:
        if self.err is not None:
            return
        if not isinstance(obj, _ALLOWED[verb]):
            self.err = NftError(f"cannot {verb} a {type(obj).__name__}")
            return
        self.operations.append(Operation(verb, obj))

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

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def lines(self) -> Iterator[str]:
        """One command per operation, except that consecutive element operations with the same
        verb and set/map become one command (up to ELEMENT_BATCH elements): libnftables' cost is
        per command, and 10,000 single-element commands take seconds.
        """
        ops = self.operations
        i = 0
        while i < len(ops):
            op = ops[i]
            if not isinstance(op.obj, Element):
                yield op.obj.render(op.verb, self.family, self.table)
                i += 1
                continue
            j = i
            while (j < len(ops) and j - i < ELEMENT_BATCH and ops[j].verb == op.verb
                   and isinstance(ops[j].obj, Element) and ops[j].obj.container == op.obj.container):  # type: ignore[union-attr]
                j += 1
            bodies = ", ".join(o.obj.body(op.verb) for o in ops[i:j])  # type: ignore[union-attr]
            yield f"{op.verb} element {self.family} {self.table} {op.obj.container} {{ {bodies} }}"
            i = j

    def __str__(self) -> str:
        return "".join(line + "\n" for line in self.lines())
