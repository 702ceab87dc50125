"""``pynet-ipam``: the IPAM plugin executable, through the shared CNI skeleton.

``cni-bin/pynet-ipam`` calls :func:`main`. Each command maps onto the in-process API in
:mod:`pynet.cni.ipam.api`; the skeleton does the environment, stdin, version gates and error JSON.
This import path is stdlib-only (no pyroute2), so a call costs little more than the interpreter start.
"""

from __future__ import annotations

import sys

from pynet.cni.ipam import api
from pynet.cni.skel import CmdArgs, PluginFuncs, plugin_main
from pynet.cni.types import Result
from pynet.cni.version import SUPPORTED

__all__ = ["ABOUT", "FUNCS", "main"]

ABOUT = "pynet-ipam: host-local compatible IPAM (CNI 1.1.0)"


def cmd_add(args: CmdArgs) -> Result:
    return api.ipam_add(args.conf, args)


def cmd_del(args: CmdArgs) -> None:
    api.ipam_del(args.conf, args)


def cmd_check(args: CmdArgs) -> None:
    api.ipam_check(args.conf, args)


def cmd_gc(args: CmdArgs) -> None:
    api.ipam_gc(args.conf)


def cmd_status(args: CmdArgs) -> None:
    api.ipam_status(args.conf)


FUNCS = PluginFuncs(add=cmd_add, delete=cmd_del, check=cmd_check, gc=cmd_gc, status=cmd_status)


def main() -> int:
    return plugin_main(FUNCS, SUPPORTED, ABOUT)


if __name__ == "__main__":
    sys.exit(main())
