"""skel: env table, stdin decoding, version gates, result shapes and error JSON, with injected stdio."""

from __future__ import annotations

import doctest
import io
import json
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

import pytest

from pynet.cni import skel, version
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.skel import CmdArgs, PluginFuncs, plugin_main
from pynet.cni.types import DNS, Interface, IPConfig, Result, Route

RESULT = Result(
    interfaces=(Interface("eth0", "aa:bb:cc:dd:ee:ff", "/run/netns/x", mtu=1400),),
    ips=(IPConfig(ip_interface("10.1.0.5/24"), ip_address("10.1.0.1"), 0),
         IPConfig(ip_interface("fd00::5/64"), None, 0)),
    routes=(Route(ip_network("0.0.0.0/0"), ip_address("10.1.0.1"), mtu=1400),),
    dns=DNS(nameservers=("10.96.0.10",)),
)


class Recorder:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[CmdArgs] = []
        self.fail = fail

    def _call(self, args: CmdArgs) -> None:
        self.calls.append(args)
        if self.fail:
            raise self.fail

    def add(self, args: CmdArgs) -> Result:
        self._call(args)
        return RESULT

    def funcs(self) -> PluginFuncs:
        return PluginFuncs(add=self.add, delete=self._call, check=self._call, gc=self._call, status=self._call)


def env(command: str, **over: str) -> dict[str, str]:
    base = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c0ffee", "CNI_NETNS": "/run/netns/pod",
            "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni", "CNI_ARGS": "IgnoreUnknown=1"}
    base.update(over)
    return {k: v for k, v in base.items() if v != "-"}


def conf(ver: str = "1.0.0", **extra: Any) -> bytes:
    return json.dumps({"cniVersion": ver, "name": "n", "type": "pynet", **extra}).encode()


def run(environ: dict[str, str], stdin: bytes, rec: Recorder | None = None) -> tuple[int, Any]:
    rec = rec or Recorder()
    out, err = io.StringIO(), io.StringIO()
    code = plugin_main(rec.funcs(), version.SUPPORTED, "pynet test", environ=environ, stdin=io.BytesIO(stdin),
                       stdout=out, stderr=err)
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else None


def test_doctests() -> None:
    assert doctest.testmod(skel).failed == 0
    assert doctest.testmod(version).failed == 0


def test_add_passes_cmdargs_and_prints_result() -> None:
    rec = Recorder()
    code, out = run(env("ADD"), conf("1.0.0"), rec)
    assert code == 0
    (args,) = rec.calls
    assert (args.command, args.container_id, args.netns, args.ifname) == ("ADD", "c0ffee", "/run/netns/pod", "eth0")
    assert args.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert args.conf["name"] == "n" and args.cni_version == "1.0.0"
    assert args.environ["CNI_ARGS"] == "IgnoreUnknown=1"
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"] == [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}]
    assert out["ips"][0] == {"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    assert out["dns"] == {"nameservers": ["10.96.0.10"]}


@pytest.mark.parametrize(
    ("ver", "expect_version_key", "expect_route_mtu", "expect_iface_mtu"),
    [("0.3.1", True, False, False), ("0.4.0", True, False, False), ("1.0.0", False, False, False),
     ("1.1.0", False, True, True)],
)
def test_result_shape_per_version(ver: str, expect_version_key: bool, expect_route_mtu: bool,
                                  expect_iface_mtu: bool) -> None:
    code, out = run(env("ADD"), conf(ver))
    assert code == 0 and out["cniVersion"] == ver
    assert ("version" in out["ips"][0]) is expect_version_key
    if expect_version_key:
        assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert ("mtu" in out["routes"][0]) is expect_route_mtu
    assert ("mtu" in out["interfaces"][0]) is expect_iface_mtu


def test_legacy_020_shape_roundtrips() -> None:
    code, out = run(env("ADD"), conf("0.2.0"))
    assert code == 0
    assert out["ip4"] == {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]}
    assert out["ip6"] == {"ip": "fd00::5/64"}
    back = Result.from_dict(out)
    assert [str(i.address) for i in back.ips] == ["10.1.0.5/24", "fd00::5/64"]


@pytest.mark.parametrize("ver", ["0.4.0", "1.0.0", "1.1.0"])
def test_result_roundtrip(ver: str) -> None:
    again = Result.from_dict(RESULT.to_dict(ver))
    assert again.ips == RESULT.ips and again.interfaces[0].mac == "aa:bb:cc:dd:ee:ff"
    assert again.to_dict(ver) == RESULT.to_dict(ver)


@pytest.mark.parametrize("stdin", [b"", b'{"cniVersion": "1.1.0"}'])
def test_version_command(stdin: bytes) -> None:
    code, out = run({"CNI_COMMAND": "VERSION"}, stdin)
    assert code == 0
    assert out == {"cniVersion": "1.1.0", "supportedVersions": list(version.SUPPORTED)}
    assert {"0.4.0", "1.0.0", "1.1.0"} <= set(out["supportedVersions"])


def test_version_echoes_supported_config_version() -> None:
    assert run({"CNI_COMMAND": "VERSION"}, conf("0.4.0"))[1]["cniVersion"] == "0.4.0"


BAD = [
    # (id, env, stdin, code, fragment of msg)
    ("no-command", env("-"), conf(), ErrCode.INVALID_ENV, "CNI_COMMAND is missing"),
    ("unknown-command", env("FROB"), conf(), ErrCode.INVALID_ENV, "unknown"),
    ("malformed-json", env("ADD"), b'{"cniVersion": "1.0.0",', ErrCode.DECODE, "not valid JSON"),
    ("json-not-object", env("ADD"), b"[1, 2]", ErrCode.DECODE, "not a JSON object"),
    ("empty-stdin", env("ADD"), b"", ErrCode.DECODE, "no network configuration"),
    ("missing-netns", env("ADD", CNI_NETNS="-"), conf(), ErrCode.INVALID_ENV, "CNI_NETNS"),
    ("missing-containerid", env("DEL", CNI_CONTAINERID="-"), conf(), ErrCode.INVALID_ENV, "CNI_CONTAINERID"),
    ("missing-ifname", env("CHECK", CNI_IFNAME="-"), conf(), ErrCode.INVALID_ENV, "CNI_IFNAME"),
    ("missing-path", env("ADD", CNI_PATH="-"), conf(), ErrCode.INVALID_ENV, "CNI_PATH"),
    ("ifname-too-long", env("ADD", CNI_IFNAME="a" * 16), conf(), ErrCode.INVALID_ENV, "longer than 15"),
    ("ifname-slash", env("ADD", CNI_IFNAME="et/h0"), conf(), ErrCode.INVALID_ENV, "'/'"),
    ("ifname-dot", env("DEL", CNI_IFNAME=".."), conf(), ErrCode.INVALID_ENV, "reserved"),
    ("containerid-path", env("ADD", CNI_CONTAINERID="../../etc"), conf(), ErrCode.INVALID_ENV, "CNI_CONTAINERID"),
    ("containerid-slash", env("DEL", CNI_CONTAINERID="a/b"), conf(), ErrCode.INVALID_ENV, "CNI_CONTAINERID"),
    ("unsupported-version", env("ADD"), conf("9.9.9"), ErrCode.INCOMPATIBLE_VERSION, "incompatible"),
    ("garbage-version", env("ADD"), conf("one"), ErrCode.DECODE, "cniVersion"),
    ("check-too-old", env("CHECK"), conf("0.3.1"), ErrCode.INCOMPATIBLE_VERSION, "does not allow CHECK"),
    ("gc-too-old", env("GC"), conf("1.0.0"), ErrCode.INCOMPATIBLE_VERSION, "does not allow GC"),
    ("status-too-old", env("STATUS"), conf("1.0.0"), ErrCode.INCOMPATIBLE_VERSION, "does not allow STATUS"),
]


@pytest.mark.parametrize(("environ", "stdin", "code", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gives_spec_error_and_calls_nothing(environ: dict[str, str], stdin: bytes, code: int,
                                                      fragment: str) -> None:
    rec = Recorder()
    rc, out = run(environ, stdin, rec)
    assert rc == 1
    assert rec.calls == []
    assert out["code"] == code
    assert fragment in out["msg"]
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert out["cniVersion"] in version.SUPPORTED


def test_error_speaks_config_version() -> None:
    rc, out = run(env("ADD", CNI_IFNAME="x" * 20), conf("0.4.0"))
    assert rc == 1 and out["cniVersion"] == "0.4.0"


def test_cni_error_from_command_keeps_code() -> None:
    rec = Recorder(CniError(ErrCode.TRY_AGAIN_LATER, "busy", "retry"))
    rc, out = run(env("DEL"), conf("1.1.0"), rec)
    assert rc == 1 and out == {"cniVersion": "1.1.0", "code": 11, "msg": "busy", "details": "retry"}


def test_unexpected_exception_is_internal_error() -> None:
    rc, out = run(env("ADD"), conf(), Recorder(RuntimeError("boom")))
    assert rc == 1 and out["code"] == 999 and "boom" in out["msg"]


@pytest.mark.parametrize("cmd", ["DEL", "CHECK", "GC", "STATUS"])
def test_commands_without_output(cmd: str) -> None:
    rec = Recorder()
    rc, out = run(env(cmd, CNI_NETNS="-" if cmd == "DEL" else "/run/netns/pod"), conf("1.1.0"), rec)
    assert rc == 0 and out is None and rec.calls[0].command == cmd


def test_gc_and_status_need_only_path() -> None:
    rc, _ = run({"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, conf("1.1.0"))
    assert rc == 0


def test_cni_args_parsing() -> None:
    assert skel.parse_cni_args("") == {}
    with pytest.raises(CniError) as exc:
        skel.parse_cni_args("novalue")
    assert exc.value.code == ErrCode.INVALID_ENV


def test_result_decode_errors() -> None:
    for bad in ({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}, {"cniVersion": "1.0.0", "ips": "x"}, []):
        with pytest.raises(CniError) as exc:
            Result.from_dict(bad)
        assert exc.value.code == ErrCode.DECODE
