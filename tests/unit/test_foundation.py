"""The package skeleton: version, CLI dispatch, the endpoint-categorisation semantics shared by all backends."""

from __future__ import annotations

import doctest
from ipaddress import ip_address

import pytest

import pynet
from pynet import cli
from pynet.proxy import topology
from pynet.proxy.model import Endpoint, IPFamily, NamespacedName, Protocol, ServicePort, ServicePortName


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert pynet.__version__ in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


def test_topology_doctests() -> None:
    assert doctest.testmod(topology).failed == 0


SPN = ServicePortName(NamespacedName("ns", "svc"), "http", Protocol.TCP)


def _port(**kw: object) -> ServicePort:
    return ServicePort(SPN, IPFamily.V4, ip_address("10.96.0.10"), 80, Protocol.TCP, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("endpoints", "kwargs", "internal", "external"),
    [
        ([("10.0.0.2", True, True, False, True)], {}, ["10.0.0.2"], ["10.0.0.2"]),
        # terminating-but-serving endpoints are used only when nothing is ready
        ([("10.0.0.2", False, True, True, True), ("10.0.0.3", True, True, False, False)], {}, ["10.0.0.3"], ["10.0.0.3"]),
        ([("10.0.0.2", False, True, True, True)], {}, ["10.0.0.2"], ["10.0.0.2"]),
        ([("10.0.0.2", False, False, True, True)], {}, [], []),
        # Local policies keep only this node's endpoints
        ([("10.0.0.2", True, True, False, True), ("10.0.0.3", True, True, False, False)],
         {"external_policy_local": True}, ["10.0.0.2", "10.0.0.3"], ["10.0.0.2"]),
        ([("10.0.0.3", True, True, False, False)], {"internal_policy_local": True}, [], ["10.0.0.3"]),
    ],
    ids=["ready", "ready-beats-terminating", "terminating-fallback", "not-serving", "etp-local", "itp-local-none"],
)
def test_categorize(endpoints: list[tuple[str, bool, bool, bool, bool]], kwargs: dict[str, object],
                    internal: list[str], external: list[str]) -> None:
    eps = [Endpoint(ip_address(ip), 8080, ready=r, serving=s, terminating=t, is_local=loc) for ip, r, s, t, loc in endpoints]
    cat = topology.categorize_endpoints(_port(**kwargs), eps)
    assert [str(e.ip) for e in cat.internal] == internal
    assert [str(e.ip) for e in cat.external] == external
    assert cat.has_any
