"""The agent end to end, without root: `pynet agent --kubeconfig <in-test API server> --once` and
`--source DIR` with a recording backend, as a real subprocess and in-process; a malformed Service
among good ones (agent keeps running, good ones programmed, log line + metric name the bad one);
/healthz, /readyz and /metrics; config validation and exit codes; --cleanup runs every backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pynet.daemon.app import Agent
from pynet.daemon.config import AgentConfig, parse_address
from pynet.daemon.server import AgentHTTPServer
from pynet.errors import ConfigError
from pynet.proxy.conntrack import RecordingConntrack
from pynet.testing.apiserver import FakeApiServer
from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.recording import RecordingBackend

RECORDING = "pynet.testing.recording:RecordingBackend"
PYNET = [sys.executable, "-m", "pynet"]


def agent_cmd(*args: str) -> list[str]:
    return [
        *PYNET,
        "agent",
        "--backend",
        RECORDING,
        "--metrics-address",
        "0",
        "--healthz-address",
        "0",
        *args,
    ]


def cluster(srv: FakeApiServer) -> None:
    srv.apply(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"]))
    srv.apply(make_service("web", "10.96.0.10", [port(80, name="http")]))
    srv.apply(
        make_slice(
            "web",
            ["10.244.1.5", "10.244.2.5"],
            [{"name": "http", "port": 8080, "protocol": "TCP"}],
            node_name="n1",
        )
    )
    srv.apply(make_service("bad", "10.96.0.11", [port(80, protocol="QUIC")]))
    srv.apply(make_service("db", "10.96.0.12", [port(5432)]))


def test_once_against_api_server_subprocess(tmp_path: Path) -> None:
    with FakeApiServer() as srv:
        cluster(srv)
        kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
        record = tmp_path / "record.json"
        env = {**os.environ, "PYNET_RECORD_FILE": str(record)}
        res = subprocess.run(
            agent_cmd(
                "--kubeconfig",
                str(kubeconfig),
                "--node-name",
                "n1",
                "--once",
                "--pod-cidr-file",
                str(tmp_path / "cidr"),
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert res.returncode == 0, res.stderr
    doc = json.loads(record.read_text())
    assert doc["full"] is True
    assert doc["state"]["node_ips"] == ["192.168.50.1"]
    assert doc["state"]["services"] == {
        "default/db/tcp": {"cluster_ip": "10.96.0.12", "port": 5432, "node_port": 0, "endpoints": []},
        "default/web:http/tcp": {
            "cluster_ip": "10.96.0.10",
            "port": 80,
            "node_port": 0,
            "endpoints": ["10.244.1.5:8080(local)", "10.244.2.5:8080(local)"],
        },
    }
    assert "service=default/bad" in res.stderr and "unknown protocol 'QUIC'" in res.stderr
    assert (tmp_path / "cidr").read_text() == "10.244.1.0/24\n"


def test_long_running_agent_follows_api_and_serves_health_and_metrics(tmp_path: Path) -> None:
    with FakeApiServer() as srv:
        cluster(srv)
        cfg = AgentConfig(
            node_name="n1",
            kubeconfig=str(srv.write_kubeconfig(tmp_path / "kubeconfig")),
            min_sync_period=0.05,
            pod_cidr_file=None,
            healthz_address=("127.0.0.1", 0),
            metrics_address=("127.0.0.1", 0),
            cni_server=False,  # this test runs in the root namespace: bind nothing there
        )
        be = RecordingBackend()
        agent = Agent(cfg, backend=be, conntrack=RecordingConntrack())
        t = threading.Thread(target=agent.run, daemon=True)
        t.start()
        try:
            be.wait_for(lambda r: len(r.state.services) == 2, timeout=20)
            srv.wait_watching()
            # a malformed update of a good service removes it; fixing it brings it back; others untouched
            srv.apply(make_service("db", "10.96.0.12", [port(5432)], externalIPs=["300.1.1.1"]))
            be.wait_for(lambda r: {str(k) for k in r.state.services} == {"default/web:http/tcp"})
            n = len(be.syncs)
            srv.apply(make_service("db", "10.96.0.12", [port(5432)]))
            rec = be.wait_for(lambda r: len(r.state.services) == 2, after=n)
            assert not rec.full and {str(s) for s in rec.changed} == {"default/db"}

            servers = agent._http
            assert len(servers) == 1  # the same address for health and metrics: one server serves both
            bodies = {}
            for s in servers:
                for path in ("/healthz", "/readyz", "/metrics"):
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{s.port}{path}", timeout=5) as resp:
                            bodies[path] = (resp.status, resp.read().decode())
                    except urllib.error.HTTPError as err:
                        if err.code != 404:
                            raise
            assert bodies["/healthz"][0] == 200 and "last successful sync" in bodies["/healthz"][1]
            assert bodies["/readyz"][0] == 200
            metrics = bodies["/metrics"][1]
            assert 'pynet_invalid_objects_total{kind="Service",name="bad",namespace="default"} 1.0' in metrics
            assert 'pynet_invalid_objects_total{kind="Service",name="db",namespace="default"} 1.0' in metrics
            assert "pynet_service_ports_programmed 2.0" in metrics
            assert "pynet_endpoints_programmed 2.0" in metrics
            assert 'pynet_sync_proxy_rules_duration_seconds_count{mode="partial"}' in metrics
            assert "pynet_sync_proxy_rules_last_timestamp_seconds" in metrics
        finally:
            agent.stop()
            t.join(10)
        assert not t.is_alive()


def test_source_dir_agent_follows_file_edits_and_stops_on_sigterm(tmp_path: Path) -> None:
    src = tmp_path / "manifests"
    src.mkdir()
    (src / "svc.yaml").write_text(
        yaml.safe_dump_all(
            [
                make_node("n1", ["192.168.50.1"]),
                make_service("web", "10.96.0.10"),
                make_slice("web", ["10.244.1.5"]),
            ]
        )
    )
    record = tmp_path / "record.json"
    env = {**os.environ, "PYNET_RECORD_FILE": str(record)}
    proc = subprocess.Popen(
        agent_cmd(
            "--source",
            str(src),
            "--node-name",
            "n1",
            "--min-sync-period",
            "0.05",
            "--source-poll-interval",
            "0.05",
            "--pod-cidr-file",
            "",
        ),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def endpoints() -> list[str]:
            try:
                return json.loads(record.read_text())["state"]["services"]["default/web/tcp"]["endpoints"]
            except (OSError, ValueError, KeyError):
                return []

        deadline = time.monotonic() + 30
        while endpoints() != ["10.244.1.5:8080"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert endpoints() == ["10.244.1.5:8080"]
        (src / "slice.yaml").write_text(yaml.safe_dump(make_slice("web", ["10.244.1.6"], name="web-2")))
        deadline = time.monotonic() + 10
        while endpoints() != ["10.244.1.5:8080", "10.244.1.6:8080"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert endpoints() == ["10.244.1.5:8080", "10.244.1.6:8080"]
        assert json.loads(record.read_text())["full"] is False
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "rules left in place" in err


def test_once_fails_clearly_when_sources_never_sync(tmp_path: Path) -> None:
    srv = FakeApiServer()  # never started: connection refused
    kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
    srv.stop()
    res = subprocess.run(
        agent_cmd("--kubeconfig", str(kubeconfig), "--once", "--once-timeout", "1", "--node-name", "n1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1
    assert "sources did not sync within 1s" in res.stderr


def test_bad_config_exit_2() -> None:
    res = subprocess.run(
        [*PYNET, "agent", "--source", "/nonexistent/dir", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "not a directory" in res.stderr
    res = subprocess.run(
        [*PYNET, "agent", "--source", "/tmp", "--cluster-cidr", "10.0.0.0/40", "--once"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2 and "invalid CIDR" in res.stderr


def test_unknown_backend_fails_clearly(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            *PYNET,
            "agent",
            "--source",
            str(tmp_path),
            "--backend",
            "carrier-pigeon",
            "--once",
            "--metrics-address",
            "0",
            "--healthz-address",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1 and "unknown backend 'carrier-pigeon'" in res.stderr


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:10249", "x") == ("127.0.0.1", 10249)
    assert parse_address("[::1]:10256", "x") == ("::1", 10256)
    assert parse_address("0", "x") is None and parse_address("", "x") is None
    with pytest.raises(ConfigError):
        parse_address("localhost", "x")


def test_health_goes_stale(tmp_path: Path) -> None:
    from pynet._clock import FakeClock

    clock = FakeClock()
    agent = Agent(
        AgentConfig(node_name="n1", source_dir=tmp_path, sync_period=1.0),
        backend=RecordingBackend(),
        clock=clock,
    )
    agent.setup()
    p = agent.proxier
    assert p is not None
    assert agent.readyz() == (False, "not synced yet")
    assert agent.healthz()[0]  # young agent: healthy while waiting for the first sync
    p.last_success = clock.monotonic()
    assert agent.healthz()[0] and agent.readyz()[0]
    clock.advance(10)
    ok, text = agent.healthz()
    assert not ok and "limit" in text
    server = AgentHTTPServer(("127.0.0.1", 0), healthz=agent.healthz)
    server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert info.value.code == 503
    finally:
        server.stop()


def test_cleanup_calls_every_loadable_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    from pynet.daemon import app
    from pynet.proxy.backends import BackendUnavailable

    cleaned: list[str] = []

    class Fine(RecordingBackend):
        def cleanup(self) -> None:
            cleaned.append("fine")

    class Broken(RecordingBackend):
        @classmethod
        def probe(cls) -> None:
            raise BackendUnavailable("no kernel support")

    table = {"a": Fine, "b": Broken}
    monkeypatch.setattr(app, "BACKENDS", {"a": "", "b": ""})
    monkeypatch.setattr(app, "load_backend", lambda name: table[name])
    assert app.run_cleanup(AgentConfig(node_name="n1", cleanup=True)) == 0
    assert cleaned == ["fine"]


def test_dual_stack_one_proxier_per_family(tmp_path: Path) -> None:
    """--cluster-cidr with both families: one backend instance and one ProxyState per family, one sync thread."""
    from pynet.proxy.model import IPFamily

    made: dict[IPFamily, FamilyBackend] = {}

    class FamilyBackend(RecordingBackend):
        def __init__(self, family: IPFamily = IPFamily.V4) -> None:
            super().__init__()
            made[family] = self

    import pynet.daemon.app as app_mod

    (tmp_path / "a.yaml").write_text(
        yaml.safe_dump_all(
            [
                make_node("n1", ["192.168.50.1", "fd00:50::1"]),
                make_service(
                    "web", "10.96.0.10", clusterIPs=["10.96.0.10", "fd00:96::10"], ipFamilies=["IPv4", "IPv6"]
                ),
                make_slice("web", ["10.244.1.5"], name="web-v4"),
                make_slice("web", ["fd00:244:1::5"], name="web-v6", address_type="IPv6"),
            ]
        )
    )
    orig = app_mod.resolve_backend
    app_mod.resolve_backend = lambda name: FamilyBackend  # type: ignore[assignment,return-value]
    try:
        from pynet.daemon.config import parse_cidrs

        cfg = AgentConfig(
            node_name="n1",
            source_dir=tmp_path,
            once=True,
            pod_cidr_file=None,
            cluster_cidrs=parse_cidrs("10.244.0.0/16,fd00:244::/48", "x"),
        )
        assert Agent(cfg, conntrack=RecordingConntrack()).run() == 0
    finally:
        app_mod.resolve_backend = orig
    assert set(made) == {IPFamily.V4, IPFamily.V6}
    v4, v6 = made[IPFamily.V4].last.state, made[IPFamily.V6].last.state
    assert [str(sp.cluster_ip) for sp in v4.services.values()] == ["10.96.0.10"]
    assert [str(sp.cluster_ip) for sp in v6.services.values()] == ["fd00:96::10"]
    assert [str(e) for e in v6.endpoints_of(next(iter(v6.services)))] == ["[fd00:244:1::5]:8080"]
    assert [str(ip) for ip in v6.node_ips] == ["fd00:50::1"] and [str(c) for c in v6.cluster_cidrs] == [
        "fd00:244::/48"
    ]


def test_bad_kubeconfig_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "kc").write_text("this: is not a kubeconfig\n")
    res = subprocess.run(
        agent_cmd("--kubeconfig", str(tmp_path / "kc"), "--once", "--node-name", "n1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        res.returncode == 1
        and "cannot load cluster credentials" in res.stderr
        and "Traceback" not in res.stderr
    )
