"""Named network namespaces of a lab: create, run inside, list by prefix, delete.

Namespaces live under ``/run/netns`` like those of ``ip netns add``, so a learner can look at them
with ``ip netns exec``. Deleting one first kills the processes still inside it (only those: the
kernel says which PIDs hold it), then removes the name. Nothing here touches the root namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

__all__ = ["STANDARD_PATH", "add", "argv", "delete", "exists", "list_with_prefix", "pids", "run"]

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NETNS_DIR = "/run/netns"


class NetnsError(RuntimeError):
    pass


def exists(name: str) -> bool:
    return os.path.exists(f"{NETNS_DIR}/{name}")


def add(name: str) -> None:
    """Create ``name`` (loopback up)."""
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsError(f"ip netns add {name}: {proc.stderr.strip()}")
    run(name, ["ip", "link", "set", "lo", "up"])


def argv(name: str, command: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", name, *command]


def run(name: str, command: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv(name, command), input=input, capture_output=True, text=True,
                          env=dict(env) if env is not None else None, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"in {name}: {' '.join(command)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def list_with_prefix(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def delete(name: str, *, grace: float = 2.0) -> None:
    """Kill what runs inside ``name`` (TERM, then KILL), then delete it. Missing is fine."""
    if not exists(name):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        inside = [p for p in pids(name) if p != os.getpid()]
        if not inside:
            break
        for pid in inside:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(p in pids(name) for p in inside):
            time.sleep(0.05)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
