"""The agent hosts the overlay controller: sync(local, nodes) on the sync thread whenever nodes
change, the local Node's annotations patched through the API with local_annotations(), cleanup()
from --cleanup; a requested overlay that cannot be built fails clearly."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pynet.daemon import app
from pynet.daemon.app import Agent, AgentError
from pynet.daemon.config import AgentConfig
from pynet.proxy.conntrack import RecordingConntrack
from pynet.proxy.model import Node
from pynet.testing.apiserver import FakeApiServer
from pynet.testing.builders import make_node
from pynet.testing.recording import RecordingBackend


class FakeOverlay:
    def __init__(self) -> None:
        self.syncs: list[tuple[str | None, list[str], str]] = []
        self.cleaned = 0

    def sync(self, local: Node | None, nodes: Sequence[Node]) -> None:
        self.syncs.append(
            (local.name if local else None, [n.name for n in nodes], threading.current_thread().name)
        )

    def local_annotations(self) -> dict[str, str]:
        return {"pynet.io/vtep-mac": "02:00:00:00:00:01", "pynet.io/vtep-ip": "192.168.50.1"}

    def cleanup(self) -> None:
        self.cleaned += 1


def wait_until(pred: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_overlay_synced_and_annotations_patched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = FakeOverlay()
    made: list[tuple[str, str]] = []

    def fake_make(mode: str, node_name: str) -> FakeOverlay:
        made.append((mode, node_name))
        return overlay

    monkeypatch.setattr(app, "_make_overlay", fake_make)
    with FakeApiServer() as srv:
        srv.apply(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"]))
        srv.apply(make_node("n2", ["192.168.50.2"], ["10.244.2.0/24"]))
        cfg = AgentConfig(
            node_name="n1",
            kubeconfig=str(srv.write_kubeconfig(tmp_path / "kc")),
            overlay="vxlan",
            min_sync_period=0.05,
            pod_cidr_file=None,
            cni_server=False,
        )
        agent = Agent(cfg, backend=RecordingBackend(), conntrack=RecordingConntrack())
        t = threading.Thread(target=agent.run, name="sync-main", daemon=True)
        t.start()
        try:
            wait_until(lambda: any(s[:2] == ("n1", ["n1", "n2"]) for s in overlay.syncs))
            assert made == [("vxlan", "n1")]
            assert overlay.syncs[0][2] == "sync-main"  # on the sync thread, not a source thread
            wait_until(lambda: srv.patches)
            assert srv.patches[0] == ("n1", {"metadata": {"annotations": overlay.local_annotations()}})
            assert (srv.get("Node", "", "n1") or {})["metadata"]["annotations"][
                "pynet.io/vtep-mac"
            ] == "02:00:00:00:00:01"
            srv.wait_watching()
            srv.apply(make_node("n3", ["192.168.50.3"], ["10.244.3.0/24"]))
            wait_until(lambda: overlay.syncs[-1][1] == ["n1", "n2", "n3"])
            srv.delete("Node", "", "n2")
            wait_until(lambda: overlay.syncs[-1][1] == ["n1", "n3"])
            assert len(srv.patches) == 1  # annotations already in place: no further patches
        finally:
            agent.stop()
            t.join(10)


def test_cleanup_includes_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = FakeOverlay()
    monkeypatch.setattr(app, "_make_overlay", lambda mode, node_name: overlay)
    monkeypatch.setattr(app, "BACKENDS", {})
    assert app.run_cleanup(AgentConfig(node_name="n1", overlay="vxlan", cleanup=True)) == 0
    assert overlay.cleaned == 1


def test_overlay_unavailable_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(mode: str, node_name: str) -> None:
        raise AgentError(f"--overlay {mode}: the overlay controller is not available in this build (test)")

    monkeypatch.setattr(app, "_make_overlay", broken)
    agent = Agent(
        AgentConfig(node_name="n1", source_dir=tmp_path, overlay="host-gw"), backend=RecordingBackend()
    )
    with pytest.raises(AgentError, match="--overlay host-gw"):
        agent.run()
