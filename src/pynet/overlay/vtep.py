"""VTEP identity: the MAC and address a node's VXLAN device carries, and how peers learn them.

Pure functions, no I/O. Invariants:

- A node's VTEP address is the first address (the network address, ``.0``) of its first IPv4 pod
  CIDR, used as a /32 on the VXLAN device, like flannel. It never collides with a pod (IPAM starts at
  ``.1`` for the gateway and ``.2`` for pods) and gives node-originated traffic towards remote pods a
  source address the remote node routes back through the tunnel.
- A node's VTEP MAC is the one published in its ``pynet.io/vtep-mac`` annotation when present (real
  API server mode: the agent publishes :meth:`OverlayController.local_annotations`). Otherwise it is
  derived from the node name alone (manifest-directory mode), so every node computes the same MAC
  for a peer without talking to it: a locally administered, unicast address built from a SHA-256 of
  the name.

>>> vtep_mac_for("node1")
'ca:12:f3:1b:8c:bf'
>>> vtep_ip_for(IPv4Network("10.244.3.0/24"))
IPv4Address('10.244.3.0')
"""

from __future__ import annotations

import hashlib
import re
from ipaddress import IPv4Address, IPv4Network, ip_address

from pynet.proxy.model import IPAddress, IPNetwork, Node

__all__ = [
    "ANNOTATION_VTEP_IP",
    "ANNOTATION_VTEP_MAC",
    "first_ipv4",
    "first_ipv4_cidr",
    "node_vtep_ip",
    "node_vtep_mac",
    "normalise_mac",
    "vtep_ip_for",
    "vtep_mac_for",
]

ANNOTATION_VTEP_MAC = "pynet.io/vtep-mac"
ANNOTATION_VTEP_IP = "pynet.io/vtep-ip"

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
#: bit 1 of the first octet: locally administered; bit 0 cleared: unicast
_LOCAL_ADMIN = 0x02
_MULTICAST = 0x01


def vtep_mac_for(node_name: str) -> str:
    """The deterministic VTEP MAC of ``node_name``: locally administered, unicast, stable."""
    digest = bytearray(hashlib.sha256(node_name.encode()).digest()[:6])
    digest[0] = (digest[0] | _LOCAL_ADMIN) & ~_MULTICAST & 0xFF
    return ":".join(f"{b:02x}" for b in digest)


def normalise_mac(mac: str) -> str | None:
    """``mac`` in lower-case colon form, or None when it is not a usable unicast MAC."""
    candidate = mac.strip().lower().replace("-", ":")
    if not _MAC_RE.match(candidate):
        return None
    first = int(candidate[:2], 16)
    if first & _MULTICAST or candidate == "00:00:00:00:00:00":
        return None
    return candidate


def vtep_ip_for(pod_cidr: IPv4Network) -> IPv4Address:
    """The VTEP address of a node whose pod CIDR is ``pod_cidr`` (its network address)."""
    return pod_cidr.network_address


def first_ipv4(addresses: tuple[IPAddress, ...]) -> IPv4Address | None:
    return next((a for a in addresses if isinstance(a, IPv4Address)), None)


def first_ipv4_cidr(cidrs: tuple[IPNetwork, ...]) -> IPv4Network | None:
    return next((c for c in cidrs if isinstance(c, IPv4Network)), None)


def node_vtep_mac(node: Node) -> str:
    """The node's published VTEP MAC if it is valid, else the derived one."""
    published = node.annotation(ANNOTATION_VTEP_MAC)
    if published is not None:
        mac = normalise_mac(published)
        if mac is not None:
            return mac
    return vtep_mac_for(node.name)


def node_vtep_ip(node: Node) -> IPv4Address | None:
    """The node's published VTEP address if it is a valid IPv4 address, else its pod CIDR's first."""
    published = node.annotation(ANNOTATION_VTEP_IP)
    if published is not None:
        try:
            addr = ip_address(published.strip())
        except ValueError:
            addr = None
        if isinstance(addr, IPv4Address):
            return addr
    cidr = first_ipv4_cidr(node.pod_cidrs)
    return vtep_ip_for(cidr) if cidr is not None else None

