"""The seam every service data plane implements.

A backend is a renderer plus an applier. It receives a complete :class:`ProxyState` snapshot, the set
of services that changed since the last successful sync, and whether this must be a full sync. It
owns only its own kernel objects (nft table ``pynet``, iptables chains ``PYNET-*``, IPVS device
``pynet-ipvs0``, eBPF pins under ``/sys/fs/bpf/pynet``) and never touches anything else.

Semantics (which endpoints serve which traffic) come from :mod:`pynet.proxy.topology`; backends only
express them.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pynet.errors import PynetError
from pynet.proxy.model import NamespacedName
from pynet.proxy.state import ProxyState

__all__ = ["Backend", "BackendUnavailable", "SyncError"]


class SyncError(PynetError):
    """Applying a sync failed; the runner retries and forces a full sync next time."""


class BackendUnavailable(PynetError):
    """The data plane cannot run here (missing kernel feature or tool); the message says why."""


class Backend(Protocol):
    name: ClassVar[str]

    @classmethod
    def probe(cls) -> None:
        """Raise :class:`BackendUnavailable` with a reason when this backend cannot work here."""
        ...

    def setup(self) -> None:
        """Idempotent initialisation of the backend's own objects (hooks, base chains)."""
        ...

    def sync(self, state: ProxyState, changed: frozenset[NamespacedName], full: bool) -> None:
        """Make the data plane match ``state``.

        With ``full=False`` only services in ``changed`` need re-rendering (services absent from
        ``state`` but present in ``changed`` were deleted). Raises :class:`SyncError`; a failed sync
        leaves the previously applied rules in place (each apply is one atomic transaction).
        """
        ...

    def cleanup(self) -> None:
        """Remove everything this backend owns in the current network namespace. Idempotent."""
        ...
