"""The thin, stdlib-only client half of ``cni-bin/pynet``: hand the request to the node agent.

:func:`try_agent` connects to the agent's abstract socket in the caller's network namespace. If
nobody listens (no agent, or an agent without the CNI server) it returns ``None`` *before sending
anything*, and the launcher does the work in-process. Once the request is sent the agent owns it:
a lost connection, a timeout, or an error the agent reports (internal errors included) is the
answer, never retried in-process, because the agent may have done part of the work (the runtime
retries, and ADD/DEL are idempotent). A lost connection is reported as error code 11 (try again).

Set ``PYNET_CNI_SOCKET`` to use another socket name, or ``PYNET_CNI_SOCKET=none`` to never try.

Start-up budget (this runs on every plugin call, before anything else): the module imports only
``_socket`` (the C module; ``socket`` pulls in enum and selectors), ``posix`` and ``sys`` (already
loaded by the interpreter), and :mod:`pynet.cni.wire`. Not ``os`` either: with ``-S`` nothing has
imported it yet and it costs ~3 ms (``_collections_abc``); the environment comes from
``posix.environ``. No ``from __future__ import annotations`` (importing ``__future__`` costs ~0.7
ms): annotations naming typing-only types are strings.
"""

import _socket  # the C module: `import socket` (enum, selectors) would cost the launcher milliseconds
import posix
import sys

from pynet.cni import wire

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs the launcher milliseconds
if TYPE_CHECKING:  # start-up matters here: typing-only imports stay out of the launcher's path
    from collections.abc import Mapping
    from typing import BinaryIO

__all__ = ["REPLY_TIMEOUT", "process_environ", "run", "try_agent"]

REPLY_TIMEOUT = 300.0


def _error(code: int, msg: str) -> bytes:
    # hand-made JSON (no json import): the message keeps only characters that need no escaping
    text = "".join(c if c.isprintable() and c not in '"\\' else " " for c in msg)
    return ('{"cniVersion": "1.1.0", "code": ' + str(code) + ', "msg": "' + text + '"}\n').encode()


def process_environ() -> "dict[str, str]":
    """This process's environment as ``os.environ`` would decode it (without importing ``os``)."""
    enc = sys.getfilesystemencoding()
    return {k.decode(enc, "surrogateescape"): v.decode(enc, "surrogateescape") for k, v in posix.environ.items()}


def try_agent(environ: "Mapping[str, str]", stdin: bytes, name: "str | None" = None) -> "tuple[int, bytes] | None":
    """``(exit status, stdout bytes)`` from the agent, or None when no agent listens here."""
    name = name or environ.get("PYNET_CNI_SOCKET") or wire.DEFAULT_SOCKET
    if name == "none":
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(wire.abstract_address(name))
        except OSError:
            return None  # nothing was sent: the caller may do the work itself
        env = {k: v for k, v in environ.items() if k.startswith("CNI_") or k in wire.FORWARDED_ENV}
        try:
            sock.settimeout(REPLY_TIMEOUT)
            wire.send_frame(sock, wire.encode_env(env))
            wire.send_frame(sock, stdin)
            status = wire.recv_u32(sock)
            out = wire.recv_frame(sock)
        except OSError as err:  # ConnectionError and socket timeouts are OSErrors
            return 1, _error(11, f"pynet agent did not answer the CNI request: {err}")
        return status, out
    finally:
        sock.close()


def run(stdin: "BinaryIO | None" = None, stdout: "BinaryIO | None" = None,
        environ: "Mapping[str, str] | None" = None) -> "int | None":
    """Launcher helper: forward this process's request; None means "do it yourself" (stdin is kept
    in ``sys.stdin`` replacement so the in-process path can read it again)."""
    environ = process_environ() if environ is None else environ
    data = (stdin or sys.stdin.buffer).read()
    answer = try_agent(environ, data)
    if answer is None:
        import io

        sys.stdin = io.TextIOWrapper(io.BytesIO(data))
        return None
    status, out = answer
    sink = stdout or sys.stdout.buffer
    sink.write(out)
    sink.flush()
    return status
