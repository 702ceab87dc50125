"""The launcher copied out of the checkout (as install-cni does), and the three ways of reaching
into a pod namespace (InThread, Forking, Broker) doing the same work without moving the caller."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pynet.testing.cni import REPO_ROOT, bridge_conf, run_plugin
from pynet.testing.netns import STANDARD_PATH, TestNetns


def test_launcher_copied_to_a_bin_dir(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    bin_dir = tmp_path / "opt-cni-bin"
    bin_dir.mkdir()
    for name in ("pynet", "pynet-ipam"):
        text = (REPO_ROOT / "cni-bin" / name).read_text().replace("@PYNET_HOME@", str(REPO_ROOT))
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    shutil.copy("/usr/lib/cni/portmap", bin_dir / "portmap")
    env = {"PATH": STANDARD_PATH, "CNI_COMMAND": "VERSION"}
    proc = subprocess.run([str(bin_dir / "pynet")], input=b"{}", env=env, capture_output=True, check=False)
    assert proc.returncode == 0 and "1.1.0" in json.loads(proc.stdout)["supportedVersions"], proc.stderr
    node, pod = make_netns("cnode"), make_netns("cpod")
    conf = bridge_conf("copied", "10.79.1.0/24", tmp_path / "ipam")
    add = run_plugin(node, "ADD", conf, "ctr-c", pod.path, plugin=str(bin_dir / "pynet"), cni_path=str(bin_dir))
    assert add.ok and add.out["ips"][0]["address"] == "10.79.1.2/24", add
    assert run_plugin(node, "DEL", conf, "ctr-c", pod.path, plugin=str(bin_dir / "pynet"), cni_path=str(bin_dir)).ok


@pytest.mark.parametrize("strategy", ["InThread", "Forking", "Broker"])
def test_nsexec_strategies(make_netns: Callable[..., TestNetns], strategy: str) -> None:
    pod = make_netns("cpod")
    pod.run("ip", "link", "add", "marker0", "type", "veth", "peer", "name", "marker1")
    code = f"""
import os, sys
sys.path.insert(0, {str(REPO_ROOT / 'src')!r})
from pynet.netlink import nsexec
from pynet.netlink.handle import iproute
before = os.readlink("/proc/thread-self/ns/net")
ex = nsexec.{strategy}()
with iproute({pod.path!r}, nsexec=ex, sysctls={{"net.ipv4.conf.marker0.arp_notify": "1"}}) as ipr:
    names = sorted(l.get("ifname") for l in ipr.get_links())
assert os.readlink("/proc/thread-self/ns/net") == before
try:
    ex.netlink_socket("/run/netns/does-not-exist")
except Exception as err:
    print("missing:", type(err).__name__)
if hasattr(ex, "close"):
    ex.close()
print(",".join(names))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "lo,marker0,marker1" in proc.stdout and "missing: NetnsNotFound" in proc.stdout
    assert pod.run("sysctl", "-n", "net.ipv4.conf.marker0.arp_notify").stdout.strip() == "1"
