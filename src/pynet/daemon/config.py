"""AgentConfig: the agent's options, parsed from flags and validated once.

Flag names are the contract in DESIGN.md ("Agent"). Addresses are ``host:port`` strings; ``0`` or an
empty value disables that endpoint. ``--backend`` also accepts ``module:Class`` (used by tests and
benchmarks to run the real agent against a recording backend).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pynet.errors import ConfigError
from pynet.proxy.model import IPNetwork

__all__ = ["AgentConfig", "add_arguments", "parse_address", "parse_cidrs"]

OVERLAYS = ("none", "vxlan", "host-gw")
DEFAULT_METRICS = "127.0.0.1:10249"
DEFAULT_HEALTHZ = "127.0.0.1:10256"
DEFAULT_POD_CIDR_FILE = "/run/pynet/pod-cidr"


def parse_cidrs(text: str | None, what: str) -> tuple[IPNetwork, ...]:
    if not text:
        return ()
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError as err:
            raise ConfigError(f"{what}: invalid CIDR {part!r}") from err
    return tuple(out)


def parse_address(text: str | None, what: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` too) -> tuple; ``0``/empty -> None (disabled)."""
    if text is None or text.strip() in ("", "0"):
        return None
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ConfigError(f"{what}: expected host:port, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    try:
        num = int(port)
    except ValueError as err:
        raise ConfigError(f"{what}: invalid port in {text!r}") from err
    if not 0 <= num <= 65535:
        raise ConfigError(f"{what}: port {num} out of range")
    return host, num


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("cluster state")
    src.add_argument(
        "--source",
        metavar="DIR",
        help="read Services/EndpointSlices/Nodes from manifests in DIR and follow changes",
    )
    src.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="watch the API server of this kubeconfig (default: in-cluster config)",
    )
    src.add_argument("--node-name", default=None, help="this node's name (default: the hostname)")
    src.add_argument(
        "--source-poll-interval",
        type=float,
        default=0.5,
        help="seconds between scans of --source (default 0.5)",
    )
    dp = parser.add_argument_group("data plane")
    dp.add_argument(
        "--backend", default="nftables", help="nftables | iptables | ipvs | ebpf (default nftables)"
    )
    dp.add_argument(
        "--cluster-cidr",
        default="",
        metavar="CIDR[,CIDR]",
        help="pod addresses; traffic from outside is masqueraded",
    )
    dp.add_argument(
        "--nodeport-addresses",
        default="",
        metavar="CIDR[,CIDR]",
        help="where NodePorts listen (default: the node's addresses)",
    )
    dp.add_argument(
        "--overlay", choices=OVERLAYS, default="none", help="also program routes to other nodes' pod CIDRs"
    )
    dp.add_argument(
        "--min-sync-period", type=float, default=1.0, help="minimum seconds between syncs (bursts coalesce)"
    )
    dp.add_argument("--sync-period", type=float, default=30.0, help="seconds between full resyncs")
    dp.add_argument(
        "--pod-cidr-file",
        default=DEFAULT_POD_CIDR_FILE,
        help="where to write this node's pod CIDRs ('' disables)",
    )
    dp.add_argument("--no-cni-server", action="store_true", help="do not start the CNI fast-path server")
    mode = parser.add_argument_group("mode")
    mode.add_argument("--once", action="store_true", help="sync once, then exit (0 on success)")
    mode.add_argument(
        "--cleanup", action="store_true", help="remove everything the agent owns for every backend, then exit"
    )
    mode.add_argument(
        "--once-timeout",
        type=float,
        default=60.0,
        help="with --once: seconds to wait for the sources to sync",
    )
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--metrics-address",
        default=DEFAULT_METRICS,
        help=f"Prometheus /metrics (default {DEFAULT_METRICS}; 0 disables)",
    )
    ops.add_argument(
        "--healthz-address",
        default=DEFAULT_HEALTHZ,
        help=f"/healthz and /readyz (default {DEFAULT_HEALTHZ}; 0 disables)",
    )
    ops.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper
    )


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    backend: str = "nftables"
    source_dir: Path | None = None
    kubeconfig: str | None = None
    in_cluster: bool = False
    source_poll_interval: float = 0.5
    cluster_cidrs: tuple[IPNetwork, ...] = ()
    nodeport_addresses: tuple[IPNetwork, ...] = ()
    overlay: str = "none"
    min_sync_period: float = 1.0
    sync_period: float = 30.0
    pod_cidr_file: Path | None = None
    cni_server: bool = True
    once: bool = False
    cleanup: bool = False
    once_timeout: float = 60.0
    metrics_address: tuple[str, int] | None = None
    healthz_address: tuple[str, int] | None = None
    log_level: str = "INFO"

    @property
    def uses_api(self) -> bool:
        return self.source_dir is None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AgentConfig:
        if args.source and args.kubeconfig:
            raise ConfigError("--source and --kubeconfig are mutually exclusive")
        in_cluster = False
        if not args.source and not args.kubeconfig and not args.cleanup:
            if not os.environ.get("KUBERNETES_SERVICE_HOST"):
                raise ConfigError(
                    "no cluster state: pass --source DIR or --kubeconfig PATH (or run in a cluster)"
                )
            in_cluster = True
        if args.min_sync_period < 0:
            raise ConfigError("--min-sync-period must be >= 0")
        if args.sync_period <= 0:
            raise ConfigError("--sync-period must be > 0")
        if args.source and not Path(args.source).is_dir():
            raise ConfigError(f"--source {args.source}: not a directory")
        if args.once and args.cleanup:
            raise ConfigError("--once and --cleanup are mutually exclusive")
        return cls(
            node_name=args.node_name or socket.gethostname(),
            backend=args.backend,
            source_dir=Path(args.source) if args.source else None,
            kubeconfig=args.kubeconfig,
            in_cluster=in_cluster,
            source_poll_interval=args.source_poll_interval,
            cluster_cidrs=parse_cidrs(args.cluster_cidr, "--cluster-cidr"),
            nodeport_addresses=parse_cidrs(args.nodeport_addresses, "--nodeport-addresses"),
            overlay=args.overlay,
            min_sync_period=args.min_sync_period,
            sync_period=args.sync_period,
            pod_cidr_file=Path(args.pod_cidr_file) if args.pod_cidr_file else None,
            cni_server=not args.no_cni_server,
            once=args.once,
            cleanup=args.cleanup,
            once_timeout=args.once_timeout,
            metrics_address=parse_address(args.metrics_address, "--metrics-address"),
            healthz_address=parse_address(args.healthz_address, "--healthz-address"),
            log_level=args.log_level,
        )
