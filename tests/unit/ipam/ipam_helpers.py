"""Shared helpers for the IPAM unit tests: a config builder and a stand-in for CmdArgs.

Imported by the test modules as a plain module (pytest puts this directory on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Args:
    container_id: str
    ifname: str = "eth0"
    args: str = ""


def make_conf(data_dir: Path | str, *range_sets: list[dict[str, Any]], version: str = "1.0.0",
              **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "net1", "type": "pynet",
            "ipam": {"type": "pynet-ipam", "dataDir": str(data_dir),
                     "ranges": [list(rs) for rs in range_sets], **ipam}}
