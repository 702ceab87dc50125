"""The REAL ``cni-bin`` launchers, installed by ``pynet install-cni``, work where they land.

Covers: the DaemonSet's own init-container command (its arguments, with ``--root`` pointed at a temp
dir and the ConfigMap's conflist) installs the checkout's executables and conflist; installed
executables answer ``CNI_COMMAND=VERSION`` when run by absolute path with ``env -i`` and a standard
PATH, as a runtime runs them, both when they point at this checkout (no ``--home-dir``) and when
they point at a ``--home-dir`` code bundle in a directory that is not a checkout (so the bundle,
not the checkout, is what they import), and the plugin's ADD/DEL imports (pyroute2, the netlink
layer, the IPAM plugin) resolve inside that bundle under the host interpreter's ``-I -S``; the
installed conflist is byte-identical to its source.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pynet.deploy import install_cni
from pynet.deploy.bundle import package_dir
from pynet.deploy.install_cni import HOME_PLACEHOLDER

REPO = Path(__file__).resolve().parents[3]
CNI_BIN = REPO / "cni-bin"
SPEC_VERSIONS = {"0.4.0", "1.0.0", "1.1.0"}
RUNTIME_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _pynet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pynet", "install-cni", *args], capture_output=True, text=True, timeout=60
    )


def _version(exe: Path) -> dict[str, object]:
    """What a runtime sees: exec by absolute path, an almost empty environment, config on stdin."""
    proc = subprocess.run(
        # PYNET_CNI_SOCKET=none: answer in-process, so the imports (pynet, pyroute2) really come
        # from the home the launcher was pointed at, whatever agent may listen in this namespace
        ["env", "-i", f"PATH={RUNTIME_PATH}", "CNI_COMMAND=VERSION", "PYNET_CNI_SOCKET=none", str(exe)],
        input=json.dumps({"cniVersion": "1.0.0"}),
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert proc.returncode == 0, f"{exe.name}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    return result


def test_launchers_carry_the_home_placeholder() -> None:
    """The contract with cni-bin: install-cni bakes the home path in place of this literal."""
    launchers = sorted(p.name for p in CNI_BIN.iterdir() if p.is_file() and not p.name.startswith("."))
    assert {"pynet", "pynet-ipam"} <= set(launchers)
    for name in ("pynet", "pynet-ipam"):
        assert HOME_PLACEHOLDER in (CNI_BIN / name).read_text(), name


@pytest.mark.parametrize("bundle", [False, True], ids=["checkout-home", "bundled-home"])
def test_installed_executables_answer_version(tmp_path: Path, bundle: bool) -> None:
    bin_dir, conf_dir = tmp_path / "opt-cni-bin", tmp_path / "net.d"
    conflist = REPO / "deploy" / "base" / "cni" / "10-pynet.conflist"
    args = ["--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir), "--conflist", str(conflist)]
    if bundle:
        args += ["--home-dir", str(tmp_path / "opt-pynet")]
    proc = _pynet(*args)
    assert proc.returncode == 0, proc.stderr
    for name in ("pynet", "pynet-ipam"):
        exe = bin_dir / name
        text = exe.read_text()
        assert HOME_PLACEHOLDER not in text
        expected_home = tmp_path / "opt-pynet" / "current" if bundle else REPO
        assert str(expected_home) in text
        result = _version(exe)
        assert set(result["supportedVersions"]) >= SPEC_VERSIONS, result  # type: ignore[arg-type]
    assert (conf_dir / "10-pynet.conflist").read_bytes() == conflist.read_bytes()
    if bundle:
        # VERSION needs little; ADD/DEL import the netlink layer: those imports resolve in the bundle
        home = tmp_path / "opt-pynet" / "current"
        probe = (
            f"import sys; sys.path[:0] = [{str(home / 'src')!r}, '/usr/lib/python3/dist-packages']\n"
            "import pyroute2, pynet.cni.main, pynet.cni.commands, pynet.netlink, pynet.cni.ipam.plugin\n"
            "print(pyroute2.__file__); print(pynet.__file__)"
        )
        proc = subprocess.run(
            ["env", "-i", f"PATH={RUNTIME_PATH}", "/usr/bin/python3", "-IS", "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        for line in proc.stdout.split():
            assert Path(line).resolve().is_relative_to((home / "src").resolve()), line


def test_daemonset_init_container_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The init container's exact arguments, with the host mounted at a temp dir instead of /host."""
    # bundle a snapshot: other people edit the live tree while this runs
    snapshot = tmp_path / "snapshot" / "pynet"
    shutil.copytree(package_dir("pynet"), snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(install_cni, "package_dir", lambda n: snapshot if n == "pynet" else package_dir(n))
    rendered = subprocess.run(
        ["/usr/bin/kubectl", "kustomize", str(REPO / "deploy")], capture_output=True, text=True, timeout=30
    )
    assert rendered.returncode == 0, rendered.stderr
    objs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    [cm] = [o for o in objs if o["kind"] == "ConfigMap"]
    [ds] = [o for o in objs if o["kind"] == "DaemonSet"]
    [init] = ds["spec"]["template"]["spec"]["initContainers"]
    conflist = tmp_path / "configmap" / "10-pynet.conflist"
    conflist.parent.mkdir()
    conflist.write_text(cm["data"]["10-pynet.conflist"])
    host = tmp_path / "host"
    args = []
    for arg in init["args"]:
        if arg == "--root=/host":
            arg = f"--root={host}"
        elif arg.startswith("--conflist="):
            arg = f"--conflist={conflist}"
        args.append(arg)
    assert init["command"] == ["pynet", "install-cni"]
    args += ["--source-dir", str(CNI_BIN)]  # the image's /usr/lib/pynet/cni-bin is this checkout's
    assert install_cni.main(args) == 0
    installed = host / "etc/cni/net.d/10-pynet.conflist"
    assert installed.read_text() == cm["data"]["10-pynet.conflist"]
    for name in ("pynet", "pynet-ipam"):
        exe = host / "opt/cni/bin" / name
        assert os.stat(exe).st_mode & 0o777 == 0o755
        assert "/opt/pynet/current" in exe.read_text()  # the host's view, not the container's /host/...
    assert (host / "opt/pynet/current/src/pynet/cni").is_dir()
    assert (host / "opt/pynet/current/src/pyroute2").is_dir()
    # a second start of the pod (container restart, node reboot) changes nothing
    before = {p: p.lstat().st_mtime_ns for p in host.rglob("*")}
    assert install_cni.main(args) == 0
    assert {p: p.lstat().st_mtime_ns for p in host.rglob("*")} == before
