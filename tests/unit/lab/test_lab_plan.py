"""Lab plan (names, addresses, limits) and the manifests it writes, parsed back by the agent's own
manifest reader so the lab and the agent agree on the format."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from pynet.errors import ConfigError
from pynet.k8s.manifests import parse_manifests
from pynet.lab.manifests import render_nodes, render_services, service_catalogue, write_manifest
from pynet.lab.plan import LabPlan
from pynet.proxy.model import EndpointSlice, Node, Service, ServiceType


def test_plan_names_and_addresses() -> None:
    plan = LabPlan.build("abc", nodes=3, pods_per_node=2, root=Path("/tmp/x"))
    n2 = plan.node(2)
    assert (n2.name, n2.netns, n2.address, n2.pod_cidr) == (
        "node2", "pynetlab-abc-node2", IPv4Interface("192.168.100.12/24"), IPv4Network("10.244.2.0/24"))
    assert [p.netns for p in n2.pods] == ["pynetlab-abc-n2p1", "pynetlab-abc-n2p2"]
    assert plan.underlay_netns == "pynetlab-abc-ul" and plan.external_netns == "pynetlab-abc-ext"
    assert plan.root == Path("/tmp/x/abc") and plan.manifest_dir == Path("/tmp/x/abc/manifests")
    names = plan.all_netns()
    assert len(names) == len(set(names)) == 2 + 3 + 6
    assert all(n.startswith(plan.prefix) for n in names)


def test_longest_names_stay_short() -> None:
    plan = LabPlan.build("abcdefghijkl", nodes=50, pods_per_node=50)
    assert max(len(n) for n in plan.all_netns()) <= 30


@pytest.mark.parametrize(
    "kw",
    [{"name": "with-dash"}, {"name": ""}, {"name": "UPPER"}, {"name": "thirteenchars"}, {"nodes": 0},
     {"nodes": 51}, {"pods_per_node": -1}, {"backend": "ipvs"}, {"overlay": "none"}],
    ids=lambda kw: next(iter(kw.items())).__str__(),
)
def test_plan_rejects_bad_parameters(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"name": "ok", **kw}
    name = args.pop("name")
    with pytest.raises(ConfigError):
        LabPlan.build(name, **args)  # type: ignore[arg-type]


def test_one_lab_prefix_never_matches_another() -> None:
    a, ab = LabPlan.build("a"), LabPlan.build("ab")
    assert not any(n.startswith(a.prefix) for n in ab.all_netns())


def test_manifests_parse_with_the_agents_reader(tmp_path: Path) -> None:
    plan = LabPlan.build("t", nodes=3, pods_per_node=2)
    ips = {p.name: IPv4Address(f"10.244.{p.node}.{p.index + 1}") for p in plan.pods()}
    del ips["pod-3-2"]  # a pod without an address is left out of the slices
    write_manifest(tmp_path, "nodes.yaml", render_nodes(plan))
    write_manifest(tmp_path, "services.yaml", render_services(plan, ips))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.yaml", "services.yaml"]

    nodes = {key[1][1]: v for key, v in parse_manifests(tmp_path / "nodes.yaml").items()}
    assert set(nodes) == {"node1", "node2", "node3"}
    n3 = nodes["node3"]
    assert isinstance(n3, Node)
    assert n3.addresses == (IPv4Address("192.168.100.13"),) and n3.pod_cidrs == (IPv4Network("10.244.3.0/24"),)

    objs = parse_manifests(tmp_path / "services.yaml")
    services = {v.name.name: v for v in objs.values() if isinstance(v, Service)}
    slices = {v.service.name: v for v in objs.values() if isinstance(v, EndpointSlice)}
    assert set(services) == {"echo", "away-node1", "away-node2", "away-node3"}
    echo = services["echo"]
    assert echo.type == ServiceType.NODE_PORT and echo.ports[0].node_port == 30080
    assert echo.cluster_ips == (IPv4Address("10.96.0.10"),)
    assert len(slices["echo"].endpoints) == 5
    away1 = slices["away-node1"]
    assert {e.node_name for e in away1.endpoints} == {"node2", "node3"}
    assert all(e.addresses[0] in IPv4Network("10.244.0.0/16") for e in away1.endpoints)


def test_single_node_lab_has_no_away_services() -> None:
    assert [s.name for s in service_catalogue(LabPlan.build("one", nodes=1))] == ["echo"]


def test_removing_a_node_from_the_manifests(tmp_path: Path) -> None:
    plan = LabPlan.build("t", nodes=3)
    write_manifest(tmp_path, "nodes.yaml", render_nodes(plan, exclude=["node2"]))
    assert {k[1][1] for k in parse_manifests(tmp_path / "nodes.yaml")} == {"node1", "node3"}


BASE = {
    "cniVersion": "1.0.0",
    "name": "pynet",
    "plugins": [
        {"type": "pynet", "bridge": "pynet0", "isGateway": True, "ipMasq": True, "vxlan": {"vni": 1},
         "ipam": {"type": "pynet-ipam", "subnet": "usePodCidr", "dataDir": "/var/lib/cni/networks"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def test_derived_conflist_vxlan() -> None:
    from pynet.lab.lab import derive_conflist

    plan = LabPlan.build("t", nodes=2, root=Path("/run/x"))
    conf = derive_conflist(BASE, plan, plan.node(2))
    main = conf["plugins"][0]
    assert main["ipam"] == {"type": "pynet-ipam", "subnet": "usePodCidr", "dataDir": "/run/x/t/node2/ipam",
                            "podCidrFile": "/run/x/t/node2/pod-cidr"}
    assert main["mtu"] == 1450 and main["ipMasq"] is True and main["ipMasqExclude"] == ["10.244.0.0/16"]
    assert main["vxlan"] == {"vni": 1, "local": "192.168.100.12", "dev": "eth0"}
    assert conf["plugins"][1] == BASE["plugins"][1]
    assert BASE["plugins"][0]["ipam"]["dataDir"] == "/var/lib/cni/networks"  # type: ignore[index]


def test_derived_conflist_host_gw_and_host_local() -> None:
    from pynet.lab.lab import derive_conflist

    plan = LabPlan.build("t", nodes=2, overlay="host-gw", root=Path("/run/x"))
    conf = derive_conflist(BASE, plan, plan.node(1))
    assert "vxlan" not in conf["plugins"][0] and conf["plugins"][0]["mtu"] == 1500
    ref = {"cniVersion": "1.0.0", "name": "r", "plugins": [{"type": "bridge", "ipam": {"type": "host-local"}}]}
    ipam = derive_conflist(ref, plan, plan.node(1))["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": "10.244.1.0/24"}]] and ipam["dataDir"] == "/run/x/t/node1/ipam"
