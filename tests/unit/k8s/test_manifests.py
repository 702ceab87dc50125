"""ManifestDirSource: YAML/JSON, multi-document and List files become add/update/delete events by
(kind, namespace, name); only real changes are delivered; broken files keep their last good objects;
invalid objects are reported and skipped; the first scan marks every kind synced."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from pynet.k8s.events import Kind
from pynet.k8s.manifests import ManifestDirSource
from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.fakeapi import RecordingHandler


def write(path: Path, *docs: Any) -> None:
    path.write_text(yaml.safe_dump_all(list(docs)) if path.suffix != ".json" else json.dumps(docs[0]))
    st = path.stat()  # bump mtime explicitly: several writes can land in one timestamp tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_create_modify_delete(tmp_path: Path) -> None:
    h = RecordingHandler()
    src = ManifestDirSource(tmp_path, h)
    write(
        tmp_path / "a.yaml",
        make_node("n1", ["192.168.50.1"]),
        make_service("web", "10.96.0.10"),
        make_slice("web", ["10.244.1.5"]),
    )
    write(
        tmp_path / "b.json",
        {
            "kind": "List",
            "apiVersion": "v1",
            "items": [make_service("db", "10.96.0.11"), make_service("x", "10.96.0.12")],
        },
    )
    (tmp_path / "notes.txt").write_text("ignored")
    assert src.scan()
    assert sorted(h.take()) == sorted(
        [
            ("node", None, "n1"),
            ("svc", None, "default/web"),
            ("svc", None, "default/db"),
            ("svc", None, "default/x"),
            ("slice", None, "default/web-abc12"),
        ]
    )
    assert set(h.synced) == {Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.NODE}

    assert not src.scan()  # nothing changed: no events
    assert h.take() == []

    # modify one service, rewrite the other unchanged: only the real change is delivered
    write(
        tmp_path / "b.json",
        {
            "kind": "List",
            "items": [make_service("db", "10.96.0.11", [port(5432)]), make_service("x", "10.96.0.12")],
        },
    )
    src.scan()
    assert h.take() == [("svc", "default/db", "default/db")]

    # delete a file: its objects are deleted
    (tmp_path / "b.json").unlink()
    src.scan()
    assert sorted(h.take()) == [("svc", "default/db", None), ("svc", "default/x", None)]

    # move an object between files: no event at all
    write(tmp_path / "c.yaml", make_service("web", "10.96.0.10"))
    write(tmp_path / "a.yaml", make_node("n1", ["192.168.50.1"]), make_slice("web", ["10.244.1.5"]))
    src.scan()
    assert h.take() == []


def test_broken_file_keeps_last_good_objects(tmp_path: Path) -> None:
    h = RecordingHandler()
    src = ManifestDirSource(tmp_path, h)
    write(tmp_path / "a.yaml", make_service("web", "10.96.0.10"))
    src.scan()
    h.take()
    (tmp_path / "a.yaml").write_text("kind: Service\nmetadata: {name: web\n  broken: [")
    src.scan()
    assert h.take() == []  # the service was not deleted
    write(tmp_path / "a.yaml", make_service("web", "10.96.0.99"))
    src.scan()
    assert h.take() == [("svc", "default/web", "default/web")]


def test_invalid_object_reported_and_skipped(tmp_path: Path) -> None:
    h = RecordingHandler()
    src = ManifestDirSource(tmp_path, h)
    good = make_service("good", "10.96.0.10")
    write(tmp_path / "a.yaml", good, make_service("bad", "10.96.0.10", [port(99999)]))
    src.scan()
    assert h.take() == [("svc", None, "default/good")]
    assert [(e.kind, e.namespace, e.name) for e in h.invalid] == [("Service", "default", "bad")]
    assert "99999 out of range" in h.invalid[0].reason
    # a valid service that turns invalid disappears (delete), and comes back when fixed
    write(tmp_path / "a.yaml", make_service("good", "10.96.0.10", [port(0)]))
    src.scan()
    assert h.take() == [("svc", "default/good", None)]
    write(tmp_path / "a.yaml", good)
    src.scan()
    assert h.take() == [("svc", None, "default/good")]


def test_run_follows_changes_until_stopped(tmp_path: Path) -> None:
    h = RecordingHandler()
    src = ManifestDirSource(tmp_path, h, interval=0.02)
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(stop,))
    t.start()
    try:
        write(tmp_path / "a.yaml", make_service("web", "10.96.0.10"))
        deadline = threading.Event()
        for _ in range(250):
            if ("svc", None, "default/web") in h.calls:
                break
            deadline.wait(0.02)
        assert ("svc", None, "default/web") in h.calls
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()


def test_vanished_directory_keeps_objects(tmp_path: Path) -> None:
    d = tmp_path / "src"
    d.mkdir()
    h = RecordingHandler()
    src = ManifestDirSource(d, h)
    write(d / "a.yaml", make_service("web", "10.96.0.10"))
    src.scan()
    h.take()
    (d / "a.yaml").unlink()
    d.rmdir()
    assert not src.scan()
    assert h.take() == []


def test_edit_reconverts_only_changed_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pynet.k8s.manifests as manifests

    calls: list[str] = []
    real = manifests.convert

    def counting(kind: Kind, raw: Any) -> Any:
        calls.append(raw["metadata"]["name"])
        return real(kind, raw)

    monkeypatch.setattr(manifests, "convert", counting)
    h = RecordingHandler()
    src = ManifestDirSource(tmp_path, h)
    services = [make_service(f"s{i}", f"10.96.0.{i + 1}") for i in range(20)]
    write(tmp_path / "a.yaml", *services)
    src.scan()
    assert len(calls) == 20
    calls.clear()
    h.take()
    services[7]["spec"]["ports"][0]["port"] = 8080
    write(tmp_path / "a.yaml", *services)
    src.scan()
    assert calls == ["s7"]
    assert h.take() == [("svc", "default/s7", "default/s7")]
