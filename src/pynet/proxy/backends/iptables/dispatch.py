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

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from pynet.proxy.backends.iptables.naming import dispatch_chain
from pynet.proxy.backends.iptables.render import DispatchEntry
from pynet.proxy.model import IPNetwork

__all__ = ["LEAF_MAX", "STRIDE", "build_tree"]

STRIDE = 4  # address bits consumed per tree level: at most 16 sub-prefix rules per chain
LEAF_MAX = 16  # a node with at most this many destinations lists them directly
INLINE_MAX = 2  # a child with this few destinations is listed in its parent, not given a chain


def _common_prefix(entries: Sequence[DispatchEntry]) -> IPNetwork:
    lo, hi = int(entries[0].ip), int(entries[-1].ip)  # entries are sorted by address
    bits = entries[0].ip.max_prefixlen
    length = bits - (lo ^ hi).bit_length()
    shift = bits - length
    return _network(lo >> shift << shift, length, entries[0].ip.version)


def _build(entries: Sequence[DispatchEntry], chains: dict[str, list[str]]) -> str:
    prefix = _common_prefix(entries)
    name = dispatch_chain(str(prefix))
    rules: list[str] = []
    chains[name] = rules
    if len(entries) <= LEAF_MAX or prefix.prefixlen == prefix.max_prefixlen:
        rules.extend(e.rule() for e in entries)
        return name
    child_len = min(prefix.prefixlen + STRIDE, prefix.max_prefixlen)
    shift = prefix.max_prefixlen - child_len
    groups: dict[int, list[DispatchEntry]] = {}
    for e in entries:
        groups.setdefault(int(e.ip) >> shift, []).append(e)
    for key in sorted(groups):
        group = groups[key]
        if len(group) <= INLINE_MAX:
            rules.extend(e.rule() for e in group)
        else:
            sub = _build(group, chains)
            child = _network(key << shift, child_len, prefix.version)
            rules.append(f"-d {child} -j {sub}")
    return name


def _network(addr: int, length: int, version: int) -> IPNetwork:
    return IPv4Network((addr, length)) if version == 4 else IPv6Network((addr, length))


def build_tree(entries: Sequence[DispatchEntry]) -> tuple[str | None, dict[str, list[str]]]:
    """The root chain and every tree chain (name -> rules) for ``entries`` of one family."""
    if not entries:
        return None, {}
    chains: dict[str, list[str]] = {}
    root = _build(sorted(entries), chains)
    return root, chains
