"""Typed nftables objects, rendered into the nft language for one table.

Every object knows how to render itself for a verb (``add``, ``create``, ``flush``, ``delete``) inside
one ``family``/``table``; :class:`pynet.nft.transaction.Transaction` strings them together. Rules and
element keys/values are nft-language fragments (``"ip daddr 10.96.0.1 tcp dport 80 accept"``,
``"10.96.0.1 . tcp . 80"``): we generate them ourselves, and the text language is the only form in
which libnftables accepts every map we need (MACHINE-NOTES: a JSON map whose data is a concatenation
is silently turned into a set and crashes).

Names: nft identifiers may contain letters, digits and ``/ - _ .``; :func:`check_name` enforces that
and the 256-character limit (NFT_NAME_MAXLEN) at construction, so a bad name fails in our code and not
halfway through a kernel transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NFT_NAME_MAX", "Chain", "Element", "Map", "Rule", "Set", "Table", "check_name"]

#: NFT_NAME_MAXLEN, including the terminating NUL
NFT_NAME_MAX = 255
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9/_.\-]*$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid nft identifier, else raise ValueError.

    >>> check_name("service-ABCD1234-default/web/tcp/http")
    'service-ABCD1234-default/web/tcp/http'
    """
    if len(name) > NFT_NAME_MAX or not _NAME.match(name):
        raise ValueError(f"invalid nftables name {name!r}")
    return name


def _quote(comment: str) -> str:
    return '"' + comment.replace('"', "'") + '"'


@dataclass(frozen=True, slots=True)
class Table:
    comment: str | None = None

    def render(self, verb: str, family: str, table: str) -> str:
        head = f"{verb} table {family} {table}"
        if verb in ("add", "create") and self.comment:
            return f"{head} {{ comment {_quote(self.comment)} ; }}"
        return head


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain; base chains give ``type``, ``hook`` and a numeric ``priority``."""

    name: str
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    def render(self, verb: str, family: str, table: str) -> str:
        head = f"{verb} chain {family} {table} {self.name}"
        if verb not in ("add", "create"):
            return head
        parts = []
        if self.hook is not None:
            parts.append(f"type {self.type} hook {self.hook} priority {self.priority} ;")
        if self.comment:
            parts.append(f"comment {_quote(self.comment)} ;")
        return f"{head} {{ {' '.join(parts)} }}" if parts else head


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    rule: str
    comment: str | None = None

    def render(self, verb: str, family: str, table: str) -> str:
        if verb not in ("add", "insert"):
            raise ValueError(f"rules support add/insert here, not {verb}")
        text = f"{verb} rule {family} {table} {self.chain} {self.rule}"
        return f"{text} comment {_quote(self.comment)}" if self.comment else text


@dataclass(frozen=True, slots=True)
class Set:
    name: str
    type: str
    flags: tuple[str, ...] = ()
    timeout: int | None = None  # seconds; elements expire (needs flags timeout)
    comment: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)

    kind = "set"

    def _body(self) -> str:
        parts = [f"type {self.type} ;"]
        if self.flags:
            parts.append(f"flags {','.join(self.flags)} ;")
        if self.timeout is not None:
            parts.append(f"timeout {self.timeout}s ;")
        if self.comment:
            parts.append(f"comment {_quote(self.comment)} ;")
        return " ".join(parts)

    def render(self, verb: str, family: str, table: str) -> str:
        head = f"{verb} {self.kind} {family} {table} {self.name}"
        return f"{head} {{ {self._body()} }}" if verb in ("add", "create") else head


@dataclass(frozen=True, slots=True)
class Map:
    name: str
    type: str  # "KEY : VALUE", e.g. "ipv4_addr . inet_proto . inet_service : verdict"
    flags: tuple[str, ...] = ()
    comment: str | None = None

    def __post_init__(self) -> None:
        check_name(self.name)

    kind = "map"

    def render(self, verb: str, family: str, table: str) -> str:
        head = f"{verb} map {family} {table} {self.name}"
        if verb not in ("add", "create"):
            return head
        parts = [f"type {self.type} ;"]
        if self.flags:
            parts.append(f"flags {','.join(self.flags)} ;")
        if self.comment:
            parts.append(f"comment {_quote(self.comment)} ;")
        return f"{head} {{ {' '.join(parts)} }}"


@dataclass(frozen=True, slots=True)
class Element:
    """An element of set ``container`` (value None) or of map ``container`` (key : value)."""

    container: str
    key: str
    value: str | None = None

    def body(self, verb: str) -> str:
        return self.key if self.value is None or verb == "delete" else f"{self.key} : {self.value}"

    def render(self, verb: str, family: str, table: str) -> str:
        return f"{verb} element {family} {table} {self.container} {{ {self.body(verb)} }}"
