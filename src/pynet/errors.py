"""Root of pynet's exception hierarchy.

Each layer derives its own small hierarchy from these (netlink ``LinkNotFound``, nft ``NftError``,
k8s ``ApiError``, proxy ``SyncError``, cni ``CniError``) and translates foreign exceptions once, at
its boundary, always chaining the cause (``raise New(...) from err``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "PynetError"]


class PynetError(Exception):
    """Base class of every error pynet raises on purpose."""


class ConfigError(PynetError):
    """A configuration value (flag, file, CNI config key) is missing or invalid."""
