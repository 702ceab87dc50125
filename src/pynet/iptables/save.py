"""Parse ``iptables-save`` output (and restore input) into tables, chains and rules.

Only what pynet needs to reason about: which chains exist in which table, their policies, and each
rule as its chain plus the argument text after ``-A CHAIN`` (exactly as the tool printed it, so it can
be fed back as ``-D CHAIN <text>``). Comment lines and counters are ignored.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from pynet.iptables.errors import ParseError

__all__ = ["SavedRule", "SavedTable", "jump_target", "parse_save", "split_args"]


@dataclass(frozen=True, slots=True)
class SavedRule:
    chain: str
    spec: str  # the text after "-A CHAIN "

    @property
    def target(self) -> str | None:
        return jump_target(self.spec)


@dataclass
class SavedTable:
    name: str
    chains: dict[str, str] = field(default_factory=dict)  # chain -> policy ("-" for user chains)
    rules: list[SavedRule] = field(default_factory=list)

    def rules_of(self, chain: str) -> list[SavedRule]:
        return [r for r in self.rules if r.chain == chain]


def split_args(text: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError as err:
        raise ParseError(f"cannot tokenize {text!r}: {err}") from err


def jump_target(spec: str) -> str | None:
    """The ``-j``/``-g`` target of a rule spec, or None."""
    args = split_args(spec) if '"' in spec else spec.split()
    for i, arg in enumerate(args[:-1]):
        if arg in ("-j", "--jump", "-g", "--goto"):
            return args[i + 1]
    return None


def parse_save(text: str) -> dict[str, SavedTable]:
    tables: dict[str, SavedTable] = {}
    current: SavedTable | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], SavedTable(line[1:]))
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise ParseError(f"line {lineno}: {line!r} outside a table", line=lineno)
        elif line.startswith(":"):
            parts = line[1:].split()
            current.chains[parts[0]] = parts[1] if len(parts) > 1 else "-"
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            current.rules.append(SavedRule(chain, rest[0] if rest else ""))
        else:
            raise ParseError(f"line {lineno}: unexpected {line!r}", line=lineno)
    return tables
