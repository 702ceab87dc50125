"""A CNI runtime harness for tests: run the real plugin executables the way a runtime does.

Every call executes the plugin by absolute path inside a node namespace, with an almost empty
environment (``PATH`` plus the ``CNI_*`` variables) and the config on stdin, and returns the exit
status and the parsed stdout::

    from pynet.testing.cni import PYNET, run_plugin, run_chain, bridge_conf

    node, pod = make_netns("node"), make_netns("pod")
    res = run_plugin(node, "ADD", bridge_conf("net1", "10.50.0.0/24", tmp_path), "ctr1", pod.path)
    assert res.code == 0, res.out
    ip = res.out["ips"][0]["address"]
    run_plugin(node, "DEL", conf, "ctr1", pod.path)

``run_chain`` plays libcni for a conflist (ADD in order with ``prevResult`` threaded through, DEL
in reverse with the final result, CHECK in order), so reference plugins such as ``portmap`` can be
chained after ``pynet``. ``cni_server`` runs the agent's :class:`pynet.cni.server.CniServer` inside a
node namespace (the launcher's fast path) for as long as the ``with`` block lasts.

Plugins run in-process unless a test asks for the fast path: ``run_plugin`` passes
``PYNET_CNI_SOCKET=none`` by default and ``socket_name`` switches to a server started with
``cni_server(node, socket_name)``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynet.testing.netns import STANDARD_PATH, TestNetns

__all__ = ["CNI_PATH", "PYNET", "PYNET_IPAM", "REPO_ROOT", "PluginRun", "bridge_conf", "cni_env", "cni_server",
           "run_chain", "run_plugin"]

REPO_ROOT = Path(__file__).resolve().parents[3]
PYNET = str(REPO_ROOT / "cni-bin" / "pynet")
PYNET_IPAM = str(REPO_ROOT / "cni-bin" / "pynet-ipam")
#: pynet's executables first, then Debian's reference plugins (containernetworking-plugins)
CNI_PATH = f"{REPO_ROOT / 'cni-bin'}:/usr/lib/cni"


@dataclass(frozen=True)
class PluginRun:
    code: int
    out: Any  # parsed JSON of stdout, or None when stdout was empty
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.code == 0


def cni_env(command: str, container_id: str = "", netns: str = "", ifname: str = "eth0", *, args: str = "",
            cni_path: str = CNI_PATH, socket_name: str | None = None,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": STANDARD_PATH, "CNI_COMMAND": command, "CNI_PATH": cni_path,
           "PYNET_CNI_SOCKET": socket_name or "none"}
    for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname),
                       ("CNI_ARGS", args)):
        if value:
            env[key] = value
    env.update(extra or {})
    return env


def run_plugin(node: TestNetns, command: str, conf: Mapping[str, Any] | bytes, container_id: str = "",
               netns: str = "", ifname: str = "eth0", *, plugin: str = PYNET, args: str = "",
               cni_path: str = CNI_PATH, socket_name: str | None = None, timeout: float = 60,
               extra_env: Mapping[str, str] | None = None) -> PluginRun:
    """Run ``plugin`` once inside ``node``; ``conf`` is a dict (sent as JSON) or raw bytes."""
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    env = cni_env(command, container_id, netns, ifname, args=args, cni_path=cni_path, socket_name=socket_name,
                  extra=extra_env)
    start = time.monotonic()
    proc = subprocess.run(node.argv(plugin), input=data, env=env, capture_output=True, timeout=timeout)
    seconds = time.monotonic() - start
    text = proc.stdout.decode().strip()
    try:
        out = json.loads(text) if text else None
    except ValueError:
        out = text
    return PluginRun(proc.returncode, out, proc.stderr.decode(), seconds)


def _plugin_conf(conflist: Mapping[str, Any], plugin: Mapping[str, Any], prev: Any) -> dict[str, Any]:
    conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def run_chain(node: TestNetns, command: str, conflist: Mapping[str, Any], container_id: str, netns: str,
              ifname: str = "eth0", *, prev: Any = None, runtime_config: Mapping[str, Any] | None = None,
              **kw: Any) -> PluginRun:
    """Invoke every plugin of ``conflist`` like libcni; returns the last run (ADD: the final result).

    ``runtime_config`` maps capability names to values (e.g. ``{"portMappings": [...]}``); each
    plugin receives those its ``capabilities`` enable, under ``runtimeConfig``. DEL and CHECK need
    ``prev`` (the result ADD returned).
    """
    plugins: Sequence[Mapping[str, Any]] = conflist["plugins"]
    order = list(reversed(plugins)) if command == "DEL" else list(plugins)
    last: PluginRun | None = None
    result = prev
    for plugin in order:
        caps = {k: v for k, v in (runtime_config or {}).items() if plugin.get("capabilities", {}).get(k)}
        conf = _plugin_conf(conflist, plugin, result if command != "VERSION" else None)
        if caps:
            conf["runtimeConfig"] = caps
        exe = PYNET if plugin["type"] == "pynet" else str(Path("/usr/lib/cni") / plugin["type"])
        last = run_plugin(node, command, conf, container_id, netns, ifname, plugin=exe, **kw)
        if not last.ok:
            return last
        if command == "ADD":
            result = last.out
    assert last is not None
    return last


def bridge_conf(name: str, subnet: str, data_dir: Path | str, version: str = "1.0.0", **keys: Any) -> dict[str, Any]:
    """A pynet bridge-mode config with pynet-ipam on ``subnet`` storing under ``data_dir``."""
    conf: dict[str, Any] = {"cniVersion": version, "name": name, "type": "pynet", "bridge": "pynet0",
                            "isGateway": True, "isDefaultGateway": True,
                            "ipam": {"type": "pynet-ipam", "ranges": [[{"subnet": subnet}]], "dataDir": str(data_dir)}}
    conf.update(keys)
    return conf


_SERVER_SRC = """
import sys
sys.path[:0] = {paths!r}
from pynet.cni.server import CniServer
s = CniServer({name!r})
s.start()
print("ready", flush=True)
sys.stdin.read()
s.stop()
print("served", s.served, flush=True)
"""


@contextmanager
def cni_server(node: TestNetns, socket_name: str) -> Iterator[dict[str, int]]:
    """Run a CniServer in ``node`` for the block; yields a dict filled with ``{"served": N}`` on exit."""
    src = _SERVER_SRC.format(paths=[str(REPO_ROOT / "src")], name=socket_name)
    proc = node.popen([sys.executable, "-c", src], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.DEVNULL)
    stats: dict[str, int] = {}
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"CNI server did not start in {node.name}: {line!r}")
        yield stats
        out, _ = proc.communicate("", timeout=30)
        for ln in out.splitlines():
            if ln.startswith("served "):
                stats["served"] = int(ln.split()[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
