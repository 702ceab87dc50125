"""Chain and set names of the iptables backend: a fixed ``PYNET-`` prefix and a stable hash.

Per-service chains are ``PYNET-<KIND>-<16 base32 chars of sha256(...)>`` (kube-proxy's scheme), so a
name depends only on what it stands for and never exceeds iptables' 28-character chain-name limit.
"""

from __future__ import annotations

import functools
import hashlib

from pynet.proxy.model import Endpoint, IPAddress, IPFamily, ServicePortName

__all__ = [
    "CHAIN_NAME_MAX",
    "EXTERNAL_SERVICES",
    "FILTER_FORWARD",
    "FILTER_INPUT",
    "FILTER_NODEPORTS",
    "FILTER_OUTPUT",
    "FILTER_SERVICES",
    "HOOKS",
    "MARK_MASQ",
    "MARK_NONCLUSTER",
    "NODEPORTS",
    "POSTROUTING",
    "PREFIX",
    "SERVICES",
    "SET_PREFIX",
    "chain_for",
    "cluster_ip_set",
    "dispatch_chain",
    "endpoint_chain",
    "hash_and_truncate",
    "port_key",
    "service_set",
]

CHAIN_NAME_MAX = 28
PREFIX = "PYNET-"
SET_PREFIX = "pynet-svc-"

# nat table
SERVICES = "PYNET-SERVICES"
NODEPORTS = "PYNET-NODEPORTS"
MARK_MASQ = "PYNET-MARK-MASQ"
MARK_NONCLUSTER = "PYNET-MARK-NONCLUSTER"
POSTROUTING = "PYNET-POSTROUTING"
# filter table
FILTER_SERVICES = "PYNET-SERVICES"
EXTERNAL_SERVICES = "PYNET-EXTERNAL-SERVICES"
FILTER_NODEPORTS = "PYNET-NODEPORTS"
FILTER_FORWARD = "PYNET-FORWARD"
FILTER_INPUT = "PYNET-INPUT"
FILTER_OUTPUT = "PYNET-OUTPUT"

#: (table, built-in chain, our chain): exactly one jump each, inserted at the top
HOOKS: tuple[tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", SERVICES),
    ("nat", "OUTPUT", SERVICES),
    ("nat", "POSTROUTING", POSTROUTING),
    ("filter", "INPUT", FILTER_INPUT),
    ("filter", "FORWARD", FILTER_FORWARD),
    ("filter", "OUTPUT", FILTER_OUTPUT),
)


def hash_and_truncate(prefix: str, key: str, limit: int = CHAIN_NAME_MAX) -> str:
    """``prefix`` + up to 16 base32 characters of sha256(key), within ``limit`` characters.

    >>> hash_and_truncate("PYNET-SVC-", "default/web:http/tcp")
    'PYNET-SVC-OSC5D42RU6KJHZT7'
    """
    digest = _digest(key)
    room = min(16, limit - len(prefix))
    if room < 8:
        raise ValueError(f"prefix {prefix!r} leaves no room for a hash within {limit} characters")
    return prefix + digest[:room]


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _b32_16(key: str) -> str:
    """The first 16 base32 characters of sha256(key): the same as ``base64.b32encode`` of it, faster."""
    v = int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")  # 80 bits = 16 characters
    return "".join(_B32[(v >> shift) & 31] for shift in range(75, -1, -5))


@functools.lru_cache(maxsize=1 << 17)
def _digest(key: str) -> str:
    return _b32_16(key)


@functools.lru_cache(maxsize=1 << 17)  # a full resync of 10,000 services re-derives every name
def port_key(port: ServicePortName) -> str:
    return str(port)


@functools.lru_cache(maxsize=1 << 17)
def _port_digest(port: ServicePortName) -> str:
    return _b32_16(port_key(port))


def chain_for(kind: str, port: ServicePortName) -> str:
    """``PYNET-SVC-``/``SVL-``/``EXT-``/``FW-`` chain of one service port (one hash for all four)."""
    return f"{PREFIX}{kind}-{_port_digest(port)}"


def endpoint_chain(port: ServicePortName, endpoint: Endpoint) -> str:
    return _endpoint_chain(port, endpoint.ip, endpoint.port)


@functools.lru_cache(maxsize=1 << 17)
def _endpoint_chain(port: ServicePortName, ip: IPAddress, number: int) -> str:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{PREFIX}SEP-{_b32_16(f'{port_key(port)}|{host}:{number}')}"


def dispatch_chain(prefix: str) -> str:
    """Chain of one node of the destination-dispatch tree (``prefix`` is a CIDR string)."""
    return hash_and_truncate(f"{PREFIX}DSP-", prefix)


def service_set(family: IPFamily) -> str:
    """The ipset of service destinations (ip,proto:port) for one family."""
    return f"{SET_PREFIX}v{int(family)}"


def cluster_ip_set(family: IPFamily) -> str:
    """The ipset of all cluster IPs (to REJECT ports no service defines) for one family."""
    return f"{SET_PREFIX}cip-v{int(family)}"
