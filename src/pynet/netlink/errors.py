"""netlink errors: one small hierarchy, translated from pyroute2's ``NetlinkError`` at this boundary.

``translating(what)`` maps errno: ENODEV -> :class:`LinkNotFound`, EEXIST -> :class:`LinkExists`,
ENOENT on a namespace path -> :class:`NetnsNotFound`, anything else -> :class:`NetlinkOpError`.
The cause is always chained.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from pynet.errors import PynetError

__all__ = ["LinkExists", "LinkNotFound", "NetlinkOpError", "NetnsNotFound", "translating"]


class NetlinkOpError(PynetError):
    """A netlink request failed; ``errno`` keeps the kernel's answer."""

    def __init__(self, msg: str, err_no: int = 0) -> None:
        super().__init__(msg)
        self.errno = err_no


class LinkNotFound(NetlinkOpError):
    pass


class LinkExists(NetlinkOpError):
    pass


class NetnsNotFound(NetlinkOpError):
    pass


@contextmanager
def translating(what: str) -> Iterator[None]:
    """Turn pyroute2/OS errors raised in the block into this package's errors."""
    from pyroute2.netlink.exceptions import NetlinkError  # lazy: keep `import pynet.netlink.errors` cheap

    try:
        yield
    except NetlinkError as err:
        code = int(err.code or 0)
        cls = {errno.ENODEV: LinkNotFound, errno.EEXIST: LinkExists}.get(code, NetlinkOpError)
        raise cls(f"{what}: {err}", code) from err
