"""Execute a CNI network configuration list the way a container runtime does (libcni's order).

ADD runs every plugin of the list in order, each given the previous plugin's result as
``prevResult``; DEL runs them in reverse order with the ADD result as ``prevResult``. Each plugin is
the executable named by its ``type`` found on ``CNI_PATH``, started with an almost empty environment
(``env -i`` + a standard PATH + the ``CNI_*`` variables), inside the NODE's network namespace (the
"host" of the call) via ``ip netns exec``. Errors come back as the plugin's spec JSON and are raised
as :class:`CniCallError` with its code and message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from pynet.errors import PynetError
from pynet.lab import netns

__all__ = ["CniCallError", "CniRuntime", "first_ipv4"]


class CniCallError(PynetError):
    def __init__(self, plugin: str, command: str, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{plugin} {command} failed (code {code}): {msg}{f' ({details})' if details else ''}")
        self.code = code


@dataclass(frozen=True)
class CniRuntime:
    """Runs one conflist for pods of one node namespace."""

    conflist: Mapping[str, Any]
    cni_path: Sequence[Path]
    node_netns: str
    timeout: float = 30.0

    def _find(self, plugin_type: str) -> Path:
        for d in self.cni_path:
            candidate = d / plugin_type
            if os.access(candidate, os.X_OK):
                return candidate
        raise CniCallError(plugin_type, "find", 3, f"plugin {plugin_type!r} not on CNI_PATH {list(map(str, self.cni_path))}")

    def _call(self, plugin: Mapping[str, Any], command: str, container_id: str, pod_netns: str, ifname: str,
              prev: Mapping[str, Any] | None, args: str) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = self.conflist["name"]
        conf["cniVersion"] = self.conflist["cniVersion"]
        if prev is not None:
            conf["prevResult"] = prev
        env = {
            "PATH": netns.STANDARD_PATH,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": pod_netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": ":".join(map(str, self.cni_path)),
            "CNI_ARGS": args,
        }
        exe = self._find(str(plugin["type"]))
        argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), str(exe)]
        proc = netns.run(self.node_netns, argv, input=json.dumps(conf), timeout=self.timeout, check=False)
        out = proc.stdout.strip()
        if proc.returncode != 0:
            try:
                err = json.loads(out)
                raise CniCallError(str(plugin["type"]), command, int(err.get("code", 999)), str(err.get("msg", "")),
                                   str(err.get("details", "")))
            except (ValueError, AttributeError):
                raise CniCallError(str(plugin["type"]), command, 999,
                                   f"exit {proc.returncode}: {out or proc.stderr.strip()}") from None
        if command != "ADD":
            return {}
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError as err:
            raise CniCallError(str(plugin["type"]), command, 999, f"not a JSON result: {out[:200]!r}") from err
        return result

    def add(self, container_id: str, pod_netns: str, ifname: str = "eth0", args: str = "") -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for plugin in self.conflist["plugins"]:
            prev = self._call(plugin, "ADD", container_id, pod_netns, ifname, prev, args)
        return prev or {}

    def delete(self, container_id: str, pod_netns: str, ifname: str = "eth0", prev: Mapping[str, Any] | None = None,
               args: str = "") -> None:
        for plugin in reversed(self.conflist["plugins"]):
            self._call(plugin, "DEL", container_id, pod_netns, ifname, prev, args)


def first_ipv4(result: Mapping[str, Any]) -> IPv4Address | None:
    """The first IPv4 address of a CNI result (``ips[].address`` is ``addr/len``)."""
    for ip in result.get("ips", ()):
        try:
            iface = IPv4Interface(str(ip.get("address", "")))
        except ValueError:
            continue
        return iface.ip
    return None
