"""The agent's wiring: config -> backend -> proxier -> sources -> sync loop; plus overlay, HTTP, CNI server.

Threads: one per source (the manifest poller, or one informer per resource), the HTTP server, and
the sync thread, which is the caller of :meth:`Agent.run` and the only one that programs the kernel
(backend syncs, overlay syncs, conntrack clean-up). SIGTERM/SIGINT set the stop event; rules are
left in place on exit, like kube-proxy. The agent never calls setns: it programs the namespace it
was started in.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from pynet._clock import REAL_CLOCK, Clock
from pynet._log import get_logger
from pynet.daemon.config import AgentConfig
from pynet.daemon.server import AgentHTTPServer
from pynet.errors import PynetError
from pynet.proxy.backends import BACKENDS, Backend, BackendUnavailable, load_backend
from pynet.proxy.conntrack import ConntrackCleaner, ConntrackTool
from pynet.proxy.metaproxier import MetaProxier
from pynet.proxy.metrics import ProxyMetrics
from pynet.proxy.model import IPAddress, IPFamily, Node
from pynet.proxy.proxier import Proxier

__all__ = ["Agent", "AgentError", "resolve_backend", "run_cleanup"]

log = get_logger("pynet.daemon")


class AgentError(PynetError):
    """The agent cannot start or --once could not complete; the message is for the operator."""


def resolve_backend(name: str) -> type[Backend]:
    """A registered backend name, or ``module:Class`` (tests, benchmarks)."""
    if ":" in name:
        module_name, _, cls_name = name.partition(":")
        try:
            return cast("type[Backend]", getattr(importlib.import_module(module_name), cls_name))
        except (ImportError, AttributeError) as err:
            raise BackendUnavailable(f"cannot load backend {name!r}: {err}") from err
    return load_backend(name)


def _make_overlay(mode: str, node_name: str) -> Any:
    try:
        overlay_mod = importlib.import_module("pynet.overlay")
        make_overlay = overlay_mod.make_overlay
    except (ImportError, AttributeError) as err:
        raise AgentError(
            f"--overlay {mode}: the overlay controller is not available in this build ({err})"
        ) from err
    return make_overlay(mode, node_name=node_name)


def _instances_for_cleanup(cls: type[Backend]) -> list[Backend]:
    """One instance per IP family when the backend takes ``family=``, else a single one."""
    try:
        return [cls(family=fam) for fam in IPFamily]  # type: ignore[call-arg]
    except TypeError:
        pass
    try:
        return [cls()]
    except Exception as err:
        log.info("cleanup: backend skipped", extra={"kv": {"backend": cfg_name(cls), "reason": repr(err)}})
        return []


def cleanup_backends(names: Sequence[str]) -> int:
    """Call ``cleanup()`` of each named backend that can load here; return how many failed.

    N.B. best effort: a backend that cannot load (no IPVS, no bcc) has nothing of ours to remove.
    """
    failed = 0
    for name in names:
        try:
            cls = load_backend(name)
            cls.probe()
        except Exception as err:
            log.info(
                "cleanup: backend skipped", extra={"kv": {"backend": name, "reason": str(err) or repr(err)}}
            )
            continue
        for backend in _instances_for_cleanup(cls):
            try:
                backend.cleanup()
                log.info(
                    "cleanup: backend cleaned",
                    extra={"kv": {"backend": name, "family": getattr(backend, "family", "")}},
                )
            except Exception as err:
                failed += 1
                log.error("cleanup: backend failed", extra={"kv": {"backend": name, "error": repr(err)}})
    return failed


def run_cleanup(config: AgentConfig) -> int:
    """``--cleanup``: every loadable backend's cleanup(), then the overlay's. Exit code 0 unless one failed."""
    failed = cleanup_backends(list(BACKENDS))
    modes = [config.overlay] if config.overlay != "none" else ["vxlan", "host-gw"]
    if importlib.util.find_spec("pynet.overlay") is not None and hasattr(
        importlib.import_module("pynet.overlay"), "make_overlay"
    ):
        for mode in modes:
            try:
                _make_overlay(mode, config.node_name).cleanup()
                log.info("cleanup: overlay cleaned", extra={"kv": {"overlay": mode}})
            except Exception as err:
                failed += 1
                log.error("cleanup: overlay failed", extra={"kv": {"overlay": mode, "error": repr(err)}})
    else:
        log.info("cleanup: overlay skipped", extra={"kv": {"reason": "overlay controller not in this build"}})
    return 1 if failed else 0


def cfg_name(cls: type) -> str:
    return getattr(cls, "name", cls.__name__)


class _HostAddresses:
    """This namespace's global addresses (fallback node IPs when no Node object names them); cached."""

    def __init__(self, ttl: float = 30.0) -> None:
        self._ttl = ttl
        self._at = -1e9
        self._ips: tuple[IPAddress, ...] = ()

    def __call__(self) -> tuple[IPAddress, ...]:
        now = time.monotonic()
        if now - self._at > self._ttl:
            self._at = now
            try:
                import ipaddress

                from pyroute2 import IPRoute

                with IPRoute() as ipr:
                    ips = [
                        ipaddress.ip_address(a.get_attr("IFA_ADDRESS"))
                        for a in ipr.get_addr()
                        if a["scope"] == 0 and a.get_attr("IFA_ADDRESS")
                    ]
                self._ips = tuple(ip for ip in ips if not ip.is_loopback and not ip.is_link_local)
            except Exception as err:
                log.warning("cannot read local addresses", extra={"kv": {"error": repr(err)}})
        return self._ips


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        backend: Backend | None = None,
        conntrack: ConntrackCleaner | None = None,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.config = config
        self.clock = clock
        self.stop_event = threading.Event()
        self.metrics = ProxyMetrics()
        self._backend = backend
        self._conntrack = conntrack
        self._threads: list[threading.Thread] = []
        self._http: list[AgentHTTPServer] = []
        self._cni: Any = None
        self._api: Any = None
        self._overlay: Any = None
        self._annotated: dict[str, str] = {}
        self.proxier: Proxier | None = None  # the primary family's proxier (health, tests)
        self.meta: MetaProxier | None = None
        self.started = time.monotonic()

    # ------------------------------------------------------------------ wiring

    def _build_backends(self, families: Sequence[IPFamily]) -> dict[IPFamily, Backend]:
        """One backend instance per family (``cls(family=...)``); a family the backend cannot take is skipped."""
        if self._backend is not None:
            return {families[0]: self._backend}
        cls = resolve_backend(self.config.backend)
        cls.probe()
        out: dict[IPFamily, Backend] = {}
        for fam in families:
            try:
                out[fam] = cls(family=fam)  # type: ignore[call-arg]
            except TypeError:
                if fam is IPFamily.V4:
                    out[fam] = cls()
                else:
                    log.warning(
                        "backend has no IPv6 support; IPv6 services not proxied",
                        extra={"kv": {"backend": cfg_name(cls)}},
                    )
        return out

    def _node_observers(self) -> list[Callable[[Node | None, Sequence[Node]], None]]:
        observers: list[Callable[[Node | None, Sequence[Node]], None]] = []
        if self.config.pod_cidr_file is not None:
            observers.append(self._write_pod_cidrs)
        if self._overlay is not None:
            observers.append(self._sync_overlay)
        return observers

    def _write_pod_cidrs(self, local: Node | None, nodes: Sequence[Node]) -> None:
        path = self.config.pod_cidr_file
        if local is None or path is None or not local.pod_cidrs:
            return
        text = "".join(f"{c}\n" for c in local.pod_cidrs)
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: pynet-ipam never reads half a file
        log.info(
            "pod CIDRs written", extra={"kv": {"file": path, "cidrs": ",".join(map(str, local.pod_cidrs))}}
        )

    def _sync_overlay(self, local: Node | None, nodes: Sequence[Node]) -> None:
        self._overlay.sync(local, nodes)
        if self._api is None or local is None:
            return
        wanted = dict(self._overlay.local_annotations())
        have = dict(local.annotations)
        if wanted and any(have.get(k) != v for k, v in wanted.items()) and wanted != self._annotated:
            self._api.patch_node_annotations(local.name, wanted)
            self._annotated = wanted

    def _start_sources(self, proxier: MetaProxier) -> None:
        cfg = self.config
        if cfg.source_dir is not None:
            from pynet.k8s.manifests import ManifestDirSource

            source = ManifestDirSource(cfg.source_dir, proxier, interval=cfg.source_poll_interval)
            self._spawn("source-dir", lambda: source.run(self.stop_event))
            return
        from pynet.k8s.client import ApiClient
        from pynet.k8s.errors import ApiError
        from pynet.k8s.informer import Informer

        try:
            self._api = ApiClient.from_config(cfg.kubeconfig, in_cluster=cfg.in_cluster)
        except ApiError as err:
            raise AgentError(str(err)) from err
        for kind, (list_fn, watch_fn) in self._api.resources().items():
            informer = Informer(kind, list_fn, watch_fn, proxier, clock=self.clock)
            self._spawn(f"informer-{kind.value.lower()}", functools.partial(informer.run, self.stop_event))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _start_http(self) -> None:
        cfg = self.config
        addrs: dict[tuple[str, int], set[str]] = {}
        if cfg.healthz_address is not None:
            addrs.setdefault(cfg.healthz_address, set()).add("health")
        if cfg.metrics_address is not None:
            addrs.setdefault(cfg.metrics_address, set()).add("metrics")
        for addr, what in addrs.items():
            try:
                server = AgentHTTPServer(
                    addr,
                    healthz=self.healthz if "health" in what else None,
                    readyz=self.readyz if "health" in what else None,
                    registry=self.metrics.registry if "metrics" in what else None,
                )
            except OSError as err:
                raise AgentError(
                    f"cannot listen on {addr[0]}:{addr[1]} ({', '.join(sorted(what))}): {err}"
                ) from err
            server.start()
            self._http.append(server)
            log.info(
                "listening",
                extra={"kv": {"address": f"{addr[0]}:{server.port}", "serves": ",".join(sorted(what))}},
            )

    def _start_cni_server(self) -> None:
        if not self.config.cni_server or importlib.util.find_spec("pynet.cni.server") is None:
            return
        try:
            mod = importlib.import_module("pynet.cni.server")
            server = mod.CniServer()
            server.start()
            self._cni = server
            log.info("CNI fast-path server started")
        except Exception as err:  # the CNI plugin works without it (slow path)
            log.warning("CNI fast-path server not started", extra={"kv": {"error": repr(err)}})

    # ------------------------------------------------------------------ health

    def healthz(self) -> tuple[bool, str]:
        p = self.proxier
        limit = 2 * self.config.sync_period + 5
        if p is None or p.last_success is None:
            age = time.monotonic() - self.started
            return age <= limit, f"waiting for first sync ({age:.0f}s)"
        age = self.clock.monotonic() - p.last_success
        ok = age <= limit
        return ok, f"last successful sync {age:.1f}s ago" + (
            "" if ok else f" (limit {limit:.0f}s): {p.last_error}"
        )

    def readyz(self) -> tuple[bool, str]:
        p = self.proxier
        if p is None or p.last_success is None:
            return False, "not synced yet"
        return self.healthz()

    # ------------------------------------------------------------------ run

    def setup(self) -> MetaProxier:
        cfg = self.config
        # one proxier per IP family of the cluster CIDRs (IPv4 when none is given)
        families = sorted({IPFamily(c.version) for c in cfg.cluster_cidrs}) or [IPFamily.V4]
        try:
            backends = self._build_backends(families)
            for backend in backends.values():
                backend.setup()
        except BackendUnavailable as err:
            raise AgentError(f"backend {cfg.backend!r} unavailable: {err}") from err
        if not backends:
            raise AgentError(f"backend {cfg.backend!r} supports none of the cluster's IP families")
        if self._backend is None and cfg.backend in BACKENDS:
            # like kube-proxy's CleanupLeftovers: switching --backend must not leave the previous
            # data plane's rules behind, still answering for services that have moved on
            others = [name for name in BACKENDS if name != cfg.backend]
            if cleanup_backends(others):
                log.warning(
                    "leftovers of other backends could not all be removed",
                    extra={"kv": {"backends": ",".join(others)}},
                )
        if cfg.overlay != "none":
            self._overlay = _make_overlay(cfg.overlay, cfg.node_name)
        conntrack = self._conntrack if self._conntrack is not None else ConntrackTool()
        host_addresses = _HostAddresses()

        def make(request_sync: Callable[[], None]) -> list[Proxier]:
            return [
                Proxier(
                    backend,
                    node_name=cfg.node_name,
                    family=fam,
                    cluster_cidrs=cfg.cluster_cidrs,
                    nodeport_addresses=cfg.nodeport_addresses,
                    min_sync_period=cfg.min_sync_period,
                    sync_period=cfg.sync_period,
                    metrics=self.metrics,
                    conntrack=conntrack,
                    clock=self.clock,
                    fallback_node_ips=host_addresses,
                    node_observers=self._node_observers() if i == 0 else (),
                    request_sync=request_sync,
                )
                for i, (fam, backend) in enumerate(sorted(backends.items()))
            ]

        self.meta = MetaProxier(
            make, min_sync_period=cfg.min_sync_period, sync_period=cfg.sync_period, clock=self.clock
        )
        self.proxier = self.meta.primary
        return self.meta

    def run(self) -> int:
        cfg = self.config
        log.info(
            "agent starting",
            extra={"kv": {"node": cfg.node_name, "backend": cfg.backend, "overlay": cfg.overlay}},
        )
        meta = self.setup()
        try:
            self._start_http()
            self._start_sources(meta)
            if cfg.once:
                return self._run_once(meta)
            self._start_cni_server()
            meta.runner.loop(self.stop_event)
            log.info("agent stopped; rules left in place")
            return 0
        finally:
            self.shutdown()

    def _run_once(self, proxier: MetaProxier) -> int:
        if not proxier.all_synced.wait(self.config.once_timeout):
            raise AgentError(f"--once: sources did not sync within {self.config.once_timeout:.0f}s")
        try:
            proxier.sync_rules(force_full=True)
        except Exception as err:
            raise AgentError(f"--once: sync failed: {err}") from err
        return 0

    def stop(self) -> None:
        self.stop_event.set()
        if self.meta is not None:
            self.meta.runner.run()  # wake the sync loop

    def shutdown(self) -> None:
        self.stop_event.set()
        if self._cni is not None:
            try:
                self._cni.stop()
            except Exception as err:
                log.warning("CNI server stop failed", extra={"kv": {"error": repr(err)}})
        for server in self._http:
            server.stop()
        self._http.clear()
        # source threads may sit in a blocking watch read; they are daemons, so bound the wait overall
        deadline = time.monotonic() + 1.0
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
