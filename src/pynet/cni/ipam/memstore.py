"""An in-memory :class:`~pynet.cni.ipam.store.Store` for tests (like host-local's fake store).

A process-local lock stands in for the file lock; nothing survives the object.
"""

from __future__ import annotations

import _thread  # not threading: this module is on the plugin's import path, keep it cheap
from typing import Self

from pynet.cni.ipam.ranges import IPAddress
from pynet.cni.ipam.store import Owner

__all__ = ["MemStore"]


class MemStore:
    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self.records: dict[IPAddress, Owner] = {}
        self.last: dict[str, IPAddress] = {}

    def __enter__(self) -> Self:
        self._lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def reserve(self, owner: Owner, ip: IPAddress, range_id: str) -> bool:
        if ip in self.records:
            return False
        self.records[ip] = owner
        self.last[range_id] = ip
        return True

    def last_reserved(self, range_id: str) -> IPAddress | None:
        return self.last.get(range_id)

    def release(self, owner: Owner) -> list[IPAddress]:
        freed = [ip for ip, o in self.records.items() if o == owner]
        for ip in freed:
            del self.records[ip]
        return freed

    def release_ip(self, ip: IPAddress) -> None:
        self.records.pop(ip, None)

    def owned_by(self, owner: Owner) -> list[IPAddress]:
        return sorted((ip for ip, o in self.records.items() if o == owner), key=lambda ip: (ip.version, ip))

    def allocations(self) -> dict[IPAddress, Owner]:
        return dict(self.records)
