"""Delegated plugins (IPAM): exec the plugin named ``ipam.type`` from CNI_PATH, per the spec.

The delegate gets the caller's environment with ``CNI_COMMAND`` set to the verb being delegated and
the caller's stdin unchanged. Its stdout is parsed as a result (ADD) or as a spec error, which is
re-raised with the delegate's own code. A plugin that cannot be found is code 7 (the config names a
plugin this node does not have), or 50 for STATUS (plugin not available).

An optional in-process shortcut exists for pynet's own IPAM (``IN_PROCESS``), used when the
request runs inside the agent, where importing it costs nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

from pynet.cni.errors import CniError, ErrCode
from pynet.cni.skel import CmdArgs
from pynet.cni.types import Result

__all__ = ["DELEGATE_TIMEOUT", "InProcess", "delegate", "find_plugin"]

DELEGATE_TIMEOUT = 60.0

#: name -> callable(command, args) running that plugin's command without exec (returns a Result or None)
InProcess = Callable[[str, CmdArgs], Result | None]
IN_PROCESS: dict[str, InProcess] = {}


def find_plugin(name: str, path: tuple[str, ...]) -> str | None:
    if not name or "/" in name:
        return None
    for directory in path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def delegate(command: str, plugin: str, args: CmdArgs, *, stdin: bytes | None = None) -> Result | None:
    """Run ``plugin``'s ``command`` (ADD returns its Result; other verbs return None)."""
    shortcut = IN_PROCESS.get(plugin)
    if shortcut is not None:
        return shortcut(command, args)
    exe = find_plugin(plugin, args.path)
    if exe is None:
        code = ErrCode.PLUGIN_NOT_AVAILABLE if command == "STATUS" else ErrCode.INVALID_NETWORK_CONFIG
        raise CniError(code, f"IPAM plugin {plugin!r} not found in CNI_PATH", ":".join(args.path))
    env = dict(args.environ)
    env["CNI_COMMAND"] = command
    try:
        proc = subprocess.run([exe], input=args.stdin if stdin is None else stdin, env=env,
                              capture_output=True, timeout=DELEGATE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as err:
        raise CniError(ErrCode.TRY_AGAIN_LATER, f"IPAM plugin {plugin} timed out ({command})") from err
    except OSError as err:
        raise CniError(ErrCode.IO_FAILURE, f"cannot execute IPAM plugin {exe}", str(err)) from err
    out: Any = None
    if proc.stdout.strip():
        try:
            out = json.loads(proc.stdout)
        except ValueError as err:
            if proc.returncode == 0:
                raise CniError(ErrCode.DECODE, f"IPAM plugin {plugin} printed no JSON",
                               proc.stdout.decode(errors="replace")[:500]) from err
    if proc.returncode != 0:
        if isinstance(out, dict) and "code" in out:
            raise CniError.from_dict(out)
        raise CniError(ErrCode.INTERNAL, f"IPAM plugin {plugin} failed ({command}, exit {proc.returncode})",
                       proc.stderr.decode(errors="replace")[-500:])
    if command != "ADD":
        return None
    if not isinstance(out, dict):
        raise CniError(ErrCode.DECODE, f"IPAM plugin {plugin} returned no result")
    return Result.from_dict(out, args.cni_version)
