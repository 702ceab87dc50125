"""The Kubernetes manifests in ``deploy/``, checked offline.

Covers: every raw manifest and every rendered variant (``deploy/`` and ``deploy/overlays/*``)
validates strictly against the Kubernetes 1.31 OpenAPI schemas (``kubernetes-validate``);
``kubectl kustomize`` renders each variant with no cluster (an unreachable kubeconfig); the
ClusterRole grants exactly get/list/watch on services, endpointslices and nodes plus patch on
nodes, and is bound to the DaemonSet's service account; the DaemonSet's security posture
(capabilities per backend, never privileged unless the opt-in ``components/cni-fastpath`` is
used, which adds exactly privileged mode, ``/run/netns`` and ``/opt/cni/bin``; RuntimeDefault seccomp, host network, tolerations,
requests and limits, health probes on the health address the agent is given, NODE_NAME from the
downward API, the hostPath mounts); every ConfigMap key the pod reads exists; the init container's
and the agent's arguments are accepted by the real command-line parsers; the clean-up DaemonSet
(``deploy/uninstall``) runs ``--cleanup`` with every backend's capabilities and uninstalls exactly
what the init container installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pynet.deploy import install_cni

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
K8S_VERSION = "1.31"
KUBECTL = "/usr/bin/kubectl"
#: variant (kustomization dir relative to deploy/) -> backend it selects
VARIANTS = {
    ".": "nftables",
    "overlays/nftables": "nftables",
    "overlays/iptables": "iptables",
    "overlays/ipvs": "ipvs",
    "overlays/ebpf": "ebpf",
}
BASE_CAPS = ["NET_ADMIN", "NET_RAW"]
EBPF_CAPS = ["NET_ADMIN", "NET_RAW", "BPF", "SYS_ADMIN"]

Obj = dict[str, Any]


@functools.cache
def render(variant: str) -> tuple[Obj, ...]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    env["KUBECONFIG"] = "/nonexistent/kubeconfig"  # nothing to contact: rendering must be offline
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / variant)], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def one(objs: tuple[Obj, ...], kind: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(ds: Obj, name: str, init: bool = False) -> Obj:
    spec = ds["spec"]["template"]["spec"]
    [c] = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    return c


def raw_manifests() -> list[Path]:
    found = [*(DEPLOY / "base").glob("*.yaml"), *(DEPLOY / "uninstall").glob("*.yaml")]
    return sorted((p for p in found if p.name != "kustomization.yaml"), key=str)


@pytest.mark.parametrize("path", raw_manifests(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_raw_manifest_validates(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_variant_validates(variant: str) -> None:
    objs = render(variant)
    assert sorted(o["kind"] for o in objs) == sorted(
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"]
    )
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validator is a real check: a typo in the DaemonSet fails it."""
    ds = json.loads(json.dumps(one(render("."), "DaemonSet")))
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def test_clusterrole_grants_exactly_what_the_agent_needs() -> None:
    objs = render(".")
    role = one(objs, "ClusterRole")
    granted: set[tuple[str, str, str]] = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs expected"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    read = {"get", "list", "watch"}
    expected = {("", "services", v) for v in read} | {("", "nodes", v) for v in read}
    expected |= {("discovery.k8s.io", "endpointslices", v) for v in read}
    expected |= {("", "nodes", "patch")}
    assert granted == expected
    assert "aggregationRule" not in role
    assert not [o for o in objs if o["kind"] in ("Role", "RoleBinding")]

    binding = one(objs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "pynet",
    }
    ds = one(objs, "DaemonSet")
    sa = one(objs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": sa["metadata"]["namespace"]}
    ]
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    assert ds["metadata"]["namespace"] == sa["metadata"]["namespace"] == "pynet-system"


@pytest.mark.parametrize("variant", VARIANTS)
def test_daemonset_capabilities_per_backend(variant: str) -> None:
    backend = VARIANTS[variant]
    objs = render(variant)
    ds = one(objs, "DaemonSet")
    assert one(objs, "ConfigMap")["data"]["backend"] == backend
    agent = container(ds, "agent")
    sc = agent["securityContext"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["capabilities"]["add"] == (EBPF_CAPS if backend == "ebpf" else BASE_CAPS)
    assert sc.get("privileged", False) is False and sc["allowPrivilegeEscalation"] is False
    init = container(ds, "install-cni", init=True)
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in agent["volumeMounts"]}
    assert ("/sys/fs/bpf" in mounts) == (backend == "ebpf")


def test_daemonset_pod_posture() -> None:
    ds = one(render("."), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "Default"  # not cluster DNS, which needs the network pynet provides
    assert not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"operator": "Exists"} in pod["tolerations"]  # every taint, every effect: all nodes
    assert pod["priorityClassName"] == "system-node-critical"
    for c in pod["containers"] + pod["initContainers"]:
        for kind in ("requests", "limits"):
            assert set(c["resources"][kind]) == {"cpu", "memory"}, (c["name"], kind)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["image"] == "localhost/pynet:0.1.0"


def test_probes_hit_the_health_address_the_agent_serves() -> None:
    agent = container(one(render("."), "DaemonSet"), "agent")
    [addr] = [a.split("=", 1)[1] for a in agent["args"] if a.startswith("--healthz-address=")]
    host, port = addr.rsplit(":", 1)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = agent[probe]["httpGet"]
        assert (get["host"], str(get["port"]), get["path"]) == (host, port, path)


def test_host_paths_and_downward_api() -> None:
    ds = one(render("."), "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    agent, init = container(ds, "agent"), container(ds, "install-cni", init=True)
    agent_mounts = {m["name"]: m for m in agent["volumeMounts"]}
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    seen = {host_paths[n]: m["mountPath"] for n, m in agent_mounts.items() if n in host_paths}
    seen |= {host_paths[n]: m["mountPath"] for n, m in init_mounts.items() if n in host_paths}
    assert seen == {
        "/opt/cni/bin": "/host/opt/cni/bin",
        "/etc/cni/net.d": "/host/etc/cni/net.d",
        "/opt/pynet": "/host/opt/pynet",
        "/run/xtables.lock": "/run/xtables.lock",
        "/lib/modules": "/lib/modules",
        "/var/lib/cni": "/var/lib/cni",
        "/run/pynet": "/run/pynet",
    }
    assert agent_mounts["lib-modules"]["readOnly"] is True
    [node_name] = [e for e in agent["env"] if e["name"] == "NODE_NAME"]
    assert node_name["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "--node-name=$(NODE_NAME)" in agent["args"]


def test_every_configmap_reference_resolves() -> None:
    objs = render(".")
    cm = one(objs, "ConfigMap")
    name = cm["metadata"]["name"]
    assert re.fullmatch(r"pynet-config-[a-z0-9]{10}", name)  # hashed: a settings change rolls the pods
    pod = one(objs, "DaemonSet")["spec"]["template"]["spec"]
    refs = [
        e["valueFrom"]["configMapKeyRef"]
        for c in pod["containers"]
        for e in c.get("env", [])
        if "configMapKeyRef" in e.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["name"] == name and ref["key"] in cm["data"], ref
    [vol] = [v for v in pod["volumes"] if "configMap" in v]
    assert vol["configMap"]["name"] == name
    for item in vol["configMap"]["items"]:
        assert item["key"] in cm["data"]
    conflist = json.loads(cm["data"]["10-pynet.conflist"])
    assert conflist["name"] == "pynet" and conflist["plugins"][0]["type"] == "pynet"


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], a) for a in args]


def _pod_env(objs: tuple[Obj, ...], c: Obj) -> dict[str, str]:
    data = one(objs, "ConfigMap")["data"]
    env = {}
    for e in c.get("env", []):
        src = e.get("valueFrom", {})
        env[e["name"]] = data[src["configMapKeyRef"]["key"]] if "configMapKeyRef" in src else "node-1"
    return env


def test_init_container_arguments_parse() -> None:
    objs = render(".")
    init = container(one(objs, "DaemonSet"), "install-cni", init=True)
    assert init["command"] == ["pynet", "install-cni"]
    parser = argparse.ArgumentParser()
    install_cni.add_arguments(parser)
    opts = install_cni.options_from_args(parser.parse_args(init["args"]))
    mounted = {m["mountPath"] for m in init["volumeMounts"]}
    for host_dir in (opts.bin_dir, opts.conf_dir, opts.home_dir):
        assert host_dir is not None and str(opts.host(host_dir)) in mounted
    assert str(opts.conflist.parent) in mounted


@pytest.mark.parametrize("variant", VARIANTS)
def test_agent_arguments_parse(variant: str) -> None:
    from pynet.daemon import cli as agent_cli  # the agent's own parser is the judge

    objs = render(variant)
    agent = container(one(objs, "DaemonSet"), "agent")
    assert agent["command"] == ["pynet", "agent"]
    parser = argparse.ArgumentParser()
    agent_cli.add_arguments(parser)
    args = parser.parse_args(_expand(agent["args"], _pod_env(objs, agent)))
    assert args.backend == VARIANTS[variant]
    assert args.node_name == "node-1"
    # no CNI fast path from a pod without CAP_SYS_ADMIN and the runtime's netns mounts
    assert args.no_cni_server is True


def test_uninstall_daemonset_cleans_every_backend_and_the_cni_files() -> None:
    from pynet.daemon import cli as agent_cli

    objs = render("uninstall")
    assert sorted(o["kind"] for o in objs) == ["DaemonSet", "Namespace"]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    ds = one(objs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and {"operator": "Exists"} in pod["tolerations"]
    rules = container(ds, "cleanup-rules", init=True)
    assert rules["command"][:2] == ["pynet", "agent"]
    parser = argparse.ArgumentParser()
    agent_cli.add_arguments(parser)
    args = parser.parse_args(_expand(rules["command"][2:], {"NODE_NAME": "node-1"}))
    assert args.cleanup is True
    assert rules["securityContext"]["capabilities"]["add"] == EBPF_CAPS  # every backend, ebpf included
    cni = container(ds, "uninstall-cni", init=True)
    assert cni["command"][:2] == ["pynet", "install-cni"]
    parser = argparse.ArgumentParser()
    install_cni.add_arguments(parser)
    ns = parser.parse_args(cni["command"][2:])
    assert ns.uninstall is True
    # it removes exactly what the install DaemonSet put there
    installer = container(one(render("."), "DaemonSet"), "install-cni", init=True)
    parser = argparse.ArgumentParser()
    install_cni.add_arguments(parser)
    installed = parser.parse_args(installer["args"])
    for key in ("root", "bin_dir", "conf_dir", "home_dir"):
        assert getattr(ns, key) == getattr(installed, key), key


def test_operator_guide_example_kustomization_renders(tmp_path: Path) -> None:
    """The 'your own kustomization' example of docs/operator-guide.md works as written."""
    guide = (DEPLOY.parent / "docs" / "operator-guide.md").read_text()
    block = re.search(r"```yaml\n# my-cluster/kustomization.yaml\n(.*?)```", guide, re.S)
    assert block is not None
    (tmp_path / "pynet").mkdir()
    shutil.copytree(DEPLOY, tmp_path / "pynet" / "deploy")
    (tmp_path / "my-cluster").mkdir()
    (tmp_path / "my-cluster" / "kustomization.yaml").write_text(block.group(1))
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path / "my-cluster")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    objs = tuple(d for d in yaml.safe_load_all(proc.stdout) if d)
    data = one(objs, "ConfigMap")["data"]
    assert (data["backend"], data["cluster-cidr"]) == ("iptables", "10.32.0.0/16")
    ds = one(objs, "DaemonSet")
    assert container(ds, "agent")["image"] == "registry.example/pynet:0.1.0"
    assert container(ds, "install-cni", init=True)["image"] == "registry.example/pynet:0.1.0"


def test_cluster_conflist_is_accepted_by_the_plugin_parsers(tmp_path: Path) -> None:
    """The conflist the DaemonSet installs parses with pynet's own config and IPAM loaders."""
    from pynet import overlay
    from pynet.cni.config import parse_netconf
    from pynet.cni.ipam.config import DEFAULT_POD_CIDR_FILE, load_ipam_config, load_store_location

    conflist = json.loads(one(render("."), "ConfigMap")["data"]["10-pynet.conflist"])
    assert conflist["cniVersion"] == "1.0.0"  # what containerd/CRI-O and the reference portmap accept
    assert [p["type"] for p in conflist["plugins"]] == ["pynet", "portmap"]
    plugin = {**conflist["plugins"][0], "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
    conf = parse_netconf(plugin, conflist["cniVersion"])
    assert (conf.mode, conf.bridge, conf.is_default_gateway) == ("bridge", "pynet0", True)
    # the device the agent's VXLAN overlay programs (pynet.overlay defaults); the pod MTU derives from it
    assert conf.vxlan is not None
    assert (conf.vxlan.vni, conf.vxlan.port, conf.vxlan.device) == (
        overlay.DEFAULT_VNI,
        overlay.DEFAULT_PORT,
        overlay.DEFAULT_DEVICE,
    )
    # the pod CIDR file the agent writes (--pod-cidr-file in the DaemonSet) is the one IPAM reads
    agent = container(one(render("."), "DaemonSet"), "agent")
    assert f"--pod-cidr-file={plugin['ipam'].get('podCidrFile', DEFAULT_POD_CIDR_FILE)}" in agent["args"]
    pod_cidr = tmp_path / "pod-cidr"
    pod_cidr.write_text("10.244.3.0/24\n")
    ipam = load_ipam_config({**plugin, "ipam": {**plugin["ipam"], "podCidrFile": str(pod_cidr)}})
    [[rng]] = [rs.ranges for rs in ipam.range_sets]
    assert str(rng.subnet) == "10.244.3.0/24"
    assert load_store_location(plugin) == ("pynet", "/var/lib/cni/networks")
    # the IPAM store lives under a directory the agent container mounts (CNI fast path, GC)
    assert "/var/lib/cni" in {m["mountPath"] for m in agent["volumeMounts"]}


def test_cluster_conflist_is_the_shipped_one() -> None:
    """deploy/base/cni/10-pynet.conflist is a copy of conf/10-pynet.conflist (kustomize cannot read
    files outside its directory): one network definition, the same in the image and the ConfigMap."""
    shipped = DEPLOY.parent / "conf" / "10-pynet.conflist"
    assert (DEPLOY / "base" / "cni" / "10-pynet.conflist").read_bytes() == shipped.read_bytes()


def _render_with_components(tmp_path: Path, *components: str) -> tuple[Obj, ...]:
    """deploy/base plus ``components`` through a throwaway kustomization (as an operator would)."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["../deploy/base"],
        "components": [f"../deploy/components/{c}" for c in components]}))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent",
           "KUBECONFIG": "/nonexistent/kubeconfig"}
    proc = subprocess.run([KUBECTL, "kustomize", str(tmp_path / "cluster")], capture_output=True, text=True,
                          env=env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def test_cni_fastpath_component_adds_exactly_what_the_cni_server_needs(tmp_path: Path) -> None:
    from pynet.daemon import cli as agent_cli

    base = render(".")
    objs = _render_with_components(tmp_path, "cni-fastpath")
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # nothing but the DaemonSet changes
    assert [o for o in objs if o["kind"] != "DaemonSet"] == [o for o in base if o["kind"] != "DaemonSet"]
    want = json.loads(json.dumps(one(base, "DaemonSet")))
    agent = container(want, "agent")
    agent["args"].remove("--no-cni-server")
    agent["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)
    agent["volumeMounts"] += [
        {"name": "host-netns", "mountPath": "/run/netns", "mountPropagation": "HostToContainer"},
        {"name": "cni-bin-dir", "mountPath": "/opt/cni/bin", "readOnly": True},
    ]
    want["spec"]["template"]["spec"]["volumes"].append(
        {"name": "host-netns", "hostPath": {"path": "/run/netns", "type": "DirectoryOrCreate"}})
    got = one(objs, "DaemonSet")
    got_agent = container(got, "agent")
    got_agent["volumeMounts"].sort(key=lambda m: m["mountPath"])
    agent["volumeMounts"].sort(key=lambda m: m["mountPath"])
    for spec in (got, want):
        spec["spec"]["template"]["spec"]["volumes"].sort(key=lambda v: v["name"])
    assert got == want
    # the agent's parser now starts the CNI server
    parser = argparse.ArgumentParser()
    agent_cli.add_arguments(parser)
    assert parser.parse_args(_expand(got_agent["args"], _pod_env(objs, got_agent))).no_cni_server is False


def test_cni_fastpath_component_composes_with_a_backend(tmp_path: Path) -> None:
    objs = _render_with_components(tmp_path, "backend-ebpf", "cni-fastpath")
    agent = container(one(objs, "DaemonSet"), "agent")
    assert agent["securityContext"]["capabilities"]["add"] == EBPF_CAPS
    assert agent["securityContext"]["privileged"] is True and "--no-cni-server" not in agent["args"]
    assert {"/sys/fs/bpf", "/run/netns"} <= {m["mountPath"] for m in agent["volumeMounts"]}
