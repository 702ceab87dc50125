"""pynet's IPAM: host-local's configuration and on-disk layout, with an in-process API.

Modules: :mod:`.ranges` (range canonicalisation and iteration), :mod:`.config` (the ``ipam``
section, ``usePodCidr``, requested IPs), :mod:`.store` (the Store seam and :class:`Owner`),
:mod:`.filestore` (file per address, flock, owner index), :mod:`.memstore` (in-memory fake),
:mod:`.allocator` (round-robin over one range set), :mod:`.api` (the per-command functions that the
main plugin may call instead of executing ``pynet-ipam``) and :mod:`.plugin` (the executable's
``main``). Everything here imports only the standard library and ``pynet.cni`` spec types.
"""

from __future__ import annotations

from pynet.cni.ipam.api import ipam_add, ipam_check, ipam_command, ipam_del, ipam_gc, ipam_status
from pynet.cni.ipam.config import DEFAULT_POD_CIDR_FILE, IpamConfig, load_ipam_config
from pynet.cni.ipam.filestore import DEFAULT_DATA_DIR, FileStore
from pynet.cni.ipam.memstore import MemStore
from pynet.cni.ipam.store import Owner, Store

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_POD_CIDR_FILE",
    "FileStore",
    "IpamConfig",
    "MemStore",
    "Owner",
    "Store",
    "ipam_add",
    "ipam_check",
    "ipam_command",
    "ipam_del",
    "ipam_gc",
    "ipam_status",
    "load_ipam_config",
]
