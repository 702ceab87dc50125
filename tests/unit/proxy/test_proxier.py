"""Proxier: no sync before every source synced; first sync full, then partial with exactly the
changed services; a backend failure forces the next sync full; a change of this node's Node forces
a full sync; the periodic sync is full; invalid objects are logged and counted by name; stale UDP
conntrack filters follow endpoint removal; node observers run on the sync thread and are retried."""

from __future__ import annotations

import logging
from ipaddress import ip_address, ip_network

import pytest

from pynet._clock import FakeClock
from pynet.k8s.convert import InvalidObject, to_endpoint_slice, to_node, to_service
from pynet.k8s.events import Kind
from pynet.proxy.conntrack import ConntrackFilter, RecordingConntrack
from pynet.proxy.model import IPFamily, NamespacedName, Node
from pynet.proxy.proxier import Proxier
from pynet.testing.builders import make_node, make_service, make_slice, port
from pynet.testing.recording import RecordingBackend

WEB, DB = NamespacedName("default", "web"), NamespacedName("default", "db")


def make(fake_clock: FakeClock, **kw: object) -> tuple[Proxier, RecordingBackend]:
    be = RecordingBackend()
    p = Proxier(
        be,
        node_name="n1",
        cluster_cidrs=[ip_network("10.244.0.0/16")],
        sync_period=30.0,
        clock=fake_clock,
        **kw,
    )  # type: ignore[arg-type]
    return p, be


def synced(p: Proxier) -> None:
    for k in Kind:
        p.on_synced(k)


def svc(name: str, ip: str, *ports: dict[str, object], **spec: object):  # type: ignore[no-untyped-def]
    return to_service(make_service(name, ip, list(ports) or [port(80)], **spec))


def test_no_sync_before_all_sources_synced(fake_clock: FakeClock) -> None:
    p, be = make(fake_clock)
    p.on_service_update(None, svc("web", "10.96.0.10"))
    p.on_synced(Kind.SERVICE)
    p.on_synced(Kind.NODE)
    p.sync_rules()
    assert be.syncs == []
    p.on_synced(Kind.ENDPOINT_SLICE)
    p.sync_rules()
    assert len(be.syncs) == 1 and be.last.full


def test_partial_sync_carries_only_changed_services(fake_clock: FakeClock) -> None:
    p, be = make(fake_clock)
    synced(p)
    p.on_node_update(None, to_node(make_node("n1", ["192.168.50.1"])))
    p.on_service_update(None, svc("web", "10.96.0.10"))
    p.on_service_update(None, svc("db", "10.96.0.11", port(5432)))
    p.sync_rules()
    assert be.last.full and be.last.changed == {WEB, DB}
    assert be.last.state.node_ips == (ip_address("192.168.50.1"),)
    assert be.last.state.cluster_cidrs == (ip_network("10.244.0.0/16"),)

    fake_clock.advance(1)
    p.on_endpointslice_update(None, to_endpoint_slice(make_slice("db", ["10.244.1.5"], node_name="n1")))
    p.sync_rules()
    assert not be.last.full and be.last.changed == {DB}
    (ep,) = be.last.state.endpoints_of(next(k for k in be.last.state.services if k.service == DB))
    assert ep.is_local and str(ep) == "10.244.1.5:8080"

    fake_clock.advance(1)
    p.on_service_update(svc("web", "10.96.0.10"), None)
    p.sync_rules()
    assert not be.last.full and be.last.changed == {WEB}
    assert {k.service for k in be.last.state.services} == {DB}

    fake_clock.advance(30)  # sync_period elapsed: the next sync is full, even with nothing changed
    p.sync_rules()
    assert be.last.full and be.last.changed == frozenset()


def test_failure_forces_full_resync(fake_clock: FakeClock) -> None:
    p, be = make(fake_clock)
    synced(p)
    p.sync_rules()
    p.on_service_update(None, svc("web", "10.96.0.10"))
    be.fail_next = 1
    with pytest.raises(Exception, match="injected"):
        p.sync_rules()
    assert p.metrics.sync_errors._value.get() == 1  # type: ignore[attr-defined]
    assert p.last_error is not None
    p.sync_rules()
    assert be.last.full and be.last.changed == frozenset()  # the change was consumed; full covers it
    assert {k.service for k in be.last.state.services} == {WEB}


def test_local_node_change_forces_full_and_other_nodes_do_not(fake_clock: FakeClock) -> None:
    seen: list[tuple[str | None, list[str]]] = []

    def observer(local: Node | None, nodes: object) -> None:
        seen.append((local.name if local else None, [n.name for n in nodes]))  # type: ignore[attr-defined]

    p, be = make(fake_clock, node_observers=[observer])
    synced(p)
    p.sync_rules()
    p.on_node_update(None, to_node(make_node("n2", ["192.168.50.2"], ["10.244.2.0/24"])))
    p.sync_rules()
    assert not be.last.full and seen[-1] == (None, ["n2"])
    p.on_node_update(None, to_node(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"])))
    p.sync_rules()
    assert be.last.full and seen[-1] == ("n1", ["n1", "n2"])
    n1 = make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"])
    n1["metadata"]["resourceVersion"] = "999"  # heartbeat-only change: not a node change
    count = len(seen)
    p.on_node_update(to_node(make_node("n1", ["192.168.50.1"], ["10.244.1.0/24"])), to_node(n1))
    p.sync_rules()
    assert len(seen) == count and not be.last.full


def test_periodic_full_sync_reruns_node_observers(fake_clock: FakeClock) -> None:
    """The overlay reconciles against the kernel on every full sync, so hand-deleted routes come back."""
    calls: list[int] = []
    p, be = make(fake_clock, node_observers=[lambda local, nodes: calls.append(1)])
    synced(p)
    p.on_node_update(None, to_node(make_node("n1", ["192.168.50.1"])))
    p.sync_rules()
    p.sync_rules()  # partial, nodes unchanged: observers not called again
    assert len(calls) == 1 and not be.last.full
    fake_clock.advance(31.0)
    p.sync_rules()  # periodic full sync
    assert be.last.full and len(calls) == 2


def test_failing_node_observer_is_retried(fake_clock: FakeClock) -> None:
    calls: list[int] = []

    def observer(local: Node | None, nodes: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("overlay hiccup")

    p, be = make(fake_clock, node_observers=[observer])
    synced(p)
    p.on_node_update(None, to_node(make_node("n1", ["192.168.50.1"])))
    p.sync_rules()
    p.sync_rules()
    assert len(calls) == 2 and len(be.syncs) == 2


def test_invalid_object_logged_and_counted(fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    p, _ = make(fake_clock)
    with caplog.at_level(logging.WARNING, logger="pynet"):
        logging.getLogger("pynet").propagate = True
        try:
            p.on_invalid(
                InvalidObject("Service", "shop", "broken", "spec.ports[0].port 70000 out of range 1-65535")
            )
        finally:
            logging.getLogger("pynet").propagate = False
    rec = caplog.records[-1]
    assert rec.kv["service"] == "shop/broken" and "70000" in rec.kv["reason"]  # type: ignore[attr-defined]
    value = p.metrics.registry.get_sample_value(
        "pynet_invalid_objects_total", {"kind": "Service", "namespace": "shop", "name": "broken"}
    )
    assert value == 1.0


def test_stale_udp_conntrack_after_endpoint_removal(fake_clock: FakeClock) -> None:
    ct = RecordingConntrack()
    p, _ = make(fake_clock, conntrack=ct)
    synced(p)
    dns = svc(
        "dns",
        "10.96.0.53",
        port(53, name="dns", protocol="UDP", node_port=30053),
        type="NodePort",
        externalIPs=["203.0.113.7"],
    )
    p.on_service_update(None, dns)
    udp = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
    s1 = to_endpoint_slice(make_slice("dns", ["10.244.1.5", "10.244.2.5"], udp))
    p.on_endpointslice_update(None, s1)
    p.sync_rules()
    v4 = IPFamily.V4
    # first endpoints of a UDP port: clear entries for the service addresses (cached REJECTs)
    assert ct.cleared == [
        ConntrackFilter(v4, orig_dst=ip_address("10.96.0.53"), orig_port_dst=53),
        ConntrackFilter(v4, orig_dst=ip_address("203.0.113.7"), orig_port_dst=53),
        ConntrackFilter(v4, orig_port_dst=30053),
    ]
    ct.cleared.clear()
    p.on_endpointslice_update(s1, to_endpoint_slice(make_slice("dns", ["10.244.2.5"], udp)))
    p.sync_rules()
    ep = ip_address("10.244.1.5")
    assert ct.cleared == [
        ConntrackFilter(v4, orig_dst=ip_address("10.96.0.53"), orig_port_dst=53, reply_src=ep),
        ConntrackFilter(v4, orig_dst=ip_address("203.0.113.7"), orig_port_dst=53, reply_src=ep),
        ConntrackFilter(v4, orig_port_dst=30053, reply_src=ep),
    ]
    assert ct.cleared[0].argv() == [
        "conntrack",
        "-D",
        "-f",
        "ipv4",
        "-p",
        "udp",
        "--orig-dst",
        "10.96.0.53",
        "--orig-port-dst",
        "53",
        "--reply-src",
        "10.244.1.5",
    ]


def test_fallback_node_ips_when_no_node_object(fake_clock: FakeClock) -> None:
    p, be = make(fake_clock, fallback_node_ips=lambda: (ip_address("192.168.60.1"), ip_address("fd00::1")))
    synced(p)
    p.sync_rules()
    assert be.last.state.node_ips == (ip_address("192.168.60.1"),)
