"""The three overlay controllers: VXLAN (flannel's design), host-gw, and none.

Each sync is: compute the desired entries from the Nodes (pure, :mod:`pynet.overlay.peers` and
:mod:`pynet.overlay.entries`), observe what the kernel holds, apply the difference. Nothing is kept
in memory between syncs except the local identity to publish, so a restarted agent converges.

Hazards: the local Node may be missing (not yet in the manifests / API). Then the VXLAN device cannot
be made (its ``local`` address is the node IP), so the sync only reconciles the peers of an existing
device and otherwise does nothing; the next sync with the Node fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from pynet._log import get_logger
from pynet.overlay.base import VXLAN_OVERHEAD, Kernel, LinkView, OverlayError, VxlanSpec
from pynet.overlay.entries import OverlayEntries, hostgw_entries, plan, vxlan_entries
from pynet.overlay.peers import desired_peers
from pynet.overlay.vtep import (
    ANNOTATION_VTEP_IP,
    ANNOTATION_VTEP_MAC,
    first_ipv4,
    node_vtep_ip,
    node_vtep_mac,
    vtep_mac_for,
)
from pynet.proxy.model import Node

__all__ = ["HostGwOverlay", "NoOverlay", "VxlanOverlay"]

log = get_logger("pynet.overlay")


def _reconcile(kernel: Kernel, link: LinkView, desired: OverlayEntries, *, fdb_and_neigh: bool, mode: str) -> None:
    observed = kernel.observe(link.index, fdb_and_neigh=fdb_and_neigh)
    remove, add = plan(observed, desired)
    if remove.empty and add.empty:
        return
    log.info(
        "overlay reconcile",
        extra={"kv": {"mode": mode, "link": link.name, "remove": len(remove.lines()), "add": len(add.lines())}},
    )
    log.debug("overlay changes remove=%s add=%s", remove.lines(), add.lines())
    kernel.apply(link.index, remove, add)


class VxlanOverlay:
    """VXLAN device + per-peer FDB, neighbour and onlink route."""

    mode = "vxlan"

    def __init__(self, kernel: Kernel, *, node_name: str, device: str, vni: int, port: int) -> None:
        self._kernel = kernel
        self._node_name = node_name
        self._device = device
        self._vni = vni
        self._port = port
        self._annotations: dict[str, str] = {ANNOTATION_VTEP_MAC: vtep_mac_for(node_name)}

    def _device_spec(self, local: Node) -> VxlanSpec | None:
        node_ip = first_ipv4(local.addresses)
        vtep_ip = node_vtep_ip(local)
        if node_ip is None or vtep_ip is None:
            log.warning("local node has no IPv4 address or pod CIDR yet", extra={"kv": {"node": local.name}})
            return None
        underlay = self._kernel.link_of_address(node_ip)
        if underlay is None:
            raise OverlayError(f"node address {node_ip} of {local.name} is on no link of this namespace")
        return VxlanSpec(
            name=self._device, vni=self._vni, port=self._port, local=node_ip, underlay_index=underlay.index,
            mtu=underlay.mtu - VXLAN_OVERHEAD, mac=node_vtep_mac(local), address=vtep_ip,
        )

    def sync(self, local: Node | None, nodes: Sequence[Node]) -> None:
        spec = self._device_spec(local) if local is not None else None
        if spec is not None:
            link: LinkView | None = self._kernel.ensure_vxlan(spec)
            self._annotations = {ANNOTATION_VTEP_MAC: spec.mac, ANNOTATION_VTEP_IP: str(spec.address)}
        else:
            link = self._kernel.link_by_name(self._device)
        if link is None:
            return
        peers = desired_peers(self._node_name, nodes)
        _reconcile(self._kernel, link, vxlan_entries(peers.values()), fdb_and_neigh=True, mode=self.mode)

    def local_annotations(self) -> dict[str, str]:
        return dict(self._annotations)

    def cleanup(self) -> None:
        # the device's FDB, neighbours and routes go with it
        self._kernel.delete_link(self._device)


class HostGwOverlay:
    """Routes to every other node's pod CIDR via its node address, over the underlay link."""

    mode = "host-gw"

    def __init__(self, kernel: Kernel, *, node_name: str) -> None:
        self._kernel = kernel
        self._node_name = node_name

    def sync(self, local: Node | None, nodes: Sequence[Node]) -> None:
        node_ip: IPv4Address | None = first_ipv4(local.addresses) if local is not None else None
        if node_ip is None:
            log.warning("local node unknown or without IPv4 address; host-gw waits", extra={"kv": {"node": self._node_name}})
            return
        underlay = self._kernel.link_of_address(node_ip)
        if underlay is None:
            raise OverlayError(f"node address {node_ip} is on no link of this namespace")
        peers = desired_peers(self._node_name, nodes)
        _reconcile(self._kernel, underlay, hostgw_entries(peers.values()), fdb_and_neigh=False, mode=self.mode)

    def local_annotations(self) -> dict[str, str]:
        return {}

    def cleanup(self) -> None:
        self._kernel.delete_routes()


class NoOverlay:
    """``--overlay none``: services only; the cluster's routing is someone else's job."""

    mode = "none"

    def sync(self, local: Node | None, nodes: Sequence[Node]) -> None:
        return None

    def local_annotations(self) -> dict[str, str]:
        return {}

    def cleanup(self) -> None:
        return None
