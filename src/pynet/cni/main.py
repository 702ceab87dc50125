"""Entry point of the ``pynet`` CNI plugin (``cni-bin/pynet`` and ``python -m pynet.cni``).

Registers pynet's own IPAM for in-process delegation (``ipam.type: pynet-ipam`` then costs no
exec), then hands over to :func:`pynet.cni.skel.plugin_main`.
"""

from __future__ import annotations

import sys

import pynet
from pynet.cni import delegate
from pynet.cni.commands import FUNCS
from pynet.cni.skel import plugin_main
from pynet.cni.version import SUPPORTED
from pynet.netlink.lean import lean_pyroute2

__all__ = ["ABOUT", "main", "register_in_process_ipam"]

ABOUT = f"pynet {pynet.__version__}: bridge/VXLAN CNI plugin (CNI 1.1.0)"


def register_in_process_ipam() -> None:
    try:
        from pynet.cni.ipam.api import ipam_command
    except ImportError:  # an install without pynet-ipam: delegation execs whatever ipam.type names
        return
    delegate.IN_PROCESS["pynet-ipam"] = ipam_command


def main() -> int:
    lean_pyroute2()  # a fresh short-lived process: load only the pyroute2 modules we use
    register_in_process_ipam()
    return plugin_main(FUNCS, SUPPORTED, ABOUT)


if __name__ == "__main__":
    sys.exit(main())
