"""The masquerade index: a long-lived process (the agent's CNI server) adds a new attachment's
record without listing the table, and lists again whenever its picture may be stale (another
writer bumped the lock file's generation, or the record looks present)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from pynet.testing.cni import REPO_ROOT
from pynet.testing.netns import TestNetns

SCRIPT = r"""
import ipaddress, json, subprocess, sys
sys.path.insert(0, {src!r})
from pynet.cni import masq
masq.LOCK_PATH = {lock!r}
listings = []
real_rules = masq._rules
masq._rules = lambda nft: listings.append(1) or real_rules(nft)
A = [ipaddress.ip_interface("10.88.0.2/24")]
B = [ipaddress.ip_interface("10.88.0.3/24")]
C = [ipaddress.ip_interface("10.88.0.4/24")]
def comments():
    return sorted(masq.list_records())
def step(name, fn):
    before = len(listings)
    fn()
    print(json.dumps([name, len(listings) - before - (1 if name.startswith("check") else 0), comments()]))
step("first setup lists", lambda: masq.setup(A, "n", "a", "eth0"))
step("new record, same generation: no listing", lambda: masq.setup(B, "n", "b", "eth0"))
step("repeat: looks present, so listed", lambda: masq.setup(A, "n", "a", "eth0"))
# another process changes the table under the lock: the generation moves
other = "import sys; sys.path.insert(0, {src!r}); from pynet.cni import masq; masq.LOCK_PATH = {lock!r}; masq.teardown('n', 'b', 'eth0')"
subprocess.run([sys.executable, "-c", other], check=True)
step("after another writer: listed", lambda: masq.setup(B, "n", "b", "eth0"))
# an operator flushes the table without the lock: a remembered record is verified, not trusted
subprocess.run(["nft", "delete", "table", "inet", "pynet-cni"], check=True)
step("after an external flush: listed and re-added", lambda: masq.setup(A, "n", "a", "eth0"))
step("teardown lists (it needs handles)", lambda: masq.teardown("n", "a", "eth0"))
step("new record after teardown: no listing", lambda: masq.setup(C, "n", "c", "eth0"))
"""


def test_masq_index_skips_listing_only_when_safe(make_netns: Callable[..., TestNetns], tmp_path: Path) -> None:
    node = make_netns("cmasq")
    code = SCRIPT.format(src=str(REPO_ROOT / "src"), lock=str(tmp_path / "masq.lock"))
    proc = node.run(sys.executable, "-c", code, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(line) for line in proc.stdout.splitlines()]
    assert steps == [
        ["first setup lists", 1, ["n/a/eth0"]],
        ["new record, same generation: no listing", 0, ["n/a/eth0", "n/b/eth0"]],
        ["repeat: looks present, so listed", 1, ["n/a/eth0", "n/b/eth0"]],
        ["after another writer: listed", 1, ["n/a/eth0", "n/b/eth0"]],
        ["after an external flush: listed and re-added", 1, ["n/a/eth0"]],
        ["teardown lists (it needs handles)", 1, []],
        ["new record after teardown: no listing", 0, ["n/c/eth0"]],
    ], steps
