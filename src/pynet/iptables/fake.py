"""FakeIptables: an in-memory iptables/ip6tables/ipset with the tools' command-line interface.

It is an :class:`~pynet.iptables.exec.Exec`: hand it to :class:`~pynet.iptables.runner.Iptables`,
:class:`~pynet.iptables.ipset.Ipset` or a backend in place of the real tools. It understands what pynet
sends (``*-restore [--noflush]``, ``*-save [-t T]``, ``iptables --version``, ``ipset restore/save/list -n/
destroy``) and checks what the kernel would: chains exist before rules use them, jump targets exist,
``-X`` only deletes empty, unreferenced user chains, sets exist before ``--match-set`` uses them and are
not destroyed while in use. Each table of a restore commits atomically at ``COMMIT`` (copy, then swap),
as the real tool does. ``restores`` records every restore input for golden tests; ``dump()`` prints the
state in save format.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from pynet.iptables.errors import ParseError
from pynet.iptables.exec import ExecResult
from pynet.iptables.restore import quote
from pynet.iptables.save import jump_target, split_args

__all__ = ["FakeIpset", "FakeIptables", "FakeTable"]

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
TARGETS = frozenset({
    "ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK", "CONNMARK", "LOG", "NOTRACK",
    "CT", "REDIRECT", "TPROXY", "SET",
})


@dataclass
class FakeTable:
    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> rule specs
    policies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, name: str) -> FakeTable:
        t = cls(name)
        for c in BUILTIN_CHAINS.get(name, ()):
            t.chains[c] = []
            t.policies[c] = "ACCEPT"
        return t

    def is_builtin(self, chain: str) -> bool:
        return chain in self.policies

    def references(self, chain: str) -> list[tuple[str, str]]:
        return [(c, r) for c, rules in self.chains.items() for r in rules if jump_target(r) == chain]


class _Fail(Exception):
    pass


def _norm(spec: str) -> str:
    return " ".join(quote(a) for a in split_args(spec))


@dataclass
class FakeIpset:
    sets: dict[str, tuple[str, str, set[str]]] = field(default_factory=dict)  # name -> (type, family, members)

    def run(self, argv: Sequence[str], input: str | None, in_use: set[str]) -> ExecResult:
        cmd = argv[0] if argv else ""
        if cmd == "list" and argv[1:] == ["-n"]:
            return ExecResult(0, "".join(f"{n}\n" for n in sorted(self.sets)), "")
        if cmd == "save" and len(argv) == 2:
            if argv[1] not in self.sets:
                return ExecResult(1, "", "ipset v7: The set with the given name does not exist\n")
            typ, fam, members = self.sets[argv[1]]
            out = f"create {argv[1]} {typ} family {fam}\n" + "".join(f"add {argv[1]} {m}\n" for m in sorted(members))
            return ExecResult(0, out, "")
        if cmd == "destroy" and len(argv) == 2:
            if argv[1] not in self.sets:
                return ExecResult(1, "", "ipset v7: The set with the given name does not exist\n")
            if argv[1] in in_use:
                return ExecResult(1, "", "ipset v7: Set cannot be destroyed: it is in use by a kernel component\n")
            del self.sets[argv[1]]
            return ExecResult(0, "", "")
        if cmd == "restore" and "-exist" in argv:
            staged = copy.deepcopy(self.sets)
            for n, line in enumerate((input or "").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if parts[0] == "create":
                    fam = parts[parts.index("family") + 1] if "family" in parts else "inet"
                    staged.setdefault(parts[1], (parts[2], fam, set()))
                elif parts[0] in ("add", "del") and len(parts) == 3:
                    if parts[1] not in staged:
                        return ExecResult(1, "", f"ipset v7: Error in line {n}: The set with the given name does not exist\n")
                    members = staged[parts[1]][2]
                    (members.add if parts[0] == "add" else members.discard)(parts[2])
                else:
                    return ExecResult(1, "", f"ipset v7: Error in line {n}: unknown command\n")
            self.sets = staged
            return ExecResult(0, "", "")
        return ExecResult(2, "", f"fake ipset: unsupported {' '.join(argv)}\n")


class FakeIptables:
    """In-memory nat/filter tables for IPv4 and IPv6, plus ipsets, behind the tools' argv interface."""

    def __init__(self, variant: str = "nft") -> None:
        self.variant = variant
        self.tables: dict[int, dict[str, FakeTable]] = {
            4: {t: FakeTable.empty(t) for t in ("filter", "nat")},
            6: {t: FakeTable.empty(t) for t in ("filter", "nat")},
        }
        self.ipset = FakeIpset()
        self.restores: list[tuple[int, str]] = []  # (family, input) of every successful restore call
        self.calls: list[list[str]] = []

    # ------------------------------------------------------------------ Exec interface
    def __call__(self, argv: Sequence[str], input: str | None = None) -> ExecResult:
        argv = list(argv)
        self.calls.append(argv)
        tool = argv[0]
        if tool == "cat" and argv[1].startswith("/proc/net/ip"):
            fam = self.tables[6 if "ip6" in argv[1] else 4]
            names = [t for t, tab in fam.items() if any(tab.chains.values()) or len(tab.chains) > len(tab.policies)]
            return ExecResult(0, "\n".join(names) if self.variant == "legacy" else "", "")
        if tool == "ipset":
            return self.ipset.run(argv[1:], input, self._sets_in_use())
        if tool in ("iptables", "ip6tables") and "--version" in argv:
            name = "nf_tables" if self.variant == "nft" else "legacy"
            return ExecResult(0, f"{tool} v1.8.9 ({name})\n", "")
        family = 6 if tool.startswith("ip6tables") else 4
        if tool.endswith("-restore"):
            return self._restore(family, input or "", noflush="--noflush" in argv)
        if tool.endswith("-save"):
            table = argv[argv.index("-t") + 1] if "-t" in argv else None
            return ExecResult(0, self.dump(family, table), "")
        return ExecResult(2, "", f"fake iptables: unsupported {' '.join(argv)}\n")

    # ------------------------------------------------------------------ inspection
    def dump(self, family: int = 4, table: str | None = None) -> str:
        out: list[str] = []
        for name in ("filter", "nat"):
            if table and name != table:
                continue
            t = self.tables[family][name]
            out.append(f"*{name}")
            builtins = [c for c in BUILTIN_CHAINS[name] if c in t.chains]
            users = sorted(c for c in t.chains if c not in t.policies)
            out.extend(f":{c} {t.policies[c]} [0:0]" for c in builtins)
            out.extend(f":{c} - [0:0]" for c in users)
            for c in builtins + users:
                out.extend(f"-A {c} {r}" for r in t.chains[c])
            out.append("COMMIT")
        return "\n".join(out) + "\n"

    def chains(self, family: int = 4, table: str = "nat") -> dict[str, list[str]]:
        return self.tables[family][table].chains

    def _sets_in_use(self) -> set[str]:
        used: set[str] = set()
        for fam in self.tables.values():
            for t in fam.values():
                for rules in t.chains.values():
                    for r in rules:
                        args = split_args(r)
                        for i, a in enumerate(args[:-1]):
                            if a == "--match-set":
                                used.add(args[i + 1])
        return used

    # ------------------------------------------------------------------ restore
    def _restore(self, family: int, text: str, *, noflush: bool) -> ExecResult:
        current: FakeTable | None = None
        lineno = 0
        try:
            for raw in text.splitlines():
                lineno += 1
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                if line.startswith("*"):
                    name = line[1:]
                    base = self.tables[family].get(name) or FakeTable.empty(name)
                    current = copy.deepcopy(base) if noflush else FakeTable.empty(name)
                    continue
                if current is None:
                    raise _Fail("no table")
                if line == "COMMIT":
                    self.tables[family][current.name] = current
                    current = None
                    continue
                self._apply_line(current, line)
        except (_Fail, ParseError) as err:
            return ExecResult(1, "", f"fake-restore: {err}\nError occurred at line: {lineno}\n")
        if current is not None:
            return ExecResult(1, "", f"fake-restore: no COMMIT\nError occurred at line: {lineno}\n")
        self.restores.append((family, text))
        return ExecResult(0, "", "")

    def _check_target(self, t: FakeTable, spec: str) -> None:
        target = jump_target(spec)
        if target is not None and target not in t.chains and target not in TARGETS:
            raise _Fail(f"jump to unknown chain {target!r}")
        args = split_args(spec)
        for i, a in enumerate(args[:-1]):
            if a == "--match-set" and args[i + 1] not in self.ipset.sets:
                raise _Fail(f"set {args[i + 1]} does not exist")

    def _apply_line(self, t: FakeTable, line: str) -> None:
        if line.startswith(":"):
            parts = line[1:].split()
            chain, policy = parts[0], parts[1] if len(parts) > 1 else "-"
            if t.is_builtin(chain):
                if policy != "-":
                    t.policies[chain] = policy
            else:
                t.chains[chain] = []  # create or flush
            return
        op, _, rest = line.partition(" ")
        chain, _, spec = rest.partition(" ")
        if op in ("-A", "-I", "-D", "-F", "-X") and chain not in t.chains:
            raise _Fail(f"chain {chain!r} does not exist")
        if op == "-A":
            self._check_target(t, spec)
            t.chains[chain].append(_norm(spec))
        elif op == "-I":
            pos = 1
            head, _, tail = spec.partition(" ")
            if head.isdigit():
                pos, spec = int(head), tail
            self._check_target(t, spec)
            t.chains[chain].insert(pos - 1, _norm(spec))
        elif op == "-D":
            want = _norm(spec)
            if want not in t.chains[chain]:
                raise _Fail(f"no rule {spec!r} in {chain}")
            t.chains[chain].remove(want)
        elif op == "-F":
            t.chains[chain] = []
        elif op == "-N":
            if chain in t.chains:
                raise _Fail(f"chain {chain} already exists")
            t.chains[chain] = []
        elif op == "-X":
            if t.is_builtin(chain):
                raise _Fail(f"cannot delete built-in chain {chain}")
            if t.chains[chain]:
                raise _Fail(f"chain {chain} is not empty")
            if t.references(chain):
                raise _Fail(f"chain {chain} is still referenced")
            del t.chains[chain]
        else:
            raise _Fail(f"unsupported line {line!r}")
