"""A packet tracer over :class:`pynet.nft.FakeNft` (the rules the nftables backend renders).

``trace(nft, Packet(...))`` walks the hooks a packet meets on the node in priority order (from a pod
or outside: prerouting, then input or forward, then postrouting; from the node itself: output, then
postrouting), evaluating every rule shape the backend emits. ``numgen random`` rules branch, so the
result lists *every* possible outcome: the set of endpoints a flow may reach, whether it is
masqueraded, or that it is rejected/dropped. A rule the tracer does not understand raises
:class:`UnknownRule`: a new rule shape must be taught here before tests can pass (kube-proxy's
tracer discipline). Affinity sets are treated as empty (a first packet).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from pynet.nft.fake import FakeNft

__all__ = ["Outcome", "Packet", "UnknownRule", "trace"]

MASQ = 0x4000
_ID = r"[A-Za-z_][A-Za-z0-9/_.\-]*"


class UnknownRule(AssertionError):
    """The tracer met a rule shape it cannot evaluate."""


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str  # tcp | udp | sctp
    dport: int
    origin: str = "remote"  # "remote" (a pod or another host, through prerouting) or "local" (the node)


@dataclass(frozen=True)
class Outcome:
    verdict: str  # accept | reject | drop
    dnat: str | None = None  # "ip:port" when translated
    masquerade: bool = False


@dataclass(frozen=True)
class _Pkt:
    src: str
    dst: str
    proto: str
    dport: int
    mark: int = 0
    dnat: str | None = None
    masq: bool = False


# verdict of a chain walk: ("continue" | "return"|"accept"|"drop"|"reject", packet)
_Result = list[tuple[str, _Pkt]]


class _Tracer:
    def __init__(self, nft: FakeNft, local_ips: frozenset[str]) -> None:
        assert nft.state is not None, "empty ruleset"
        self.nft = nft
        self.local = local_ips
        self.rules = {n: [r.rule for r in cs.rules] for n, cs in nft.state.chains.items()}
        self.base = {n: cs.chain for n, cs in nft.state.chains.items() if cs.chain.hook}

    def _in(self, addr: str, literal: str) -> bool:
        a = ipaddress.ip_address(addr)
        items = [x.strip() for x in literal.strip("{} ").split(",") if x.strip()]
        return any(a in ipaddress.ip_network(x, strict=False) for x in items)

    def _elem(self, name: str, key: str) -> str | None:
        return self.nft.elements(name).get(key)

    def _in_set(self, name: str, addr: str) -> bool:
        return addr in self.nft.elements(name)

    def chain(self, name: str, p: _Pkt, depth: int = 0) -> _Result:
        if depth > 50:
            raise UnknownRule(f"jump depth exceeded at {name}")
        return self._rules(self.rules[name], p, depth)

    def _rules(self, rules: list[str], p: _Pkt, depth: int) -> _Result:
        if not rules:
            return [("continue", p)]
        rule, rest = rules[0], rules[1:]
        outcomes = self._rule(rule, p, depth)
        out: _Result = []
        for verdict, q in outcomes:
            if verdict == "next":
                out += self._rules(rest, q, depth)
            else:
                out.append((verdict, q))
        return out

    def _jump(self, kind: str, target: str, p: _Pkt, depth: int) -> _Result:
        res = self.chain(target, p, depth + 1)
        if kind == "goto":
            return [("return" if v in ("continue", "return") else v, q) for v, q in res]
        return [("next" if v in ("continue", "return") else v, q) for v, q in res]

    def _verdict(self, verdict: str, p: _Pkt, depth: int) -> _Result:
        if verdict in ("drop", "accept", "return"):
            return [(verdict, p)]
        m = re.fullmatch(rf"(goto|jump) ({_ID})", verdict)
        if not m:
            raise UnknownRule(f"verdict {verdict!r}")
        return self._jump(m.group(1), m.group(2), p, depth)

    def _rule(self, rule: str, p: _Pkt, depth: int) -> _Result:  # noqa: C901 - one branch per shape
        ip = r"ip6?"
        if m := re.fullmatch(rf"ct state new (jump|goto) ({_ID})", rule):
            return self._jump(m.group(1), m.group(2), p, depth)  # every traced packet is new
        if m := re.fullmatch(rf"(jump|goto) ({_ID})", rule):
            return self._jump(m.group(1), m.group(2), p, depth)
        if m := re.fullmatch(rf"{ip} daddr \. meta l4proto \. th dport vmap @({_ID})", rule):
            v = self._elem(m.group(1), f"{p.dst} . {p.proto} . {p.dport}")
            return [("next", p)] if v is None else self._verdict(v, p, depth)
        if m := re.fullmatch(rf"{ip} daddr @({_ID}) meta l4proto \. th dport vmap @({_ID})", rule):
            if not self._in_set(m.group(1), p.dst):
                return [("next", p)]
            v = self._elem(m.group(2), f"{p.proto} . {p.dport}")
            return [("next", p)] if v is None else self._verdict(v, p, depth)
        if m := re.fullmatch(rf"{ip} daddr @({_ID}) reject", rule):
            return [("reject", p)] if self._in_set(m.group(1), p.dst) else [("next", p)]
        if rule == f"meta mark set meta mark | {MASQ:#x}":
            return [("next", replace(p, mark=p.mark | MASQ))]
        if rule == f"meta mark & {MASQ:#x} == 0 return":
            return [("return", p)] if not p.mark & MASQ else [("next", p)]
        if rule == f"meta mark set meta mark ^ {MASQ:#x}":
            return [("next", replace(p, mark=p.mark ^ MASQ))]
        if rule == "masquerade fully-random":
            return [("accept", replace(p, masq=True))]
        if rule == "meta l4proto tcp reject with tcp reset":
            return [("reject", p)] if p.proto == "tcp" else [("next", p)]
        if rule == "reject":
            return [("reject", p)]
        if m := re.fullmatch(
            rf"{ip} daddr (\S+) meta l4proto (\w+) th dport (\d+) {ip} saddr != ({{[^}}]*}}) (jump|goto) ({_ID})", rule
        ):
            hit = p.dst == m.group(1) and p.proto == m.group(2) and p.dport == int(m.group(3)) and not self._in(p.src, m.group(4))
            return self._jump(m.group(5), m.group(6), p, depth) if hit else [("next", p)]
        if m := re.fullmatch(rf"{ip} saddr ({{[^}}]*}}) (jump|goto) ({_ID})", rule):
            return self._jump(m.group(2), m.group(3), p, depth) if self._in(p.src, m.group(1)) else [("next", p)]
        if m := re.fullmatch(rf"{ip} saddr != ({{[^}}]*}}) drop", rule):
            return [("drop", p)] if not self._in(p.src, m.group(1)) else [("next", p)]
        if m := re.fullmatch(rf"{ip} saddr ([0-9a-f.:]+) (jump|goto) ({_ID})", rule):
            return self._jump(m.group(2), m.group(3), p, depth) if p.src == m.group(1) else [("next", p)]
        if m := re.fullmatch(rf"fib saddr type local (jump|goto) ({_ID})", rule):
            return self._jump(m.group(1), m.group(2), p, depth) if p.src in self.local else [("next", p)]
        if m := re.fullmatch(rf"{ip} saddr @({_ID}) goto ({_ID})", rule):
            return [("next", p)]  # affinity: the tracer models a first packet (empty sets)
        if re.fullmatch(rf"update @({_ID}) {{ {ip} saddr }}", rule):
            return [("next", p)]
        if m := re.fullmatch(rf"numgen random mod (\d+) 0 goto ({_ID})", rule):
            return [*self._jump("goto", m.group(2), p, depth), ("next", p)]  # both branches
        if m := re.fullmatch(r"meta l4proto (\w+) dnat to (\S+):(\d+)", rule):
            if m.group(1) != p.proto:
                return [("next", p)]
            return [("accept", replace(p, dst=m.group(2), dport=int(m.group(3)), dnat=f"{m.group(2)}:{m.group(3)}"))]
        raise UnknownRule(rule)

    def hook(self, hook: str, p: _Pkt) -> _Result:
        """Run every base chain on ``hook`` in priority order; drop/reject end the walk."""
        results: _Result = [("accept", p)]
        for chain in sorted((c for c in self.base.values() if c.hook == hook), key=lambda c: c.priority or 0):
            nxt: _Result = []
            for verdict, q in results:
                if verdict != "accept":
                    nxt.append((verdict, q))
                    continue
                for v, r in self.chain(chain.name, q):
                    nxt.append(("accept" if v in ("continue", "return", "accept") else v, r))
            results = nxt
        return results


def trace(nft: FakeNft, packet: Packet, *, local_ips: frozenset[str] = frozenset()) -> set[Outcome]:
    """Every possible outcome of ``packet`` on the node whose addresses are ``local_ips``."""
    t = _Tracer(nft, local_ips)
    p = _Pkt(packet.src, packet.dst, packet.proto, packet.dport)
    first = ("output",) if packet.origin == "local" else ("prerouting",)
    results = t.hook(first[0], p)
    out: set[Outcome] = set()
    for verdict, q in results:
        if verdict != "accept":
            out.add(Outcome(verdict, q.dnat))
            continue
        then = "postrouting"
        if packet.origin == "remote":
            middle = "input" if q.dst in local_ips else "forward"
            for v2, r in t.hook(middle, q):
                if v2 != "accept":
                    out.add(Outcome(v2, r.dnat))
                    continue
                out |= {Outcome(v3, s.dnat, s.masq) for v3, s in t.hook(then, r)}
        else:
            out |= {Outcome(v3, s.dnat, s.masq) for v3, s in t.hook(then, q)}
    return out
