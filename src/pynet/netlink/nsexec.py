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
  ``SCM_RIGHTS``. A few milliseconds. Safe in the multi-threaded agent: no agent thread ever changes
  namespace (the child is single-threaded and exits at once).

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

__all__ = ["CLONE_NEWNET", "Forking", "InThread", "NetnsExec", "default_exec"]

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


def default_exec() -> NetnsExec:
    return InThread() if threading.active_count() == 1 else Forking()
