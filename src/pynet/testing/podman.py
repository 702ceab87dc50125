"""Run a real podman (CNI network backend) against pynet without touching the machine.

:class:`PodmanSandbox` gives podman a world of its own, per MACHINE-NOTES.md:

* a node network namespace made by the test: podman's bridge, veths, port rules and its pods'
  namespaces are all built from there, never in the root namespace;
* a private mount namespace (``unshare --mount --propagation slave``) held open by one helper
  process, in which a fresh sysfs (of the node netns) is mounted over ``/sys`` with the cgroup tree
  bound back, and overlays cover ``/var/lib`` and ``/run`` with their upper layers in the test's
  temp dir: whatever podman, conmon, runc and libcni write there (``/var/lib/cni``,
  ``/run/netns/...``, ``/run/libpod``) vanishes with the namespace;
* private configuration through ``CONTAINERS_CONF`` / ``CONTAINERS_STORAGE_CONF`` /
  ``CONTAINERS_REGISTRIES_CONF``: ``network_backend = "cni"``, our CNI plugin and config dirs,
  ``runc`` (crun refuses this machine's hybrid cgroups), ``cgroupfs``, ``vfs`` storage in the temp
  dir, file events log, and the ulimits root may set here (it lacks CAP_SYS_RESOURCE).

Every podman command runs as ``nsenter -t <helper> -n -m podman ...``. :meth:`close` removes all
containers (so CNI DEL runs), then kills the helper by PID; the node netns fixture kills what is left
in the node namespace. Images come from a local rootfs tarball (Debian's static busybox), no registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynet.testing.netns import STANDARD_PATH, TestNetns, random_suffix

__all__ = ["BUSYBOX_APPLETS", "IMAGE", "PodmanSandbox", "root_netns_snapshot"]

IMAGE = "localhost/pynet-busybox:test"
BUSYBOX = "/bin/busybox"
BUSYBOX_APPLETS = ("sh", "ip", "sleep", "cat", "ls", "ping", "hostname", "ifconfig", "route", "wget")

_MOUNT_SCRIPT = r"""
set -eu
W="$1"
mkdir -p "$W/cgroup" "$W/varlib/up" "$W/varlib/work" "$W/run/up" "$W/run/work"
mount --rbind /sys/fs/cgroup "$W/cgroup"
mount -t sysfs sysfs /sys
mount --rbind "$W/cgroup" /sys/fs/cgroup
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$W/varlib/up,workdir=$W/varlib/work" /var/lib
mount -t overlay overlay -o "lowerdir=/run,upperdir=$W/run/up,workdir=$W/run/work" /run
echo ready > "$W/ready"
exec sleep 86400
"""


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


#: where podman, conmon and libcni keep state when left alone; none may appear on the real machine
_PODMAN_PATHS = ("/var/lib/containers", "/var/lib/cni", "/run/libpod", "/run/containers", "/run/cni",
                 "/run/runc", "/var/lib/cni/networks")


def root_netns_snapshot() -> dict[str, str]:
    """What podman must not change on the machine: root netns links, rules, routes, nft; state dirs."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    links = sorted(line.split(":")[1].strip().split("@")[0] for line in out("ip", "-o", "link").splitlines())
    podman_netns = sorted(n for n in os.listdir("/run/netns") if n.startswith(("netns-", "cni-")))  \
        if os.path.isdir("/run/netns") else []
    return {
        "links": "\n".join(links),
        "rules4": out("ip", "-4", "rule"),
        "rules6": out("ip", "-6", "rule"),
        "routes4": out("ip", "-4", "route", "show", "table", "all"),
        "nft": out("nft", "list", "ruleset"),
        "podman-netns": "\n".join(podman_netns),
        "etc-cni": "\n".join(sorted(os.listdir("/etc/cni/net.d"))) if os.path.isdir("/etc/cni/net.d") else "",
        "paths": " ".join(p for p in _PODMAN_PATHS if os.path.exists(p)),
    }


@dataclass
class PodmanSandbox:
    """A podman whose every side effect stays in ``node`` and ``workdir``."""

    workdir: Path
    node: TestNetns
    cni_plugin_dirs: Sequence[str]
    helper: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: containers' cgroups go under this parent (``podman run --cgroup-parent``), removed by close()
    cgroup_parent: str = field(default_factory=lambda: f"/pynet-podman-{random_suffix()}")

    @property
    def net_dir(self) -> Path:
        return self.workdir / "net.d"

    # -- set-up ------------------------------------------------------------------------------------
    def start(self, timeout: float = 10) -> PodmanSandbox:
        w = self.workdir
        for sub in ("net.d", "graphroot", "runroot", "tmp", "home", "libpod"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        (w / "containers.conf").write_text(f"""
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = {_toml_list(self.cni_plugin_dirs)}
network_config_dir = "{self.net_dir}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{w}/events.log"
image_copy_tmp_dir = "{w}/tmp"
static_dir = "{w}/libpod"
tmp_dir = "{w}/libpod-tmp"
""")
        (w / "storage.conf").write_text(f"""
[storage]
driver = "vfs"
graphroot = "{w}/graphroot"
runroot = "{w}/runroot"
""")
        (w / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.env = {
            "PATH": STANDARD_PATH,
            "HOME": str(w / "home"),
            "TMPDIR": str(w / "tmp"),
            "CONTAINERS_CONF": str(w / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(w / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(w / "registries.conf"),
        }
        self.helper = subprocess.Popen(
            ["nsenter", f"--net={self.node.path}", "unshare", "--mount", "--propagation", "slave",
             "sh", "-c", _MOUNT_SCRIPT, "podman-sandbox", str(w)],
            env={"PATH": STANDARD_PATH}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not (w / "ready").exists():
            if self.helper.poll() is not None:
                err = self.helper.stderr.read().decode() if self.helper.stderr else ""
                raise RuntimeError(f"podman sandbox helper exited {self.helper.returncode}: {err}")
            if time.monotonic() > deadline:
                raise TimeoutError("podman sandbox helper did not get ready")
            time.sleep(0.02)
        return self

    # -- running things inside -------------------------------------------------------------------
    def argv(self, *argv: str) -> list[str]:
        assert self.helper is not None, "call start() first"
        return ["nsenter", "-t", str(self.helper.pid), "-n", "-m", "--", *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Any command inside the sandbox's namespaces (the node netns, the private mounts)."""
        proc = subprocess.run(self.argv(*argv), env=self.env, capture_output=True, timeout=timeout, input=input)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                           proc.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"in podman sandbox: {' '.join(argv)} exited {done.returncode}\n"
                                 f"stdout: {done.stdout}\nstderr: {done.stderr}")
        return done

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *args, check=check, timeout=timeout)

    def run_container(self, name: str, network: str, *cmd: str, image: str = IMAGE,
                      extra: Sequence[str] = ()) -> str:
        """``podman run -d`` on ``network``; returns the full container id (the CNI_CONTAINERID)."""
        out = self.podman("run", "-d", "--name", name, "--network", network, "--cgroup-parent",
                          self.cgroup_parent, *extra, image, *cmd, timeout=60)
        return out.stdout.strip().splitlines()[-1]

    def build_busybox_image(self, name: str = IMAGE) -> str:
        """A one-layer image of Debian's static busybox, imported from a tarball (no registry)."""
        rootfs = self.workdir / "rootfs"
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "run"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            link = rootfs / "bin" / applet
            if not link.exists():
                link.symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        tarball = self.workdir / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
        self.podman("import", "--change", "CMD=/bin/sh", str(tarball), name, timeout=120)
        return name

    def write_network(self, conflist: Mapping[str, Any]) -> Path:
        path = self.net_dir / f"{conflist['name']}.conflist"
        path.write_text(json.dumps(conflist, indent=2))
        return path

    # -- teardown -------------------------------------------------------------------------------
    def close(self) -> None:
        if self.helper is None:
            return
        with contextlib.suppress(Exception):
            self.podman("rm", "--all", "--force", "--time", "0", check=False, timeout=60)
        if self.helper.poll() is None:
            os.kill(self.helper.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.helper.wait(timeout=10)
        self.helper = None
        # runc with cgroupfs leaves the (now empty) parent directories in every hierarchy
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            parent = hierarchy / self.cgroup_parent.lstrip("/")
            for d in sorted(parent.glob("**/"), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()

    def __enter__(self) -> PodmanSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
