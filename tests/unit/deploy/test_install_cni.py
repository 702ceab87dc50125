"""``pynet install-cni`` into a temporary root (no root privileges needed).

Covers: files land with the right bytes and modes (0755 executables, 0644 conflist); the launcher's
home placeholder is replaced; writes are atomic (temp file in the same directory, complete and
chmodded before the rename; a failed write leaves the old file and no temp behind); another
network's config (other file name) is left byte-for-byte alone, and one under our file name is
refused; a rerun is a no-op (same inode and mtime); a changed source is replaced through a new
inode; the versioned code bundle (current symlink, rerun no-op, pruning); uninstall; the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import pytest

from pynet import cli
from pynet.deploy import files as files_mod
from pynet.deploy import install_cni
from pynet.deploy.bundle import package_dir
from pynet.deploy.files import TMP_PREFIX, Artifact, InstallError, install_file

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "pynet",
    "plugins": [{"type": "pynet", "ipam": {"type": "pynet-ipam"}}, {"type": "portmap"}],
}
LAUNCHER = b'#!/usr/bin/python3 -IS\nHOME = "@PYNET_HOME@"\nprint(HOME)\n'


@pytest.fixture(scope="module")
def pynet_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    snapshot = tmp_path_factory.mktemp("snapshot") / "pynet"
    shutil.copytree(package_dir("pynet"), snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    return snapshot


@pytest.fixture(autouse=True)
def frozen_pynet(pynet_snapshot: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Bundle a snapshot of the pynet package: other people edit the live tree while tests run."""

    def fake_package_dir(name: str) -> Path:
        return pynet_snapshot if name == "pynet" else package_dir(name)

    monkeypatch.setattr(install_cni, "package_dir", fake_package_dir)
    return pynet_snapshot


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A fake pynet home: cni-bin/{pynet,pynet-ipam} and conf/10-pynet.conflist."""
    home = tmp_path / "src-home"
    (home / "cni-bin").mkdir(parents=True)
    (home / "conf").mkdir()
    (home / "cni-bin" / "pynet").write_bytes(LAUNCHER)
    (home / "cni-bin" / "pynet-ipam").write_bytes(LAUNCHER.replace(b"print", b"str"))
    (home / "cni-bin" / ".hidden").write_bytes(b"not installed")
    (home / "conf" / "10-pynet.conflist").write_text(json.dumps(CONFLIST, indent=2))
    return home


def _argv(root: Path, source: Path, *extra: str) -> list[str]:
    return [
        "--root",
        str(root),
        "--source-dir",
        str(source / "cni-bin"),
        "--conflist",
        str(source / "conf" / "10-pynet.conflist"),
        *extra,
    ]


def _opts(root: Path, source: Path, *extra: str) -> install_cni.Options:
    parser = install_cni.argparse.ArgumentParser()
    install_cni.add_arguments(parser)
    return install_cni.options_from_args(parser.parse_args(_argv(root, source, *extra)))


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """path -> (inode, mtime_ns, mode) of every file and symlink under root."""
    out: dict[str, tuple[int, int, int]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if not stat.S_ISDIR(st.st_mode):
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns, st.st_mode)
    return out


def test_files_land_with_modes_and_placeholder_replaced(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    assert cli.main(["install-cni", *_argv(root, source)]) == 0
    bin_dir, conf_dir = root / "opt/cni/bin", root / "etc/cni/net.d"
    assert sorted(p.name for p in bin_dir.iterdir()) == ["pynet", "pynet-ipam"]
    for exe in bin_dir.iterdir():
        assert stat.S_IMODE(exe.stat().st_mode) == 0o755
        assert b"@PYNET_HOME@" not in exe.read_bytes()
    # without --home-dir the launchers point at the home their source lives in
    assert (bin_dir / "pynet").read_bytes() == LAUNCHER.replace(b"@PYNET_HOME@", str(source).encode())
    conf = conf_dir / "10-pynet.conflist"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    assert json.loads(conf.read_text()) == CONFLIST
    assert not [p for p in root.rglob(TMP_PREFIX + "*")]


def test_rerun_is_a_noop(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    opts = _opts(root, source, "--home-dir", "/opt/pynet")
    first = install_cni.install(opts)
    assert len(first) == 4  # the bundle release, two executables, the conflist
    before = _snapshot(root)
    assert install_cni.install(opts) == []
    assert _snapshot(root) == before


def test_changed_source_is_replaced_by_rename(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    opts = _opts(root, source)
    install_cni.install(opts)
    exe = root / "opt/cni/bin/pynet"
    old_inode = exe.stat().st_ino
    ipam_before = (root / "opt/cni/bin/pynet-ipam").stat()
    (source / "cni-bin" / "pynet").write_bytes(LAUNCHER + b"# v2\n")
    assert install_cni.install(opts) == [exe]
    assert exe.read_bytes().endswith(b"# v2\n")
    assert exe.stat().st_ino != old_inode  # a new file renamed over the old one, not rewritten in place
    after = (root / "opt/cni/bin/pynet-ipam").stat()
    assert (after.st_ino, after.st_mtime_ns) == (ipam_before.st_ino, ipam_before.st_mtime_ns)


def test_mode_drift_is_repaired(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    opts = _opts(root, source)
    install_cni.install(opts)
    exe = root / "opt/cni/bin/pynet"
    exe.chmod(0o700)
    assert install_cni.install(opts) == [exe]
    assert stat.S_IMODE(exe.stat().st_mode) == 0o755


def test_write_is_complete_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "d" / "pynet"
    dest.parent.mkdir()
    dest.write_bytes(b"old")
    seen: list[tuple[Path, bytes, int]] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        src_path = Path(src)
        seen.append((src_path, src_path.read_bytes(), stat.S_IMODE(src_path.stat().st_mode)))
        assert dest.read_bytes() == b"old"  # nobody saw a partial file at the real name
        real_replace(src, dst)

    monkeypatch.setattr(files_mod.os, "replace", spy)
    assert install_file(Artifact(dest, b"new contents", 0o755)) is True
    [(tmp, content, mode)] = seen
    assert tmp.parent == dest.parent and tmp.name.startswith(TMP_PREFIX)
    assert (content, mode) == (b"new contents", 0o755)
    assert dest.read_bytes() == b"new contents"


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "pynet"
    dest.write_bytes(b"old")

    def boom(src: str | Path, dst: str | Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_mod.os, "replace", boom)
    with pytest.raises(InstallError, match="No space left"):
        install_file(Artifact(dest, b"new", 0o755))
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pynet"]


def test_stale_temp_of_a_crashed_run_is_removed(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    stale = root / "opt/cni/bin" / f"{TMP_PREFIX}pynet.abc123"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    install_cni.install(_opts(root, source))
    assert not stale.exists()


def test_other_network_config_is_left_alone(
    tmp_path: Path, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    conf_dir = root / "etc/cni/net.d"
    conf_dir.mkdir(parents=True)
    other = conf_dir / "05-flannel.conflist"
    other.write_text(json.dumps({"cniVersion": "0.4.0", "name": "cbr0", "plugins": [{"type": "flannel"}]}))
    os.utime(other, ns=(1_000_000_000, 1_000_000_000))
    before = (other.read_bytes(), other.stat().st_ino, other.stat().st_mtime_ns)
    with caplog.at_level(logging.WARNING, logger="pynet.deploy.install_cni"):
        install_cni.install(_opts(root, source))
    assert (other.read_bytes(), other.stat().st_ino, other.stat().st_mtime_ns) == before
    assert (conf_dir / "10-pynet.conflist").exists()
    # it sorts first, so the runtime would pick it: the operator is told
    assert any("05-flannel.conflist" in r.getMessage() for r in caplog.records)


def test_same_file_name_of_another_network_is_refused(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    conf = root / "etc/cni/net.d/10-pynet.conflist"
    conf.parent.mkdir(parents=True)
    foreign = json.dumps({"cniVersion": "1.0.0", "name": "somebody-else", "plugins": [{"type": "bridge"}]})
    conf.write_text(foreign)
    assert cli.main(["install-cni", *_argv(root, source)]) == 1
    assert conf.read_text() == foreign
    assert not (root / "opt/cni/bin/pynet").exists()  # refused before writing anything


def test_invalid_source_conflist_is_refused(tmp_path: Path, source: Path) -> None:
    (source / "conf" / "10-pynet.conflist").write_text('{"cniVersion": "1.0.0", "plugins": []}')
    with pytest.raises(InstallError, match="no network 'name'"):
        install_cni.install(_opts(tmp_path / "root", source))


def test_relative_destination_is_refused(tmp_path: Path, source: Path) -> None:
    with pytest.raises(InstallError, match="absolute"):
        _opts(tmp_path / "root", source, "--bin-dir", "opt/cni/bin")


def test_home_dir_bundle_is_versioned_and_pruned(tmp_path: Path, source: Path, frozen_pynet: Path) -> None:
    root = tmp_path / "root"
    opts = _opts(root, source, "--home-dir", "/opt/pynet")
    install_cni.install(opts)
    home = root / "opt/pynet"
    current = home / "current"
    assert current.is_symlink() and not os.readlink(current).startswith("/")  # relative: valid on the host
    assert (current / "src/pynet/__init__.py").is_file()
    assert (current / "src/pynet/deploy/install_cni.py").read_bytes() == Path(
        install_cni.__file__
    ).read_bytes()
    assert (current / "src/pyroute2/__init__.py").is_file()
    assert not list(current.rglob("__pycache__"))
    # the launchers point at <home>/current as the host sees it (no --root prefix)
    assert b'HOME = "/opt/pynet/current"' in (root / "opt/cni/bin/pynet").read_bytes()

    def releases() -> list[str]:
        return sorted(p.name for p in (home / "releases").iterdir())

    first = os.readlink(current)
    # a new pynet version: new release, previous kept for plugins still running from it
    opts_v2 = _opts(root, source, "--home-dir", "/opt/pynet", "--bundle-package", "yaml")
    install_cni.install(opts_v2)
    second = os.readlink(current)
    assert second != first and releases() == sorted([Path(first).name, Path(second).name])
    assert (current / "src/yaml/__init__.py").is_file()
    # a third version prunes the first
    opts_v3 = _opts(
        root, source, "--home-dir", "/opt/pynet", "--bundle-package", "yaml", "--bundle-package", "pyroute2"
    )
    install_cni.install(opts_v3)
    assert Path(first).name not in releases() and len(releases()) == 2


def test_uninstall_removes_ours_only(tmp_path: Path, source: Path) -> None:
    root = tmp_path / "root"
    other = root / "etc/cni/net.d/20-other.conflist"
    other.parent.mkdir(parents=True)
    other.write_text(json.dumps({"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "bridge"}]}))
    (root / "opt/cni/bin").mkdir(parents=True)
    (root / "opt/cni/bin/bridge").write_bytes(b"reference bridge")
    assert cli.main(["install-cni", *_argv(root, source, "--home-dir", "/opt/pynet")]) == 0
    assert cli.main(["install-cni", *_argv(root, source, "--home-dir", "/opt/pynet", "--uninstall")]) == 0
    assert sorted(p.name for p in (root / "opt/cni/bin").iterdir()) == ["bridge"]
    assert sorted(p.name for p in (root / "etc/cni/net.d").iterdir()) == ["20-other.conflist"]
    assert list((root / "opt/pynet").iterdir()) == []
