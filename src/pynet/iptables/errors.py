"""Errors of the iptables layer. Tool failures are translated here, once, with the tool's message."""

from __future__ import annotations

from pynet.errors import PynetError

__all__ = ["IptablesError", "ParseError"]


class IptablesError(PynetError):
    """An iptables/ip6tables/ipset command failed; ``line`` is the failing restore line when known."""

    def __init__(self, message: str, *, returncode: int = 1, line: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.line = line


class ParseError(IptablesError):
    """Restore or save text could not be parsed (the fake raises it like iptables-restore fails)."""
