"""pytest plugin shipped with pynet: namespaces, the ``privileged`` marker, a fake clock.

Enable with ``pytest_plugins = ["pynet.testing.plugin"]`` (tests/conftest.py does). Tests under
``tests/netns/`` are marked ``privileged`` automatically; without root (CAP_NET_ADMIN) they are skipped
with that reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pynet._clock import FakeClock
from pynet.testing.netns import TestNetns

__all__ = ["fake_clock", "make_netns", "repo_root"]

REPO_ROOT = Path(__file__).resolve().parents[3]


def _privileged() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root (CAP_NET_ADMIN) to build network namespaces"
    if shutil.which("ip") is None:
        return False, "needs iproute2's `ip`"
    return True, ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ok, why = _privileged()
    for item in items:
        if "/tests/netns/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.privileged)
        if not ok and item.get_closest_marker("privileged"):
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
def make_netns() -> Iterator[Callable[..., TestNetns]]:
    """Factory: ``make_netns("node")`` -> a fresh namespace ``node-xxxxx``, removed after the test."""
    made: list[TestNetns] = []

    def factory(prefix: str = "pt") -> TestNetns:
        ns = TestNetns.create(prefix)
        made.append(ns)
        return ns

    yield factory
    for ns in reversed(made):
        ns.destroy()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
