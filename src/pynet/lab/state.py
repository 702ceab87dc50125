"""What a running lab is made of, saved as JSON in its directory (``state.json``).

``down`` trusts the namespace prefix more than this file (a crash may have left no state), but the
file is what gives ``status``/``check`` the pod addresses and ``down`` the PIDs of the lab's own
background processes (agents and pod servers), which it kills by PID after checking that the PID
still runs one of our commands (PIDs get reused).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["LabState", "pid_is_ours"]


@dataclass
class LabState:
    name: str
    nodes: int
    pods_per_node: int
    backend: str
    overlay: str
    agents: dict[str, int] = field(default_factory=dict)  # node name -> pid
    servers: dict[str, int] = field(default_factory=dict)  # pod name -> pid
    pod_ips: dict[str, str] = field(default_factory=dict)  # pod name -> IPv4
    removed_nodes: list[str] = field(default_factory=list)
    up_seconds: float = 0.0

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**raw)


def pid_is_ours(pid: int, marker: str) -> bool:
    """True when ``pid`` runs and its command line contains ``marker`` (the lab's name or module)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline
