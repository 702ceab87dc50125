"""The nat dispatch: from a packet's destination to its service chain in a bounded number of rules.

kube-proxy's KUBE-SERVICES is one linear chain: the first packet of every connection (and every packet
that is *not* for a service) walks all of it, so its cost grows with the number of services. pynet
cuts that walk twice:

1. an ipset (``hash:ip,port``) of all service destinations: one rule sends non-service traffic past
   the dispatch (``! --match-set`` falls through to the NodePort check);
2. the dispatch is a prefix tree over destination addresses: each tree chain matches at most
   ``2**STRIDE`` sub-prefixes (``-d 10.96.4.0/22 -j PYNET-DSP-...``) or, at a leaf, at most
   ``LEAF_MAX`` destinations. Paths are compressed (a node starts at the longest prefix its
   destinations share), so with 10,000 services a packet visits about fifty rules, not 10,000.

Tree chain names hash their prefix, so adding or removing a service rewrites only the chains on that
destination's path (the backend compares rendered chains with what it applied last).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from pynet.proxy.backends.iptables.naming import dispatch_chain
from pynet.proxy.backends.iptables.render import DispatchEntry
from pynet.proxy.model import IPNetwork

__all__ = ["LEAF_MAX", "STRIDE", "build_tree"]

STRIDE = 4  # address bits consumed per tree level: at most 16 sub-prefix rules per chain
LEAF_MAX = 16  # a node with at most this many destinations lists them directly
INLINE_MAX = 2  # a child with this few destinations is listed in its parent, not given a chain


@functools.lru_cache(maxsize=1 << 16)
def _node(addr: int, length: int, version: int) -> tuple[str, str]:
    """(CIDR text, chain name) of the tree node for prefix addr/length (cached: rebuilt every sync)."""
    cidr = str(_network(addr, length, version))
    return cidr, dispatch_chain(cidr)


def _build(entries: Sequence[DispatchEntry], keys: Sequence[int], chains: dict[str, list[str]]) -> str:
    lo, hi = keys[0], keys[-1]  # sorted by address
    version = entries[0].ip.version
    bits = 32 if version == 4 else 128
    length = bits - (lo ^ hi).bit_length()  # path compression: the longest shared prefix
    name = _node(lo >> (bits - length) << (bits - length), length, version)[1]
    rules: list[str] = []
    chains[name] = rules
    if len(entries) <= LEAF_MAX or length == bits:
        rules.extend(e.rule() for e in entries)
        return name
    child_len = min(length + STRIDE, bits)
    shift = bits - child_len
    start = 0
    while start < len(entries):  # consecutive runs with the same child prefix
        key = keys[start] >> shift
        end = start + 1
        while end < len(entries) and keys[end] >> shift == key:
            end += 1
        if end - start <= INLINE_MAX:
            rules.extend(e.rule() for e in entries[start:end])
        else:
            sub = _build(entries[start:end], keys[start:end], chains)
            rules.append(f"-d {_node(key << shift, child_len, version)[0]} -j {sub}")
        start = end
    return name


def _network(addr: int, length: int, version: int) -> IPNetwork:
    return IPv4Network((addr, length)) if version == 4 else IPv6Network((addr, length))


def _key(e: DispatchEntry) -> tuple[int, str, int]:
    return e.key


def build_tree(entries: Sequence[DispatchEntry]) -> tuple[str | None, dict[str, list[str]]]:
    """The root chain and every tree chain (name -> rules) for ``entries`` of one family."""
    if not entries:
        return None, {}
    chains: dict[str, list[str]] = {}
    ordered = sorted(entries, key=_key)
    root = _build(ordered, [e.key[0] for e in ordered], chains)
    return root, chains
