"""Throwaway network namespaces for tests and the lab.

Every namespace made here is named ``<prefix>-<random suffix>`` (so parallel or crashed runs never
collide), lives under ``/run/netns`` like those of ``ip netns add``, and is removed by
:meth:`TestNetns.destroy`, which first kills the processes still running inside it (only those: it
asks the kernel which PIDs hold that namespace). Nothing here touches the root network namespace.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["TestNetns", "random_suffix"]

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def random_suffix(n: int = 5) -> str:
    return secrets.token_hex(8)[:n]


@dataclass
class TestNetns:
    """A named network namespace, with helpers to run commands inside it."""

    __test__ = False  # not a pytest test class

    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @classmethod
    def create(cls, prefix: str = "pt") -> TestNetns:
        ns = cls(f"{prefix}-{random_suffix()}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        *argv: str,
        check: bool = True,
        input: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace; text output captured. Raises on non-zero when check."""
        data = input.decode() if isinstance(input, bytes) else input
        proc = subprocess.run(
            self.argv(*argv), input=data, capture_output=True, text=True,
            env=dict(env) if env is not None else None, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in netns {self.name}: {' '.join(argv)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            self.argv(*argv), env=dict(env) if env is not None else None, text=True, **kw
        )

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def destroy(self) -> None:
        """Kill what runs inside, then delete the namespace (links inside it go with it)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in self.pids() if p != os.getpid()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and any(p in self.pids() for p in pids):
                time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
