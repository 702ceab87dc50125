"""IptablesBackend: kube-proxy's iptables data plane under the PYNET- prefix, with a bounded dispatch.

Structure (nat): PREROUTING/OUTPUT -> PYNET-SERVICES -> [ipset gate] -> PYNET-DSP-* tree ->
PYNET-SVC-/SVL-/EXT-/FW- per service port -> PYNET-SEP- per endpoint (DNAT); PYNET-NODEPORTS;
PYNET-MARK-MASQ / PYNET-MARK-NONCLUSTER; POSTROUTING -> PYNET-POSTROUTING (MASQUERADE marked packets).
Filter: INPUT/FORWARD/OUTPUT -> PYNET-INPUT/-FORWARD/-OUTPUT -> PYNET-SERVICES / PYNET-EXTERNAL-SERVICES /
PYNET-NODEPORTS (REJECT without endpoints, DROP without local endpoints or outside source ranges).

Invariants and hazards:

* every sync is ONE ``iptables-restore --noflush`` call per family (atomic per table); the ipset is
  grown before it and shrunk after it, so the set never lacks a destination a rule needs;
* a partial sync rewrites the chains of changed services' ports (declare = flush, then re-add),
  deletes chains of ports that are gone, and rewrites shared chains only when their text changed;
  anything unexpected (first sync, context change, failure) forces a full sync, which also removes
  stale PYNET- chains found in iptables-save and re-checks the hooks;
* the hooks are one jump per built-in chain, inserted at the top only when iptables-save lacks them,
  so foreign rules and chains are never rewritten;
* ``cleanup()`` removes every PYNET- chain, every rule that jumps to one, and the ``pynet-svc-*`` ipsets,
  in both iptables variants, and nothing else.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pynet._log import get_logger
from pynet.iptables import (
    Exec,
    Ipset,
    Iptables,
    IptablesError,
    RestoreInput,
    SavedTable,
    Table,
    Variant,
    detect_variant,
    quote,
    subprocess_exec,
)
from pynet.proxy.backends.base import BackendUnavailable, SyncError
from pynet.proxy.backends.iptables import naming as n
from pynet.proxy.backends.iptables.dispatch import build_tree
from pynet.proxy.backends.iptables.render import PortFragment, RenderContext, host, render_port, static_chains
from pynet.proxy.model import IPFamily, NamespacedName, ServicePortName
from pynet.proxy.state import ProxyState

__all__ = ["DispatchMode", "IptablesBackend", "SyncStats"]

log = get_logger("pynet.proxy.iptables")

DispatchMode = Literal["tree", "linear"]
ChainKey = tuple[str, str]  # (table, chain)


@dataclass
class _FamilyCache:
    """What was applied last for one family; trusted only while ``synced``."""

    synced: bool = False
    ctx: RenderContext | None = None
    fragments: dict[ServicePortName, PortFragment] = field(default_factory=dict)
    shared: dict[ChainKey, tuple[str, ...]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)  # ipset name -> members
    by_service: dict[NamespacedName, list[ServicePortName]] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncStats:
    """What the last successful sync wrote (tests, benchmarks, logs)."""

    family: int
    full: bool
    chains_written: int
    chains_deleted: int
    restore_bytes: int


class IptablesBackend:
    name: ClassVar[str] = "iptables"

    def __init__(
        self,
        *,
        exec: Exec = subprocess_exec,
        variant: str | None = None,
        masq_mark: int = 0x4000,
        dispatch: DispatchMode = "tree",
        family: IPFamily | None = None,
    ) -> None:
        """``family``: serve only that IP family (the agent makes one instance per family); default both."""
        self._families: tuple[IPFamily, ...] = (family,) if family is not None else tuple(IPFamily)
        self.family = family
        self._exec = exec
        self._variant_override = variant
        self._variant: Variant | None = None
        self._masq_mark = masq_mark
        self._dispatch = dispatch
        self._ipset = Ipset(exec)
        self._use_set: bool | None = None
        self._caches: dict[IPFamily, _FamilyCache] = {f: _FamilyCache() for f in IPFamily}
        self.last_stats: SyncStats | None = None

    # ------------------------------------------------------------------ Backend protocol
    @classmethod
    def probe(cls) -> None:
        missing = [t for t in ("iptables", "iptables-restore", "iptables-save") if shutil.which(t) is None]
        if missing:
            raise BackendUnavailable(f"iptables backend needs {', '.join(missing)} on PATH")

    @property
    def variant(self) -> Variant:
        if self._variant is None:
            try:
                self._variant = detect_variant(self._exec, self._variant_override)
            except IptablesError as err:
                raise BackendUnavailable(str(err)) from err
        return self._variant

    def _ipt(self, family: IPFamily, variant: Variant | None = None) -> Iptables:
        return Iptables(int(family), variant or self.variant, self._exec)

    @property
    def use_set(self) -> bool:
        if self._use_set is None:
            self._use_set = self._dispatch == "tree" and self._exec(["ipset", "list", "-n"]).returncode == 0
            if self._dispatch == "tree" and not self._use_set:
                log.warning("ipset unavailable: the dispatch tree runs without the service-destination set gate")
        return self._use_set

    def setup(self) -> None:
        """Create missing base chains and hooks for each family the machine supports; flush nothing."""
        log.info("iptables backend using the %s variant", self.variant.value)
        for family in self._families:
            ipt = self._ipt(family)
            if not ipt.available():
                log.warning("%s unavailable; no IPv%d services", ipt.tools.save, int(family))
                continue
            saved = self._save(ipt)
            r = RestoreInput()
            ctx = RenderContext(family, masq_mark=self._masq_mark)
            base = set(static_chains(ctx)) | set(self._shared({}, ctx, family)[0])
            for table, chain in sorted(base):
                if chain not in saved[table].chains:
                    r.declare(Table(table), chain)
            self._hook(r, saved, {})
            try:
                ipt.restore(r)
            except IptablesError as err:
                raise SyncError(f"iptables setup failed: {err}") from err

    def sync(self, state: ProxyState, changed: frozenset[NamespacedName], full: bool) -> None:
        if state.family not in self._families:
            raise SyncError(f"this iptables backend serves IPv{self.family}, not IPv{int(state.family)}")
        cache = self._caches[state.family]
        ctx = RenderContext(state.family, tuple(state.cluster_cidrs), tuple(state.nodeport_ips()), self._masq_mark)
        if not cache.synced or cache.ctx != ctx:
            full = True
        ipt = self._ipt(state.family)
        try:
            if full:
                self._full_sync(ipt, state, ctx, cache)
            else:
                self._partial_sync(ipt, state, changed, ctx, cache)
        except IptablesError as err:
            cache.synced = False
            raise SyncError(f"iptables {'full' if full else 'partial'} sync (IPv{int(state.family)}) failed: {err}") from err

    def cleanup(self) -> None:
        """Remove every PYNET- chain and every jump to one, in both variants, then our ipsets."""
        errors: list[str] = []
        for variant in (self.variant, *(v for v in Variant if v != self.variant)):
            for family in self._families:
                ipt = self._ipt(family, variant)
                try:
                    present = ipt.available() if variant == self.variant else ipt.has_tables()
                    if not present:
                        continue
                    r = self.render_cleanup(self._save(ipt, all_tables=True))
                    ipt.restore(r)
                except IptablesError as err:
                    errors.append(str(err))
        try:
            ours = {n.service_set(f) for f in self._families} | {n.cluster_ip_set(f) for f in self._families}
            for name in self._ipset.list_names():
                if name in ours:
                    self._ipset.destroy(name)
        except IptablesError as err:
            errors.append(str(err))
        for family in self._families:
            self._caches[family].synced = False
        if errors:
            raise SyncError("iptables cleanup incomplete: " + "; ".join(errors))

    # ------------------------------------------------------------------ rendering
    @staticmethod
    def render_cleanup(saved: Mapping[str, SavedTable]) -> RestoreInput:
        r = RestoreInput()
        for table in (Table.NAT, Table.FILTER):
            st = saved.get(table.value)
            if st is None:
                continue
            for rule in st.rules:
                target = rule.target or ""
                if not rule.chain.startswith(n.PREFIX) and target.startswith(n.PREFIX):
                    r.delete_rule(table, rule.chain, rule.spec)
            for chain in st.chains:
                if chain.startswith(n.PREFIX):
                    r.delete_chain(table, chain)
        return r

    def _shared(
        self, fragments: Mapping[ServicePortName, PortFragment], ctx: RenderContext, family: IPFamily
    ) -> tuple[dict[ChainKey, tuple[str, ...]], dict[str, set[str]]]:
        """Chains built from all ports (dispatch, NodePorts, filter lists) plus the ipsets' members."""
        frags = [fragments[k] for k in sorted(fragments, key=_port_order)]
        chains: dict[ChainKey, tuple[str, ...]] = dict(static_chains(ctx))
        entries = [e for f in frags for e in f.dispatch]
        services: list[str] = []
        f_services = [r for f in frags for r in f.filter_services]
        members: dict[str, set[str]] = {}
        if self._dispatch == "tree":
            root, tree = build_tree(entries)
            chains.update((("nat", name), tuple(rules)) for name, rules in tree.items())
            if self.use_set:
                members[n.service_set(family)] = {e.set_member for e in entries}
                members[n.cluster_ip_set(family)] = {f.cluster_ip for f in frags if f.cluster_ip}
                f_services.append(f"-m comment --comment {quote('cluster IP, port of no service')} "
                                  f"-m set --match-set {n.cluster_ip_set(family)} dst -j REJECT")
            if root is not None:
                if self.use_set:
                    services.append(f"-m set --match-set {n.service_set(family)} dst,dst -j {root}")
                else:
                    services.append(f"-j {root}")
        else:  # kube-proxy's linear KUBE-SERVICES (the benchmark's reference)
            services.extend(e.rule() for e in entries)
        services.extend(f"-d {host(ip)} -j {n.NODEPORTS}" for ip in ctx.nodeport_ips)
        chains[("nat", n.SERVICES)] = tuple(services)
        chains[("nat", n.NODEPORTS)] = tuple(r for f in frags for r in f.nodeports)
        chains[("filter", n.FILTER_SERVICES)] = tuple(f_services)
        f_nodeports = tuple(r for f in frags for r in f.filter_nodeports)
        chains[("filter", n.FILTER_NODEPORTS)] = f_nodeports
        chains[("filter", n.EXTERNAL_SERVICES)] = (
            *(r for f in frags for r in f.filter_external),
            *((f"-d {host(ip)} -j {n.FILTER_NODEPORTS}" for ip in ctx.nodeport_ips) if f_nodeports else ()),
        )
        return chains, members

    @staticmethod
    def _hook(r: RestoreInput, saved: Mapping[str, SavedTable], deleting: Mapping[str, set[str]]) -> None:
        """Insert missing hook jumps; drop duplicates and built-in jumps to chains being deleted."""
        for table, builtin, chain in n.HOOKS:
            jumps = [rule for rule in saved[table].rules_of(builtin) if rule.target == chain]
            if not jumps:
                r.insert(Table(table), builtin, f"-j {chain}")
            for extra in jumps[1:]:
                r.delete_rule(Table(table), builtin, extra.spec)
        for table, chains in deleting.items():
            for rule in saved[table].rules:
                if not rule.chain.startswith(n.PREFIX) and rule.target in chains:
                    r.delete_rule(Table(table), rule.chain, rule.spec)

    def _save(self, ipt: Iptables, all_tables: bool = False) -> dict[str, SavedTable]:
        saved = ipt.save() if all_tables else {t.value: ipt.save(t).get(t.value, SavedTable(t.value)) for t in Table}
        for t in Table:
            saved.setdefault(t.value, SavedTable(t.value))
        return saved

    # ------------------------------------------------------------------ syncs
    def _full_sync(self, ipt: Iptables, state: ProxyState, ctx: RenderContext, cache: _FamilyCache) -> None:
        fragments = {k: render_port(sp, state.endpoints_of(k), ctx) for k, sp in state.services.items()}
        shared, members = self._shared(fragments, ctx, state.family)
        saved = self._save(ipt)
        r = RestoreInput()
        desired: set[ChainKey] = set(shared)
        for (table, chain), rules in shared.items():
            r.write_chain(Table(table), chain, rules)
        for key in sorted(fragments, key=_port_order):
            for chain, rules in fragments[key].nat_chains.items():
                r.write_chain(Table.NAT, chain, rules)
                desired.add(("nat", chain))
        deleting: dict[str, set[str]] = {}
        for table, st in saved.items():
            for chain in st.chains:
                if chain.startswith(n.PREFIX) and (table, chain) not in desired:
                    r.delete_chain(Table(table), chain)
                    deleting.setdefault(table, set()).add(chain)
        self._hook(r, saved, deleting)

        current: dict[str, set[str]] = {}
        if members:
            existing = set(self._ipset.list_names())
            current = {s: self._ipset.members(s) if s in existing else set() for s in members}
        self._grow_sets(state.family, members, current, create=True)
        ipt.restore(r)
        self._shrink_sets(state.family, members, current)
        if not self.use_set:  # sets left from the tree mode; no rule uses them any more
            for name in (n.service_set(state.family), n.cluster_ip_set(state.family)):
                if name in self._ipset_names_safe():
                    self._ipset.destroy(name)
        self._commit(cache, ctx, fragments, shared, members, r, full=True)

    def _partial_sync(self, ipt: Iptables, state: ProxyState, changed: frozenset[NamespacedName],
                      ctx: RenderContext, cache: _FamilyCache) -> None:
        fragments = dict(cache.fragments)
        touched = {k for k in state.services if k.service in changed}
        touched.update(k for s in changed for k in cache.by_service.get(s, ()))
        r = RestoreInput()
        gone: list[str] = []
        for key in sorted(touched):
            old = fragments.pop(key, None)
            sp = state.services.get(key)
            new = render_port(sp, state.endpoints_of(key), ctx) if sp is not None else None
            if new is not None:
                fragments[key] = new
                for chain, rules in new.nat_chains.items():
                    r.write_chain(Table.NAT, chain, rules)
            if old is not None:
                gone.extend(c for c in old.nat_chains if new is None or c not in new.nat_chains)
        if len(fragments) != len(state.services):
            # a port appeared or vanished outside ``changed``: the caller's bookkeeping and ours
            # disagree, so do not guess; rebuild everything
            log.warning("partial sync saw untracked service changes; doing a full sync instead")
            self._full_sync(ipt, state, ctx, cache)
            return
        shared, members = self._shared(fragments, ctx, state.family)
        for (table, chain), rules in shared.items():
            if cache.shared.get((table, chain)) != rules:
                r.write_chain(Table(table), chain, rules)
        for table, chain in cache.shared:
            if (table, chain) not in shared:
                r.delete_chain(Table(table), chain)
        for chain in gone:
            r.delete_chain(Table.NAT, chain)

        self._grow_sets(state.family, members, cache.members)
        ipt.restore(r)
        self._shrink_sets(state.family, members, cache.members)
        self._commit(cache, ctx, fragments, shared, members, r, full=False)

    def _commit(self, cache: _FamilyCache, ctx: RenderContext, fragments: dict[ServicePortName, PortFragment],
                shared: dict[ChainKey, tuple[str, ...]], members: dict[str, set[str]], r: RestoreInput, *,
                full: bool) -> None:
        cache.synced, cache.ctx, cache.fragments, cache.shared, cache.members = True, ctx, fragments, shared, members
        by_service: dict[NamespacedName, list[ServicePortName]] = {}
        for key in fragments:
            by_service.setdefault(key.service, []).append(key)
        cache.by_service = by_service
        written = sum(len(r.declared(t)) - len(r.deleted(t)) for t in r.tables())
        deleted = sum(len(r.deleted(t)) for t in r.tables())
        self.last_stats = SyncStats(int(ctx.family), full, written, deleted, len(r.render()))
        log.debug("iptables sync done", extra={"kv": {"full": full, "family": int(ctx.family),
                                                      "written": written, "deleted": deleted}})
        if log.isEnabledFor(logging.DEBUG - 5):  # whole restore inputs only when asked for explicitly
            log.log(logging.DEBUG - 5, "iptables-restore input:\n%s", r.render())

    def _grow_sets(self, family: IPFamily, members: dict[str, set[str]], current: dict[str, set[str]],
                   create: bool = False) -> None:
        """Before the restore: create the sets and add new members (rules may need them)."""
        for name, want in members.items():
            add = sorted(want - current.get(name, set()))
            if add or create:
                self._ipset.apply(name, _set_type(name), _ipset_family(family), add=add, create=create)

    def _shrink_sets(self, family: IPFamily, members: dict[str, set[str]], current: dict[str, set[str]]) -> None:
        """After the restore: drop members no rule needs any more."""
        for name, have in current.items():
            gone = sorted(have - members.get(name, set()))
            if gone:
                self._ipset.apply(name, _set_type(name), _ipset_family(family), delete=gone)

    def _ipset_names_safe(self) -> Iterable[str]:
        try:
            return self._ipset.list_names()
        except IptablesError:
            return ()


def _port_order(k: ServicePortName) -> tuple[str, str, str, str]:
    return (k.service.namespace, k.service.name, k.port, k.protocol.value)


def _set_type(name: str) -> str:
    return "hash:ip" if "-cip-" in name else "hash:ip,port"


def _ipset_family(family: IPFamily) -> str:
    return "inet" if family == IPFamily.V4 else "inet6"
