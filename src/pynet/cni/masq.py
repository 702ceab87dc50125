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
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Any

from pynet.cni.errors import CniError, ErrCode

__all__ = ["CHAIN", "FAMILY", "LOCK_PATH", "TABLE", "comment_for", "gc", "list_records", "setup", "teardown"]

FAMILY = "inet"
TABLE = "pynet-cni"
CHAIN = "postrouting"
LOCK_PATH = "/run/pynet/cni-masq.lock"
SRCNAT_PRIORITY = 100
MULTICAST = {4: ("224.0.0.0", 4), 6: ("ff00::", 8)}


def comment_for(network: str, container_id: str, ifname: str) -> str:
    return f"{network}/{container_id}/{ifname}"[:127]


@contextmanager
def _locked() -> Iterator[None]:
    """Threads of this process (the agent's server), then processes (plugins): one writer at a time."""
    with _CTX_LOCK:
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


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
    mc_addr, mc_len = MULTICAST[addr.version]
    exempt: list[IPv4Network | IPv6Network] = [n for n in exclude if n.version == addr.version]
    if not any(addr.network.subnet_of(n) for n in exempt):  # type: ignore[arg-type]
        exempt.insert(0, addr.network)  # the pod's own subnet is never masqueraded
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN, "comment": comment, "expr": [
        _match(proto, "saddr", "==", str(addr.ip)),
        *(_not_to(proto, net) for net in exempt),
        _match(proto, "daddr", "!=", {"prefix": {"addr": mc_addr, "len": mc_len}}),
        {"masquerade": None},
    ]}}


def setup(addrs: Iterable[IPv4Interface | IPv6Interface], network: str, container_id: str, ifname: str,
          exclude: Iterable[IPv4Network | IPv6Network] = ()) -> None:
    """Add the attachment's masquerade rules (idempotent: an existing record is kept)."""
    comment = comment_for(network, container_id, ifname)
    with _locked():
        nft = _nft()
        if any(r.get("comment") == comment for r in _rules(nft)):
            return
        cmds: list[dict[str, Any]] = [
            {"add": {"table": {"family": FAMILY, "name": TABLE}}},
            {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": CHAIN, "type": "nat",
                               "hook": "postrouting", "prio": SRCNAT_PRIORITY, "policy": "accept"}}},
        ]
        excluded = tuple(exclude)
        cmds += [{"add": _rule(a, comment, excluded)} for a in addrs]
        _run(nft, cmds)


def _delete(nft: Any, doomed: list[dict[str, Any]], remaining: int) -> None:
    if not doomed:
        return
    if remaining == 0:
        _run(nft, [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
        return
    _run(nft, [{"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN, "handle": r["handle"]}}}
               for r in doomed])


def teardown(network: str, container_id: str, ifname: str) -> None:
    """Remove the attachment's rules; remove the table when it was the last user. Idempotent."""
    comment = comment_for(network, container_id, ifname)
    with _locked():
        nft = _nft()
        rules = _rules(nft)
        doomed = [r for r in rules if r.get("comment") == comment]
        _delete(nft, doomed, len(rules) - len(doomed))


def gc(network: str, valid: set[tuple[str, str]]) -> int:
    """Remove this network's records whose (container id, ifname) is not in ``valid``; returns how many."""
    prefix = f"{network}/"
    keep = {comment_for(network, cid, ifn) for cid, ifn in valid}
    with _locked():
        nft = _nft()
        rules = _rules(nft)
        doomed = [r for r in rules if str(r.get("comment", "")).startswith(prefix) and r.get("comment") not in keep]
        _delete(nft, doomed, len(rules) - len(doomed))
    return len(doomed)


def list_records() -> list[str]:
    """Comments of the current rules (for tests and CHECK)."""
    with _CTX_LOCK:
        return [str(r.get("comment", "")) for r in _rules(_nft())]
