"""Build ``iptables-restore`` input: one buffer per table, rendered in the order the tool needs.

Invariants of the rendered text, per table section (``*nat`` then ``*filter``):

* every chain the transaction writes or deletes is declared first with ``:CHAIN - [0:0]``; under
  ``--noflush`` a declaration creates the chain or *flushes* it, so re-declaring a chain and re-adding its
  rules rewrites exactly that chain and nothing else;
* then the rule lines (``-A``/``-I``/``-D``) in the order they were written;
* then ``-X`` for the chains being deleted (they were flushed by their declaration, and every chain that
  jumped to them was rewritten or deleted in the same transaction), then ``COMMIT``.

The whole text goes to one ``iptables-restore --noflush`` call: one atomic transaction per table.
Arguments are quoted only when they need it (comments with spaces).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["RestoreInput", "Table", "quote"]


class Table(enum.StrEnum):
    NAT = "nat"
    FILTER = "filter"


_TABLE_ORDER = (Table.NAT, Table.FILTER)


def quote(arg: str) -> str:
    """Quote one argument the way iptables-restore's tokenizer reads it back."""
    if arg and not any(c in arg for c in ' \t"\\\''):
        return arg
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class _Section:
    __slots__ = ("chains", "deleted", "lines")

    def __init__(self) -> None:
        self.chains: dict[str, None] = {}  # declared chains, in first-declared order
        self.lines: list[str] = []
        self.deleted: dict[str, None] = {}


class RestoreInput:
    """An ordered iptables-restore transaction over the nat and filter tables.

    >>> r = RestoreInput()
    >>> r.declare(Table.NAT, "PYNET-SERVICES")
    >>> r.append(Table.NAT, "PYNET-SERVICES", "-d 10.96.0.1/32 -j PYNET-SVC-X")
    >>> print(r.render(), end="")
    *nat
    :PYNET-SERVICES - [0:0]
    -A PYNET-SERVICES -d 10.96.0.1/32 -j PYNET-SVC-X
    COMMIT
    """

    def __init__(self) -> None:
        self._sections: dict[Table, _Section] = {}

    def _section(self, table: Table) -> _Section:
        sec = self._sections.get(table)
        if sec is None:
            sec = self._sections[table] = _Section()
        return sec

    def declare(self, table: Table, chain: str) -> None:
        """Create ``chain`` or flush it (under --noflush)."""
        self._section(table).chains[chain] = None

    def write_chain(self, table: Table, chain: str, rules: Iterable[str]) -> None:
        """Declare (flush) ``chain`` and append ``rules`` (each the text after ``-A CHAIN``)."""
        sec = self._section(table)
        sec.chains[chain] = None
        prefix = f"-A {chain} "
        sec.lines.extend(prefix + r for r in rules)

    def append(self, table: Table, chain: str, rule: str) -> None:
        self._section(table).lines.append(f"-A {chain} {rule}")

    def insert(self, table: Table, chain: str, rule: str) -> None:
        """Insert at the top of ``chain`` (used for the jumps from built-in chains)."""
        self._section(table).lines.append(f"-I {chain} 1 {rule}")

    def delete_rule(self, table: Table, chain: str, rule: str) -> None:
        self._section(table).lines.append(f"-D {chain} {rule}")

    def delete_chain(self, table: Table, chain: str) -> None:
        """Flush and delete ``chain`` at the end of this table's section."""
        sec = self._section(table)
        sec.chains[chain] = None
        sec.deleted[chain] = None

    def is_empty(self) -> bool:
        return not any(s.chains or s.lines for s in self._sections.values())

    def tables(self) -> list[Table]:
        return [t for t in _TABLE_ORDER if t in self._sections]

    def declared(self, table: Table) -> list[str]:
        sec = self._sections.get(table)
        return list(sec.chains) if sec else []

    def deleted(self, table: Table) -> list[str]:
        sec = self._sections.get(table)
        return list(sec.deleted) if sec else []

    def render(self) -> str:
        out: list[str] = []
        for table in self.tables():
            sec = self._sections[table]
            if not (sec.chains or sec.lines):
                continue
            out.append(f"*{table.value}")
            out.extend(f":{c} - [0:0]" for c in sec.chains)
            out.extend(sec.lines)
            out.extend(f"-X {c}" for c in sec.deleted)
            out.append("COMMIT")
        return "\n".join(out) + "\n" if out else ""

    def __str__(self) -> str:
        return self.render()
