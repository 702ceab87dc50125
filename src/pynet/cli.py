"""The ``pynet`` command line.

Each subcommand lives in its own module, which exposes ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the chosen subcommand is imported, so that ``pynet lab``
does not pay for the Kubernetes client and ``pynet agent`` does not load the lab.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pynet import __version__

__all__ = ["SUBCOMMANDS", "main"]

#: subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("pynet.daemon.cli", "run the node agent: services into nftables/iptables/ipvs/ebpf, plus the overlay"),
    "lab": ("pynet.lab.cli", "build, check and remove multi-node labs made of network namespaces"),
    "install-cni": ("pynet.deploy.install_cni", "install the CNI executables and network config (init container job)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pynet", description="Kubernetes node networking in Python.")
    parser.add_argument("--version", action="version", version=f"pynet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in SUBCOMMANDS:
        parser = _top_parser()
        if not args:
            parser.print_help(sys.stderr)
            return 2
        parser.parse_args(args)  # prints --help/--version or the usage error and exits
        return 2
    name, rest = args[0], args[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"pynet {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)))


if __name__ == "__main__":
    sys.exit(main())
