"""Overlay pure parts: VTEP identity, desired peers, entry planning, and the controllers' reconcile
loop against a fake kernel (what gets added, what gets removed when a node goes or changes)."""

from __future__ import annotations

import doctest
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network

import pytest

from pynet import overlay
from pynet.overlay import vtep
from pynet.overlay.base import LinkView, OverlayError, VxlanSpec
from pynet.overlay.entries import FdbEntry, NeighEntry, OverlayEntries, RouteEntry, plan, vxlan_entries
from pynet.overlay.peers import Peer, desired_peers, diff_peers
from pynet.proxy.model import Node


def node(name: str, ip: str | None, cidr: str | None, **ann: str) -> Node:
    return Node(
        name=name,
        addresses=(ip_address(ip),) if ip else (),
        pod_cidrs=(ip_network(cidr),) if cidr else (),
        annotations=tuple(sorted(ann.items())),
    )


N1 = node("node1", "192.168.100.11", "10.244.1.0/24")
N2 = node("node2", "192.168.100.12", "10.244.2.0/24")
N3 = node("node3", "192.168.100.13", "10.244.3.0/24")


def test_vtep_doctests() -> None:
    assert doctest.testmod(vtep).failed == 0


@pytest.mark.parametrize("name", ["node1", "node2", "a", "kind-worker-with-a-long-name.example"])
def test_derived_mac_is_stable_unicast_and_locally_administered(name: str) -> None:
    mac = vtep.vtep_mac_for(name)
    assert mac == vtep.vtep_mac_for(name)
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    assert vtep.normalise_mac(mac) == mac


def test_derived_macs_differ_between_nodes() -> None:
    macs = {vtep.vtep_mac_for(f"node{i}") for i in range(200)}
    assert len(macs) == 200


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("AB-BB-CC-DD-EE-FF", None), ("0A-BB-CC-DD-EE-FF", "0a:bb:cc:dd:ee:ff"), ("01:00:5e:00:00:01", None),
     ("00:00:00:00:00:00", None), ("nonsense", None), (" 02:00:00:00:00:01 ", "02:00:00:00:00:01")],
    ids=["multicast-bit", "dashes-upper", "multicast", "zero", "garbage", "spaces"],
)
def test_normalise_mac(raw: str, expected: str | None) -> None:
    assert vtep.normalise_mac(raw) == expected


def test_published_annotations_win_over_derivation() -> None:
    n = node("node9", "192.168.100.19", "10.244.9.0/24",
             **{vtep.ANNOTATION_VTEP_MAC: "0A:00:00:00:00:09", vtep.ANNOTATION_VTEP_IP: "10.244.9.250"})
    assert vtep.node_vtep_mac(n) == "0a:00:00:00:00:09"
    assert vtep.node_vtep_ip(n) == IPv4Address("10.244.9.250")


def test_invalid_annotations_fall_back_to_derivation() -> None:
    n = node("node9", "192.168.100.19", "10.244.9.0/24",
             **{vtep.ANNOTATION_VTEP_MAC: "ff:ff:ff:ff:ff:ff", vtep.ANNOTATION_VTEP_IP: "not-an-ip"})
    assert vtep.node_vtep_mac(n) == vtep.vtep_mac_for("node9")
    assert vtep.node_vtep_ip(n) == IPv4Address("10.244.9.0")


def test_desired_peers_skip_self_and_incomplete_nodes() -> None:
    no_cidr = node("node4", "192.168.100.14", None)
    no_ip = node("node5", None, "10.244.5.0/24")
    v6_only = node("node6", "fd00::6", "fd00:10:244:6::/64")
    peers = desired_peers("node1", [N3, N1, N2, no_cidr, no_ip, v6_only])
    assert sorted(peers) == ["node2", "node3"]
    assert peers["node2"] == Peer("node2", IPv4Address("192.168.100.12"), IPv4Network("10.244.2.0/24"),
                                  IPv4Address("10.244.2.0"), vtep.vtep_mac_for("node2"))


def test_duplicate_pod_cidr_first_name_wins() -> None:
    dup = node("node0", "192.168.100.10", "10.244.2.0/24")
    assert sorted(desired_peers("node1", [N2, dup])) == ["node0"]


def test_diff_peers_changed_node_is_removed_and_added() -> None:
    before = desired_peers("node1", [N2, N3])
    moved = node("node3", "192.168.100.33", "10.244.3.0/24")
    after = desired_peers("node1", [N2, moved])
    d = diff_peers(before, after)
    assert [p.node_ip for p in d.remove] == [IPv4Address("192.168.100.13")]
    assert [p.node_ip for p in d.add] == [IPv4Address("192.168.100.33")]
    assert diff_peers(after, after).empty


def test_vxlan_entries_and_plan() -> None:
    peers = desired_peers("node1", [N1, N2, N3]).values()
    desired = vxlan_entries(peers)
    m2 = vtep.vtep_mac_for("node2")
    assert FdbEntry(m2, IPv4Address("192.168.100.12")) in desired.fdb
    assert NeighEntry(IPv4Address("10.244.2.0"), m2) in desired.neigh
    assert RouteEntry(IPv4Network("10.244.2.0/24"), IPv4Address("10.244.2.0"), onlink=True) in desired.routes
    stale = FdbEntry("0a:00:00:00:00:99", IPv4Address("192.168.100.99"))
    observed = OverlayEntries(fdb=frozenset({stale, FdbEntry(m2, IPv4Address("192.168.100.12"))}))
    remove, add = plan(observed, desired)
    assert remove.lines() == [str(stale)]
    assert len(add.fdb) == 1 and len(add.neigh) == 2 and len(add.routes) == 2


class FakeKernel:
    """Holds entries per link index like the kernel would; records the VXLAN spec it was given."""

    def __init__(self, links: dict[IPv4Address, LinkView]) -> None:
        self.by_addr = links
        self.entries: dict[int, OverlayEntries] = {}
        self.vxlan: VxlanSpec | None = None
        self.applied = 0

    def link_of_address(self, addr: IPv4Address) -> LinkView | None:
        return self.by_addr.get(addr)

    def link_by_name(self, name: str) -> LinkView | None:
        return LinkView(99, name, 1450) if self.vxlan and self.vxlan.name == name else None

    def ensure_vxlan(self, spec: VxlanSpec) -> LinkView:
        self.vxlan = spec
        return LinkView(99, spec.name, spec.mtu)

    def delete_link(self, name: str) -> bool:
        gone = self.vxlan is not None
        self.vxlan = None
        self.entries.pop(99, None)
        return gone

    def observe(self, index: int, *, fdb_and_neigh: bool) -> OverlayEntries:
        return self.entries.get(index, OverlayEntries())

    def apply(self, index: int, remove: OverlayEntries, add: OverlayEntries) -> None:
        self.applied += 1
        cur = self.entries.get(index, OverlayEntries())
        self.entries[index] = OverlayEntries(
            fdb=(cur.fdb - remove.fdb) | add.fdb,
            neigh=(cur.neigh - remove.neigh) | add.neigh,
            routes=(cur.routes - remove.routes) | add.routes,
        )

    def delete_routes(self) -> int:
        n = sum(len(e.routes) for e in self.entries.values())
        self.entries = {i: OverlayEntries(e.fdb, e.neigh) for i, e in self.entries.items()}
        return n


UNDERLAY = {IPv4Address("192.168.100.11"): LinkView(2, "eth0", 1500)}


def sync(ctrl: overlay.OverlayController, nodes: Sequence[Node]) -> None:
    ctrl.sync(next((n for n in nodes if n.name == "node1"), None), nodes)


def test_vxlan_controller_programs_peers_and_removes_a_gone_node() -> None:
    k = FakeKernel(UNDERLAY)
    ctrl = overlay.make_overlay("vxlan", node_name="node1", kernel=k)
    sync(ctrl, [N1, N2, N3])
    assert k.vxlan == VxlanSpec("pynet-vxlan", 1, 8472, IPv4Address("192.168.100.11"), 2, 1450,
                                vtep.vtep_mac_for("node1"), IPv4Address("10.244.1.0"))
    assert {r.dst for r in k.entries[99].routes} == {IPv4Network("10.244.2.0/24"), IPv4Network("10.244.3.0/24")}
    assert ctrl.local_annotations() == {vtep.ANNOTATION_VTEP_MAC: vtep.vtep_mac_for("node1"),
                                        vtep.ANNOTATION_VTEP_IP: "10.244.1.0"}
    applied = k.applied
    sync(ctrl, [N1, N2, N3])
    assert k.applied == applied, "an unchanged cluster must not touch the kernel"
    sync(ctrl, [N1, N2])
    assert k.entries[99].lines() == vxlan_entries(desired_peers("node1", [N2]).values()).lines()
    ctrl.cleanup()
    assert k.vxlan is None


def test_vxlan_controller_without_local_node_keeps_existing_device_in_sync() -> None:
    k = FakeKernel(UNDERLAY)
    ctrl = overlay.make_overlay("vxlan", node_name="node1", kernel=k)
    ctrl.sync(None, [N2])
    assert k.vxlan is None and not k.entries  # no device to program yet
    sync(ctrl, [N1, N2])
    ctrl.sync(None, [N3])
    assert {r.dst for r in k.entries[99].routes} == {IPv4Network("10.244.3.0/24")}


def test_vxlan_controller_node_ip_on_no_link_is_an_error() -> None:
    ctrl = overlay.make_overlay("vxlan", node_name="node1", kernel=FakeKernel({}))
    with pytest.raises(OverlayError, match="on no link"):
        sync(ctrl, [N1, N2])


def test_hostgw_controller_routes_via_node_ips() -> None:
    k = FakeKernel(UNDERLAY)
    ctrl = overlay.make_overlay("host-gw", node_name="node1", kernel=k)
    sync(ctrl, [N1, N2, N3])
    assert k.entries[2].lines() == [
        "route 10.244.2.0/24 via 192.168.100.12",
        "route 10.244.3.0/24 via 192.168.100.13",
    ]
    assert k.vxlan is None and ctrl.local_annotations() == {}
    sync(ctrl, [N1, N3])
    assert k.entries[2].lines() == ["route 10.244.3.0/24 via 192.168.100.13"]
    ctrl.cleanup()
    assert not k.entries[2].routes


def test_make_overlay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown overlay"):
        overlay.make_overlay("geneve", node_name="n")
    with pytest.raises(ValueError, match="VNI"):
        overlay.make_overlay("vxlan", node_name="n", vni=0, kernel=FakeKernel({}))
    none = overlay.make_overlay("none", node_name="n")
    none.sync(None, [N1])
    assert none.local_annotations() == {}
