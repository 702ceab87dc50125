"""Names of the nftables backend's per-service objects (kube-proxy's nftables naming scheme).

A service port's objects are named ``<kind>-<HASH>-<ns>/<name>/<proto>/<port>``, where HASH is a
stable 8-character base32 digest of the family and the readable part (so truncation never makes two
ports collide) and ``<port>`` is the port's name (or its number when unnamed). Endpoint chains and
affinity sets append ``__<ip>/<port>`` and hash that too. All names fit NFT_NAME_MAX.
"""

from __future__ import annotations

import hashlib

from pynet.nft.objects import NFT_NAME_MAX, check_name
from pynet.proxy.model import Endpoint, ServicePort

__all__ = ["affinity_set", "endpoint_chain", "port_chain", "port_chains"]

_READABLE_MAX = 200  # leaves room for the kind prefix, the hash and the endpoint suffix


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _hash(text: str) -> str:
    # the first 5 digest bytes = exactly 8 base32 characters (RFC 4648 alphabet, what
    # base64.b32encode gives, which is pure Python and 5x slower for this)
    v = int.from_bytes(hashlib.sha256(text.encode()).digest()[:5], "big")
    b = _B32
    return (b[v >> 35] + b[(v >> 30) & 31] + b[(v >> 25) & 31] + b[(v >> 20) & 31]
            + b[(v >> 15) & 31] + b[(v >> 10) & 31] + b[(v >> 5) & 31] + b[v & 31])


def _readable(sp: ServicePort) -> str:
    port = sp.name.port or str(sp.port)
    return f"{sp.name.service.namespace}/{sp.name.service.name}/{sp.protocol.value.lower()}/{port}"[:_READABLE_MAX]


def _port_id(sp: ServicePort) -> str:
    # N.B. no cache: a cache would keep 10,000 small strings alive among the rendering's
    # short-lived ones (fragmentation), and port_chains() computes it once per port anyway
    readable = _readable(sp)
    return f"{_hash(f'{sp.family}/{readable}')}-{readable}"


def port_chains(sp: ServicePort) -> tuple[str, str, str]:
    """The ``service``, ``local`` and ``external`` chain names of one port (one cache lookup)."""
    pid = _port_id(sp)
    return check_name(f"service-{pid}"), check_name(f"local-{pid}"), check_name(f"external-{pid}")


def port_chain(kind: str, sp: ServicePort) -> str:
    """``service``/``local``/``external``/``firewall`` chain of one service port.

    >>> from ipaddress import ip_address
    >>> from pynet.proxy.model import *
    >>> spn = ServicePortName(NamespacedName("default", "web"), "http", Protocol.TCP)
    >>> port_chain("service", ServicePort(spn, IPFamily.V4, ip_address("10.96.0.10"), 80, Protocol.TCP))
    'service-72EWMOM4-default/web/tcp/http'
    """
    return check_name(f"{kind}-{_port_id(sp)}")


def _ep_suffix(ep: Endpoint, ip_text: str | None = None) -> str:
    # ':' is not allowed in nft names: IPv6 endpoints read fd00..1/80 (the hash keeps them unique)
    return f"{ip_text or ep.ip}/{ep.port}".replace(":", ".")


def endpoint_chain(sp: ServicePort, ep: Endpoint, *, ip_text: str | None = None) -> str:
    """The endpoint chain of ``ep`` in port ``sp`` (``ip_text``: ``str(ep.ip)`` if the caller has it)."""
    readable = f"{_readable(sp)}__{_ep_suffix(ep, ip_text)}"
    return check_name(f"endpoint-{_hash(f'{sp.family}/{readable}')}-{readable}"[:NFT_NAME_MAX])


def affinity_set(sp: ServicePort, ep: Endpoint, timeout: int) -> str:
    """The ClientIP-affinity set of one endpoint; the timeout is hashed in, so changing it renames."""
    readable = f"{_readable(sp)}__{_ep_suffix(ep)}"
    return check_name(f"affinity-{_hash(f'{sp.family}/{timeout}/{readable}')}-{readable}"[:NFT_NAME_MAX])
