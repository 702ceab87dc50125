"""``pynet lab``: build, inspect, check and remove multi-node labs made of network namespaces.

    pynet lab up     [--name LAB] [--nodes N] [--pods-per-node M] [--backend B] [--overlay O]
    pynet lab status [--name LAB]
    pynet lab check  [--name LAB]          # exit 1 when any check fails
    pynet lab down   [--name LAB]
    pynet lab demo   [same options as up]  # up + status + check, then how to go down
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from pynet._log import setup_logging
from pynet.errors import PynetError
from pynet.lab.plan import BACKENDS, OVERLAYS, LabPlan
from pynet.lab.state import LabState

__all__ = ["add_arguments", "run"]

DEFAULT_NAME = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "up": "build the lab (cleans a previous one of the same name first)",
        "status": "show nodes, pods, addresses and services",
        "check": "prove pod-to-pod, pod-to-ClusterIP and NodePort paths; non-zero exit on failure",
        "down": "remove the lab: its agents, pod servers, namespaces and directory",
        "demo": "up (3 nodes x 2 pods, nftables, vxlan) + status + check",
    }
    for action, help_text in helps.items():
        p = sub.add_parser(action, help=help_text, description=help_text)
        p.add_argument("--name", default=DEFAULT_NAME, help=f"lab name, 1-12 of [a-z0-9] (default {DEFAULT_NAME})")
        if action in ("up", "demo"):
            p.add_argument("--nodes", type=int, default=3, help="node namespaces (default 3)")
            p.add_argument("--pods-per-node", type=int, default=2, help="pods per node (default 2)")
            p.add_argument("--backend", choices=BACKENDS, default="nftables", help="service data plane")
            p.add_argument("--overlay", choices=OVERLAYS, default="vxlan", help="node-to-node pod routing")
            p.add_argument("--conflist", type=Path, default=None,
                           help="base network config (default: the checkout's conf/10-pynet.conflist)")
        if action == "check":
            p.add_argument("--no-bulk", action="store_true", help="skip the 2 MiB cross-node transfer")


def _plan_from_state(name: str) -> tuple[LabPlan, LabState]:
    probe = LabPlan.build(name)
    state = LabState.load(probe.state_file)
    if state is None:
        raise PynetError(f"no lab named {name!r} is up (no {probe.state_file}); run `pynet lab up --name {name}`")
    plan = LabPlan.build(name, nodes=state.nodes, pods_per_node=state.pods_per_node, backend=state.backend,
                         overlay=state.overlay)
    return plan, state


_T0 = time.monotonic()


def _say(msg: str) -> None:
    print(f"  [{time.monotonic() - _T0:5.1f}s] {msg}", flush=True)


def _up(args: argparse.Namespace) -> int:
    from pynet.lab.lab import up

    plan = LabPlan.build(args.name, nodes=args.nodes, pods_per_node=args.pods_per_node, backend=args.backend,
                         overlay=args.overlay)
    print(f"lab {plan.name}: {len(plan.nodes)} nodes x {args.pods_per_node} pods, backend {plan.backend}, "
          f"overlay {plan.overlay}", flush=True)
    global _T0
    _T0 = time.monotonic()
    state = up(plan, _say, conflist=args.conflist)
    print(f"lab {plan.name} is up in {state.up_seconds:.1f}s (state in {plan.root})", flush=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    from pynet.lab.status import render_status

    plan, state = _plan_from_state(args.name)
    print(render_status(plan, state))
    return 0


def _check(args: argparse.Namespace, *, bulk: bool = True) -> int:
    from pynet.lab.check import format_table, run_checks

    plan, state = _plan_from_state(args.name)
    started = time.monotonic()
    results = run_checks(plan, state, bulk=bulk and not getattr(args, "no_bulk", False))
    print(format_table(results))
    print(f"(checked in {time.monotonic() - started:.1f}s)")
    return 0 if all(r.ok for r in results) else 1


def _down(args: argparse.Namespace) -> int:
    from pynet.lab.lab import down

    plan = LabPlan.build(args.name)
    removed = down(plan)
    print(f"lab {plan.name}: removed {len(removed)} namespaces and {plan.root}" if removed
          else f"lab {plan.name}: nothing to remove")
    return 0


def _demo(args: argparse.Namespace) -> int:
    rc = _up(args)
    if rc:
        return rc
    print()
    _status(args)
    print()
    rc = _check(args)
    name = "" if args.name == DEFAULT_NAME else f" --name {args.name}"
    print(f"\nThe lab stays up for you to explore (docs/lab.md), e.g.:\n"
          f"  ip netns exec pynetlab-{args.name}-node1 ip route\n"
          f"  ip netns exec pynetlab-{args.name}-node1 bridge fdb show dev pynet-vxlan\n"
          f"  ip netns exec pynetlab-{args.name}-node1 nft list ruleset\n"
          f"Remove it with:  .venv/bin/pynet lab down{name}")
    return rc


def run(args: argparse.Namespace) -> int:
    setup_logging(os.environ.get("PYNET_LOG_LEVEL", "WARNING"))
    if os.geteuid() != 0:
        print("pynet lab needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    actions = {"up": _up, "status": _status, "check": _check, "down": _down, "demo": _demo}
    try:
        return actions[args.action](args)
    except PynetError as err:
        print(f"pynet lab {args.action}: {err}", file=sys.stderr)
        return 1
