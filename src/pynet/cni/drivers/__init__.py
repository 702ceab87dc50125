"""Attachment drivers by ``mode``; see :mod:`pynet.cni.drivers.base` for the protocol."""

from __future__ import annotations

from pynet.cni.drivers.base import AttachmentSpec, Driver

__all__ = ["AttachmentSpec", "Driver", "get_driver"]


def get_driver(mode: str) -> Driver:
    """The driver for ``mode`` (imported lazily so a mode's dependencies load only when used)."""
    if mode == "bridge":
        from pynet.cni.drivers.bridge import BridgeDriver

        return BridgeDriver()
    if mode == "macvlan":
        from pynet.cni.drivers import macvlan  # type: ignore[attr-defined, unused-ignore]

        return macvlan.MacvlanDriver()  # type: ignore[no-any-return, unused-ignore]
    raise KeyError(mode)
