"""Config parsing, IPAM delegation by exec, the masquerade rule shape, the fast-path wire and the
thin client against a CniServer with injected commands (no root needed)."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pynet.cni import client, delegate, masq, wire
from pynet.cni.config import DEFAULT_BRIDGE, parse_netconf
from pynet.cni.errors import CniError, ErrCode
from pynet.cni.skel import CmdArgs, PluginFuncs
from pynet.cni.types import Result
from pynet.testing.netns import random_suffix


def test_config_defaults_and_keys() -> None:
    conf = parse_netconf({"name": "n", "isDefaultGateway": True, "mtu": 1400, "vxlan": {"vni": 9},
                          "ipam": {"type": "host-local"}}, "1.0.0")
    assert conf.bridge == DEFAULT_BRIDGE and conf.mode == "bridge"
    assert conf.is_gateway and conf.is_default_gateway and conf.mtu == 1400
    assert conf.vxlan is not None and (conf.vxlan.vni, conf.vxlan.port, conf.vxlan.device) == (9, 8472, "pynet-vxlan")
    assert conf.ipam_type == "host-local"


@pytest.mark.parametrize(("conf", "fragment"), [
    ({}, "name is required"),
    ({"name": "n", "mtu": "1400"}, "mtu must be int"),
    ({"name": "n", "mtu": 10}, "between 68"),
    ({"name": "n", "ipMasq": "yes"}, "ipMasq must be bool"),
    ({"name": "n", "isGateway": 1}, "isGateway must be bool"),
    ({"name": "n", "vlan": 5000}, "vlan"),
    ({"name": "n", "mode": "ipvlan"}, "mode must be one of"),
    ({"name": "n", "bridge": "a-bridge-name-too-long"}, "not a valid interface name"),
    ({"name": "n", "vxlan": {"port": 1}}, "vxlan.vni"),
    ({"name": "n", "ipam": {"type": 3}}, "ipam.type"),
], ids=["name", "mtu-type", "mtu-range", "ipmasq", "isgateway", "vlan", "mode", "bridge", "vni", "ipam-type"])
def test_config_errors_are_code_7(conf: dict[str, Any], fragment: str) -> None:
    with pytest.raises(CniError) as exc:
        parse_netconf(conf, "1.0.0")
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG and fragment in exc.value.msg


def _args(tmp_path: Path, conf: dict[str, Any]) -> CmdArgs:
    return CmdArgs("ADD", "ctr", "/run/netns/x", "eth0", "", (str(tmp_path),), json.dumps(conf).encode(), conf,
                   "1.0.0", {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr"})


def _fake_plugin(tmp_path: Path, body: str) -> None:
    exe = tmp_path / "fake-ipam"
    exe.write_text(f"#!{sys.executable}\nimport json, os, sys\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_delegate_execs_plugin_with_env_and_stdin(tmp_path: Path) -> None:
    _fake_plugin(tmp_path, "conf = json.load(sys.stdin)\n"
                 "print(json.dumps({'cniVersion': conf['cniVersion'], 'ips': [{'address': '10.1.2.3/24'}],"
                 " 'dns': {'nameservers': [os.environ['CNI_COMMAND'] + os.environ['CNI_CONTAINERID']]}}))")
    res = delegate.delegate("ADD", "fake-ipam", _args(tmp_path, {"cniVersion": "1.0.0", "name": "n"}))
    assert isinstance(res, Result)
    assert str(res.ips[0].address) == "10.1.2.3/24" and res.dns.nameservers == ("ADDctr",)
    assert delegate.delegate("DEL", "fake-ipam", _args(tmp_path, {"cniVersion": "1.0.0"})) is None


def test_delegate_reraises_plugin_error_code(tmp_path: Path) -> None:
    _fake_plugin(tmp_path, "print(json.dumps({'code': 11, 'msg': 'busy'})); sys.exit(1)")
    with pytest.raises(CniError) as exc:
        delegate.delegate("ADD", "fake-ipam", _args(tmp_path, {}))
    assert (exc.value.code, exc.value.msg) == (11, "busy")


@pytest.mark.parametrize(("command", "code"), [("ADD", ErrCode.INVALID_NETWORK_CONFIG),
                                               ("STATUS", ErrCode.PLUGIN_NOT_AVAILABLE)])
def test_delegate_missing_plugin(tmp_path: Path, command: str, code: int) -> None:
    with pytest.raises(CniError) as exc:
        delegate.delegate(command, "no-such-ipam", _args(tmp_path, {}))
    assert exc.value.code == code


def test_masq_rule_shape() -> None:
    from ipaddress import ip_interface

    rule = masq._rule(ip_interface("10.9.0.7/24"), masq.comment_for("net", "ctr", "eth0"))["rule"]
    assert rule["table"] == "pynet-cni" and rule["family"] == "inet" and rule["comment"] == "net/ctr/eth0"
    exprs = rule["expr"]
    assert exprs[0]["match"]["right"] == "10.9.0.7"
    assert exprs[1]["match"] == {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                 "right": {"prefix": {"addr": "10.9.0.0", "len": 24}}}
    assert exprs[-1] == {"masquerade": None}
    v6 = masq._rule(ip_interface("fd00::7/64"), "c")["rule"]["expr"]
    assert v6[0]["match"]["left"]["payload"]["protocol"] == "ip6"


def test_masq_rule_exempts_ip_masq_exclude() -> None:
    """With ipMasqExclude (the cluster CIDR), pod traffic to other nodes' pods keeps its source."""
    from ipaddress import ip_interface, ip_network

    rule = masq._rule(ip_interface("10.244.1.7/24"), "c", [ip_network("10.244.0.0/16"), ip_network("fd00::/48")])
    prefixes = [e["match"]["right"] for e in rule["rule"]["expr"] if e.get("match", {}).get("op") == "!="]
    assert prefixes == [{"prefix": {"addr": "10.244.0.0", "len": 16}}, {"prefix": {"addr": "224.0.0.0", "len": 4}}]
    outside = masq._rule(ip_interface("10.9.0.7/24"), "c", [ip_network("10.244.0.0/16")])
    prefixes = [e["match"]["right"] for e in outside["rule"]["expr"] if e.get("match", {}).get("op") == "!="]
    assert prefixes[:2] == [{"prefix": {"addr": "10.9.0.0", "len": 24}}, {"prefix": {"addr": "10.244.0.0", "len": 16}}]


def test_ip_masq_exclude_parsing() -> None:
    from ipaddress import ip_network

    from pynet.cni.config import parse_netconf

    conf = parse_netconf({"name": "n", "ipMasq": True, "ipMasqExclude": ["10.244.0.0/16"]}, "1.0.0")
    assert conf.ip_masq_exclude == (ip_network("10.244.0.0/16"),)
    for bad in (["10.244.0.1/16"], [16], "10.0.0.0/8"):
        with pytest.raises(CniError) as exc:
            parse_netconf({"name": "n", "ipMasqExclude": bad}, "1.0.0")
        assert exc.value.code == 7 and "ipMasqExclude" in exc.value.msg


def test_wire_frames_roundtrip() -> None:
    a, b = socket.socketpair()
    with a, b:
        wire.send_frame(a, b"hello", prefix=7)
        assert wire.recv_u32(b) == 7 and wire.recv_frame(b) == b"hello"
        a.sendall(b"\x00\x00")
        a.close()
        with pytest.raises(ConnectionError):
            wire.recv_frame(b)


def test_client_returns_none_when_nobody_listens() -> None:
    env = {"CNI_COMMAND": "VERSION", "PYNET_CNI_SOCKET": f"pynet-cni-unit-{random_suffix()}"}
    assert client.try_agent(env, b"{}") is None
    assert client.try_agent({"PYNET_CNI_SOCKET": "none"}, b"{}") is None


def test_server_runs_requests_with_the_callers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from pynet.cni import server as server_mod

    seen: list[CmdArgs] = []

    def add(args: CmdArgs) -> Result:
        seen.append(args)
        return Result.from_dict({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.9/24"}]})

    def delete(args: CmdArgs) -> None:
        raise CniError(ErrCode.TRY_AGAIN_LATER, "locked")

    name = f"pynet-cni-unit-{random_suffix()}"
    srv = server_mod.CniServer(name)
    monkeypatch.setattr(srv, "start", lambda: None)
    srv._funcs = PluginFuncs(add=add, delete=delete)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(wire.abstract_address(name))
    sock.listen(8)
    srv._sock = sock
    srv._thread = threading.Thread(target=srv._accept_loop, daemon=True)
    srv._thread.start()
    try:
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/self/ns/net", "CNI_IFNAME": "eth0",
               "CNI_PATH": "/x", "PATH": "/bin", "SECRET": "not forwarded", "PYNET_CNI_SOCKET": name}
        conf = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "pynet"}).encode()
        status, out = client.try_agent(env, conf) or (None, b"")
        assert status == 0 and json.loads(out)["ips"] == [{"address": "10.0.0.9/24"}]
        assert seen[0].container_id == "c1" and "SECRET" not in seen[0].environ and seen[0].environ["PATH"] == "/bin"
        status, out = client.try_agent({**env, "CNI_COMMAND": "DEL"}, conf) or (None, b"")
        assert status == 1 and json.loads(out)["code"] == 11
        # the launcher's helper prints the agent's answer verbatim
        sink = io.BytesIO()
        rc = client.run(stdin=io.BytesIO(conf), stdout=sink, environ={**env, "CNI_COMMAND": "VERSION"})
        assert rc == 0 and "supportedVersions" in json.loads(sink.getvalue())
        assert srv.served == 3
    finally:
        srv.stop(timeout=5)


def test_lean_pyroute2_completes_on_demand() -> None:
    import subprocess

    code = ("import sys; from pynet.netlink.lean import lean_pyroute2; assert lean_pyroute2();"
            "from pyroute2.iproute.linux import IPRoute; assert 'pyroute2.ndb.main' not in sys.modules;"
            "from pyroute2 import IPVS; import pyroute2; assert pyroute2.IPRoute is IPRoute")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stderr


def test_wire_env_doctest_and_client_imports_stay_light() -> None:
    import doctest
    import subprocess

    assert doctest.testmod(wire).failed == 0
    code = ("import sys; from pynet.cni import client;"
            "heavy = {'json', 'typing', 'socket', 'pyroute2', 'subprocess', 'os', 'struct', '__future__'}"
            " & set(sys.modules); assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(Path(client.__file__).parents[2])!r}); {code}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _cmd_args(tmp_path: Path, command: str, conf: dict[str, Any]) -> CmdArgs:
    return CmdArgs(command, "ctr", "", "eth0", "", (str(tmp_path),), json.dumps(conf).encode(), conf, conf["cniVersion"],
                   {"PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize(("ipam_code", "expect"), [(1, None), (50, 50), (None, None)],
                         ids=["pre-1.1-ipam-has-no-status", "ipam-full", "ipam-ok"])
def test_status_follows_ipam(tmp_path: Path, ipam_code: int | None, expect: int | None) -> None:
    from pynet.cni.commands import Commands

    body = "sys.exit(0)" if ipam_code is None else f"print(json.dumps({{'code': {ipam_code}, 'msg': 'x'}})); sys.exit(1)"
    _fake_plugin(tmp_path, body)
    conf = {"cniVersion": "1.1.0", "name": "n", "type": "pynet", "ipam": {"type": "fake-ipam"}}
    if expect is None:
        Commands().status(_cmd_args(tmp_path, "STATUS", conf))
    else:
        with pytest.raises(CniError) as exc:
            Commands().status(_cmd_args(tmp_path, "STATUS", conf))
        assert exc.value.code == expect


def test_check_needs_prev_result_and_gc_needs_a_list(tmp_path: Path) -> None:
    from pynet.cni.commands import Commands

    conf = {"cniVersion": "1.1.0", "name": "n", "type": "pynet", "ipam": {"type": "fake-ipam"}}
    with pytest.raises(CniError) as exc:
        Commands().check(_cmd_args(tmp_path, "CHECK", conf))
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG and "prevResult" in exc.value.msg
    with pytest.raises(CniError) as exc:
        Commands().gc(_cmd_args(tmp_path, "GC", {**conf, "cni.dev/valid-attachments": "all"}))
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG
    with pytest.raises(CniError) as exc:
        Commands().add(_cmd_args(tmp_path, "ADD", {**conf, "ipam": {}}))
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG and "ipam.type" in exc.value.msg


def test_del_with_an_invalid_config_still_releases(tmp_path: Path) -> None:
    from pynet.cni.commands import Commands

    marker = tmp_path / "released"
    _fake_plugin(tmp_path, f"open({str(marker)!r}, 'w').write(os.environ['CNI_COMMAND'])")
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "pynet", "mtu": "not-a-number", "ipam": {"type": "fake-ipam"}}
    with pytest.raises(CniError):
        Commands().add(_cmd_args(tmp_path, "ADD", conf))
    Commands().delete(_cmd_args(tmp_path, "DEL", conf))
    assert marker.read_text() == "DEL"


def test_launcher_fast_path_imports_only_the_client(tmp_path: Path) -> None:
    """The launcher answers through the agent without importing os, json or the plugin's modules."""
    import subprocess

    name = f"pynet-cni-unit-{random_suffix()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(wire.abstract_address(name))
    sock.listen(1)

    def answer() -> None:
        conn, _ = sock.accept()
        with conn:
            env = wire.decode_env(wire.recv_frame(conn))
            wire.recv_frame(conn)
            wire.send_frame(conn, env["CNI_COMMAND"].encode(), prefix=0)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    probe = tmp_path / "pynet"
    launcher = (Path(client.__file__).parents[3] / "cni-bin" / "pynet").read_text()
    probe.write_text(launcher.replace("status = client.run()\n", "status = client.run()\n"
                                      "sys.stderr.write(' '.join(sorted(sys.modules)))\n", 1)
                     .replace("@PYNET_HOME@", str(Path(client.__file__).parents[3])))
    with sock:
        proc = subprocess.run([sys.executable, "-IS", str(probe)], input=b"{}", capture_output=True, timeout=30,
                              env={"CNI_COMMAND": "VERSION", "PYNET_CNI_SOCKET": name})
        t.join(10)
    assert proc.returncode == 0 and proc.stdout == b"VERSION", proc
    loaded = set(proc.stderr.decode().split())
    assert "pynet.cni.client" in loaded
    assert not loaded & {"os", "json", "struct", "__future__", "typing", "pynet.cni.skel", "pynet.cni.main"}, loaded


@pytest.mark.parametrize("reply", ["internal-error", "hang-up"])
def test_client_never_falls_back_once_the_request_was_sent(reply: str) -> None:
    """Only 'nobody listens' means in-process: an agent's error, or a connection lost after sending,
    is the answer (re-running an ADD the agent may have half done would double it)."""
    name = f"pynet-cni-unit-{random_suffix()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(wire.abstract_address(name))
    sock.listen(1)
    got: list[bytes] = []

    def answer() -> None:
        conn, _ = sock.accept()
        with conn:
            wire.recv_frame(conn)
            got.append(wire.recv_frame(conn))
            if reply == "internal-error":
                wire.send_frame(conn, b'{"cniVersion": "1.0.0", "code": 999, "msg": "boom"}', prefix=1)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    sink = io.BytesIO()
    with sock:
        rc = client.run(stdin=io.BytesIO(b'{"cniVersion": "1.0.0"}'), stdout=sink,
                        environ={"CNI_COMMAND": "ADD", "PYNET_CNI_SOCKET": name})
        t.join(10)
    assert got == [b'{"cniVersion": "1.0.0"}']  # the agent had the request
    assert rc == 1  # not None: the launcher must not run the plugin in-process
    assert json.loads(sink.getvalue())["code"] == (999 if reply == "internal-error" else 11)


@pytest.mark.parametrize("command", ["VERSION", "ADD"])
def test_in_process_version_and_bad_input_stay_import_light(tmp_path: Path, command: str) -> None:
    """VERSION, and a request skel rejects (ADD without its CNI_* variables), never load the
    commands, pyroute2, libnftables, dataclasses or typing."""
    import subprocess

    home = Path(client.__file__).parents[3]
    probe = tmp_path / "pynet"
    probe.write_text((home / "cni-bin" / "pynet").read_text().replace("@PYNET_HOME@", str(home))
                     .replace("sys.exit(status)", "sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)))\n"
                              "sys.exit(status)"))
    proc = subprocess.run([sys.executable, "-IS", str(probe)], input=b'{"cniVersion": "1.0.0"}', capture_output=True,
                          timeout=30, env={"CNI_COMMAND": command, "PYNET_CNI_SOCKET": "none"})
    out = json.loads(proc.stdout)
    assert (proc.returncode, out.get("code")) == ((0, None) if command == "VERSION" else (1, 4)), proc
    loaded = set(proc.stderr.decode().rpartition("MODULES ")[2].split())
    assert "pynet.cni.skel" in loaded
    heavy = {"pyroute2", "nftables", "pynet.cni.commands", "pynet.cni.types", "dataclasses", "typing", "traceback",
             "subprocess"}
    assert not loaded & heavy, loaded & heavy
