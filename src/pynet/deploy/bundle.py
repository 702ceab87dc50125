"""The host-side code bundle that the installed CNI launchers run from.

A container runtime executes ``/opt/cni/bin/pynet`` on the *host*, with the host's filesystem: the
pynet code inside the agent's image is invisible there. So the init container also copies the
code the plugin needs (the ``pynet`` package and the pure-Python libraries it imports, pyroute2)
into a host directory, the *pynet home* (``/opt/pynet`` by default), and bakes that path into the
launchers.

Layout, versioned so that an upgrade never mixes old and new modules under a running plugin::

    <home>/releases/<digest>/src/pynet/...      the pynet package
    <home>/releases/<digest>/src/pyroute2/...   third-party pure-Python packages, beside it
    <home>/current -> releases/<digest>         symlink, swapped atomically (rename)

``<home>/current`` thus looks like a checkout to the launchers: they put ``<home>/src`` on
``sys.path``, which is all the bundle needs (no venv, no site-packages layout to match).

``<digest>`` is a hash of every file's relative path, mode and bytes, so the same code always lands
in the same release directory and a rerun is a no-op. A release is built under a temporary name and
renamed into place when complete. Releases other than the current and the previous one are pruned.

Hazard: the host runs the launcher with its own ``/usr/bin/python3``; the bundle carries only
pure-Python code, so any Python >= 3.11 on the host works, but there must be one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pynet.deploy.files import TMP_PREFIX, InstallError

__all__ = ["BundleFile", "BundleResult", "collect_bundle", "install_bundle", "package_dir"]

RELEASES = "releases"
CURRENT = "current"
_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of a release: path relative to the release root, bytes and permission bits."""

    rel: str
    content: bytes
    mode: int


@dataclass(frozen=True, slots=True)
class BundleResult:
    release: Path
    changed: bool
    pruned: tuple[Path, ...]


def package_dir(name: str) -> Path:
    """Directory of an importable package (found without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InstallError(f"package {name!r} is not importable here; cannot bundle it")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(_SKIP_SUFFIXES):
                yield Path(dirpath, name)


def collect_bundle(pynet_dir: Path, libraries: Iterable[Path]) -> list[BundleFile]:
    """Files of a release: ``src/pynet/**`` from ``pynet_dir`` and ``src/<name>/**`` per library."""
    trees = [(pynet_dir, Path("src") / pynet_dir.name)]
    trees += [(lib, Path("src") / lib.name) for lib in libraries]
    files: list[BundleFile] = []
    for source, prefix in trees:
        if not source.is_dir():
            raise InstallError(f"bundle source {source} is not a directory")
        for path in _walk(source):
            executable = os.access(path, os.X_OK)
            files.append(
                BundleFile(
                    str(prefix / path.relative_to(source)), path.read_bytes(), 0o755 if executable else 0o644
                )
            )
    return files


def _digest(files: Sequence[BundleFile]) -> str:
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.rel):
        h.update(f"{f.rel}\0{f.mode:o}\0{len(f.content)}\0".encode())
        h.update(f.content)
    return h.hexdigest()[:16]


def _write_release(target: Path, files: Sequence[BundleFile]) -> None:
    """Build the release under a temp name beside ``target``, then rename it into place."""
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for f in files:
            dest = tmp / f.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.content)
            dest.chmod(f.mode)
        for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        os.rename(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.is_dir():  # a concurrent run finished the same release first: fine
            return
        raise InstallError(f"cannot build release {target}: {err.strerror}") from err


def _point_current(home: Path, release_name: str) -> None:
    link = home / CURRENT
    tmp = home / f"{TMP_PREFIX}{CURRENT}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.symlink(Path(RELEASES) / release_name, tmp)
        os.replace(tmp, link)  # atomic swap: a launcher sees the old release or the new one
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InstallError(f"cannot point {link} at {release_name}: {err.strerror}") from err


def _current_release(home: Path) -> str | None:
    try:
        target = os.readlink(home / CURRENT)
    except OSError:
        return None
    return Path(target).name


def install_bundle(home: Path, files: Sequence[BundleFile], *, keep_previous: bool = True) -> BundleResult:
    """Make ``home/current`` a complete release of ``files``; prune releases no longer needed."""
    name = _digest(files)
    releases = home / RELEASES
    try:
        releases.mkdir(parents=True, exist_ok=True)
        home.chmod(0o755)
        releases.chmod(0o755)
    except OSError as err:
        raise InstallError(f"cannot create {releases}: {err.strerror}") from err
    release = releases / name
    previous = _current_release(home)
    changed = False
    if not release.is_dir():
        _write_release(release, files)
        changed = True
    if previous != name:
        _point_current(home, name)
        changed = True
    keep = {name} | ({previous} if keep_previous and previous else set())
    pruned: list[Path] = []
    for entry in sorted(releases.iterdir()):
        # leftovers of crashed builds, and releases older than the previous one
        if entry.name not in keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            pruned.append(entry)
    return BundleResult(release=release, changed=changed, pruned=tuple(pruned))
