"""``--source DIR``: Services, EndpointSlices and Nodes from Kubernetes manifests in a directory.

Files ending in ``.yaml``, ``.yml`` or ``.json`` directly in DIR (hidden files ignored) are read;
YAML files may hold several documents, and any document may be a ``kind: List`` (or ``*List``) with
``items``. Other kinds are ignored.

Following changes: a poll every ``interval`` seconds (default 0.5 s) compares each file's
``(mtime_ns, size, inode)``; only changed files are re-parsed, and only the objects they held or now
hold are diffed, by ``(kind, namespace, name)``, into add/update/delete events. No inotify: polling
is portable, cheap at this size, and immune to editors that replace files by rename.

Hazards: if DIR itself disappears, the last known objects are kept (a remount must not delete every
service); a file that fails to parse (half-written, or broken YAML) is reported once and its previous
objects are kept until it parses again, so a bad save never deletes services. When the same object
appears in several files, the first file in name order wins.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from pynet._clock import REAL_CLOCK, Clock
from pynet._log import get_logger
from pynet.k8s.cache import Converted, Key, ObjectCache, convert
from pynet.k8s.convert import object_key
from pynet.k8s.events import ClusterHandler, Kind

__all__ = ["ManifestDirSource", "parse_manifests"]

log = get_logger("pynet.k8s.manifests")

SUFFIXES = (".yaml", ".yml", ".json")
_KINDS = {k.value: k for k in Kind}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

FileKey = tuple[Kind, Key]
FileObjects = dict[FileKey, Converted]


def _documents(text: str, path: Path) -> Iterator[Any]:
    if path.suffix == ".json":
        yield json.loads(text)
        return
    yield from yaml.load_all(text, Loader=_Loader)


def _flatten(doc: Any) -> Iterator[Any]:
    if (
        isinstance(doc, dict)
        and isinstance(doc.get("kind"), str)
        and doc["kind"].endswith("List")
        and "items" in doc
    ):
        for item in doc.get("items") or ():
            yield from _flatten(item)
    elif doc is not None:
        yield doc


def parse_manifests(
    path: Path, previous: FileObjects | None = None, digests: dict[FileKey, int] | None = None
) -> FileObjects:
    """Parse one manifest file into converted objects; raises ValueError/OSError when unreadable.

    With ``previous`` and ``digests`` (from the last parse of the same file; ``digests`` is updated in
    place), an object whose canonical JSON is unchanged reuses its previous conversion: an edit of one
    object in a file of hundreds converts only that one.
    """
    text = path.read_text()
    try:
        docs = list(_documents(text, path))
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot parse {path.name}: {err}") from err
    out: FileObjects = {}
    fresh: dict[FileKey, int] = {}
    for doc in docs:
        for obj in _flatten(doc):
            kind_name = obj.get("kind") if isinstance(obj, dict) else None
            kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
            if kind is None:
                continue
            _, ns, name = object_key(kind.value, obj)
            fk = (kind, (ns, name))
            if fk in out:
                continue
            if digests is None:
                out[fk] = convert(kind, obj)
                continue
            digest = hash(json.dumps(obj, sort_keys=True, default=str))
            if previous is not None and fk in previous and digests.get(fk) == digest:
                out[fk] = previous[fk]
            else:
                out[fk] = convert(kind, obj)
            fresh[fk] = digest
    if digests is not None:
        digests.clear()
        digests.update(fresh)
    return out


class ManifestDirSource:
    """Polls a directory and feeds three :class:`ObjectCache` instances (one per kind)."""

    def __init__(
        self, directory: Path, handler: ClusterHandler, *, interval: float = 0.5, clock: Clock = REAL_CLOCK
    ) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self._clock = clock
        self._caches = {kind: ObjectCache(kind, handler) for kind in Kind}
        self._stamps: dict[str, tuple[int, int, int]] = {}
        self._files: dict[str, FileObjects] = {}
        self._digests: dict[str, dict[FileKey, int]] = {}
        self._owners: dict[FileKey, list[str]] = {}
        self._bad: dict[str, tuple[int, int, int]] = {}

    def run(self, stop: threading.Event) -> None:
        """Scan until ``stop`` is set; the first scan marks every kind synced."""
        while not stop.is_set():
            try:
                self.scan()
            except Exception:  # the source must survive anything the filesystem throws at it
                log.exception("manifest scan failed", extra={"kv": {"dir": self.directory}})
            self._clock.wait(stop, self.interval)

    def scan(self) -> bool:
        """One poll; returns True when some file changed."""
        try:
            entries = {
                e.name: e.stat()
                for e in os.scandir(self.directory)
                if e.name.endswith(SUFFIXES) and not e.name.startswith(".") and e.is_file()
            }
        except FileNotFoundError:
            # a vanished directory is an operator mistake or a remount, not "delete every service"
            log.warning(
                "source directory missing; keeping the last known objects",
                extra={"kv": {"dir": self.directory}},
            )
            return False
        stamps = {name: (st.st_mtime_ns, st.st_size, st.st_ino) for name, st in entries.items()}
        touched: set[FileKey] = set()
        changed = False
        for name in sorted(set(self._stamps) - set(stamps)):
            changed = True
            touched |= self._drop_file(name)
            self._bad.pop(name, None)
        for name in sorted(stamps):
            if self._stamps.get(name) == stamps[name] or self._bad.get(name) == stamps[name]:
                continue
            try:
                digests = dict(self._digests.get(name, {}))
                objects = parse_manifests(self.directory / name, self._files.get(name), digests)
            except (ValueError, OSError, UnicodeDecodeError) as err:
                if self._bad.get(name) != stamps[name]:
                    log.warning(
                        "manifest file skipped",
                        extra={"kv": {"file": name, "reason": str(err).splitlines()[0]}},
                    )
                self._bad[name] = stamps[name]
                continue
            self._bad.pop(name, None)
            changed = True
            touched |= self._drop_file(name)
            self._files[name] = objects
            self._digests[name] = digests
            self._stamps[name] = stamps[name]
            for fk in objects:
                owners = self._owners.setdefault(fk, [])
                owners.append(name)
                owners.sort()
                touched.add(fk)
        # Nodes first, so that endpoint locality and node IPs are known when services arrive
        order = {Kind.NODE: 0, Kind.SERVICE: 1, Kind.ENDPOINT_SLICE: 2}
        for kind, key in sorted(touched, key=lambda fk: (order[fk[0]], fk[1])):
            owners = self._owners.get((kind, key)) or []
            value = self._files[owners[0]][(kind, key)] if owners else None
            self._caches[kind].set(key, value)
        for kind in (Kind.NODE, Kind.SERVICE, Kind.ENDPOINT_SLICE):
            self._caches[kind].mark_synced()
        return changed

    def _drop_file(self, name: str) -> set[FileKey]:
        self._stamps.pop(name, None)
        objects = self._files.pop(name, {})
        self._digests.pop(name, None)
        for fk in objects:
            owners = self._owners.get(fk)
            if owners and name in owners:
                owners.remove(name)
                if not owners:
                    del self._owners[fk]
        return set(objects)
