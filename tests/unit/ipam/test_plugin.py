"""The pynet-ipam entry point through the shared skel, with a dict environment and byte buffers:
every command, result shapes per version, and errors as the spec's JSON. Also pins the public API
and keeps the import path free of pyroute2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ipam_helpers import make_conf

import pynet.cni.ipam
from pynet.cni.ipam.plugin import ABOUT, FUNCS
from pynet.cni.skel import plugin_main
from pynet.cni.version import SUPPORTED


def run(command: str, conf: dict[str, Any] | bytes, cid: str = "c1", ifname: str = "eth0",
        cni_args: str = "") -> tuple[int, dict[str, Any] | None]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": "/proc/self/ns/net",
           "CNI_IFNAME": ifname, "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": cni_args}
    raw = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    out, err = io.StringIO(), io.StringIO()
    rc = plugin_main(FUNCS, SUPPORTED, ABOUT, environ=env, stdin=io.BytesIO(raw), stdout=out, stderr=err)
    text = out.getvalue().strip()
    return rc, json.loads(text) if text else None


@pytest.mark.parametrize(
    ("version", "entry"),
    [("0.3.1", {"version": "4", "address": "10.4.0.2/24", "gateway": "10.4.0.1"}),
     ("0.4.0", {"version": "4", "address": "10.4.0.2/24", "gateway": "10.4.0.1"}),
     ("1.0.0", {"address": "10.4.0.2/24", "gateway": "10.4.0.1"}),
     ("1.1.0", {"address": "10.4.0.2/24", "gateway": "10.4.0.1"})],
)
def test_add_result_per_version(tmp_path: Path, version: str, entry: dict[str, str]) -> None:
    rc, out = run("ADD", make_conf(tmp_path, [{"subnet": "10.4.0.0/24"}], version=version))
    assert rc == 0 and out == {"cniVersion": version, "ips": [entry]}


def test_legacy_020_result(tmp_path: Path) -> None:
    rc, out = run("ADD", make_conf(tmp_path, [{"subnet": "10.4.0.0/24"}], version="0.2.0",
                                   routes=[{"dst": "0.0.0.0/0"}]))
    assert rc == 0 and out == {"cniVersion": "0.2.0",
                               "ip4": {"ip": "10.4.0.2/24", "gateway": "10.4.0.1", "routes": [{"dst": "0.0.0.0/0"}]}}


def test_full_lifecycle(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, [{"subnet": "10.4.0.0/30"}], version="1.1.0")
    assert run("STATUS", conf) == (0, None)
    assert run("ADD", conf)[0] == 0
    assert run("CHECK", conf) == (0, None)
    rc, out = run("STATUS", conf)  # /30: the one address is taken
    assert rc == 1 and out is not None and out["code"] == 50
    rc, out = run("ADD", conf, cid="c2")
    assert rc == 1 and out is not None and out["code"] == 11 and "no free IP address" in out["msg"]
    assert run("DEL", conf) == (0, None)
    assert run("DEL", conf) == (0, None)
    rc, out = run("CHECK", conf)
    assert rc == 1 and out is not None and "no IP address is allocated to c1/eth0" in out["msg"]
    assert run("ADD", conf, cid="c3")[0] == 0
    assert run("GC", dict(conf, **{"cni.dev/valid-attachments": []})) == (0, None)
    assert not (tmp_path / "net1" / "10.4.0.2").exists()


@pytest.mark.parametrize(
    ("raw", "env_overrides", "code"),
    [
        (b"{not json", {}, 6),
        (b'{"cniVersion": "1.0.0", "name": "n", "type": "pynet-ipam"}', {}, 7),
        (b'{"cniVersion": "9.9.9", "name": "n", "ipam": {}}', {}, 1),
        (None, {"cid": "../../etc"}, 4),
        (None, {"ifname": "a-very-long-interface-name"}, 4),
        (None, {"cni_args": "BOGUS=1"}, 4),
    ],
    ids=["bad-json", "no-ipam", "bad-version", "cid-path", "long-ifname", "unknown-cni-arg"],
)
def test_bad_input_gets_spec_errors_and_changes_nothing(tmp_path: Path, raw: bytes | None,
                                                        env_overrides: dict[str, str], code: int) -> None:
    conf: dict[str, Any] | bytes = raw if raw is not None else make_conf(tmp_path, [{"subnet": "10.4.0.0/24"}])
    rc, out = run("ADD", conf, **env_overrides)
    assert rc == 1 and out is not None and out["code"] == code and out["msg"]
    assert not any(tmp_path.iterdir())


def test_public_api_is_pinned() -> None:
    assert sorted(pynet.cni.ipam.__all__) == [
        "DEFAULT_DATA_DIR", "DEFAULT_POD_CIDR_FILE", "FileStore", "IpamConfig", "MemStore", "Owner",
        "Store", "ipam_add", "ipam_check", "ipam_command", "ipam_del", "ipam_gc", "ipam_status", "load_ipam_config"]


def test_import_path_is_stdlib_only() -> None:
    code = ("import sys, pynet.cni.ipam.plugin; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'kubernetes', 'nftables', 'yaml')]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_in_process_command_matches_delegate_shape(tmp_path: Path) -> None:
    from pynet.cni.ipam import ipam_command
    from pynet.cni.skel import CmdArgs

    conf = make_conf(tmp_path, [{"subnet": "10.4.0.0/24"}])
    args = CmdArgs(command="ADD", container_id="c9", netns="/proc/self/ns/net", ifname="eth0", args="",
                   path=(), stdin=b"", conf=conf, cni_version="1.0.0")
    res = ipam_command("ADD", args)
    assert res is not None and [str(i.address) for i in res.ips] == ["10.4.0.2/24"]
    assert ipam_command("CHECK", args) is None
    assert ipam_command("DEL", args) is None
    assert not (tmp_path / "net1" / "10.4.0.2").exists()
