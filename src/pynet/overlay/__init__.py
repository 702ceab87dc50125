"""Node-to-node pod routing: the VXLAN overlay (flannel's design), host-gw routes, or nothing.

Public surface (the agent relies on it)::

    make_overlay(mode, *, node_name, device="pynet-vxlan", vni=1, port=8472) -> OverlayController
    OverlayController.sync(local: Node | None, nodes: Sequence[Node]) -> None   # idempotent
    OverlayController.local_annotations() -> dict[str, str]                    # pynet.io/vtep-mac, -ip
    OverlayController.cleanup() -> None

Controllers act in the CURRENT network namespace through pyroute2 (the agent runs inside the node's
namespace), and raise :class:`OverlayError` when the kernel refuses something.
"""

from __future__ import annotations

from pynet.overlay.base import RTPROT_PYNET, VXLAN_OVERHEAD, Kernel, OverlayController, OverlayError
from pynet.overlay.controllers import HostGwOverlay, NoOverlay, VxlanOverlay
from pynet.overlay.vtep import ANNOTATION_VTEP_IP, ANNOTATION_VTEP_MAC, vtep_mac_for

__all__ = [
    "ANNOTATION_VTEP_IP",
    "ANNOTATION_VTEP_MAC",
    "MODES",
    "RTPROT_PYNET",
    "VXLAN_OVERHEAD",
    "HostGwOverlay",
    "NoOverlay",
    "OverlayController",
    "OverlayError",
    "VxlanOverlay",
    "make_overlay",
    "vtep_mac_for",
]

MODES = ("none", "vxlan", "host-gw")
DEFAULT_DEVICE = "pynet-vxlan"
DEFAULT_VNI = 1
DEFAULT_PORT = 8472


def make_overlay(
    mode: str,
    *,
    node_name: str,
    device: str = DEFAULT_DEVICE,
    vni: int = DEFAULT_VNI,
    port: int = DEFAULT_PORT,
    kernel: Kernel | None = None,
) -> OverlayController:
    """The controller for ``mode`` (``none`` | ``vxlan`` | ``host-gw``); ValueError for others."""
    if mode == "none":
        return NoOverlay()
    if kernel is None:
        from pynet.overlay._kernel import NetlinkOverlay  # pyroute2 only when really needed

        kernel = NetlinkOverlay()
    k: Kernel = kernel
    if mode == "vxlan":
        if not 0 < vni < 2**24:
            raise ValueError(f"VXLAN VNI {vni} out of range 1..16777215")
        if not 0 < port < 65536:
            raise ValueError(f"VXLAN port {port} out of range")
        return VxlanOverlay(k, node_name=node_name, device=device, vni=vni, port=port)
    if mode == "host-gw":
        return HostGwOverlay(k, node_name=node_name)
    raise ValueError(f"unknown overlay mode {mode!r}; choose one of {', '.join(MODES)}")
