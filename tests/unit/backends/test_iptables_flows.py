"""SHARED_FLOWS through the iptables rules (FakeIptables + a packet tracer defined here): for every flow
of :mod:`pynet.testing.flows`, the set of endpoints reachable, REJECT/DROP, and masquerading must be
exactly what the table says, for both dispatch layouts (prefix tree with ipset gate, kube-proxy's
linear chain). The tracer walks nat PREROUTING/OUTPUT, filter INPUT/FORWARD/OUTPUT and nat POSTROUTING
as the kernel orders them for a NEW connection, branches on ``-m statistic``, treats ``-m recent
--rcheck`` as a first packet, consults the fake's ipsets, and raises on any rule shape it does not know.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

import pytest

from pynet.iptables import FakeIptables, split_args
from pynet.proxy.backends.iptables import IptablesBackend
from pynet.testing.flows import NODE_IP, SHARED_FLOWS, PacketFlow, shared_state

LOCAL = frozenset({NODE_IP, "127.0.0.1"})


class UnknownRule(AssertionError):
    pass


@dataclass(frozen=True)
class Pkt:
    src: str
    dst: str
    proto: str
    dport: int
    mark: int = 0
    dnat: str | None = None
    masq: bool = False


Result = list[tuple[str, Pkt]]  # ("continue" | "accept" | "drop" | "reject", packet)


class Tracer:
    def __init__(self, fake: FakeIptables) -> None:
        self.fake = fake

    def _in(self, addr: str, cidr: str) -> bool:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False)

    def _set(self, name: str, flags: str, p: Pkt) -> bool:
        typ, _, members = self.fake.ipset.sets[name]
        if flags == "dst,dst":
            return f"{p.dst},{p.proto}:{p.dport}" in members
        if flags == "dst":
            return p.dst in members
        raise UnknownRule(f"set flags {flags}")

    def _matches(self, args: list[str], p: Pkt) -> list[tuple[bool, list[str]]]:
        """Evaluate the match part; returns branches (matched, remaining target args)."""
        i, branches = 0, [True]
        while i < len(args):
            a = args[i]
            if a in ("-j", "-g"):
                return [(b, args[i:]) for b in branches]
            neg = a == "!"
            if neg:
                i += 1
                a = args[i]
            ok: bool | None = None
            if a == "-s":
                ok, i = self._in(p.src, args[i + 1]), i + 2
            elif a == "-d":
                ok, i = self._in(p.dst, args[i + 1]), i + 2
            elif a == "-p":
                ok, i = p.proto == args[i + 1], i + 2
            elif a == "--dport":
                ok, i = p.dport == int(args[i + 1]), i + 2
            elif a == "-m" and args[i + 1] in ("tcp", "udp", "sctp"):
                i += 2
            elif a == "-m" and args[i + 1] == "comment":
                i += 4
            elif a == "-m" and args[i + 1] == "set" and args[i + 2] == "--match-set":
                ok, i = self._set(args[i + 3], args[i + 4], p), i + 5
            elif a == "-m" and args[i + 1] == "addrtype":
                addr = p.src if args[i + 2] == "--src-type" else p.dst
                assert args[i + 3] == "LOCAL", args
                ok, i = addr in LOCAL, i + 4
            elif a == "-m" and args[i + 1] == "conntrack" and args[i + 2] == "--ctstate":
                ok, i = args[i + 3] == "NEW", i + 4  # every traced packet opens a connection
            elif a == "-m" and args[i + 1] == "mark":
                if args[i + 2] == "!":
                    neg, i = True, i + 1
                value, _, mask = args[i + 3].partition("/")
                ok, i = (p.mark & int(mask or "0xffffffff", 16)) == int(value, 16), i + 4
            elif a == "-m" and args[i + 1] == "statistic" and args[i + 2:i + 4] == ["--mode", "random"]:
                i += 6
                branches = [True, False]  # every earlier match held; this one may go either way
            elif a == "-m" and args[i + 1] == "recent":
                j = i + 2
                check = False
                while j < len(args) and args[j] not in ("-j", "-m", "-p"):
                    check = check or args[j] == "--rcheck"
                    j += 1
                ok, i = (not check), j  # a first packet: no recent entry yet
            else:
                raise UnknownRule(f"match {a!r} in {' '.join(args)}")
            if ok is not None:
                ok = ok != neg
                if not ok:
                    return [(False, [])]
        raise UnknownRule(f"rule without a target: {args}")

    def walk(self, table: str, chain: str, p: Pkt, start: int = 0) -> Result:
        rules = self.fake.chains(4, table)[chain]
        for idx in range(start, len(rules)):
            args = split_args(rules[idx])
            branches = self._matches(args, p)
            out: Result = []
            fell_through = False
            for matched, target in branches:
                if not matched:
                    fell_through = True
                    continue
                out.extend(self._target(table, chain, idx, target, p))
            if not fell_through:
                return out
            if out:  # a statistic branch: this rule matched in some worlds, fell through in others
                return out + self.walk(table, chain, p, idx + 1)
        return [("continue", p)]

    def _target(self, table: str, chain: str, idx: int, target: list[str], p: Pkt) -> Result:
        verb, name, rest = target[0], target[1], target[2:]
        if verb != "-j":
            raise UnknownRule(f"goto {target}")
        if name in ("ACCEPT", "DROP", "REJECT"):
            return [(name.lower(), p)]
        if name == "RETURN":
            return [("continue", p)]
        if name == "DNAT" and rest[0] == "--to-destination":
            host, _, port = rest[1].rpartition(":")
            return [("accept", replace(p, dst=host, dport=int(port), dnat=rest[1]))]
        if name == "MASQUERADE":
            return [("accept", replace(p, masq=True))]
        if name == "MARK":
            value = int(rest[1], 16)
            q = replace(p, mark=p.mark | value if rest[0] == "--or-mark" else p.mark ^ value)
            return self.walk(table, chain, q, idx + 1)
        if name.startswith("PYNET-"):
            out: Result = []
            for verdict, q in self.walk(table, name, p):
                out.extend(self.walk(table, chain, q, idx + 1) if verdict == "continue" else [(verdict, q)])
            return out
        raise UnknownRule(f"target {target}")

    def hook(self, table: str, chain: str, p: Pkt) -> Result:
        return [("accept" if v == "continue" else v, q) for v, q in self.walk(table, chain, p)]


def trace(fake: FakeIptables, flow: PacketFlow) -> set[tuple[str, str | None, bool]]:
    t = Tracer(fake)
    first = Pkt(flow.src, flow.dst, flow.proto, flow.dport)
    out: set[tuple[str, str | None, bool]] = set()
    nat_first = ("nat", "OUTPUT") if flow.origin == "local" else ("nat", "PREROUTING")
    for v, p in t.hook(*nat_first, first):
        if v != "accept":
            out.add((v, p.dnat, False))
            continue
        filters = ["OUTPUT"] if flow.origin == "local" else []
        if flow.origin == "remote" or p.dst in LOCAL:
            filters.append("INPUT" if p.dst in LOCAL else "FORWARD")
        states = [p]
        verdicts: list[tuple[str, Pkt]] = []
        for f in filters:
            nxt = []
            for q in states:
                for v2, r in t.hook("filter", f, q):
                    (nxt if v2 == "accept" else verdicts).append((v2, r) if v2 != "accept" else r)  # type: ignore[arg-type]
            states = nxt  # type: ignore[assignment]
        out |= {(v2, r.dnat, False) for v2, r in verdicts}
        for q in states:
            out |= {(v3, s.dnat, s.masq) for v3, s in t.hook("nat", "POSTROUTING", q)}
    return out


@pytest.fixture(scope="module", params=["tree", "linear"])
def fake(request: pytest.FixtureRequest) -> FakeIptables:
    f = FakeIptables()
    IptablesBackend(exec=f, dispatch=request.param).sync(shared_state(), frozenset(), True)
    return f


@pytest.mark.parametrize("flow", SHARED_FLOWS, ids=[f.name for f in SHARED_FLOWS])
def test_shared_flow(fake: FakeIptables, flow: PacketFlow) -> None:
    if flow.name == "clusterip wrong port rejected" and "pynet-svc-cip-v4" not in fake.ipset.sets:
        # kube-proxy's linear layout (the benchmark reference) has no cluster-IP catch-all
        assert {v for v, _, _ in trace(fake, flow)} == {"accept"}
        return
    outcomes = trace(fake, flow)
    if flow.output <= {"REJECT", "DROP", "ACCEPT"}:
        assert {v.upper() for v, _, _ in outcomes} == set(flow.output), outcomes
        return
    assert {v for v, _, _ in outcomes} == {"accept"}, outcomes
    assert {d for _, d, _ in outcomes} == set(flow.output), outcomes
    assert {m for _, _, m in outcomes} == {flow.masq}, outcomes


def test_unknown_rule_shapes_fail_loudly() -> None:
    f = FakeIptables()
    IptablesBackend(exec=f).sync(shared_state(), frozenset(), True)
    f.chains(4, "nat")["PYNET-SERVICES"].insert(0, "-m tcpmss --mss 1:500 -j RETURN")
    with pytest.raises(UnknownRule):
        trace(f, SHARED_FLOWS[0])
