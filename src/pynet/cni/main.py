"""Entry point of the ``pynet`` CNI plugin (``cni-bin/pynet`` and ``python -m pynet.cni``).

Registers pynet's own IPAM for in-process delegation (``ipam.type: pynet-ipam`` then costs no
exec), then hands over to :func:`pynet.cni.skel.plugin_main`.

Start-up budget: VERSION and requests that skel rejects (bad environment, bad JSON, unsupported
version) import only skel, the error codes and the version table. The commands (config, drivers,
pyroute2, libnftables, IPAM) are imported by :data:`FUNCS` when a command function is first called,
after :func:`~pynet.netlink.lean.lean_pyroute2` has installed the lean pyroute2 import.
"""

from __future__ import annotations

import sys

import pynet
from pynet.cni.skel import CmdArgs, PluginFuncs, plugin_main
from pynet.cni.version import SUPPORTED

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the plugin imports this module on every call
if TYPE_CHECKING:
    from pynet.cni.types import Result

__all__ = ["ABOUT", "FUNCS", "main", "register_in_process_ipam"]

ABOUT = f"pynet {pynet.__version__}: bridge/VXLAN CNI plugin (CNI 1.1.0)"


def register_in_process_ipam() -> None:
    from pynet.cni import delegate

    try:
        from pynet.cni.ipam.api import ipam_command
    except ImportError:  # an install without pynet-ipam: delegation execs whatever ipam.type names
        return
    delegate.IN_PROCESS["pynet-ipam"] = ipam_command


def _commands() -> PluginFuncs:
    """The real command functions, imported on first use (see the module docstring)."""
    from pynet.netlink.lean import lean_pyroute2

    lean_pyroute2()  # a fresh short-lived process: load only the pyroute2 modules we use
    register_in_process_ipam()
    from pynet.cni.commands import FUNCS as COMMANDS

    return COMMANDS


def _add(args: CmdArgs) -> Result:
    return _commands().add(args)


def _delete(args: CmdArgs) -> None:
    _commands().delete(args)


def _check(args: CmdArgs) -> None:
    func = _commands().check
    if func is not None:
        func(args)


def _gc(args: CmdArgs) -> None:
    func = _commands().gc
    if func is not None:
        func(args)


def _status(args: CmdArgs) -> None:
    func = _commands().status
    if func is not None:
        func(args)


#: the plugin's functions, loading :mod:`pynet.cni.commands` when one is first called
FUNCS = PluginFuncs(add=_add, delete=_delete, check=_check, gc=_gc, status=_status)


def main() -> int:
    return plugin_main(FUNCS, SUPPORTED, ABOUT)


if __name__ == "__main__":
    sys.exit(main())
