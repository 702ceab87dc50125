"""The allocation store seam: who holds which address, behind one exclusive lock.

Invariants every :class:`Store` keeps:

* all methods except ``__enter__`` are called only inside ``with store:`` (one exclusive lock, held
  across a whole allocate or release, also against other processes for the file store);
* an address has at most one owner; :meth:`Store.reserve` returns False rather than steal;
* :meth:`Store.release` is idempotent and releases only addresses whose record names that owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Self

from pynet.cni.ipam.ranges import IPAddress

__all__ = ["Owner", "Store"]

@dataclass(frozen=True, slots=True, order=True)
class Owner:
    """One attachment: the container id and the interface name inside it."""

    container_id: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.container_id}/{self.ifname}"


class Store(Protocol):
    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def reserve(self, owner: Owner, ip: IPAddress, range_id: str) -> bool:
        """Record ``owner`` for ``ip`` and remember it as the last one of ``range_id``; False if taken."""
        ...

    def last_reserved(self, range_id: str) -> IPAddress | None: ...

    def release(self, owner: Owner) -> list[IPAddress]:
        """Free every address of ``owner``; returns what was freed (empty when nothing was held)."""
        ...

    def release_ip(self, ip: IPAddress) -> None:
        """Free one address whoever holds it (GC); missing is fine."""
        ...

    def owned_by(self, owner: Owner) -> list[IPAddress]: ...

    def allocations(self) -> dict[IPAddress, Owner]:
        """Every reserved address and its owner."""
        ...
