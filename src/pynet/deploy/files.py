"""Atomic, idempotent file installation: the write half of ``pynet install-cni``.

An :class:`Artifact` is a file we want to exist with exact bytes and mode. :func:`install_file`
makes it so:

- if the destination already holds the same bytes and mode, nothing is written (its mtime and
  inode stay the same), so a rerun of the init container is a no-op;
- otherwise the bytes go to a temporary file *in the destination directory* (same filesystem),
  which is fsynced, chmodded and then ``rename(2)``d over the destination. A reader (kubelet
  scanning ``/etc/cni/net.d``, a runtime exec'ing ``/opt/cni/bin/pynet``) therefore sees either the
  old file or the new one, never a half-written one, and replacing a running executable never
  fails with ETXTBSY.

Hazard: the rename is atomic only within one filesystem, hence the temp file beside the target;
a crash can leave a ``.pynet-tmp-*`` file behind, which the next run removes.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pynet.errors import PynetError

__all__ = ["TMP_PREFIX", "Artifact", "InstallError", "install_file", "remove_stale_temps", "same_content"]

#: prefix of our temporary files; anything starting with it in a target directory is ours
TMP_PREFIX = ".pynet-tmp-"


class InstallError(PynetError):
    """A file could not be installed (permissions, a foreign file in the way, bad source)."""


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file that must exist at ``dest`` with exactly ``content`` and permission bits ``mode``."""

    dest: Path
    content: bytes
    mode: int

    def __repr__(self) -> str:  # the bytes are noise in logs
        return f"Artifact(dest={str(self.dest)!r}, size={len(self.content)}, mode={self.mode:#o})"


def same_content(path: Path, content: bytes, mode: int) -> bool:
    """True when ``path`` is a regular file holding ``content`` with permission bits ``mode``."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != mode or st.st_size != len(content):
        return False
    return path.read_bytes() == content


def install_file(artifact: Artifact) -> bool:
    """Make ``artifact.dest`` hold the artifact; return True if it was (re)written, False if unchanged."""
    dest = artifact.dest
    if same_content(dest, artifact.content, artifact.mode):
        return False
    directory = dest.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", dir=directory)
    except OSError as err:
        raise InstallError(f"cannot write into {directory}: {err.strerror}") from err
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(artifact.content)
            f.flush()
            os.fsync(f.fileno())
            # fchmod, not chmod: mkstemp's 0600 must become the final mode before anyone can see it
            os.fchmod(f.fileno(), artifact.mode)
        os.replace(tmp, dest)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InstallError(f"cannot install {dest}: {err.strerror}") from err
    _fsync_dir(directory)
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Remove temp files a crashed earlier run left in ``directory``; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX) and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (best effort: some filesystems refuse fsync on a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
