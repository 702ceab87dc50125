"""Read and write ``/proc/sys`` values, here or inside another network namespace.

Hazard: the ``/proc/sys/net`` entry a process opens belongs to the network namespace of that
process. Writing a *pod's* sysctl therefore needs a process inside the pod netns. This module is the
only place that does it: :func:`write_in_netns` goes through :mod:`pynet.netlink.nsexec`, the one
module allowed to run anything inside another namespace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pynet.netlink.errors import NetlinkOpError
from pynet.netlink.nsexec import NetnsExec, default_exec

__all__ = ["read", "sysctl_path", "write", "write_in_netns"]

def sysctl_path(key: str) -> str:
    """``net.ipv4.ip_forward`` -> ``/proc/sys/net/ipv4/ip_forward`` (dots inside ifnames are not supported)."""
    return "/proc/sys/" + key.replace(".", "/")


def read(key: str) -> str:
    with open(sysctl_path(key)) as fh:
        return fh.read().strip()


def write(key: str, value: str, *, only_if_different: bool = True) -> None:
    """Write ``value`` in the caller's namespace (skipped when already equal)."""
    path = sysctl_path(key)
    try:
        if only_if_different and read(key) == value:
            return
        with open(path, "w") as fh:
            fh.write(value)
    except OSError as err:
        raise NetlinkOpError(f"sysctl {key}={value}: {err}", err.errno or 0) from err


def write_in_netns(netns: str, values: Mapping[str, str], nsexec: NetnsExec | None = None) -> None:
    """Write ``values`` inside the namespace at path ``netns`` (through :mod:`pynet.netlink.nsexec`)."""
    if values:
        os.close((nsexec or default_exec()).netlink_socket(netns, values))
