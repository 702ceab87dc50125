"""Fixtures of the shared service scenario suite.

The suite runs once per backend in SCENARIO_BACKENDS: a later backend joins by adding its name here.
One lab (node, pods, external netns, servers) and one running agent are shared by the tests of a
backend; each test owns its services (distinct names and IPs) and removes its manifests afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pynet.testing.services import AgentProcess, ManifestDir, ServiceLab, node_manifest, wait_until

#: every backend that must pass the packet-level scenarios
SCENARIO_BACKENDS = ["nftables", "iptables"]

AGENT_FLAGS = ("--source-poll-interval", "0.1")


@pytest.fixture(scope="module", params=SCENARIO_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def lab(backend: str) -> Iterator[ServiceLab]:
    the_lab = ServiceLab.create()
    try:
        yield the_lab
    finally:
        the_lab.destroy()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pynet-svc-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def manifests(workdir: Path) -> ManifestDir:
    m = ManifestDir(workdir / "manifests")
    m.write("node", node_manifest())
    return m


@pytest.fixture(scope="module")
def agent(lab: ServiceLab, manifests: ManifestDir, workdir: Path, backend: str) -> Iterator[AgentProcess]:
    proc = AgentProcess(lab.node, manifests.path, backend, workdir / f"agent-{backend}.log", *AGENT_FLAGS)
    proc.start()
    try:
        wait_until(proc.alive, 2, "agent process started")
        yield proc
    finally:
        alive = proc.alive()
        proc.stop()
        assert alive, f"the agent died during the suite; its log:\n{proc.log()[-4000:]}"


@pytest.fixture
def files(manifests: ManifestDir) -> Iterator[ManifestDir]:
    """The manifest dir; every file a test writes through it is removed when the test ends."""
    before = {p.name for p in manifests.path.iterdir()}
    yield manifests
    for p in manifests.path.iterdir():
        if p.name not in before:
            p.unlink()
