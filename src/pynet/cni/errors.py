"""CNI error codes and the error value every failing command turns into.

Invariant: only :mod:`pynet.cni.skel` renders a :class:`CniError` to the spec's JSON (``cniVersion``,
``code``, ``msg``, ``details``) on stdout; everything below raises. Codes 1-99 are the spec's
well-known ones; 100+ would be plugin specific; 999 is what skel uses for an unexpected exception.
"""

from __future__ import annotations

from enum import IntEnum  # N.B. not a start-up cost of its own: json -> re imports enum anyway

from pynet.errors import PynetError

TYPE_CHECKING = False  # the plugin imports this on every call: no typing at run time
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CniError", "ErrCode"]


class ErrCode(IntEnum):
    """Well-known error codes of the CNI specification (1.1.0, section "Error")."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    PLUGIN_NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    INTERNAL = 999


class CniError(PynetError):
    """A failure to report to the runtime: ``code`` (an :class:`ErrCode` or any int), ``msg``, ``details``."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_dict(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CniError:
        """Rebuild an error another plugin printed (IPAM delegation)."""
        code = data.get("code")
        return cls(code if isinstance(code, int) else ErrCode.INTERNAL, str(data.get("msg", "")),
                   str(data.get("details", "") or ""))

    def __repr__(self) -> str:
        return f"CniError(code={self.code}, msg={self.msg!r}, details={self.details!r})"
