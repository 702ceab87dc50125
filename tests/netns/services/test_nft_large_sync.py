"""The nftables backend's large-transaction path against the real kernel, in a throwaway netns:
a full sync big enough (>= EXTERNAL_OPS operations) goes to a short-lived ``nft -f -`` process
instead of the in-process libnftables, and the kernel ends up with exactly the ruleset the same
state renders through the in-process path (compared as ``nft list table`` text); then a partial
sync (one endpoint moved) runs in-process on top of it and shows up in the kernel."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

from pynet.testing.netns import TestNetns
from pynet.testing.services import VENV_PYTHON

SERVICES = 1500  # 3 endpoints each: well over EXTERNAL_OPS operations in one full sync

SCRIPT = textwrap.dedent(
    f"""
    import json, sys
    from dataclasses import replace
    from ipaddress import ip_address
    from types import MappingProxyType
    sys.path.insert(0, sys.argv[2])  # bench/: the benchmark's state builder
    from nft_bench import build_state
    from pynet.nft import Nft, runner
    from pynet.proxy.backends.nftables import NftablesBackend

    external = []
    original = Nft._external
    def spy(self, tx):
        external.append(len(tx))
        return original(self, tx)
    Nft._external = spy

    mode = sys.argv[1]
    if mode == "in-process":
        runner.EXTERNAL_OPS = None
    state = build_state({SERVICES})
    backend = NftablesBackend(stale_chain_linger=0)
    backend.setup()
    backend.sync(state, frozenset(), True)
    out = {{"external": list(external), "ops_threshold": runner.EXTERNAL_OPS}}
    if mode == "external":
        first = next(iter(state.services))
        eps = dict(state.endpoints)
        eps[first] = (replace(eps[first][0], ip=ip_address("10.250.0.9")),)
        moved = replace(state, endpoints=MappingProxyType(eps))
        backend.sync(moved, frozenset({{first.service}}), False)
        out["after_partial"] = list(external)
    print(json.dumps(out))
    """
)


def test_large_full_sync_goes_through_nft_f_and_matches_in_process(
    make_netns: Callable[..., TestNetns], repo_root: Path
) -> None:
    tables: dict[str, str] = {}
    for mode in ("in-process", "external"):
        ns = make_netns("nftbig")
        res = ns.run(VENV_PYTHON, "-c", SCRIPT, mode, str(repo_root / "bench"), timeout=240)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        if mode == "external":
            assert len(out["external"]) == 1 and out["external"][0] >= out["ops_threshold"], out
            assert out["after_partial"] == out["external"], "a one-endpoint partial sync must stay in-process"
        else:
            assert out["external"] == [], out
        tables[mode] = ns.run("nft", "list", "table", "ip", "pynet", timeout=120).stdout
    external_text = tables["external"]
    # the partial sync moved the first service's endpoints to 10.250.0.9 only
    assert "dnat to 10.250.0.9:8080" in external_text
    assert "dnat to 10.250.0.9:8080" not in tables["in-process"]
    assert external_text.count("10.96.") == tables["in-process"].count("10.96.")
    assert tables["in-process"].count("dnat to") == 3 * SERVICES
    assert external_text.count("dnat to") == 3 * SERVICES - 2
