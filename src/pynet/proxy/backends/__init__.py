"""Registry of service data planes. Modules are imported only when chosen (bcc, pyroute2 IPVS ...)."""

from __future__ import annotations

import importlib
from typing import cast

from pynet.proxy.backends.base import Backend, BackendUnavailable, SyncError

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "SyncError", "load_backend"]

#: backend name -> "module:ClassName"
BACKENDS: dict[str, str] = {
    "nftables": "pynet.proxy.backends.nftables:NftablesBackend",
    "iptables": "pynet.proxy.backends.iptables:IptablesBackend",
    "ipvs": "pynet.proxy.backends.ipvs:IpvsBackend",
    "ebpf": "pynet.proxy.backends.ebpf:EbpfBackend",
}


def load_backend(name: str) -> type[Backend]:
    """Import and return the backend class called ``name``; BackendUnavailable when unknown or absent."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}") from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise BackendUnavailable(f"backend {name!r} is not available in this build: {err}") from err
    return cast("type[Backend]", getattr(module, class_name))
