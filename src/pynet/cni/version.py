"""Spec versions pynet speaks, and which command needs which version.

``SUPPORTED`` is what VERSION reports. 0.1.0-0.3.1 are accepted too (their result shapes are cheap to
produce, see :meth:`pynet.cni.types.Result.to_dict`); CHECK needs 0.4.0 and GC/STATUS need 1.1.0,
from a table instead of a repeated gate per command.
"""

from __future__ import annotations

__all__ = ["CURRENT", "MIN_VERSION", "SUPPORTED", "parse_version", "version_at_least"]

CURRENT = "1.1.0"
SUPPORTED: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

#: lowest config cniVersion that allows each command
MIN_VERSION: dict[str, str] = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; raises ValueError on anything else.

    >>> parse_version("0.4.0")
    (0, 4, 0)
    """
    parts = text.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"invalid version {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def version_at_least(version: str, minimum: str) -> bool:
    """Compare two ``X.Y.Z`` versions.

    >>> version_at_least("1.0.0", "0.4.0")
    True
    """
    return parse_version(version) >= parse_version(minimum)
