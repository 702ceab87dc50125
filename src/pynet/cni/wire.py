"""The fast-path wire format between ``cni-bin/pynet`` and the agent's :class:`~pynet.cni.server.CniServer`.

Stdlib only (the launcher imports it before anything heavy). One request per connection on an
*abstract* unix stream socket (``\\0<name>``): abstract names live in the network namespace, so a
plugin always reaches the agent of its own node and nobody else's.

Request:  ``u32 len`` + the environment as ``KEY=VALUE`` pairs joined by NUL bytes (what ``execve``
          itself would carry; no JSON, so the client never imports ``json``/``re``), then
          ``u32 len`` + raw stdin bytes.
Response: ``u32 exit status`` + ``u32 len`` + the plugin's stdout bytes (result or error JSON).
All integers are big-endian. Frames over ``MAX_FRAME`` are refused.

Start-up budget: the launcher imports this module on every call, so it imports nothing at run time
(no ``struct``: ``int.to_bytes``; no ``from __future__ import annotations``: importing
``__future__`` costs the launcher ~0.7 ms, so the one forward reference is a string).
"""

TYPE_CHECKING = False  # the launcher imports this module: no typing, no socket module at run time
if TYPE_CHECKING:
    import _socket as socket  # socket.socket subclasses it; the client uses the C type directly

__all__ = ["DEFAULT_SOCKET", "FORWARDED_ENV", "MAX_FRAME", "abstract_address", "decode_env", "encode_env",
           "recv_exact", "recv_frame", "send_frame"]

DEFAULT_SOCKET = "pynet-cni"
MAX_FRAME = 16 * 1024 * 1024
#: environment the agent needs to run the request as the plugin would (plus every CNI_* variable)
FORWARDED_ENV = ("PATH",)


def encode_env(env: dict[str, str]) -> bytes:
    """``{"A": "1"}`` -> ``b"A=1"`` (pairs joined by NUL).

    >>> decode_env(encode_env({"A": "1", "B": "x=y"}))
    {'A': '1', 'B': 'x=y'}
    """
    return b"\0".join(f"{k}={v}".encode() for k, v in env.items())


def decode_env(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key:
            out[key] = value
    return out


def abstract_address(name: str) -> str:
    return "\0" + name


def recv_exact(sock: "socket.socket", n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection mid-frame")
        buf += chunk
    return bytes(buf)


def recv_u32(sock: "socket.socket") -> int:
    return int.from_bytes(recv_exact(sock, 4), "big")


def recv_frame(sock: "socket.socket") -> bytes:
    n = recv_u32(sock)
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes refused")
    return recv_exact(sock, n)


def send_frame(sock: "socket.socket", data: bytes, prefix: int | None = None) -> None:
    head = (prefix.to_bytes(4, "big") if prefix is not None else b"") + len(data).to_bytes(4, "big")
    sock.sendall(head + data)
