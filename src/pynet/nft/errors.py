"""Errors of the nftables layer, and predicates so callers never parse libnftables messages.

libnftables reports failures as text on its error buffer ("Error: Could not process rule: No such file
or directory"). :class:`NftError` carries that text and the transaction's first lines; the predicates
below look for the kernel's errno strings, the way knftables' ``IsNotFound``/``IsAlreadyExists`` do.
"""

from __future__ import annotations

from pynet.errors import PynetError

__all__ = ["NftError", "NftUnavailable", "is_already_exists", "is_busy", "is_not_found"]


class NftError(PynetError):
    """Running (or checking) a transaction failed; nothing from it was applied."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail  # libnftables' error text, verbatim

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}: {self.detail.strip()}" if self.detail else base


class NftUnavailable(NftError):
    """libnftables or the kernel's nf_tables cannot be used here."""


def _has(err: BaseException, *needles: str) -> bool:
    text = (err.detail if isinstance(err, NftError) else "") + " " + str(err)
    return any(n in text for n in needles)


def is_not_found(err: BaseException) -> bool:
    """True when the failure was a missing table/chain/set/element (ENOENT)."""
    return _has(err, "No such file or directory", "does not exist")


def is_already_exists(err: BaseException) -> bool:
    """True when ``create``/``add element`` hit an existing object with other data (EEXIST)."""
    return _has(err, "File exists")


def is_busy(err: BaseException) -> bool:
    """True when a chain or set could not be deleted because something still refers to it (EBUSY)."""
    return _has(err, "Device or resource busy")
