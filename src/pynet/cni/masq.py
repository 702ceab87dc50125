"""ipMasq: masquerade a pod's traffic leaving its subnet, in the caller's (node's) namespace.

pynet-cni owns the nftables table ``inet pynet-cni`` (never the agent's ``pynet`` table). Chain
``postrouting`` (nat, srcnat priority) holds one rule per attachment::

    ip saddr <pod ip> ip daddr != <pod subnet> [ip daddr != <ipMasqExclude CIDR> ...]
        ip daddr != 224.0.0.0/4 masquerade comment "<net>/<cid>/<ifname>"

The comment is the per-network/per-container record: ``teardown`` deletes that attachment's rules
and, when no rule is left, the whole table ("removed when the last user goes"). ``gc`` removes the
rules of attachments the runtime no longer lists. Changes are serialised by a file lock so a
teardown never deletes the table under a concurrent setup; each change is one nft transaction.
Hazard: libnftables runs in the calling thread's network namespace (the node's, for the plugin and
for the agent's server threads alike).

Index (saves listing the table, which grows with the node's pods, on every ADD): the lock file holds
a generation counter (8 bytes, big-endian) that every change made under the lock increments. A
long-lived process (the agent's CNI server) remembers the set of records it last listed or wrote
and the generation it saw; ``setup`` skips the listing only when the generation is unchanged AND
the record is absent from that set. Anything else (first call of a process, another writer, the
record looks present) lists as before. A writer that changes the table without the lock (an
operator's ``nft flush ruleset``) can only make a remembered record look present, which is then
verified by listing; the one unguarded outcome would be a second identical rule for one attachment
if something outside pynet added our comment, which teardown removes together with the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network, ip_network
from typing import Any

from pynet.cni.errors import CniError, ErrCode

__all__ = ["CHAIN", "FAMILY", "LOCK_PATH", "TABLE", "comment_for", "gc", "list_records", "setup", "teardown"]

FAMILY = "inet"
TABLE = "pynet-cni"
CHAIN = "postrouting"
LOCK_PATH = "/run/pynet/cni-masq.lock"
SRCNAT_PRIORITY = 100
MULTICAST = {4: ip_network("224.0.0.0/4"), 6: ip_network("ff00::/8")}


def comment_for(network: str, container_id: str, ifname: str) -> str:
    return f"{network}/{container_id}/{ifname}"[:127]


@contextmanager
def _locked() -> Iterator[int]:
    """Threads of this process (the agent's server), then processes (plugins): one writer at a time.
    Yields the lock file's descriptor (it holds the generation counter)."""
    with _CTX_LOCK:
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)


#: records (comments) in the table as of generation ``_INDEX_GEN``; None: unknown. Guarded by _CTX_LOCK.
_INDEX: set[str] | None = None
_INDEX_GEN = -1


def _generation(fd: int) -> int:
    data = os.pread(fd, 8, 0)
    return int.from_bytes(data, "big") if len(data) == 8 else 0


def _remember(records: set[str] | None, fd: int, gen: int, changed: bool) -> None:
    """After a listing (``changed=False``) or a change made under the lock (bump the generation)."""
    global _INDEX, _INDEX_GEN
    if changed:
        gen += 1
        os.pwrite(fd, gen.to_bytes(8, "big"), 0)
    _INDEX, _INDEX_GEN = records, gen


_CTX: Any = None
_CTX_LOCK = threading.Lock()


def _nft() -> Any:
    """The process's one libnftables context (creating and freeing one costs ~10 ms each).

    libnftables contexts are not thread-safe: every use holds ``_CTX_LOCK`` (taken in ``_locked``).
    """
    global _CTX
    if _CTX is None:
        try:
            import nftables  # Debian's python3-nftables (libnftables)
        except ImportError as err:
            raise CniError(ErrCode.INTERNAL, "ipMasq needs libnftables' Python binding (python3-nftables)") from err
        ctx = nftables.Nftables()
        ctx.set_json_output(True)
        ctx.set_handle_output(True)
        _CTX = ctx
    return _CTX


def _run(nft: Any, cmds: list[dict[str, Any]]) -> None:
    rc, _out, err = nft.json_cmd({"nftables": cmds})
    if rc != 0:
        raise CniError(ErrCode.INTERNAL, "nftables transaction for ipMasq failed", str(err).strip())


def _rules(nft: Any) -> list[dict[str, Any]]:
    rc, out, _err = nft.cmd(f"list table {FAMILY} {TABLE}")
    if rc != 0:
        return []  # no table: nobody uses masquerading here
    items = json.loads(out).get("nftables", [])
    return [i["rule"] for i in items if "rule" in i]


def _match(proto: str, field: str, op: str, right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": proto, "field": field}}, "right": right}}


def _not_to(proto: str, net: IPv4Network | IPv6Network) -> dict[str, Any]:
    return _match(proto, "daddr", "!=", {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}})


def _rule(addr: IPv4Interface | IPv6Interface, comment: str,
          exclude: Iterable[IPv4Network | IPv6Network] = ()) -> dict[str, Any]:
    proto = "ip" if addr.version == 4 else "ip6"
    exempt: list[IPv4Network | IPv6Network] = [n for n in exclude if n.version == addr.version]
    if not any(addr.network.subnet_of(n) for n in exempt):  # type: ignore[arg-type]
        exempt.insert(0, addr.network)  # the pod's own subnet is never masqueraded
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN, "comment": comment, "expr": [
        _match(proto, "saddr", "==", str(addr.ip)),
        *(_not_to(proto, net) for net in (*exempt, MULTICAST[addr.version])),
        {"masquerade": None},
    ]}}


def setup(addrs: Iterable[IPv4Interface | IPv6Interface], network: str, container_id: str, ifname: str,
          exclude: Iterable[IPv4Network | IPv6Network] = ()) -> None:
    """Add the attachment's masquerade rules (idempotent: an existing record is kept)."""
    comment = comment_for(network, container_id, ifname)
    with _locked() as fd:
        nft = _nft()
        gen = _generation(fd)
        known = _INDEX if gen == _INDEX_GEN else None
        if known is None or comment in known:  # see "Index" above: only a known absence skips the listing
            known = {str(r.get("comment", "")) for r in _rules(nft)}
            _remember(known, fd, gen, changed=False)
            if comment in known:
                return
        cmds: list[dict[str, Any]] = [
            {"add": {"table": {"family": FAMILY, "name": TABLE}}},
            {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": CHAIN, "type": "nat",
                               "hook": "postrouting", "prio": SRCNAT_PRIORITY, "policy": "accept"}}},
        ]
        excluded = tuple(exclude)
        cmds += [{"add": _rule(a, comment, excluded)} for a in addrs]
        try:
            _run(nft, cmds)
        except BaseException:
            _remember(None, fd, gen, changed=True)  # unknown now; others must not trust their index either
            raise
        _remember(known | {comment}, fd, gen, changed=True)


def _delete(nft: Any, fd: int, rules: list[dict[str, Any]], doomed: list[dict[str, Any]]) -> None:
    gen = _generation(fd)
    left = [r for r in rules if not any(r is d for d in doomed)]
    records = {str(r.get("comment", "")) for r in left}
    if not doomed:
        _remember(records, fd, gen, changed=False)
        return
    try:
        if not left:
            _run(nft, [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
        else:
            _run(nft, [{"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN,
                                            "handle": r["handle"]}}} for r in doomed])
    except BaseException:
        _remember(None, fd, gen, changed=True)
        raise
    _remember(records, fd, gen, changed=True)


def teardown(network: str, container_id: str, ifname: str) -> None:
    """Remove the attachment's rules; remove the table when it was the last user. Idempotent."""
    comment = comment_for(network, container_id, ifname)
    with _locked() as fd:
        nft = _nft()
        rules = _rules(nft)
        _delete(nft, fd, rules, [r for r in rules if r.get("comment") == comment])


def gc(network: str, valid: set[tuple[str, str]]) -> int:
    """Remove this network's records whose (container id, ifname) is not in ``valid``; returns how many."""
    prefix = f"{network}/"
    keep = {comment_for(network, cid, ifn) for cid, ifn in valid}
    with _locked() as fd:
        nft = _nft()
        rules = _rules(nft)
        doomed = [r for r in rules if str(r.get("comment", "")).startswith(prefix) and r.get("comment") not in keep]
        _delete(nft, fd, rules, doomed)
    return len(doomed)


def list_records() -> list[str]:
    """Comments of the current rules (for tests and CHECK)."""
    with _CTX_LOCK:
        return [str(r.get("comment", "")) for r in _rules(_nft())]
