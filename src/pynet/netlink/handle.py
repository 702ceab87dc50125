"""Open pyroute2 ``IPRoute`` handles for "here" or for another namespace.

``iproute(None)`` talks to the namespace of the calling thread (the "host" of a CNI call: the node).
``iproute(path, nsexec=..., sysctls=...)`` wraps a NETLINK_ROUTE socket created inside ``path`` by
:mod:`pynet.netlink.nsexec` (setns-and-back in a single-threaded plugin, a forked helper in the
agent). This is several times cheaper than pyroute2's ``IPRoute(netns=...)`` (which starts a helper
through multiprocessing: ~15-40 ms here) and never creates a missing namespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pynet.netlink.nsexec import NetnsExec, default_exec

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

__all__ = ["iproute"]


@contextmanager
def iproute(netns: str | None = None, *, nsexec: NetnsExec | None = None,
            sysctls: Mapping[str, str] | None = None) -> Iterator[IPRoute]:
    """Yield an ``IPRoute`` for ``netns`` (None = the caller's own); raises NetnsNotFound."""
    from pyroute2.iproute.linux import IPRoute

    if not netns:
        ipr = IPRoute()
        try:
            yield ipr
        finally:
            ipr.close()
        return
    fd = (nsexec or default_exec()).netlink_socket(netns, sysctls)
    try:
        ipr = IPRoute(fileno=fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield ipr
    finally:
        ipr.close()  # closes fd too
