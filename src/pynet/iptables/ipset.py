"""The ipsets pynet's iptables backend owns: create, diff members, destroy, through ``ipset restore``.

All sets pynet makes are named with the ``pynet-`` prefix (ipset names are at most 31 characters) and
live in the network namespace the agent runs in. Membership changes are applied with ``-exist`` so a
retry after a partial failure converges.
"""

from __future__ import annotations

from collections.abc import Iterable

from pynet.iptables.errors import IptablesError
from pynet.iptables.exec import Exec, subprocess_exec

__all__ = ["IPSET_NAME_MAX", "Ipset"]

IPSET_NAME_MAX = 31


class Ipset:
    def __init__(self, exec: Exec = subprocess_exec) -> None:
        self._exec = exec

    def _run(self, argv: list[str], input: str | None = None) -> str:
        res = self._exec(["ipset", *argv], input)
        if res.returncode != 0:
            raise IptablesError(f"ipset {' '.join(argv)} failed: {res.stderr.strip()}", returncode=res.returncode)
        return res.stdout

    def list_names(self) -> list[str]:
        return [n for n in self._run(["list", "-n"]).split() if n]

    def members(self, name: str) -> set[str]:
        out = self._run(["save", name])
        prefix = f"add {name} "
        return {line[len(prefix):].strip() for line in out.splitlines() if line.startswith(prefix)}

    def apply(self, name: str, settype: str, family: str, add: Iterable[str] = (), delete: Iterable[str] = (),
              *, create: bool = False) -> None:
        """Create (if asked, idempotently) and add/delete members in one ``ipset restore -exist``."""
        lines: list[str] = []
        if create:
            if len(name) > IPSET_NAME_MAX:
                raise IptablesError(f"ipset name {name!r} is longer than {IPSET_NAME_MAX}")
            lines.append(f"create {name} {settype} family {family} hashsize 1024 maxelem 1048576")
        lines.extend(f"add {name} {m}" for m in add)
        lines.extend(f"del {name} {m}" for m in delete)
        if lines:
            self._run(["restore", "-exist"], "\n".join(lines) + "\n")

    def destroy(self, name: str) -> None:
        self._run(["destroy", name])
