"""The image recipe and the Vagrant lab, checked without an engine or VMs.

Covers: ``ruby -c Vagrantfile``; the Vagrantfile evaluated under a stub of Vagrant's API (three
Debian machines, cp + two workers, each provisioned with common.sh then its role script, one valid
shared bootstrap token, NODE_IP equal to the private-network address); every provisioning script
passes shellcheck, is executable and strict (``set -euo pipefail``); the kustomization that
control-plane.sh writes renders for each backend; deploy/Containerfile structurally: Debian base,
the system packages the data planes need, a ``--system-site-packages`` venv, cni-bin and conf copied
into the image home that install-cni defaults to, every COPY source present in the repository and
let through by the ignore file, ``pynet`` on PATH. The image itself is NOT built here (no engine).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pynet.deploy import install_cni

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
SCRIPTS = sorted((DEPLOY / "vagrant").glob("*.sh"))

# A stand-in for Vagrant's configuration API: records every call (name, arguments, nested blocks).
RUBY_STUB = r"""
require "json"
class Rec
  def initialize(log, prefix) = (@log = log; @prefix = prefix)
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **kw, &blk)
    entry = { "call" => "#{@prefix}#{name}", "args" => args, "kw" => kw }
    @log << entry
    if blk
      entry["block"] = []
      blk.call(Rec.new(entry["block"], ""))
    end
    Rec.new(@log, "#{@prefix}#{name}.")
  end
end
module Vagrant
  def self.configure(_version)
    yield Rec.new($calls, "")
  end
end
$calls = []
load ARGV[0]
puts JSON.generate($calls)
"""


def _calls(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in entries if e["call"] == name]


def test_vagrantfile_syntax() -> None:
    proc = subprocess.run(
        ["ruby", "-c", str(REPO / "Vagrantfile")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and "Syntax OK" in proc.stdout, proc.stderr


def test_vagrantfile_defines_the_lab(tmp_path: Path) -> None:
    # a copy, so that the token file it creates lands in tmp_path/.vagrant, not in the checkout
    shutil.copy(REPO / "Vagrantfile", tmp_path / "Vagrantfile")
    (tmp_path / "stub.rb").write_text(RUBY_STUB)
    proc = subprocess.run(
        ["ruby", str(tmp_path / "stub.rb"), str(tmp_path / "Vagrantfile")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    calls = json.loads(proc.stdout)
    [box] = _calls(calls, "vm.box=")
    assert "debian" in box["args"][0] and "bookworm" in box["args"][0]
    machines = {d["args"][0]: d["block"] for d in _calls(calls, "vm.define")}
    assert list(machines) == ["cp", "worker1", "worker2"]
    tokens = set()
    for name, body in machines.items():
        [net] = _calls(body, "vm.network")
        ip = net["kw"]["ip"]
        provisions = _calls(body, "vm.provision")
        role_script = "control-plane.sh" if name == "cp" else "worker.sh"
        assert [p["kw"]["path"] for p in provisions] == [
            "deploy/vagrant/common.sh",
            f"deploy/vagrant/{role_script}",
        ]
        for p in provisions:
            assert (REPO / p["kw"]["path"]).is_file()
            env = p["kw"]["env"]
            assert env["NODE_IP"] == ip and env["CONTROL_PLANE_IP"] == "192.168.56.10"
            assert env["PYNET_BACKEND"] == "nftables"
            tokens.add(env["BOOTSTRAP_TOKEN"])
        assert _calls(body, "vm.hostname=")[0]["args"] == [name]
    [token] = tokens  # one token shared by the whole lab
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token)
    assert (tmp_path / ".vagrant" / "pynet-bootstrap-token").read_text() == token
    referenced = {"common.sh", "control-plane.sh", "worker.sh"}
    assert {p.name for p in SCRIPTS} == referenced


def test_provisioning_scripts_pass_shellcheck() -> None:
    assert SCRIPTS
    proc = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_provisioning_scripts_are_strict_and_executable(script: Path) -> None:
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert script.stat().st_mode & 0o111


@pytest.mark.parametrize("backend", ["nftables", "ebpf"])
def test_control_plane_kustomization_renders(tmp_path: Path, backend: str) -> None:
    """The kustomization control-plane.sh writes (heredoc) renders with the chosen backend and CIDR."""
    script = (DEPLOY / "vagrant" / "control-plane.sh").read_text()
    body = re.search(r"<<KUSTOMIZATION\n(.*?)\nKUSTOMIZATION\n", script, re.S)
    assert body is not None
    text = body.group(1).replace("${PYNET_BACKEND}", backend).replace("${POD_CIDR}", "10.99.0.0/16")
    assert "${" not in text
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    (tmp_path / "kustomization.yaml").write_text(text)
    proc = subprocess.run(
        ["/usr/bin/kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    [cm] = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "ConfigMap"]
    assert (cm["data"]["backend"], cm["data"]["cluster-cidr"]) == (backend, "10.99.0.0/16")


# --- the Containerfile ------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _stages(instrs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in instrs:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.rstrip("/")
        if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat + "/*") or rel.startswith(pat + "/"):
            ignored = not neg
    return ignored


def test_containerfile_structure() -> None:
    instrs = _instructions((DEPLOY / "Containerfile").read_text())
    build, final = _stages(instrs)
    for stage in (build, final):
        assert re.fullmatch(r"docker\.io/library/debian:\$\{DEBIAN_RELEASE\}-slim( AS build)?", stage[0][1])
    # the final stage has every system tool the data planes call
    final_runs = " ".join(args for ins, args in final if ins == "RUN")
    installed = set(
        re.findall(r"[a-z0-9][a-z0-9.+-]+", final_runs.split("apt-get install", 1)[1].split("&&")[0])
    )
    assert {
        "python3",
        "python3-nftables",
        "nftables",
        "iptables",
        "ipset",
        "conntrack",
        "iproute2",
    } <= installed
    assert "python3-bpfcc" in final_runs  # the ebpf backend's bcc (WITH_EBPF, on by default)
    build_runs = " ".join(args for ins, args in build if ins == "RUN")
    assert "python3 -m venv --system-site-packages .venv" in build_runs
    assert ".venv/bin/pip install" in build_runs
    # cni-bin and conf are copied into the image home install-cni falls back to
    assert ("WORKDIR", str(install_cni.IMAGE_HOME)) in build
    copies = [args for ins, args in build if ins == "COPY"]
    assert "cni-bin/ cni-bin/" in copies and "conf/ conf/" in copies
    assert f"--from=build {install_cni.IMAGE_HOME} {install_cni.IMAGE_HOME}" in [
        a for i, a in final if i == "COPY"
    ]
    [env] = [args for ins, args in final if ins == "ENV"]
    assert f"PATH={install_cni.IMAGE_HOME}/.venv/bin:" in env
    assert ("CMD", '["pynet", "agent"]') in final


def test_containerfile_sources_are_in_the_context() -> None:
    instrs = _instructions((DEPLOY / "Containerfile").read_text())
    patterns = [
        ln.strip()
        for ln in (DEPLOY / "Containerfile.dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    sources = [s for ins, args in instrs if ins == "COPY" and "--from" not in args for s in args.split()[:-1]]
    assert sources
    for src in sources:
        rel = src.rstrip("/")
        assert (REPO / rel).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(rel, patterns), f"COPY {src}: excluded by the ignore file"
    # and the bulky or private parts stay out of the context
    for rel in (".venv", ".git", "tests", "src/pynet/__pycache__"):
        assert _ignored(rel, patterns), rel
