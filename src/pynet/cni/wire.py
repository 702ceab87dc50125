"""The fast-path wire format between ``cni-bin/pynet`` and the agent's :class:`~pynet.cni.server.CniServer`.

Stdlib only (the launcher imports it before anything heavy). One request per connection on an
*abstract* unix stream socket (``\\0<name>``): abstract names live in the network namespace, so a
plugin always reaches the agent of its own node and nobody else's.

Request:  ``u32 len`` + JSON ``{"env": {...}}``  then  ``u32 len`` + raw stdin bytes.
Response: ``u32 exit status`` + ``u32 len`` + the plugin's stdout bytes (result or error JSON).
All integers are big-endian. Frames over ``MAX_FRAME`` are refused.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["DEFAULT_SOCKET", "FORWARDED_ENV", "MAX_FRAME", "abstract_address", "recv_exact", "recv_frame",
           "send_frame"]

DEFAULT_SOCKET = "pynet-cni"
MAX_FRAME = 16 * 1024 * 1024
#: environment the agent needs to run the request as the plugin would (plus every CNI_* variable)
FORWARDED_ENV = ("PATH",)
_U32 = struct.Struct(">I")


def abstract_address(name: str) -> str:
    return "\0" + name


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection mid-frame")
        buf += chunk
    return bytes(buf)


def recv_u32(sock: socket.socket) -> int:
    return int(_U32.unpack(recv_exact(sock, 4))[0])


def recv_frame(sock: socket.socket) -> bytes:
    n = recv_u32(sock)
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes refused")
    return recv_exact(sock, n)


def send_frame(sock: socket.socket, data: bytes, prefix: int | None = None) -> None:
    head = (_U32.pack(prefix) if prefix is not None else b"") + _U32.pack(len(data))
    sock.sendall(head + data)
