"""``pynet install-cni``: put the CNI executables and the network config on a node.

This is the DaemonSet's init container job (and works by hand on any machine). It installs:

- every executable of the source ``cni-bin`` directory into ``--bin-dir`` (mode 0755), with the
  launcher's home placeholder replaced by the directory the code can be found in on the host;
- the network config list into ``--conf-dir`` (mode 0644), after checking it is valid JSON with a
  ``name`` and ``plugins``;
- with ``--home-dir``, a versioned copy of the code those launchers run (:mod:`pynet.deploy.bundle`).

Invariants: every write is atomic (temp file in the same directory, then rename); identical files
are not rewritten (a rerun changes no mtime); a config file of the same name that belongs to
*another* network is never overwritten (exit 1 with the reason), and files of other names are
never touched. ``--root`` prefixes every destination (a container mounting the host at ``/host``
passes ``--root /host``) while the paths baked into launchers stay the host's view.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pynet._log import get_logger, setup_logging
from pynet.deploy.bundle import collect_bundle, install_bundle, package_dir
from pynet.deploy.files import Artifact, InstallError, install_file, remove_stale_temps

__all__ = [
    "HOME_PLACEHOLDER",
    "InstallPlan",
    "Options",
    "add_arguments",
    "default_home",
    "install",
    "options_from_args",
    "plan",
    "run",
    "uninstall",
]

log = get_logger("pynet.deploy.install_cni")

#: the literal a launcher carries where the pynet home path goes (replaced on install)
HOME_PLACEHOLDER = "@PYNET_HOME@"
#: where the container image keeps cni-bin/ and conf/ (see deploy/Containerfile)
IMAGE_HOME = Path("/usr/lib/pynet")
CONF_SUFFIXES = (".conflist", ".conf", ".json")


def default_home() -> Path:
    """The directory holding ``cni-bin/`` and ``conf/``: this checkout, else the image's."""
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "cni-bin").is_dir() and (checkout / "src" / "pynet").is_dir():
        return checkout
    return IMAGE_HOME


@dataclass(frozen=True, slots=True)
class Options:
    root: Path
    bin_dir: Path
    conf_dir: Path
    source_dir: Path
    conflist: Path
    conflist_name: str
    home_dir: Path | None
    bundle_packages: tuple[str, ...]

    def host(self, path: Path) -> Path:
        """``path`` (host view) as seen from here, under ``--root``."""
        return self.root / path.relative_to(path.anchor)


@dataclass(frozen=True, slots=True)
class InstallPlan:
    network: str
    executables: tuple[Artifact, ...]
    conflist: Artifact
    baked_home: Path


def _network_name(content: bytes, where: str) -> str:
    try:
        doc = json.loads(content)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InstallError(f"{where} is not valid JSON: {err}") from err
    if not isinstance(doc, dict):
        raise InstallError(f"{where} is not a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise InstallError(f"{where} has no network 'name'")
    plugins = doc.get("plugins")
    if "type" not in doc and not (isinstance(plugins, list) and plugins):
        raise InstallError(f"{where} has neither 'plugins' nor 'type'")
    return name


def _launcher(content: bytes, home: Path) -> bytes:
    return content.replace(HOME_PLACEHOLDER.encode(), str(home).encode())


def plan(opts: Options) -> InstallPlan:
    """Read the sources and decide every file to write (no writes)."""
    try:
        conf_bytes = opts.conflist.read_bytes()
    except OSError as err:
        raise InstallError(f"cannot read network config {opts.conflist}: {err.strerror}") from err
    network = _network_name(conf_bytes, str(opts.conflist))
    baked_home = opts.home_dir / "current" if opts.home_dir else opts.source_dir.resolve().parent
    try:
        sources = sorted(p for p in opts.source_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as err:
        raise InstallError(f"cannot list CNI executables in {opts.source_dir}: {err.strerror}") from err
    if not sources:
        raise InstallError(f"no CNI executables in {opts.source_dir}")
    bin_dir = opts.host(opts.bin_dir)
    executables = tuple(
        Artifact(bin_dir / p.name, _launcher(p.read_bytes(), baked_home), 0o755) for p in sources
    )
    conflist = Artifact(opts.host(opts.conf_dir) / opts.conflist_name, conf_bytes, 0o644)
    return InstallPlan(network, executables, conflist, baked_home)


def _check_conf_dir(opts: Options, network: str) -> None:
    """Refuse to replace another network's file; warn when another config would win."""
    conf_dir = opts.host(opts.conf_dir)
    ours = conf_dir / opts.conflist_name
    if ours.exists():
        try:
            existing = _network_name(ours.read_bytes(), str(ours))
        except InstallError as err:
            raise InstallError(
                f"{ours} exists and is not a pynet config ({err}); not overwriting it"
            ) from err
        if existing != network:
            raise InstallError(
                f"{ours} belongs to network {existing!r}, not {network!r}; not overwriting it "
                "(remove it or pick another --conflist-name)"
            )
    try:
        others = sorted(p.name for p in conf_dir.iterdir() if p.name.endswith(CONF_SUFFIXES) and p != ours)
    except FileNotFoundError:
        return
    earlier = [n for n in others if n < opts.conflist_name]
    if earlier:
        # runtimes use the lexically first config: pods would not get pynet's network
        log.warning(
            "other CNI configs sort before ours; the runtime will use %s, not %s",
            earlier[0],
            opts.conflist_name,
        )


def install(opts: Options) -> list[Path]:
    """Install everything; return the paths that were (re)written. Raises InstallError."""
    p = plan(opts)
    _check_conf_dir(opts, p.network)
    written: list[Path] = []
    if opts.home_dir is not None:
        libs = [package_dir(name) for name in opts.bundle_packages]
        files = collect_bundle(package_dir("pynet"), libs)
        result = install_bundle(opts.host(opts.home_dir), files)
        if result.changed:
            written.append(result.release)
        log.info("code bundle %s: %s", "installed" if result.changed else "unchanged", result.release)
    # executables before the config: a runtime that sees the config must find the plugins
    for artifact in (*p.executables, p.conflist):
        remove_stale_temps(artifact.dest.parent)
        changed = install_file(artifact)
        log.info("%s %s", "installed" if changed else "unchanged", artifact.dest)
        if changed:
            written.append(artifact.dest)
    return written


def uninstall(opts: Options) -> list[Path]:
    """Remove what :func:`install` put there (never another network's config); return removed paths."""
    p = plan(opts)
    removed: list[Path] = []
    conf = p.conflist.dest
    if conf.exists():
        try:
            mine = _network_name(conf.read_bytes(), str(conf)) == p.network
        except InstallError:
            mine = False
        if mine:
            conf.unlink()
            removed.append(conf)
        else:
            log.warning("leaving %s alone: it is not the %s network's config", conf, p.network)
    for artifact in p.executables:
        if artifact.dest.exists():
            artifact.dest.unlink()
            removed.append(artifact.dest)
    if opts.home_dir is not None:
        home = opts.host(opts.home_dir)
        for entry in (home / "current", home / "releases"):
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
                removed.append(entry)
            elif entry.is_dir():
                shutil.rmtree(entry)
                removed.append(entry)
    return removed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    home = default_home()
    parser.add_argument(
        "--root", type=Path, default=Path("/"), help="prefix of every destination, e.g. /host (default /)"
    )
    parser.add_argument(
        "--bin-dir", type=Path, default=Path("/opt/cni/bin"), help="CNI executables (default /opt/cni/bin)"
    )
    parser.add_argument(
        "--conf-dir", type=Path, default=Path("/etc/cni/net.d"), help="CNI configs (default /etc/cni/net.d)"
    )
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=home / "cni-bin",
        help=f"where the cni-bin executables are (default {home / 'cni-bin'})",
    )
    parser.add_argument(
        "--conflist",
        type=Path,
        default=home / "conf" / "10-pynet.conflist",
        help=f"the network config list to install (default {home / 'conf' / '10-pynet.conflist'})",
    )
    parser.add_argument(
        "--conflist-name", default=None, help="file name in --conf-dir (default: that of --conflist)"
    )
    parser.add_argument(
        "--home-dir",
        type=Path,
        default=None,
        help="also copy the plugin's code here (host view, e.g. /opt/pynet) and point the launchers at it; "
        "without it the launchers run the code next to --source-dir",
    )
    parser.add_argument(
        "--bundle-package",
        action="append",
        dest="bundle_packages",
        default=None,
        help="third-party package to copy into --home-dir (repeatable; default: pyroute2)",
    )
    parser.add_argument(
        "--uninstall", action="store_true", help="remove what install-cni installed, then exit"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (default INFO)")


def options_from_args(args: argparse.Namespace) -> Options:
    for name in ("bin_dir", "conf_dir", "home_dir"):
        value = getattr(args, name)
        if value is not None and not value.is_absolute():
            raise InstallError(
                f"--{name.replace('_', '-')} must be an absolute path (host view), got {value}"
            )
    return Options(
        root=args.root,
        bin_dir=args.bin_dir,
        conf_dir=args.conf_dir,
        source_dir=args.source_dir,
        conflist=args.conflist,
        conflist_name=args.conflist_name or args.conflist.name,
        home_dir=args.home_dir,
        bundle_packages=tuple(args.bundle_packages or ("pyroute2",)),
    )


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        opts = options_from_args(args)
        if args.uninstall:
            for path in uninstall(opts):
                log.info("removed %s", path)
        else:
            install(opts)
    except InstallError as err:
        print(f"pynet install-cni: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pynet install-cni")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
