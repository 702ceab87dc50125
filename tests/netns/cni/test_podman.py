"""A real runtime calls pynet: podman 4 (CNI backend) runs busybox containers on a network whose
conflist uses the main plugin ``pynet`` with ``pynet-ipam`` (cniVersion 1.0.0, as podman requires),
and on one using the reference ``bridge`` with ``pynet-ipam``.

Covers: the address podman's container sees on eth0 comes from pynet-ipam's range; the allocation
record on disk names podman's container id and eth0; two containers get distinct addresses and reach
each other and the gateway; ``podman rm`` runs CNI DEL and frees the records; nothing changes in
the root network namespace or the machine's podman/CNI state directories
(:func:`pynet.testing.podman.root_netns_snapshot`).
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pynet.testing.netns import TestNetns
from pynet.testing.plugin import REPO_ROOT
from pynet.testing.podman import PodmanSandbox, root_netns_snapshot

CNI_DIRS = [str(REPO_ROOT / "cni-bin"), "/usr/lib/cni"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[PodmanSandbox]:
    before = root_netns_snapshot()
    with tempfile.TemporaryDirectory(prefix="pynet-podman-") as tmp:
        node = TestNetns.create("podn")
        try:
            with PodmanSandbox(Path(tmp), node, CNI_DIRS) as sb:
                sb.build_busybox_image()
                yield sb
        finally:
            node.destroy()
    after = root_netns_snapshot()
    assert {k: v for k, v in after.items() if before[k] != v} == {}, "podman changed the machine"


def network(name: str, plugin: dict[str, Any], data_dir: Path, subnet: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "plugins": [{
        **plugin,
        "ipam": {"type": "pynet-ipam", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }]}


def eth0_address(sb: PodmanSandbox, container: str) -> str:
    out = sb.podman("exec", container, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    m = re.search(r"inet (\S+)", out)
    assert m, out
    return m.group(1)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def records(data_dir: Path, net: str) -> dict[str, str]:
    d = data_dir / net
    return {p.name: p.read_bytes().decode() for p in d.iterdir() if _is_ip(p.name)} if d.exists() else {}


@pytest.mark.parametrize(
    ("main_plugin", "subnet", "gateway"),
    [({"type": "pynet", "bridge": "pnpod0", "isGateway": True, "ipMasq": True}, "10.91.0.0/24", "10.91.0.1"),
     ({"type": "bridge", "bridge": "pnref0", "isGateway": True}, "10.92.0.0/24", "10.92.0.1")],
    ids=["pynet+pynet-ipam", "reference-bridge+pynet-ipam"],
)
def test_podman_containers_get_addresses_from_pynet(sandbox: PodmanSandbox, tmp_path: Path,
                                                    main_plugin: dict[str, Any], subnet: str, gateway: str) -> None:
    net = f"pn-{main_plugin['type']}"
    data = tmp_path / "ipam"
    sandbox.write_network(network(net, main_plugin, data, subnet))
    prefix = subnet.rsplit(".", 1)[0]
    ids = {name: sandbox.run_container(name, net, "sleep", "120") for name in (f"{net}-a", f"{net}-b")}
    try:
        addrs = {name: eth0_address(sandbox, name) for name in ids}
        assert sorted(addrs.values()) == [f"{prefix}.2/24", f"{prefix}.3/24"]
        # the records on disk name podman's container ids and eth0
        assert records(data, net) == {a.split("/")[0]: f"{ids[n]}\r\neth0" for n, a in addrs.items()}
        a, b = ids
        sandbox.podman("exec", a, "ping", "-c", "1", "-W", "2", addrs[b].split("/")[0])
        sandbox.podman("exec", b, "ping", "-c", "1", "-W", "2", gateway)
        route = sandbox.podman("exec", a, "ip", "-4", "route", "show", "default").stdout
        assert f"via {gateway}" in route
    finally:
        sandbox.podman("rm", "--force", "--time", "0", *ids, check=False)
    # podman rm ran CNI DEL: every allocation is gone, the bookkeeping files stay
    assert records(data, net) == {}
    assert not list((data / net / "by-owner").iterdir())
