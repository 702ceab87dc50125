"""The one place that runs anything *inside* another network namespace.

Why it exists: a netlink socket talks to the namespace it was created in, and ``/proc/sys/net``
belongs to the namespace of the process that opens it. Configuring a pod (addresses, routes,
sysctls) therefore needs a socket or a file opened from inside the pod's netns.

Two strategies behind one interface (:class:`NetnsExec`):

* :class:`InThread` -- ``setns`` the calling thread into the pod, create the socket / write the
  sysctls, ``setns`` back. Microseconds. Only for the single-threaded plugin process: it refuses to
  run when other threads exist, and aborts the process if it cannot return to its own namespace
  (continuing in the wrong namespace would configure the wrong node).
* :class:`Forking` -- fork a child that does the ``setns`` and hands the socket back over
  ``SCM_RIGHTS``. Safe in the multi-threaded agent: no agent thread ever changes namespace (the
  child is single-threaded and exits at once). Costs a fork of the whole process: 5-50 ms for an
  agent with a large heap.
* :class:`Broker` -- the same work done by a small long-lived helper process (a fresh ``python3 -IS``
  running stdlib code, single-threaded) that the agent talks to over a socketpair: well under a
  millisecond per request. Requests are serialised by a lock; a dead broker is restarted once per
  call, then the call falls back to :class:`Forking`. This is what the agent's CNI server uses.

``default_exec()`` picks InThread when the process has one thread, else Forking.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Mapping
from typing import Protocol

from pynet.netlink.errors import NetlinkOpError, NetnsNotFound

__all__ = ["CLONE_NEWNET", "Broker", "Forking", "InThread", "NetnsExec", "default_exec"]

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    # os.setns arrived in Python 3.12; Debian 12 has 3.11.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _open_ns(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise NetnsNotFound(f"network namespace {path}: {err.strerror}", err.errno or 0) from err


def _write_sysctls(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
            fh.write(value)


class NetnsExec(Protocol):
    def netlink_socket(self, netns: str, sysctls: Mapping[str, str] | None = None) -> int:
        """A NETLINK_ROUTE datagram socket fd created inside ``netns`` (caller owns and closes it).

        ``sysctls`` (``{"net.ipv4.conf.eth0.arp_notify": "1"}``) are written inside ``netns`` first.
        """
        ...


class InThread:
    """setns-and-back in the calling thread; single-threaded processes only."""

    def netlink_socket(self, netns: str, sysctls: Mapping[str, str] | None = None) -> int:
        if threading.active_count() > 1:
            raise RuntimeError("InThread netns switching refused: more than one thread is running")
        target = _open_ns(netns)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                if sysctls:
                    _write_sysctls(sysctls)
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
            finally:
                try:
                    _setns(home)
                except OSError:  # N.B. never continue in the pod's namespace
                    os.write(2, b"pynet: cannot return to the original network namespace; aborting\n")
                    os.abort()
            return sock.detach()
        except OSError as err:
            raise NetlinkOpError(f"in {netns}: {err}", err.errno or 0) from err
        finally:
            os.close(target)
            os.close(home)


class Forking:
    """A forked child enters ``netns``; the socket comes back over SCM_RIGHTS."""

    def netlink_socket(self, netns: str, sysctls: Mapping[str, str] | None = None) -> int:
        target = _open_ns(netns)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            pid = os.fork()
            if pid == 0:  # child: one thread, exits right away
                status = 1
                try:
                    _setns(target)
                    if sysctls:
                        _write_sysctls(sysctls)
                    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
                    child.sendmsg([b"k"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [sock.fileno()]))])
                    status = 0
                except BaseException as err:  # noqa: BLE001 - reported through the pipe
                    with contextlib.suppress(OSError):
                        child.send(f"E{err}".encode()[:512])
                finally:
                    os._exit(status)
            child.close()
            msg, anc, _flags, _addr = parent.recvmsg(512, socket.CMSG_SPACE(4))
            os.waitpid(pid, 0)
        finally:
            parent.close()
            if child.fileno() >= 0:
                child.close()
            os.close(target)
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: fds.itemsize])
                return fds[0]
        raise NetlinkOpError(f"in {netns}: {msg[1:].decode(errors='replace') or 'helper failed'}")


_BROKER_SRC = r"""
import array, ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
chan = socket.socket(fileno=int(sys.argv[1]))
home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
while True:
    try:
        data = chan.recv(65536)
    except OSError:
        break
    if not data:
        break
    req = json.loads(data)
    sock = None
    try:
        fd = os.open(req["netns"], os.O_RDONLY | os.O_CLOEXEC)
        try:
            if libc.setns(fd, 0x40000000) != 0:
                raise OSError(ctypes.get_errno(), "setns " + req["netns"])
            try:
                for key, value in req.get("sysctls", {}).items():
                    with open("/proc/sys/" + key.replace(".", "/"), "w") as fh:
                        fh.write(value)
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0)
            finally:
                if libc.setns(home, 0x40000000) != 0:
                    os._exit(3)  # never serve from the wrong namespace
        finally:
            os.close(fd)
        chan.sendmsg([b"K"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [sock.fileno()]))])
    except OSError as err:
        chan.send(("E" + str(err)).encode()[:4096])
    finally:
        if sock is not None:
            sock.close()
"""


class Broker:
    """A long-lived single-threaded helper process does the setns work (see the module docstring)."""

    def __init__(self, python: str | None = None) -> None:
        import sys

        self._python = python or sys.executable
        self._lock = threading.Lock()
        self._chan: socket.socket | None = None
        self._proc: object | None = None

    def _start(self) -> socket.socket:
        import subprocess

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen([self._python, "-IS", "-c", _BROKER_SRC, str(theirs.fileno())],
                                          pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self._chan = mine
        return mine

    def close(self) -> None:
        with self._lock:
            if self._chan is not None:
                self._chan.close()
                self._chan = None
            proc = self._proc
            self._proc = None
        if proc is not None:
            proc.wait(5)  # type: ignore[attr-defined]

    def _ask(self, chan: socket.socket, netns: str, sysctls: Mapping[str, str] | None) -> int:
        import json

        chan.send(json.dumps({"netns": netns, "sysctls": dict(sysctls or {})}).encode())
        msg, anc, _flags, _addr = chan.recvmsg(4096, socket.CMSG_SPACE(4))
        if not msg:
            raise ConnectionError("netns broker exited")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: fds.itemsize])
                return fds[0]
        text = msg[1:].decode(errors="replace")
        if "No such file" in text:
            raise NetnsNotFound(f"network namespace {netns}: {text}", 2)
        raise NetlinkOpError(f"in {netns}: {text}")

    def netlink_socket(self, netns: str, sysctls: Mapping[str, str] | None = None) -> int:
        with self._lock:
            for _attempt in range(2):
                chan = self._chan or self._start()
                try:
                    return self._ask(chan, netns, sysctls)
                except (ConnectionError, BrokenPipeError):
                    chan.close()
                    self._chan = None
        return Forking().netlink_socket(netns, sysctls)


def default_exec() -> NetnsExec:
    return InThread() if threading.active_count() == 1 else Forking()
