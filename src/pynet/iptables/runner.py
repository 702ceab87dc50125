"""Run iptables-restore / iptables-save for one IP family and one variant, through an injected Exec.

``Iptables.restore(text)`` is one ``iptables-restore --noflush`` call: atomic per table. Failures raise
:class:`IptablesError` carrying the tool's message and the failing line number when it says one.
"""

from __future__ import annotations

import re

from pynet.iptables.errors import IptablesError
from pynet.iptables.exec import Exec, subprocess_exec
from pynet.iptables.restore import RestoreInput, Table
from pynet.iptables.save import SavedTable, parse_save
from pynet.iptables.variant import Tools, Variant, tools_for

__all__ = ["Iptables"]

_FAILED_LINE = re.compile(r"line:? (\d+) failed|Error occurred at line: (\d+)", re.IGNORECASE)


class Iptables:
    def __init__(self, family: int, variant: Variant, exec: Exec = subprocess_exec) -> None:
        self.family = family
        self.variant = variant
        self.tools: Tools = tools_for(variant, family)
        self._exec = exec

    def restore(self, data: RestoreInput | str, *, noflush: bool = True) -> None:
        text = data.render() if isinstance(data, RestoreInput) else data
        if not text:
            return
        argv = [self.tools.restore, "-w"] + (["--noflush"] if noflush else [])
        res = self._exec(argv, text)
        if res.returncode != 0:
            m = _FAILED_LINE.search(res.stderr)
            line = int(m.group(1) or m.group(2)) if m else None
            detail = ""
            if line is not None:
                lines = text.splitlines()
                if 0 < line <= len(lines):
                    detail = f" (line {line}: {lines[line - 1]!r})"
            raise IptablesError(
                f"{self.tools.restore} failed with {res.returncode}: {res.stderr.strip()}{detail}",
                returncode=res.returncode, line=line,
            )

    def save(self, table: Table | None = None) -> dict[str, SavedTable]:
        argv = [self.tools.save] + (["-t", table.value] if table else [])
        res = self._exec(argv)
        if res.returncode != 0:
            raise IptablesError(f"{self.tools.save} failed: {res.stderr.strip()}", returncode=res.returncode)
        return parse_save(res.stdout)

    def has_tables(self) -> bool:
        """True when this variant already holds tables here; never instantiates legacy tables."""
        if self.variant == Variant.LEGACY:
            names = "ip_tables_names" if self.family == 4 else "ip6_tables_names"
            res = self._exec(["cat", f"/proc/net/{names}"])
            return res.returncode == 0 and bool(res.stdout.strip())
        return self.available()

    def available(self) -> bool:
        """True when this family's tools run here (ip6tables may lack kernel support)."""
        res = self._exec([self.tools.save, "-t", "nat"])
        return res.returncode == 0
