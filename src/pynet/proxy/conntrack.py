"""Stale UDP conntrack clean-up after a sync (what kube-proxy's ``conntrack`` package does).

UDP has no connection teardown, so a conntrack entry keeps steering a client's flow to an endpoint
that is gone (or keeps a REJECT verdict cached after a service port got its first endpoint). After
each successful sync the proxier computes filters with :func:`stale_filters` and hands them to a
:class:`ConntrackCleaner`:

* an endpoint removed from a UDP port: entries to each service address (cluster IP, external IPs,
  load-balancer IPs) and port that were DNATed to that endpoint, plus NodePort entries DNATed to it;
* a UDP port that went from no ready endpoint to some: every entry to its service addresses/port
  (and NodePort), so the client's next packet is load-balanced instead of rejected.

The implementation runs the ``conntrack`` tool (conntrack-tools) in the agent's own network
namespace (kube-proxy does the same). pyroute2's ``Conntrack`` was not used: with it, filtering means
dumping the entries into Python and deleting them one by one by exact tuple. Flows DNATed to an endpoint are selected by ``--reply-src ENDPOINT`` (the reply tuple's
source is the endpoint after DNAT) rather than kube-proxy's ``--dst-nat ENDPOINT``: the same flows,
but it does not depend on the entry's NAT status bit, so it is exactly testable with entries made by
``conntrack -I``. ``conntrack -D`` exits 1 when nothing matched, which is not an error here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

from pynet._log import get_logger
from pynet.proxy.changes import EndpointsUpdateResult
from pynet.proxy.model import IPAddress, IPFamily, Protocol, ServicePort, ServicePortName

__all__ = ["ConntrackCleaner", "ConntrackFilter", "ConntrackTool", "RecordingConntrack", "stale_filters"]

log = get_logger("pynet.proxy.conntrack")


@dataclass(frozen=True, slots=True, order=True)
class ConntrackFilter:
    """One ``conntrack -D`` selection (always UDP)."""

    family: IPFamily
    orig_dst: IPAddress | None = None
    orig_port_dst: int | None = None
    reply_src: IPAddress | None = None

    def argv(self) -> list[str]:
        args = ["conntrack", "-D", "-f", "ipv6" if self.family is IPFamily.V6 else "ipv4", "-p", "udp"]
        if self.orig_dst is not None:
            args += ["--orig-dst", str(self.orig_dst)]
        if self.orig_port_dst is not None:
            args += ["--orig-port-dst", str(self.orig_port_dst)]
        if self.reply_src is not None:
            args += ["--reply-src", str(self.reply_src)]
        return args


class ConntrackCleaner(TypingProtocol):
    def clear(self, filters: Sequence[ConntrackFilter]) -> None: ...


def _addresses(sp: ServicePort) -> list[IPAddress]:
    addrs: list[IPAddress] = [sp.cluster_ip] if sp.cluster_ip is not None else []
    return addrs + list(sp.external_ips) + list(sp.load_balancer_ips)


def stale_filters(
    result: EndpointsUpdateResult,
    lookup: Callable[[ServicePortName], ServicePort | None],
) -> list[ConntrackFilter]:
    """Filters for the stale UDP flows implied by one endpoints update (deduplicated, sorted)."""
    out: set[ConntrackFilter] = set()
    for spn, ep in result.deleted_udp:
        sp = lookup(spn)
        if sp is None or sp.protocol is not Protocol.UDP:
            continue
        for addr in _addresses(sp):
            out.add(ConntrackFilter(sp.family, orig_dst=addr, orig_port_dst=sp.port, reply_src=ep.ip))
        if sp.node_port:
            out.add(ConntrackFilter(sp.family, orig_port_dst=sp.node_port, reply_src=ep.ip))
    for spn in result.newly_active_udp:
        sp = lookup(spn)
        if sp is None or sp.protocol is not Protocol.UDP:
            continue
        for addr in _addresses(sp):
            out.add(ConntrackFilter(sp.family, orig_dst=addr, orig_port_dst=sp.port))
        if sp.node_port:
            out.add(ConntrackFilter(sp.family, orig_port_dst=sp.node_port))
    return sorted(out, key=lambda f: (f.family, str(f.orig_dst), f.orig_port_dst or 0, str(f.reply_src)))


class ConntrackTool:
    """Deletes entries with the ``conntrack`` command in the current network namespace."""

    def __init__(self, binary: str | None = None, timeout: float = 5.0) -> None:
        self.binary = binary or shutil.which("conntrack") or "conntrack"
        self.timeout = timeout

    def clear(self, filters: Sequence[ConntrackFilter]) -> None:
        for flt in filters:
            argv = flt.argv()
            argv[0] = self.binary
            try:
                res = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as err:
                log.warning("conntrack clean-up failed", extra={"kv": {"cmd": " ".join(argv), "error": err}})
                continue
            # exit 1 with "0 flow entries have been deleted" just means nothing matched
            if res.returncode != 0 and "0 flow entries" not in res.stderr:
                log.warning(
                    "conntrack clean-up failed",
                    extra={"kv": {"cmd": " ".join(argv), "error": res.stderr.strip()}},
                )
            else:
                log.debug(
                    "conntrack cleared", extra={"kv": {"cmd": " ".join(argv), "out": res.stderr.strip()}}
                )


class RecordingConntrack:
    """Test double: remembers every filter it was asked to clear."""

    def __init__(self) -> None:
        self.cleared: list[ConntrackFilter] = []

    def clear(self, filters: Sequence[ConntrackFilter]) -> None:
        self.cleared.extend(filters)


def lookup_in(
    *maps: Mapping[ServicePortName, ServicePort],
) -> Callable[[ServicePortName], ServicePort | None]:
    """A lookup that tries each map in order (current services first, then the pre-sync ones)."""

    def lookup(spn: ServicePortName) -> ServicePort | None:
        for m in maps:
            sp = m.get(spn)
            if sp is not None:
                return sp
        return None

    return lookup
