"""The nftables service backend: one private table, one atomic transaction per sync.

Layout and rules: see :mod:`.render` (modelled on kube-proxy's nftables proxier). This module keeps
what was applied and turns each sync into one transaction:

* **full sync** (first sync, after any failure, when node-wide inputs change, or when asked): the
  skeleton is (re)declared, every static chain and every desired service chain is flushed and
  rewritten, the dispatch maps are flushed and refilled, and chains/sets found in the kernel but no
  longer wanted are removed. Affinity sets are never flushed (that would forget client affinities).
* **partial sync**: only the services in ``changed`` are rendered; a chain is rewritten only if its
  rules differ from what was applied, map elements are updated by delta (delete, then add), and the
  chains and sets a service no longer needs are flushed and deleted.

Stale chains: a chain nobody needs any more is flushed at once (nothing jumps to it after this
transaction) and deleted later, for two reasons.
* Before Linux 6.2 the kernel noticed only a short while later that a chain had lost its last
  map-element reference, so deleting it in the transaction that removed the element could fail with
  EBUSY; kube-proxy therefore deletes such chains in a later sync. We wait ``stale_chain_grace``
  seconds (default 5 on kernels older than 6.2, else 0).
* Cost: libnftables 1.0.6 dumps every chain of the ruleset before any ``delete`` (about 0.25 s at
  10,000 services; see :mod:`pynet.nft.transaction`), while the rest of an endpoint change needs no
  such dump. So a due chain is deleted in the first transaction that needs that dump anyway (a full
  sync, a removed map element), or, once it has lingered ``stale_chain_linger`` seconds (default 10),
  in a second transaction sent right after a sync's own one: the rules are already updated by then.
  ``stale_chain_linger=0`` deletes in the sync's own transaction (the unit tests' exact mode).

Invariants: the backend only ever addresses table ``pynet`` of its family (the transaction type is
bound to it); caches change only after the kernel accepted the transaction; a failed transaction
leaves the previous rules in place and forces the next sync to be full.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from pynet.nft.errors import NftError, NftUnavailable, is_not_found
from pynet.nft.objects import Chain, Element, Rule, Set, Table
from pynet.nft.runner import Nft, NftInterface, probe
from pynet.nft.transaction import Transaction
from pynet.proxy.backends.base import BackendUnavailable, SyncError
from pynet.proxy.backends.nftables.render import (
    BASE_CHAINS,
    STATIC_CHAINS,
    Globals,
    Rendered,
    render_base_maps,
    render_service_port,
    static_rules,
)
from pynet.proxy.model import IPFamily, NamespacedName
from pynet.proxy.state import ProxyState

__all__ = ["TABLE", "NftablesBackend"]

log = logging.getLogger("pynet.proxy.backends.nftables")

TABLE = "pynet"
_FIXED_CHAINS = frozenset(c.name for c in (*BASE_CHAINS, *STATIC_CHAINS))
_FIXED_SETS = frozenset(m.name for m in render_base_maps(Globals(IPFamily.V4)))
DEFAULT_STALE_GRACE = 5.0
DEFAULT_STALE_LINGER = 10.0


@dataclass(slots=True)
class _Record:
    """What the backend keeps of one applied service. Chains map to a hash of their rules, not the
    rules: at 10,000 services the rule texts would be about 20 MiB, and a partial sync only needs to
    know whether a chain's rules changed. (Python's string hashing is keyed per process, so a
    collision cannot be engineered through service names; the record never leaves the process.)
    """

    chains: dict[str, int]
    sets: dict[str, Set]
    elements: dict[tuple[str, str], str | None]


def _fresh(text: str) -> str:
    """An equal string in a new object (``str(text)`` would return the same object)."""
    return text[:1] + text[1:]


def _record(r: Rendered) -> _Record:
    """The record of ``r``, in new objects: the rendered names and keys sit in memory pages between
    rule texts that die with the sync, and copying them lets those pages be freed (30 MiB of RSS
    at 10,000 services, measured)."""
    return _Record(
        {_fresh(name): hash(rules) for name, rules in r.chains.items()},
        dict(r.sets),
        {(c, _fresh(k)): None if v is None else _fresh(v) for (c, k), v in r.elements.items()},
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold the cyclic GC off while a full sync builds its ~10^6 objects (none of them cyclic).

    Left on, allocation keeps triggering collections that walk the whole heap: about 0.7 s of a
    10,000-service full sync. Memory is unaffected (reference counting frees everything).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _kernel_needs_grace() -> bool:
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) < (6, 2)


def _family_name(family: IPFamily) -> str:
    return "ip" if family == IPFamily.V4 else "ip6"


class NftablesBackend:
    """Renders :class:`ProxyState` into nftables table ``ip pynet`` (or ``ip6 pynet``).

    One instance per IP family. ``nft`` defaults to the real libnftables runner in the calling
    process's network namespace; tests pass a :class:`pynet.nft.FakeNft`.
    """

    name: ClassVar[str] = "nftables"

    def __init__(
        self,
        nft: NftInterface | None = None,
        *,
        family: IPFamily = IPFamily.V4,
        stale_chain_grace: float | None = None,
        stale_chain_linger: float = DEFAULT_STALE_LINGER,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.family = family
        try:
            self.nft: NftInterface = nft if nft is not None else Nft(_family_name(family), TABLE)
        except NftUnavailable as err:
            raise BackendUnavailable(str(err)) from err
        if stale_chain_grace is None:
            stale_chain_grace = DEFAULT_STALE_GRACE if _kernel_needs_grace() else 0.0
        self.stale_chain_grace = stale_chain_grace
        self.stale_chain_linger = stale_chain_linger
        self._monotonic = monotonic
        self._applied: dict[NamespacedName, _Record] = {}
        self._owner: dict[tuple[str, str], NamespacedName] = {}
        self._globals: Globals | None = None
        self._nodeport_elems: frozenset[str] = frozenset()
        self._stale_chains: dict[str, float] = {}  # flushed, waiting for deletion since
        self._needs_full = True
        #: False until we know the kernel holds exactly what _applied says (then no listing needed)
        self._trusted = False
        #: operations in the last transaction sent (for logs, metrics and tests)
        self.last_transaction_size = 0

    # ------------------------------------------------------------------ Backend protocol
    @classmethod
    def probe(cls) -> None:
        try:
            probe("ip")
        except NftUnavailable as err:
            raise BackendUnavailable(f"nftables backend unavailable: {err}") from err

    def setup(self) -> None:
        """Declare the table and its skeleton (idempotent; rules of static chains are rewritten)."""
        tx = self.nft.new_transaction()
        self._skeleton(tx, Globals(self.family))
        self._run(tx)

    def cleanup(self) -> None:
        """Delete table ``pynet`` of this family, if present; nothing else is touched."""
        tx = self.nft.new_transaction()
        tx.delete(Table())
        try:
            self.nft.run(tx)
        except NftError as err:
            if not is_not_found(err):  # already gone is fine: cleanup is idempotent
                raise SyncError(f"removing nftables table {TABLE}: {err}") from err
        self._reset()

    def sync(self, state: ProxyState, changed: frozenset[NamespacedName], full: bool) -> None:
        if state.family != self.family:
            raise SyncError(f"nftables backend for IPv{self.family} got an IPv{state.family} state")
        g = Globals(state.family, tuple(state.cluster_cidrs), tuple(state.nodeport_ips()))
        full = full or self._needs_full or g != self._globals
        tx = self.nft.new_transaction()
        tx.declare(*render_base_maps(g))  # element additions then need no chain cache
        try:
            if full:
                with _gc_paused():
                    desired = self._render_all(state, g)
                    self._build_full(tx, g, desired)
            else:
                desired = {}  # the changed services only
                for svc in changed:
                    r = self._render_service(state, svc, g)
                    if r.chains or r.elements:
                        desired[svc] = r
                self._build_partial(tx, changed, desired)
            later = self._expire_stale(tx)
        except (ValueError, NftError) as err:  # a name or rule we could not build
            self._needs_full = True
            raise SyncError(f"rendering nftables rules: {err}") from err
        self._run(tx)
        # N.B. only now, with the kernel agreeing, do the caches move
        if full:
            del tx
            self._applied = {svc: _record(r) for svc, r in desired.items()}
            del desired
            self._owner = {k: svc for svc, rec in self._applied.items() for k in rec.elements}
        else:
            for svc in changed:
                for k in self._applied[svc].elements if svc in self._applied else ():
                    if self._owner.get(k) == svc:
                        del self._owner[k]
                self._applied.pop(svc, None)
                if svc in desired:
                    rec = self._applied[svc] = _record(desired[svc])
                    for k in rec.elements:
                        self._owner[k] = svc
        self._trusted = True
        self._globals = g
        self._nodeport_elems = frozenset(str(a) for a in g.nodeport_ips)
        self._needs_full = False
        if later:  # lingering chains, in their own transaction now that the rules are in place
            cleanup = self.nft.new_transaction()
            for name in later:
                cleanup.delete(Chain(name))
            self._run(cleanup)
            for name in later:
                del self._stale_chains[name]

    # ------------------------------------------------------------------ rendering
    def _render_service(self, state: ProxyState, svc: NamespacedName, g: Globals) -> Rendered:
        out = Rendered()
        for sp in sorted(state.ports_of(svc), key=lambda p: p.name):
            out.merge(render_service_port(sp, state.endpoints_of(sp.name), g))
        return out

    def _render_all(self, state: ProxyState, g: Globals) -> dict[NamespacedName, Rendered]:
        by_service: dict[NamespacedName, Rendered] = {}
        claimed: dict[tuple[str, str], NamespacedName] = {}
        # the order of ServicePortName's own comparison, as a plain tuple (3x cheaper at 10,000)
        for key in sorted(state.services, key=lambda k: (k.service.namespace, k.service.name, k.port, k.protocol.value)):
            sp = state.services[key]
            r = render_service_port(sp, state.endpoints_of(key), g)
            for k in list(r.elements):
                owner = claimed.setdefault(k, key.service)
                if owner != key.service:  # two services claim one address:port; first one wins
                    log.warning("service=%s conflict=%s owner=%s: skipped", key.service, k, owner)
                    del r.elements[k]
            by_service.setdefault(key.service, Rendered()).merge(r)
        return {svc: r for svc, r in by_service.items() if r.chains or r.elements}

    # ------------------------------------------------------------------ transactions
    def _skeleton(self, tx: Transaction, g: Globals) -> None:
        tx.add(Table(comment="pynet service rules; owned by pynet agent, do not edit"))
        for obj in render_base_maps(g):
            tx.add(obj)
        for chain in (*BASE_CHAINS, *STATIC_CHAINS):
            tx.add(chain)
        for chain_name, rules in static_rules(g).items():
            tx.flush(Chain(chain_name))
            for rule in rules:
                tx.add(Rule(chain_name, rule))

    def _build_full(self, tx: Transaction, g: Globals, desired: dict[NamespacedName, Rendered]) -> None:
        if not self._trusted:  # first full sync, or after a failure: ask the kernel
            existing_chains, existing_sets = set(self.nft.list("chains")), set(self.nft.list("sets"))
        else:  # listing 10,000 services' chains costs ~0.5 s; our record is exact
            existing_chains = {n for r in self._applied.values() for n in r.chains} | set(self._stale_chains)
            existing_chains |= _FIXED_CHAINS
            existing_sets = {n for r in self._applied.values() for n in r.sets} | _FIXED_SETS
        self._skeleton(tx, g)
        for m in render_base_maps(g):
            tx.flush(m)
        chains = {n: rules for r in desired.values() for n, rules in r.chains.items()}
        sets = {n: s for r in desired.values() for n, s in r.sets.items()}
        for s in sets.values():
            tx.add(s)
        for name in chains:
            tx.add(Chain(name))
            self._stale_chains.pop(name, None)
        for name, rules in chains.items():
            if name in existing_chains:
                tx.flush(Chain(name))
            for rule in rules:
                tx.add(Rule(name, rule))
        for addr in g.nodeport_ips:
            tx.add(Element("nodeport-ips", str(addr)))
        for r in desired.values():
            for (container, key), value in r.elements.items():
                tx.add(Element(container, key, value))
        stale = existing_chains - set(chains) - _FIXED_CHAINS
        self._retire(tx, stale, flush_first=True)
        for name in sorted(existing_sets - set(sets) - _FIXED_SETS):
            tx.delete(Set(name, g.addr_type))

    def _build_partial(
        self, tx: Transaction, changed: frozenset[NamespacedName], desired: dict[NamespacedName, Rendered]
    ) -> None:
        old = _Record({}, {}, {})
        new = Rendered()
        for svc in sorted(changed):
            if svc in self._applied:
                rec = self._applied[svc]
                old.chains.update(rec.chains)
                old.sets.update(rec.sets)
                for k, v in rec.elements.items():
                    old.elements.setdefault(k, v)
            if svc in desired:
                r = desired[svc]
                # an address:port already owned by an unchanged service stays with it
                for k in [k for k in r.elements if self._owner.get(k, svc) not in changed]:
                    log.warning("service=%s conflict=%s owner=%s: skipped", svc, k, self._owner[k])
                    del r.elements[k]
                new.merge(r)
        addr_type = Globals(self.family).addr_type
        rewrite = {name: rules for name, rules in new.chains.items() if old.chains.get(name) != hash(rules)}
        rewritten = "\n".join("\n".join(rules) for rules in rewrite.values())
        for name, s in new.sets.items():
            # re-adding an existing set (same declaration: a no-op) puts it in libnftables' cache,
            # so a rewritten chain naming it can go as a chain block (no chain dump)
            if name not in old.sets or f"@{name} " in rewritten:
                tx.add(s)
        for name in new.chains:
            if name not in old.chains:
                tx.add(Chain(name))
                self._stale_chains.pop(name, None)
        for name, rules in rewrite.items():
            if name in old.chains:
                tx.flush(Chain(name))
            for rule in rules:
                tx.add(Rule(name, rule))
        for k, value in old.elements.items():
            if k not in new.elements or new.elements[k] != value:
                tx.delete(Element(k[0], k[1], value))
        for k, value in new.elements.items():
            if k not in old.elements or old.elements[k] != value:
                tx.add(Element(k[0], k[1], value))
        self._retire(tx, set(old.chains) - set(new.chains), flush_first=True)
        for name in sorted(set(old.sets) - set(new.sets)):
            tx.delete(Set(name, addr_type))

    def _retire(self, tx: Transaction, chains: set[str], *, flush_first: bool) -> None:
        """Flush chains nobody needs; delete them now or, on old kernels, after the grace period."""
        retiring = sorted(n for n in chains if n not in self._stale_chains)
        # every flush before any delete: retiring chains jump to each other (service -> endpoint)
        if flush_first:
            for name in retiring:
                tx.flush(Chain(name))
        now = self._monotonic()
        for name in retiring:
            self._stale_chains[name] = now

    def _expire_stale(self, tx: Transaction) -> list[str]:
        """Delete due stale chains in ``tx`` when that is free; return those to delete right after it.

        A stale chain wanted again was already taken off the list when ``tx`` re-added it.
        N.B. the caller drops the returned names from the record only once their deletion succeeded.
        """
        if not self._stale_chains:
            return []
        now = self._monotonic()
        due = sorted(n for n, since in self._stale_chains.items() if now - since >= self.stale_chain_grace)
        if not due:
            return []
        if self.stale_chain_linger <= 0 or tx.needs_chain_cache:
            for name in due:
                tx.delete(Chain(name))
                del self._stale_chains[name]
            return []
        oldest = min(self._stale_chains[n] for n in due)
        return due if now - oldest >= self.stale_chain_grace + self.stale_chain_linger else []

    def _run(self, tx: Transaction) -> None:
        self.last_transaction_size = len(tx)
        try:
            self.nft.run(tx)
        except NftError as err:
            self._needs_full = True
            self._trusted = False
            log.debug("failed transaction:\n%s", tx)
            raise SyncError(f"nftables transaction of {len(tx)} operations failed: {err}") from err

    def _reset(self) -> None:
        self._trusted = False
        self._applied = {}
        self._owner = {}
        self._globals = None
        self._stale_chains = {}
        self._needs_full = True
