"""Hand out one address of one range set to an owner, round-robin, through a :class:`Store`.

Call only with the store's lock held (``with store:``): the allocator reads the round-robin
position, probes and reserves in one critical section, so concurrent plugin processes never pick the
same address. Order: the owner's existing address in this set (a repeated ADD gets the same answer),
else the requested address, else the first free one after ``last_reserved_ip.<range_id>``, wrapping
around once; the gateway is never handed out.
"""

from __future__ import annotations

import ipaddress

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam.ranges import IPAddress, Range, RangeSet
from pynet.cni.ipam.store import Owner, Store
from pynet.cni.types import IPConfig

__all__ = ["IPAllocator"]


def _ip_config(ip: IPAddress, r: Range) -> IPConfig:
    return IPConfig(ipaddress.ip_interface(f"{ip}/{r.subnet.prefixlen}"), r.gateway)


class IPAllocator:
    def __init__(self, range_set: RangeSet, store: Store, range_id: str, network: str = "") -> None:
        self.range_set = range_set
        self.store = store
        self.range_id = range_id
        self.network = network

    def _where(self) -> str:
        net = f" of network {self.network}" if self.network else ""
        return f"range set {self.range_id} [{self.range_set}]{net}"

    def existing(self, owner: Owner) -> IPConfig | None:
        for ip in self.store.owned_by(owner):
            r = self.range_set.range_for(ip)
            if r is not None:
                return _ip_config(ip, r)
        return None

    def get(self, owner: Owner, requested: IPAddress | None = None) -> tuple[IPConfig, bool]:
        """``(address, newly_reserved)``; raises CniError 7 (bad request) or 11 (taken / exhausted)."""
        have = self.existing(owner)
        if have is not None:
            if requested is not None and requested != have.address.ip:
                raise CniError(ErrCode.INVALID_NETWORK_CONFIG,
                               f"{owner} already holds {have.address.ip} in {self._where()}; "
                               f"it cannot also get the requested {requested}")
            return have, False
        if requested is not None:
            r = self.range_set.range_for(requested)
            if r is None:
                raise CniError(ErrCode.INVALID_NETWORK_CONFIG,
                               f"requested IP {requested} is outside {self._where()}")
            if requested == r.gateway:
                raise CniError(ErrCode.INVALID_NETWORK_CONFIG,
                               f"requested IP {requested} is the gateway of {r}")
            if not self.store.reserve(owner, requested, self.range_id):
                raise CniError(ErrCode.TRY_AGAIN_LATER,
                               f"requested IP {requested} is already allocated in {self._where()}")
            return _ip_config(requested, r), True
        for ip, r in self.range_set.iter_from(self.store.last_reserved(self.range_id)):
            if self.store.reserve(owner, ip, self.range_id):
                return _ip_config(ip, r), True
        raise CniError(ErrCode.TRY_AGAIN_LATER,
                       f"no free IP address in {self._where()}: all {self.range_set.size} are allocated")
