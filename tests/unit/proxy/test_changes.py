"""Change tracking and slice merging: per-port views per family, no-op updates dropped, the changed
service set, slices merged per service with ip:port dedupe (ready preferred), is_local from the node
name, and the UDP conntrack candidates (deleted endpoints, newly active ports)."""

from __future__ import annotations

from ipaddress import ip_address

from pynet.k8s.convert import to_endpoint_slice, to_service
from pynet.proxy.changes import (
    EndpointsChangeTracker,
    EndpointsMap,
    ServiceChangeTracker,
    ServicePortMap,
    service_ports,
)
from pynet.proxy.model import IPFamily, NamespacedName, Protocol, ServicePortName
from pynet.proxy.slicecache import EndpointSliceCache
from pynet.testing.builders import make_service, make_slice, port

WEB = NamespacedName("default", "web")
HTTP = ServicePortName(WEB, "http", Protocol.TCP)
DNS = ServicePortName(WEB, "dns", Protocol.UDP)


def web(*ports: dict[str, object], ip: str = "10.96.0.10", **spec: object):  # type: ignore[no-untyped-def]
    return to_service(make_service("web", ip, list(ports) or [port(80, name="http")], **spec))


def sl(
    eps: list[object], name: str = "web-1", ports: list[dict[str, object]] | None = None, family: str = "IPv4"
):  # type: ignore[no-untyped-def]
    return to_endpoint_slice(
        make_slice(
            "web",
            eps,
            ports or [{"name": "http", "port": 8080, "protocol": "TCP"}],
            name=name,
            address_type=family,
            node_name="n1",
        )
    )


def test_service_ports_per_family_and_type() -> None:
    dual = to_service(
        make_service(
            "web",
            "10.96.0.10",
            [port(80, name="http", node_port=30080)],
            type="NodePort",
            clusterIPs=["10.96.0.10", "fd00::10"],
            externalIPs=["203.0.113.5", "2001:db8::5"],
        )
    )
    v4 = service_ports(dual, IPFamily.V4)[HTTP]
    v6 = service_ports(dual, IPFamily.V6)[HTTP]
    assert (str(v4.cluster_ip), v4.node_port, [str(i) for i in v4.external_ips]) == (
        "10.96.0.10",
        30080,
        ["203.0.113.5"],
    )
    assert (str(v6.cluster_ip), [str(i) for i in v6.external_ips]) == ("fd00::10", ["2001:db8::5"])
    # nodePort on a ClusterIP service is ignored; headless and ExternalName have no ports to render
    assert service_ports(web(port(80, name="http", node_port=30080)), IPFamily.V4)[HTTP].node_port == 0
    assert service_ports(to_service(make_service("h", None, clusterIP="None")), IPFamily.V4) == {}
    assert service_ports(web(), IPFamily.V6) == {}


def test_service_tracker_drops_noops_and_reports_changed_set() -> None:
    t, m = ServiceChangeTracker(IPFamily.V4), ServicePortMap()
    a = web()
    assert t.update(None, a)
    assert m.apply(t).updated == {WEB} and set(m) == {HTTP}
    # change, then change back before a sync: nothing pending
    b = web(port(81, name="http"))
    assert t.update(a, b)
    assert not t.update(b, a)
    assert t.pending() == 0 and m.apply(t).updated == frozenset()
    # a resourceVersion-only change is not a change of the per-port view
    assert not t.update(a, web())
    # port rename: old key removed, new key added
    assert t.update(a, web(port(53, name="dns", protocol="UDP")))
    assert m.apply(t).updated == {WEB} and set(m) == {DNS}
    assert t.update(web(port(53, name="dns", protocol="UDP")), None)
    m.apply(t)
    assert dict(m) == {}


def test_slice_cache_merges_dedupes_and_marks_local() -> None:
    c = EndpointSliceCache(IPFamily.V4, "n1")
    s1 = sl(
        ["10.244.1.5", {"addresses": ["10.244.2.5"], "conditions": {"ready": False}, "nodeName": "n2"}],
        name="web-1",
    )
    s2 = sl(
        [{"addresses": ["10.244.2.5"], "conditions": {"ready": True}, "nodeName": "n2"}, "10.244.1.6"],
        name="web-2",
    )
    c.update(None, s1)
    c.update(None, s2)
    c.update(None, sl(["fd00::5"], name="web-v6", family="IPv6"))  # other family: ignored
    eps = c.endpoints_for(WEB)[HTTP]
    assert [(str(e), e.ready, e.is_local) for e in eps] == [
        ("10.244.1.5:8080", True, True),
        ("10.244.1.6:8080", True, True),
        ("10.244.2.5:8080", True, False),  # duplicate: the ready copy wins
    ]
    c.update(s2, None)
    assert [str(e) for e in c.endpoints_for(WEB)[HTTP]] == ["10.244.1.5:8080", "10.244.2.5:8080"]
    c.update(s1, None)
    assert c.endpoints_for(WEB) == {} and c.services() == []


def test_endpoints_tracker_changed_set_and_udp_candidates() -> None:
    t, m = EndpointsChangeTracker(IPFamily.V4, "n1"), EndpointsMap()
    udp = [{"name": "dns", "port": 5353, "protocol": "UDP"}]
    s1 = sl(["10.244.1.5", "10.244.1.6"], ports=udp)
    assert t.update(None, s1)
    r = m.apply(t)
    assert r.updated == {WEB} and r.newly_active_udp == {DNS} and r.deleted_udp == ()
    s2 = sl(["10.244.1.6"], ports=udp)
    assert t.update(s1, s2)
    r = m.apply(t)
    assert [(str(spn), str(ep)) for spn, ep in r.deleted_udp] == [("default/web:dns/udp", "10.244.1.5:5353")]
    assert r.newly_active_udp == frozenset()
    # identical content under a new resourceVersion: no-op
    assert not t.update(s2, sl(["10.244.1.6"], ports=udp))
    assert m.apply(t).updated == frozenset()
    # a second slice appearing and disappearing before a sync cancels out
    extra = sl(["10.244.1.9"], name="web-2", ports=udp)
    assert t.update(None, extra)
    assert not t.update(extra, None)
    assert m.apply(t).updated == frozenset()
    assert [str(e) for e in m[DNS]] == ["10.244.1.6:5353"]
    assert m[DNS][0].ip == ip_address("10.244.1.6")
