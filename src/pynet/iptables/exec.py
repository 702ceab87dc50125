"""The one seam through which pynet runs the iptables/ipset tools: an injected ``Exec`` callable.

Production code uses :func:`subprocess_exec` (the current network namespace, as the agent runs inside
its node), tests and benchmarks use :func:`netns_exec` (prefixing ``ip netns exec NAME``) or the fake in
:mod:`pynet.iptables.fake`. Nothing else in pynet calls these tools directly.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Exec", "ExecResult", "netns_exec", "subprocess_exec"]

#: iptables-nft 1.8.9 needs minutes to restore 10,000 services (superlinear in chains, see
#: bench/RESULTS.md); a tool still running after this long is treated as hung
DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True, slots=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class Exec(Protocol):
    def __call__(self, argv: Sequence[str], input: str | None = None) -> ExecResult: ...


def _run(argv: Sequence[str], input: str | None) -> ExecResult:
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT)
    except FileNotFoundError as err:
        return ExecResult(127, "", f"{argv[0]}: not found ({err})")
    except subprocess.TimeoutExpired as err:
        return ExecResult(124, "", f"{argv[0]}: timed out after {err.timeout}s")
    return ExecResult(proc.returncode, proc.stdout, proc.stderr)


def subprocess_exec(argv: Sequence[str], input: str | None = None) -> ExecResult:
    """Run ``argv`` in the current network namespace."""
    return _run(argv, input)


def netns_exec(netns: str) -> Exec:
    """An Exec that runs every command inside the named network namespace (``ip netns exec``)."""

    def run(argv: Sequence[str], input: str | None = None) -> ExecResult:
        return _run(["ip", "netns", "exec", netns, *argv], input)

    return run
