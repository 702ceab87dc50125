"""The iptables service backend (``pynet agent --backend iptables``); see :mod:`.backend`."""

from __future__ import annotations

from pynet.proxy.backends.iptables.backend import DispatchMode, IptablesBackend

__all__ = ["DispatchMode", "IptablesBackend"]
