"""The lab's life cycle: ``up``, ``down``, ``status`` data, node removal. ``check`` lives in check.py.

``up`` order (each step needs the previous one):

1. clean whatever a previous lab of this name left (``down``: its PIDs, namespaces, directory);
2. underlay namespace with bridge ``br0``, node namespaces plugged into it, the external client;
3. ``nodes.yaml`` in the manifest directory (each Node with its pod CIDR and address);
4. one real ``pynet agent --source DIR --node-name nodeI --overlay O --backend B`` per node, inside
   the node's namespace, in the background (PID recorded, log in ``<lab dir>/nodeI/agent.log``);
   the agent writes the node's pod CIDR file, which the IPAM of that node reads;
5. the pods: a namespace each, wired by the REAL ``cni-bin/pynet`` executed as a runtime would,
   with a per-node conflist derived from ``conf/10-pynet.conflist`` (per-node IPAM ``dataDir`` and
   ``podCidrFile``, so nodes never share IPAM state); then a small server in each pod;
6. ``services.yaml`` with the example Services and EndpointSlices listing the pods' addresses;
7. wait until the agents have programmed the overlay routes and the services answer.

Hazards: everything the lab makes carries its name (namespaces ``pynetlab-<lab>-*``, directory
``/run/pynet-lab/<lab>``); ``down`` deletes exactly those and kills only PIDs recorded in the state
file whose command line still names the lab. It never touches the root namespace.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from pynet._log import get_logger
from pynet.errors import PynetError
from pynet.lab import netns, topology
from pynet.lab.cniexec import CniRuntime, first_ipv4
from pynet.lab.manifests import render_nodes, render_services, write_manifest
from pynet.lab.plan import CLUSTER_CIDR, UNDERLAY_MTU, LabPlan, NodePlan, PodPlan
from pynet.lab.state import LabState, pid_is_ours

__all__ = ["LabError", "REPO_ROOT", "derive_conflist", "down", "remove_node", "up"]

log = get_logger("pynet.lab")

REPO_ROOT = Path(__file__).resolve().parents[3]
CNI_BIN = REPO_ROOT / "cni-bin"
BASE_CONFLIST = REPO_ROOT / "conf" / "10-pynet.conflist"
#: the DaemonSet's copy of the same network config, used when the checkout has no conf/ copy
DEPLOY_CONFLIST = REPO_ROOT / "deploy" / "base" / "cni" / "10-pynet.conflist"
VXLAN_OVERHEAD = 50
AGENT_START_TIMEOUT = 30.0
READY_TIMEOUT = 45.0


class LabError(PynetError):
    pass


Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    return None


# ---------------------------------------------------------------------------------------- config


def derive_conflist(base: dict[str, Any], plan: LabPlan, node: NodePlan) -> dict[str, Any]:
    """The node's conflist: the shipped one with per-node IPAM state and pod CIDR file.

    - every ``ipam`` gets ``dataDir`` = ``<lab>/<node>/ipam`` (host-local's key) and, for
      ``pynet-ipam`` with ``subnet: usePodCidr``, ``podCidrFile`` = ``<lab>/<node>/pod-cidr``;
    - ``mtu``: underlay MTU minus the VXLAN overhead with the vxlan overlay (so full-size pod packets
      fit the tunnel), the underlay MTU with host-gw;
    - ``ipMasqExclude``: the lab's cluster CIDR, so cross-node pod traffic keeps the pod's address
      while traffic leaving the cluster is still masqueraded;
    - ``vxlan``: kept with the vxlan overlay (the plugin ensures the device on ADD, pinned to the
      node's address and uplink), dropped with host-gw (no tunnel device at all).
    """
    conf = copy.deepcopy(base)
    node_dir = plan.node_dir(node)
    for plugin in conf.get("plugins", []):
        ipam = plugin.get("ipam")
        if isinstance(ipam, dict):
            ipam["dataDir"] = str(node_dir / "ipam")
            if ipam.get("type") == "pynet-ipam":
                ipam["podCidrFile"] = str(node_dir / "pod-cidr")
                if "subnet" not in ipam and "ranges" not in ipam:
                    ipam["subnet"] = "usePodCidr"
            elif ipam.get("type") == "host-local":  # the reference IPAM knows no pod CIDR file
                ipam.pop("subnet", None)
                ipam["ranges"] = [[{"subnet": str(node.pod_cidr)}]]
        if plugin.get("type") == "pynet":
            # ipMasq alone (reference-bridge semantics) exempts only the node's own pod subnet and
            # would NAT pod-to-pod traffic between nodes: exempt the whole cluster CIDR
            if plugin.get("ipMasq"):
                plugin["ipMasqExclude"] = [str(CLUSTER_CIDR)]
            if plan.overlay == "vxlan":
                plugin["mtu"] = UNDERLAY_MTU - VXLAN_OVERHEAD
                vx = dict(plugin.get("vxlan") or {"vni": 1})
                vx.setdefault("vni", 1)
                vx["local"] = str(node.ip)
                vx["dev"] = topology.NODE_UPLINK
                plugin["vxlan"] = vx
            else:
                plugin["mtu"] = UNDERLAY_MTU
                plugin.pop("vxlan", None)
    return conf


def _load_base_conflist(path: Path | None = None) -> dict[str, Any]:
    if path is None:
        path = BASE_CONFLIST if BASE_CONFLIST.exists() or not DEPLOY_CONFLIST.exists() else DEPLOY_CONFLIST
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LabError(f"cannot read the network config {path}: {err}") from err
    return data


def runtime_for(plan: LabPlan, node: NodePlan) -> CniRuntime:
    conf = json.loads((plan.node_dir(node) / "10-pynet.conflist").read_text())
    return CniRuntime(conflist=conf, cni_path=(CNI_BIN, Path("/usr/lib/cni"), Path("/opt/cni/bin")), node_netns=node.netns)


# ---------------------------------------------------------------------------------------- processes


def _spawn(ns: str, argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in namespace ``ns`` in the background, in its own session (it outlives us)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(netns.argv(ns, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


def _agent_argv(plan: LabPlan, node: NodePlan) -> list[str]:
    return [
        sys.executable, "-m", "pynet", "agent",
        "--source", str(plan.manifest_dir),
        "--node-name", node.name,
        "--backend", plan.backend,
        "--overlay", plan.overlay,
        "--cluster-cidr", str(CLUSTER_CIDR),
        "--pod-cidr-file", str(plan.node_dir(node) / "pod-cidr"),
        "--min-sync-period", "0.2",
        "--source-poll-interval", "0.2",
    ]


def _kill_all(pids: Sequence[int], marker: str, grace: float = 3.0) -> None:
    """TERM every PID that still runs a command naming ``marker``, wait (bounded), KILL the rest."""
    ours = [p for p in pids if pid_is_ours(p, marker)]
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(pid_is_ours(p, marker) for p in ours):
        time.sleep(0.05)
    for pid in ours:
        if pid_is_ours(pid, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(what: str, cond: Callable[[], bool], timeout: float, on_timeout: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}\n{on_timeout()}".rstrip())
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------- down


def down(plan: LabPlan, progress: Progress = _quiet) -> list[str]:
    """Remove everything of lab ``plan.name``; idempotent. Returns the namespaces it deleted."""
    state = LabState.load(plan.state_file)
    marker = str(plan.root)
    if state is not None:
        _kill_all([*state.agents.values(), *state.servers.values()], marker)
    removed = []
    # pods first, then nodes, then the underlay: the order a real teardown would follow
    for name in sorted(netns.list_with_prefix(plan.prefix), key=lambda n: (not _is_pod(plan, n), n)):
        netns.delete(name)
        removed.append(name)
    if plan.root.is_dir() and plan.root.name == plan.name:
        shutil.rmtree(plan.root, ignore_errors=True)
    if removed:
        progress(f"removed {len(removed)} namespaces of lab {plan.name}")
    return removed


def _is_pod(plan: LabPlan, name: str) -> bool:
    rest = name[len(plan.prefix):]
    return rest.startswith("n") and "p" in rest and not rest.startswith("node")


# ---------------------------------------------------------------------------------------- up


def up(plan: LabPlan, progress: Progress = _quiet, *, wait: bool = True, conflist: Path | None = None) -> LabState:
    """Build the lab; ``conflist`` replaces ``conf/10-pynet.conflist`` as the base (e.g. to compare
    with the reference bridge plugin)."""
    started = time.monotonic()
    down(plan, progress)
    base = _load_base_conflist(conflist)
    state = LabState(plan.name, len(plan.nodes), len(plan.nodes[0].pods), plan.backend, plan.overlay)
    plan.root.mkdir(parents=True, exist_ok=True)
    try:
        progress(f"underlay {plan.underlay_netns} (bridge br0, 192.168.100.0/24)")
        topology.build_underlay(plan)
        for node in plan.nodes:
            topology.build_node(plan, node)
            plan.node_dir(node).mkdir(parents=True, exist_ok=True)
            (plan.node_dir(node) / "10-pynet.conflist").write_text(json.dumps(derive_conflist(base, plan, node), indent=2))
            progress(f"node {node.name}: netns {node.netns}, eth0 {node.address}, pod CIDR {node.pod_cidr}")
        topology.build_external(plan)
        write_manifest(plan.manifest_dir, "nodes.yaml", render_nodes(plan))

        agents = {}
        for node in plan.nodes:
            agents[node.name] = _spawn(node.netns, _agent_argv(plan, node), plan.node_dir(node) / "agent.log")
            state.agents[node.name] = agents[node.name].pid
        state.save(plan.state_file)
        progress(f"agents started ({plan.backend}, overlay {plan.overlay}); waiting for their pod CIDR files")
        for node in plan.nodes:
            cidr_file = plan.node_dir(node) / "pod-cidr"
            agent = agents[node.name]
            _wait(f"agent of {node.name} to write {cidr_file}",
                  lambda f=cidr_file, a=agent: f.exists() or a.poll() is not None,  # type: ignore[misc]
                  AGENT_START_TIMEOUT, lambda n=node: _tail(plan.node_dir(n) / "agent.log"))  # type: ignore[misc]
            if agent.poll() is not None:
                raise LabError(f"the agent of {node.name} exited with {agent.returncode}:\n"
                               f"{_tail(plan.node_dir(node) / 'agent.log')}")

        _make_pods(plan, state, progress)
        state.save(plan.state_file)
        write_manifest(plan.manifest_dir, "services.yaml",
                       render_services(plan, {k: IPv4Address(v) for k, v in state.pod_ips.items()}))
        progress("services written; waiting for the agents to program routes and services")
        if wait:
            wait_ready(plan, state, progress=progress)
    except BaseException:
        state.save(plan.state_file)
        raise
    state.up_seconds = round(time.monotonic() - started, 2)
    state.save(plan.state_file)
    return state


def _make_pods(plan: LabPlan, state: LabState, progress: Progress) -> None:
    def one_node(node: NodePlan) -> list[tuple[PodPlan, IPv4Address]]:
        runtime = runtime_for(plan, node)
        made = []
        for pod in node.pods:
            netns.add(pod.netns)
            result = runtime.add(pod.container_id, f"{netns.NETNS_DIR}/{pod.netns}", "eth0",
                                 args=f"IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME={pod.name}")
            (plan.node_dir(node) / "results").mkdir(exist_ok=True)
            (plan.node_dir(node) / "results" / f"{pod.name}.json").write_text(json.dumps(result, indent=2))
            ip = first_ipv4(result)
            if ip is None:
                raise LabError(f"CNI ADD for {pod.name} returned no IPv4 address: {result}")
            made.append((pod, ip))
        return made

    # nodes in parallel (their IPAM states are separate), pods of one node in order
    with ThreadPoolExecutor(max_workers=min(4, len(plan.nodes))) as pool:
        for made in pool.map(one_node, plan.nodes):
            for pod, ip in made:
                state.pod_ips[pod.name] = str(ip)
                state.servers[pod.name] = _spawn(
                    pod.netns, [sys.executable, "-m", "pynet.lab.podserver", pod.name, str(plan.root)],
                    plan.root / "pods" / f"{pod.name}.log").pid
            if made:
                node_name = f"node{made[0][0].node}"
                progress(f"{node_name}: pods " + ", ".join(f"{p.name}={ip}" for p, ip in made))
    for pod in plan.pods():
        log_path = plan.root / "pods" / f"{pod.name}.log"
        _wait(f"the server of {pod.name}", lambda p=log_path: "listening" in _tail(p, 3), 15,  # type: ignore[misc]
              lambda p=log_path: _tail(p))  # type: ignore[misc]


def wait_ready(plan: LabPlan, state: LabState, timeout: float = READY_TIMEOUT, progress: Progress = _quiet) -> None:
    """Until every node routes to every other node's pod CIDR and reaches the echo ClusterIP."""
    from pynet.lab.check import quick_ready

    live = [n for n in plan.nodes if n.name not in state.removed_nodes]

    def routes_ok() -> bool:
        for node in live:
            table = netns.run(node.netns, ["ip", "route", "show"], check=False).stdout
            if any(str(o.pod_cidr) not in table for o in live if o is not node):
                return False
        return True

    _wait("overlay routes on every node", routes_ok, timeout,
          lambda: "\n".join(f"--- {n.name}\n{_tail(plan.node_dir(n) / 'agent.log', 8)}" for n in live))
    progress("overlay routes in place on every node")
    _wait("services on every node", lambda: quick_ready(plan, state), timeout,
          lambda: "\n".join(f"--- {n.name}\n{_tail(plan.node_dir(n) / 'agent.log', 8)}" for n in live))


def remove_node(plan: LabPlan, state: LabState, node_name: str) -> None:
    """Take ``node_name`` out of the manifests (its namespace stays): the other agents must drop its
    routes and FDB entries, and the services their endpoints on it."""
    state.removed_nodes = sorted({*state.removed_nodes, node_name})
    write_manifest(plan.manifest_dir, "nodes.yaml", render_nodes(plan, exclude=state.removed_nodes))
    ips = {k: IPv4Address(v) for k, v in state.pod_ips.items() if not k.startswith(f"pod-{node_name[4:]}-")}
    write_manifest(plan.manifest_dir, "services.yaml", render_services(plan, ips))
    state.save(plan.state_file)
