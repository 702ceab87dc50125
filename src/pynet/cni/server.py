"""The agent-hosted half of the CNI fast path: run plugin requests with netlink already warm.

``CniServer(socket_name="pynet-cni")`` listens on the abstract unix socket ``\\0pynet-cni`` of the
network namespace it is started in (the node) and runs each request exactly as the executable
would, through :func:`pynet.cni.skel.plugin_main`, with the request's environment and stdin.

Interface for the agent::

    server = CniServer()            # or CniServer("pynet-cni", max_workers=8)
    server.start()                  # binds (raises OSError if the name is taken), then serves in threads
    ...
    server.stop()                   # stops accepting, waits for running requests (bounded)

Invariants and hazards:

* No thread of the agent ever changes network namespace: pod namespaces are reached through
  :class:`pynet.netlink.nsexec.Broker` (a small single-threaded helper process, started with the
  server, creates the netlink socket inside the pod and hands it back over SCM_RIGHTS; it also
  writes the pod's sysctls). If the helper dies it is restarted; failing that, a forked child does
  the same (:class:`~pynet.netlink.nsexec.Forking`).
* "Host" is the server's own namespace, as for the executable.
* Requests run concurrently (one thread each, at most ``max_workers``); correctness under
  concurrency comes from the same places as for concurrent plugin processes: the IPAM store's file
  lock, the masquerade lock, EEXIST-tolerant creation of shared links.
* Only peers with the server's own uid (root) are served (SO_PEERCRED); abstract sockets have no
  file permissions.
* This module imports pyroute2 (through the commands) but never the kubernetes client.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import struct
import threading
from typing import Any

from pynet.cni import wire

__all__ = ["CniServer"]

log = logging.getLogger("pynet.cni.server")


class CniServer:
    def __init__(self, socket_name: str = wire.DEFAULT_SOCKET, *, max_workers: int = 16) -> None:
        self.socket_name = socket_name
        self._slots = threading.BoundedSemaphore(max_workers)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._active: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._funcs: Any = None
        self._broker: Any = None
        self.served = 0

    def start(self) -> None:
        # Import the heavy parts now, so the first request is as fast as the others.
        from pynet.cni.commands import Commands
        from pynet.cni.main import register_in_process_ipam
        from pynet.netlink.nsexec import Broker

        register_in_process_ipam()
        self._broker = Broker()
        self._funcs = Commands(nsexec=self._broker).funcs()
        import pyroute2  # noqa: F401 - warm import

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(wire.abstract_address(self.socket_name))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_loop, name="pynet-cni-server", daemon=True)
        self._thread.start()
        log.info("CNI server listening on @%s", self.socket_name)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):  # N.B. "not connected" is fine for a listening socket
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            active = list(self._active)
        for t in active:
            t.join(timeout)
        if self._broker is not None:
            self._broker.close()

    def __enter__(self) -> CniServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            self._slots.acquire()
            t = threading.Thread(target=self._serve, args=(conn,), name="pynet-cni-request", daemon=True)
            with self._lock:
                self._active.add(t)
            t.start()

    def _peer_ok(self, conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == os.geteuid())

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(60)
                if not self._peer_ok(conn):
                    log.warning("refused a CNI request from another uid")
                    return
                env = wire.decode_env(wire.recv_frame(conn))
                stdin = wire.recv_frame(conn)
                status, out = self.handle(env, stdin)
                conn.settimeout(None)
                wire.send_frame(conn, out, prefix=status)
        except (OSError, ConnectionError, ValueError) as err:
            log.warning("CNI request failed on the wire: %s", err)
        finally:
            with self._lock:
                self._active.discard(threading.current_thread())
            self._slots.release()

    def handle(self, env: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
        """Run one request; returns ``(exit status, stdout bytes)``. Usable without a socket."""
        from pynet.cni.main import ABOUT
        from pynet.cni.skel import plugin_main
        from pynet.cni.version import SUPPORTED

        out, err = io.StringIO(), io.StringIO()
        status = plugin_main(self._funcs, SUPPORTED, ABOUT, environ=env, stdin=io.BytesIO(stdin),
                             stdout=out, stderr=err)
        self.served += 1
        if err.getvalue().strip():
            log.info("CNI %s container=%s: %s", env.get("CNI_COMMAND"), env.get("CNI_CONTAINERID"),
                     err.getvalue().strip()[-2000:])
        return status, out.getvalue().encode()
