"""Nft: apply transactions to the kernel through libnftables (Debian's ``python3-nftables``).

One :class:`Nft` drives one table in the network namespace of the calling process. ``run(tx)`` hands
the transaction's text to ``Nftables.cmd`` in one call, which libnftables turns into one netlink
batch: all of it applies or none of it does. ``check(tx)`` is the same with ``--check`` (dry run).
Listings use libnftables' JSON output (reading is where JSON is reliable).

Memory: libnftables builds its whole parse tree and netlink batch for a transaction in C (about 460 MiB
for 10,000 services: peak RSS 600 MiB) and frees it afterwards, but glibc keeps most freed pages in the
process (RSS 530 MiB after the sync instead of about 110; ``malloc_trim(0)`` gets it back to 110, the
rest is fragmentation of heap pages that still hold live objects). So a transaction of at least
``EXTERNAL_OPS`` operations is handed to a short-lived ``nft -f -`` process instead (what kube-proxy's
knftables does for every transaction): the same libnftables, the same one atomic batch, in the
caller's network namespace, and none of that memory ever lands in the agent. Smaller transactions use
the in-process context, followed by ``malloc_trim(0)`` when their text is large. The context keeps no
cache between commands that matters: dropping it frees nothing measurable.

Hazards: a libnftables context is not thread-safe; the agent uses an Nft from its single sync thread
only. Namespaces are per process: run the agent (or a test driver) *inside* the node's netns.
"""

from __future__ import annotations

import builtins
import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Literal, Protocol

from pynet.nft.errors import NftError, NftUnavailable
from pynet.nft.objects import Element
from pynet.nft.transaction import Transaction

__all__ = ["EXTERNAL_OPS", "TRIM_AFTER_BYTES", "Nft", "NftInterface", "probe", "release_free_heap"]

#: transactions at least this long (text) are followed by malloc_trim(0)
TRIM_AFTER_BYTES = 1 << 20
#: transactions of at least this many operations go to an ``nft -f -`` process (None: never)
EXTERNAL_OPS: int | None = 5000
#: bound on one external ``nft -f -`` run (10,000 services take about 6 s on a quiet 2-core VM)
EXTERNAL_TIMEOUT = 600.0


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_free_heap() -> bool:
    """Return free heap pages to the kernel (glibc ``malloc_trim(0)``); False where unsupported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


class NftInterface(Protocol):
    family: str
    table: str

    def new_transaction(self) -> Transaction: ...
    def run(self, tx: Transaction) -> None: ...
    def check(self, tx: Transaction) -> None: ...
    def list(self, kind: Literal["chains", "sets", "maps"]) -> builtins.list[str]: ...
    def list_elements(self, kind: Literal["set", "map"], name: str) -> builtins.list[Element]: ...
    def table_exists(self) -> bool: ...


def _context() -> Any:
    try:
        import nftables  # Debian's python3-nftables; visible through --system-site-packages
    except ImportError as err:
        raise NftUnavailable("the nftables Python module (python3-nftables) is not installed") from err
    try:
        return nftables.Nftables()
    except OSError as err:  # libnftables.so missing
        raise NftUnavailable(f"libnftables cannot be loaded: {err}") from err


def probe(family: str = "ip") -> None:
    """Raise NftUnavailable unless libnftables works and the kernel accepts a throwaway table.

    Uses a dry run (``--check``), so nothing is created.
    """
    ctx = _context()
    ctx.set_dry_run(True)
    rc, _out, err = ctx.cmd(
        f"add table {family} pynet-probe-{os.getpid()}\n"
        f"add chain {family} pynet-probe-{os.getpid()} c {{ type nat hook prerouting priority -100 ; }}\n"
        f"add map {family} pynet-probe-{os.getpid()} m {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}\n"
    )
    if rc != 0:
        raise NftUnavailable("the kernel refused an nftables nat table", detail=err)


class Nft:
    """The real runner for table ``family`` ``table``."""

    def __init__(self, family: str = "ip", table: str = "pynet") -> None:
        self.family = family
        self.table = table
        self._ctx = _context()
        self._nft_binary = shutil.which("nft")

    def new_transaction(self) -> Transaction:
        return Transaction(self.family, self.table)

    @contextmanager
    def _dry(self, dry: bool) -> Iterator[None]:
        self._ctx.set_dry_run(dry)
        try:
            yield
        finally:
            self._ctx.set_dry_run(False)

    def _cmd(self, text: str, what: str) -> str:
        rc, out, err = self._ctx.cmd(text)
        if rc != 0:
            first = text.splitlines()[0] if text else ""
            raise NftError(f"nft {what} failed (first command: {first!r})", detail=err)
        return str(out)

    def run(self, tx: Transaction) -> None:
        if tx.err is not None:
            raise tx.err
        if not len(tx):
            return
        if EXTERNAL_OPS is not None and len(tx) >= EXTERNAL_OPS and self._nft_binary:
            self._external(tx)
            return
        text = str(tx)
        try:
            self._cmd(text, "transaction")
        finally:
            if len(text) >= TRIM_AFTER_BYTES:
                del text
                release_free_heap()

    def _external(self, tx: Transaction) -> None:
        """Apply ``tx`` as one batch through ``nft -f -`` (same atomicity as Nftables.cmd).

        The text is streamed to nft as it is rendered, so it never exists whole in this process;
        stderr goes to a file, so a chatty failure cannot block the pipe while we are writing.
        """
        argv = [self._nft_binary or "nft", "-f", "-"]
        first = ""
        try:
            with tempfile.TemporaryFile(mode="w+") as errors:
                proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, text=True)
                assert proc.stdin is not None
                try:
                    write = proc.stdin.write
                    for line in tx.lines():
                        first = first or line
                        write(line)
                        write("\n")
                    proc.stdin.close()
                except BrokenPipeError:  # nft gave up early; its status and message tell why
                    with suppress(OSError):
                        proc.stdin.close()
                try:
                    rc = proc.wait(timeout=EXTERNAL_TIMEOUT)
                except subprocess.TimeoutExpired:
                    # killed before it committed, or it committed everything: the caller treats
                    # any failure as "the kernel may differ from the record" and re-lists
                    proc.kill()
                    proc.wait()
                    raise
                errors.seek(0)
                detail = errors.read()
        except (OSError, subprocess.TimeoutExpired) as err:
            raise NftError(f"running {argv[0]} -f - failed: {err}") from err
        if rc != 0:
            raise NftError(f"nft transaction failed (first command: {first!r})", detail=detail)

    def check(self, tx: Transaction) -> None:
        if tx.err is not None:
            raise tx.err
        with self._dry(True):
            self._cmd(str(tx), "check")

    def _json(self, command: str) -> list[dict[str, Any]]:
        self._ctx.set_json_output(True)
        try:
            out = self._cmd(command, "list")
        finally:
            self._ctx.set_json_output(False)
        data = json.loads(out) if out.strip() else {"nftables": []}
        return list(data.get("nftables", []))

    def table_exists(self) -> bool:
        return any(
            "table" in item and item["table"]["name"] == self.table
            for item in self._json(f"list tables {self.family}")
        )

    def list(self, kind: Literal["chains", "sets", "maps"]) -> builtins.list[str]:
        """Names of the chains / sets / maps in our table ([] when the table does not exist)."""
        # N.B. no table_exists() first: with libnftables 1.0.6 every command re-reads the whole
        # family's cache, so each extra listing costs as much as this one
        key = {"chains": "chain", "sets": "set", "maps": "map"}[kind]
        if kind == "chains":
            items = self._json(f"list chains {self.family}")
        else:
            # `list sets` prints elements too; terse output keeps big sets cheap.
            self._ctx.set_terse_output(True)
            try:
                items = self._json(f"list {kind} {self.family}")
            finally:
                self._ctx.set_terse_output(False)
        return [i[key]["name"] for i in items if key in i and i[key].get("table") == self.table]

    def list_elements(self, kind: Literal["set", "map"], name: str) -> builtins.list[Element]:
        """Elements of one set or map, keys and values rendered back into nft text."""
        items = self._json(f"list {kind} {self.family} {self.table} {name}")
        out: list[Element] = []
        for item in items:
            body = item.get(kind)
            if not body:
                continue
            for elem in body.get("elem", []):
                if kind == "map":
                    key, value = elem
                    out.append(Element(name, _json_expr(key), _json_expr(value)))
                else:
                    out.append(Element(name, _json_expr(elem)))
        return out


def _json_expr(expr: Any) -> str:
    """Render the small subset of JSON expressions our sets and maps hold back into nft text."""
    if isinstance(expr, (str, int)):
        return str(expr)
    if isinstance(expr, dict):
        if "concat" in expr:
            return " . ".join(_json_expr(e) for e in expr["concat"])
        if "elem" in expr:
            return _json_expr(expr["elem"]["val"])
        if "prefix" in expr:
            return f"{expr['prefix']['addr']}/{expr['prefix']['len']}"
        for verdict in ("goto", "jump"):
            if verdict in expr:
                return f"{verdict} {expr[verdict]['target']}"
        for verdict in ("drop", "accept", "return", "continue"):
            if verdict in expr:
                return verdict
    raise NftError(f"unexpected element expression {expr!r}")
