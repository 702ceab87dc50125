"""The ipam section: usePodCidr from the agent's file, requested IPs, CNI_ARGS, resolvConf, routes."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.ipam.config import (
    load_ipam_config,
    load_store_location,
    parse_cni_args,
    parse_resolv_conf,
    read_pod_cidrs,
)


def conf(tmp_path: Path, **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "net1", "type": "pynet",
            "ipam": {"type": "pynet-ipam", "dataDir": str(tmp_path / "data"), **ipam}}


def test_minimal_ranges_config(tmp_path: Path) -> None:
    cfg = load_ipam_config(conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}]]))
    assert cfg.network == "net1" and cfg.data_dir == str(tmp_path / "data")
    assert [str(r.subnet) for rs in cfg.range_sets for r in rs.ranges] == ["10.1.0.0/24"]
    assert cfg.requested == () and not cfg.dns and cfg.routes == ()


def test_default_data_dir_is_host_locals() -> None:
    assert load_store_location({"name": "n", "ipam": {}}) == ("n", "/var/lib/cni/networks")


def test_legacy_top_level_subnet_becomes_range_set_zero(tmp_path: Path) -> None:
    cfg = load_ipam_config(conf(tmp_path, subnet="10.2.0.0/24", rangeStart="10.2.0.100",
                                ranges=[[{"subnet": "fd00::/120"}]]))
    assert [rs.family for rs in cfg.range_sets] == [4, 6]
    assert cfg.range_sets[0].ranges[0].start == ip_address("10.2.0.100")


@pytest.mark.parametrize(
    ("ipam", "fragment"),
    [
        ({}, "nothing to allocate from"),
        ({"ranges": "10.0.0.0/24"}, "must be a list of range sets"),
        ({"ranges": [[]]}, "non-empty list"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}, "overlaps"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": [{"dst": "bogus"}]}, "ipam routes"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}]], "routes": {"dst": "0.0.0.0/0"}}, "routes must be a list"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": "relative/dir"}, "absolute path"),
        ({"ranges": [[{"subnet": "10.0.0.0/24"}]], "resolvConf": "/nonexistent/resolv.conf"}, "cannot read resolvConf"),
    ],
)
def test_bad_config_is_error_7(tmp_path: Path, ipam: dict[str, Any], fragment: str) -> None:
    c = conf(tmp_path, **ipam)
    if "dataDir" in ipam:
        c["ipam"]["dataDir"] = ipam["dataDir"]
    with pytest.raises(CniError) as exc:
        load_ipam_config(c)
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG
    assert fragment in exc.value.msg


@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", None])
def test_network_name_must_be_a_safe_directory_name(name: object) -> None:
    with pytest.raises(CniError, match="network name") as exc:
        load_store_location({"name": name, "ipam": {}})
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG


def test_missing_ipam_section() -> None:
    with pytest.raises(CniError, match="no \"ipam\" object"):
        load_store_location({"name": "n"})


# -- usePodCidr ----------------------------------------------------------------------------------

def test_use_pod_cidr_dual_stack_gives_one_range_set_per_family(tmp_path: Path) -> None:
    f = tmp_path / "pod-cidr"
    f.write_text("# written by the agent\n10.244.3.0/24\n\nfd00:10:244:3::/64\n")
    cfg = load_ipam_config(conf(tmp_path, podCidrFile=str(f), ranges=[[{"subnet": "usePodCidr"}]]))
    assert [(rs.family, str(rs.ranges[0].subnet), str(rs.ranges[0].gateway)) for rs in cfg.range_sets] == [
        (4, "10.244.3.0/24", "10.244.3.1"), (6, "fd00:10:244:3::/64", "fd00:10:244:3::1")]


def test_use_pod_cidr_top_level_subnet_form(tmp_path: Path) -> None:
    f = tmp_path / "pod-cidr"
    f.write_text("10.244.7.0/24\n")
    cfg = load_ipam_config(conf(tmp_path, podCidrFile=str(f), subnet="usePodCidr"))
    assert [str(r.subnet) for rs in cfg.range_sets for r in rs.ranges] == ["10.244.7.0/24"]


@pytest.mark.parametrize("content", [None, "", "\n# nothing yet\n"], ids=["missing", "empty", "comment-only"])
def test_use_pod_cidr_not_published_yet_is_try_again_later(tmp_path: Path, content: str | None) -> None:
    f = tmp_path / "pod-cidr"
    if content is not None:
        f.write_text(content)
    with pytest.raises(CniError) as exc:
        load_ipam_config(conf(tmp_path, podCidrFile=str(f), ranges=[[{"subnet": "usePodCidr"}]]))
    assert exc.value.code == ErrCode.TRY_AGAIN_LATER
    assert str(f) in exc.value.msg


def test_use_pod_cidr_bad_content_and_mixing(tmp_path: Path) -> None:
    f = tmp_path / "pod-cidr"
    f.write_text("10.244.3.5/24\n")
    with pytest.raises(CniError, match="host bits") as exc:
        read_pod_cidrs(str(f))
    assert exc.value.code == ErrCode.INVALID_NETWORK_CONFIG
    f.write_text("10.244.3.0/24\n")
    with pytest.raises(CniError, match="must be alone"):
        load_ipam_config(conf(tmp_path, podCidrFile=str(f),
                              ranges=[[{"subnet": "usePodCidr"}, {"subnet": "10.9.0.0/24"}]]))
    assert read_pod_cidrs(str(f)) == [ip_network("10.244.3.0/24")]


# -- requested IPs and CNI_ARGS -----------------------------------------------------------------

def test_requested_ips_merge_cni_args_args_and_runtime_config(tmp_path: Path) -> None:
    c = conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120"}]])
    c["args"] = {"cni": {"ips": ["10.1.0.7"]}}
    c["runtimeConfig"] = {"ips": ["fd00::9/120", "10.1.0.7/24"]}
    cfg = load_ipam_config(c, "IgnoreUnknown=1;IP=10.1.0.5,10.1.0.6;K8S_POD_NAME=web")
    assert [str(ip) for ip in cfg.requested] == ["10.1.0.5", "10.1.0.6", "10.1.0.7", "fd00::9"]


def test_bad_requested_ip(tmp_path: Path) -> None:
    c = conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}]])
    c["runtimeConfig"] = {"ips": ["ten.one"]}
    with pytest.raises(CniError, match="requested IP 'ten.one'"):
        load_ipam_config(c)


def test_cni_args_unknown_keys_need_ignore_unknown() -> None:
    with pytest.raises(CniError, match="unknown key.*FOO") as exc:
        parse_cni_args("FOO=bar;K8S_POD_NAME=x")
    assert exc.value.code == ErrCode.INVALID_ENV
    assert parse_cni_args("IgnoreUnknown=true;FOO=bar") == {"IgnoreUnknown": "true", "FOO": "bar"}
    assert parse_cni_args("K8S_POD_NAMESPACE=default;K8S_POD_NAME=x") == {
        "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "x"}
    with pytest.raises(CniError, match="invalid pair") as exc:
        parse_cni_args("IgnoreUnknown=1;garbage")
    assert exc.value.code == ErrCode.INVALID_ENV


def test_resolv_conf_and_routes(tmp_path: Path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("# comment\nnameserver 10.96.0.10\nnameserver fd00::10\nsearch a.svc b.local\n"
                  "domain cluster.local\noptions ndots:5 edns0\nsearch ns.svc cluster.local\n")
    dns = parse_resolv_conf(str(rc))
    assert dns.nameservers == ("10.96.0.10", "fd00::10")
    assert dns.search == ("ns.svc", "cluster.local") and dns.domain == "cluster.local"
    assert dns.options == ("ndots:5", "edns0")
    cfg = load_ipam_config(conf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}]], resolvConf=str(rc),
                                routes=[{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}]))
    assert cfg.dns == dns
    assert [(str(r.dst), str(r.gw) if r.gw else None) for r in cfg.routes] == [
        ("0.0.0.0/0", None), ("192.168.0.0/16", "10.1.0.254")]
