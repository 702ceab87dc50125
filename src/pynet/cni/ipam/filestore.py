"""File-per-address allocation store, on disk in host-local's own layout.

Layout of ``<dataDir>/<network name>/`` (the first three are exactly what the reference host-local
writes, so a node can switch between the two plugins without losing track of live pods)::

    lock                     flock(2)ed exclusively for every allocate / release / GC
    10.22.0.5                one record per reserved address: "<container id>\\r\\n<ifname>"
    last_reserved_ip.0       the last address handed out from range set 0 (round-robin position)
    by-owner/<cid>:<ifname>  pynet's owner index: the addresses of that attachment, one per line

Invariants and hazards:

* Every write happens with ``lock`` held; the lock is per network, so different networks never wait
  for each other. flock is released by the kernel when the process dies, so a crashed plugin never
  wedges the directory.
* A record is created complete or not at all: the content goes to a temporary file which is then
  ``link(2)``-ed to the address's name. ``link`` fails with EEXIST exactly like ``O_CREAT|O_EXCL``,
  so the reservation stays exclusive even against a writer that ignores the lock. Small files are
  rewritten by write-to-temp, unlink, ``rename(2)`` (see :meth:`FileStore._replace` for why not
  rename-over), so no reader ever sees a half-written file.
* The owner index is written BEFORE the record it names, so a crash in between leaves at worst an
  index line without a record (harmless: release skips addresses whose record names someone else).
  ADD's "already allocated?" check reads only the index (no directory walk); DEL walks the directory
  when an owner has no index, which also finds records written by host-local itself.
* No fsync: like host-local, records survive process crashes and reboots (they are plain files);
  a power cut may lose the newest record, and pods do not survive that either.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from typing import Self

from pynet.cni.ipam.ranges import IPAddress
from pynet.cni.ipam.store import Owner

__all__ = ["DEFAULT_DATA_DIR", "FileStore"]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LOCK_FILE = "lock"
LAST_RESERVED_PREFIX = "last_reserved_ip."
INDEX_DIR = "by-owner"
_TMP_PREFIX = ".tmp."
_LINE_BREAK = "\r\n"  # host-local's record separator


def _parse_ip_name(name: str) -> IPAddress | None:
    if name.startswith(".") or name == LOCK_FILE or name.startswith(LAST_RESERVED_PREFIX):
        return None
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


class FileStore:
    """The on-disk store of one network. Use as ``with FileStore(data_dir, name) as store: ...``."""

    def __init__(self, data_dir: str | os.PathLike[str], network: str, *, create: bool = True) -> None:
        """``create=False`` (DEL, CHECK, GC): a network directory that does not exist is treated as
        empty and is NOT created, so releasing never leaves directories behind."""
        # plain strings and os.path: pathlib would add its import cost to every plugin start
        self.dir = os.path.join(os.fspath(data_dir), network)
        self._index_dir = os.path.join(self.dir, INDEX_DIR)
        self._lock_fd: int | None = None
        self._create = create
        self._absent = False

    # -- locking -------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        if not self._create and not os.path.isdir(self.dir):
            self._absent = True  # nothing was ever allocated here: nothing to lock or read
            return self
        self._absent = False
        os.makedirs(self._index_dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def _locked(self) -> bool:
        """True when there is a directory to work on; raises when used without the lock."""
        if self._absent:
            return False
        if self._lock_fd is None:
            raise RuntimeError("FileStore used outside `with store:`")
        return True

    # -- small-file helpers --------------------------------------------------------------------
    def _path(self, name: str | IPAddress) -> str:
        return os.path.join(self.dir, str(name))

    def _tmp_path(self) -> str:
        return self._path(f"{_TMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}")

    def _write_tmp(self, text: str) -> str:
        tmp = self._tmp_path()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        return tmp

    def _replace(self, path: str, text: str) -> None:
        tmp = self._write_tmp(text)
        # unlink + rename, not rename over the old file: ext4 (auto_da_alloc) forces writeback of a
        # file renamed over another, which took 200+ ms per call on a busy disk here. Every reader
        # holds the lock, and a crash in between only loses a round-robin position or an index
        # file (DEL then walks the directory).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.rename(tmp, path)

    @staticmethod
    def _write_in_place(path: str, text: str) -> None:
        """Overwrite without a temporary file (one syscall group instead of four): only for the
        round-robin position, which readers tolerate garbled (they restart at the range's start)."""
        data = text.encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))  # to the new length, never to zero (no ext4 forced flush)
        finally:
            os.close(fd)

    @staticmethod
    def _read(path: str) -> str | None:
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _record_owner(self, ip: IPAddress) -> Owner | None:
        text = self._read(self._path(ip))
        if text is None:
            return None
        cid, _, ifname = text.replace(_LINE_BREAK, "\n").partition("\n")
        return Owner(cid.strip(), ifname.strip())

    @staticmethod
    def _matches(record: Owner | None, owner: Owner) -> bool:
        # host-local's oldest records hold only the container id: those match any ifname
        return record is not None and record.container_id == owner.container_id and (
            record.ifname in ("", owner.ifname))

    # -- owner index ---------------------------------------------------------------------------
    def _index_path(self, owner: Owner) -> str:
        return os.path.join(self._index_dir, f"{owner.container_id}:{owner.ifname}")

    def _index_read(self, owner: Owner) -> list[IPAddress] | None:
        text = self._read(self._index_path(owner))
        if text is None:
            return None
        out: list[IPAddress] = []
        for line in text.split():
            with contextlib.suppress(ValueError):
                out.append(ipaddress.ip_address(line))
        return out

    def _index_write(self, owner: Owner, ips: list[IPAddress]) -> None:
        if ips:
            self._replace(self._index_path(owner), "".join(f"{ip}\n" for ip in ips))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._index_path(owner))

    # -- Store protocol ------------------------------------------------------------------------
    def reserve(self, owner: Owner, ip: IPAddress, range_id: str) -> bool:
        if not self._locked():
            raise RuntimeError("FileStore opened with create=False cannot reserve")
        path = self._path(ip)
        if os.path.lexists(path):  # cheap pre-check; link() below is the real arbiter
            return False
        indexed = self._index_read(owner) or []
        if ip not in indexed:
            self._index_write(owner, [*indexed, ip])
        tmp = self._write_tmp(f"{owner.container_id}{_LINE_BREAK}{owner.ifname}")
        try:
            os.link(tmp, path)
        except FileExistsError:
            self._index_write(owner, indexed)
            return False
        finally:
            os.unlink(tmp)
        self._write_in_place(self._path(f"{LAST_RESERVED_PREFIX}{range_id}"), str(ip))
        return True

    def last_reserved(self, range_id: str) -> IPAddress | None:
        text = self._read(self._path(f"{LAST_RESERVED_PREFIX}{range_id}"))
        try:
            return ipaddress.ip_address(text.strip()) if text else None
        except ValueError:
            return None  # a garbled position only costs round-robin fairness

    def owned_by(self, owner: Owner) -> list[IPAddress]:
        if not self._locked():
            return []
        return [ip for ip in self._index_read(owner) or [] if self._matches(self._record_owner(ip), owner)]

    def release(self, owner: Owner) -> list[IPAddress]:
        if not self._locked():
            return []
        candidates = self._index_read(owner)
        if candidates is None:  # no index: a record host-local wrote, or nothing at all
            candidates = [ip for ip, o in self.allocations().items() if self._matches(o, owner)]
        freed: list[IPAddress] = []
        for ip in candidates:
            if self._matches(self._record_owner(ip), owner):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(ip))
                    freed.append(ip)
        self._index_write(owner, [])
        return freed

    def release_ip(self, ip: IPAddress) -> None:
        if not self._locked():
            return
        owner = self._record_owner(ip)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(ip))
        if owner is not None:
            with contextlib.suppress(OSError):
                rest = [x for x in self._index_read(owner) or [] if x != ip]
                self._index_write(owner, rest)

    def allocations(self) -> dict[IPAddress, Owner]:
        if not self._locked():
            return {}
        out: dict[IPAddress, Owner] = {}
        for name in os.listdir(self.dir):
            ip = _parse_ip_name(name)
            if ip is None:
                continue
            owner = self._record_owner(ip)
            if owner is not None:
                out[ip] = owner
        return out

    def sweep(self) -> None:
        """Drop leftovers of crashed writers: temporary files, and index files naming no record.

        Safe only with the lock held (every temporary file is made under it).
        """
        if not self._locked():
            return
        for name in os.listdir(self.dir):
            if name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(name))
        for name in os.listdir(self._index_dir):
            cid, sep, ifname = name.partition(":")
            if not sep:
                continue
            owner = Owner(cid, ifname)
            live = self.owned_by(owner)
            if live != self._index_read(owner):
                self._index_write(owner, live)
