"""pynet.k8s.convert: valid Services/EndpointSlices/Nodes convert exactly; each malformed case is
rejected with InvalidObject naming the object and the reason."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from pynet.k8s.convert import InvalidObject, UnsupportedObject, to_endpoint_slice, to_node, to_service
from pynet.proxy.model import IPFamily, NamespacedName, Protocol, ServiceType, TrafficPolicy
from pynet.testing.builders import make_node, make_service, make_slice, port


def test_service_full_conversion() -> None:
    raw = make_service(
        "web",
        "10.96.0.10",
        [port(80, name="http", target="http-port", node_port=30080), port(53, name="dns", protocol="UDP")],
        namespace="shop",
        type="LoadBalancer",
        lb_ips=["203.0.113.9"],
        externalIPs=["203.0.113.5"],
        loadBalancerSourceRanges=["198.51.100.0/24"],
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        externalTrafficPolicy="Local",
        internalTrafficPolicy="Local",
        healthCheckNodePort=31000,
    )
    svc = to_service(raw)
    assert svc.name == NamespacedName("shop", "web")
    assert svc.type is ServiceType.LOAD_BALANCER
    assert svc.cluster_ips == (ip_address("10.96.0.10"),)
    assert [(p.name, p.protocol, p.port, p.target_port, p.node_port) for p in svc.ports] == [
        ("http", Protocol.TCP, 80, "http-port", 30080),
        ("dns", Protocol.UDP, 53, 53, 0),
    ]
    assert svc.external_ips == (ip_address("203.0.113.5"),)
    assert svc.load_balancer_ips == (ip_address("203.0.113.9"),)
    assert svc.load_balancer_source_ranges == (ip_network("198.51.100.0/24"),)
    assert svc.session_affinity_timeout == 60
    assert svc.external_traffic_policy is TrafficPolicy.LOCAL
    assert svc.internal_traffic_policy is TrafficPolicy.LOCAL
    assert svc.health_check_node_port == 31000


def test_service_defaults_and_headless() -> None:
    svc = to_service(
        {"kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 5}]}}
    )
    assert svc.name == NamespacedName("default", "h")
    assert svc.headless and svc.ports[0].protocol is Protocol.TCP and svc.ports[0].target_port == 5
    affinity = to_service(make_service("a", "10.96.0.1", sessionAffinity="ClientIP"))
    assert affinity.session_affinity_timeout == 10800


def _svc(**spec: Any) -> dict[str, Any]:
    raw = make_service("bad", "10.96.0.20")
    raw["spec"].update(spec)
    return raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_svc(clusterIP="10.96.0.999", clusterIPs=["10.96.0.999"]), "invalid IP address '10.96.0.999'"),
        (_svc(ports=[port(70000)]), "spec.ports[0].port 70000 out of range"),
        (_svc(ports=[port(0)]), "spec.ports[0].port 0 out of range"),
        (_svc(ports=[{"port": "eighty"}]), "spec.ports[0].port must be an integer"),
        (_svc(ports=[port(80, protocol="ICMP")]), "unknown protocol 'ICMP'"),
        (_svc(ports=[{"protocol": "TCP"}]), "spec.ports[0].port must be an integer, got None"),
        (_svc(ports=[port(80, node_port=99999)]), "nodePort 99999 out of range"),
        (_svc(externalIPs=["not-an-ip"]), "invalid IP address 'not-an-ip' in spec.externalIPs"),
        (_svc(loadBalancerSourceRanges=["10.0.0.0/33"]), "invalid CIDR '10.0.0.0/33'"),
        (_svc(externalTrafficPolicy="Sometimes"), "unknown spec.externalTrafficPolicy 'Sometimes'"),
        (_svc(type="Weird"), "unknown spec.type 'Weird'"),
        (
            _svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
            "timeoutSeconds 0",
        ),
        (_svc(ports="80"), "spec.ports must be a list"),
        (_svc(ports=[port(80), port(80)]), "duplicate port"),
    ],
)
def test_service_rejections(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidObject) as info:
        to_service(raw)
    err = info.value
    assert (err.kind, err.namespace, err.name) == ("Service", "default", "bad")
    assert reason in err.reason
    assert "default/bad" in str(err)


def test_service_missing_name_and_non_object() -> None:
    with pytest.raises(InvalidObject, match="missing metadata.name"):
        to_service({"kind": "Service", "metadata": {}, "spec": {}})
    with pytest.raises(InvalidObject, match="not an object"):
        to_service(["nope"])


def test_slice_conversion_and_condition_defaults() -> None:
    raw = make_slice(
        "web",
        [
            "10.244.1.5",
            {
                "addresses": ["10.244.2.5"],
                "conditions": {"ready": False, "serving": True, "terminating": True},
                "nodeName": "n2",
                "zone": "z",
            },
            {"addresses": ["10.244.3.5"]},  # no conditions: ready and serving
        ],
        [{"name": "http", "port": 8080, "protocol": "TCP"}],
        node_name="n1",
    )
    sl = to_endpoint_slice(raw)
    assert sl.service == NamespacedName("default", "web") and sl.family is IPFamily.V4
    assert [(str(e.addresses[0]), e.ready, e.serving, e.terminating, e.node_name) for e in sl.endpoints] == [
        ("10.244.1.5", True, True, False, "n1"),
        ("10.244.2.5", False, True, True, "n2"),
        ("10.244.3.5", True, True, False, None),
    ]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s["metadata"].pop("labels"), "missing label kubernetes.io/service-name"),
        (lambda s: s.update(addressType="IPv5"), "unknown addressType 'IPv5'"),
        (lambda s: s["endpoints"][0].update(addresses=["10.244.1.300"]), "invalid IP address '10.244.1.300'"),
        (lambda s: s["endpoints"][0].update(addresses=["fd00::1"]), "do not match addressType"),
        (lambda s: s["endpoints"][0].update(addresses=[]), "addresses is empty"),
        (lambda s: s["ports"][0].update(port=65536), "ports[0].port 65536 out of range"),
        (lambda s: s["ports"][0].update(protocol="GRE"), "unknown protocol 'GRE'"),
    ],
)
def test_slice_rejections(mutate: Any, reason: str) -> None:
    raw = make_slice("web", ["10.244.1.5"], name="web-x")
    mutate(raw)
    with pytest.raises(InvalidObject) as info:
        to_endpoint_slice(raw)
    assert (info.value.kind, info.value.name) == ("EndpointSlice", "web-x")
    assert reason in info.value.reason


def test_fqdn_slice_is_unsupported_not_invalid() -> None:
    with pytest.raises(UnsupportedObject):
        to_endpoint_slice(make_slice("web", [], address_type="FQDN"))


def test_node_conversion() -> None:
    raw = make_node(
        "n1",
        ["192.168.50.1"],
        ["10.244.1.0/24", "fd00:1::/64"],
        annotations={"pynet.io/vtep-mac": "aa:bb", "other/x": "y"},
    )
    raw["status"]["addresses"].insert(0, {"type": "ExternalIP", "address": "198.51.100.1"})
    node = to_node(raw)
    assert node.addresses == (ip_address("192.168.50.1"), ip_address("198.51.100.1"))  # InternalIP first
    assert node.pod_cidrs == (ip_network("10.244.1.0/24"), ip_network("fd00:1::/64"))
    assert node.annotation("pynet.io/vtep-mac") == "aa:bb" and node.annotation("other/x") is None
    with pytest.raises(InvalidObject, match="invalid CIDR"):
        to_node(make_node("n2", ["192.168.50.2"], ["10.244.300.0/24"]))
