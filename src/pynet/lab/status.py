"""``pynet lab status``: nodes, pods, addresses and services of a running lab, as text tables."""

from __future__ import annotations

from pynet.lab import netns, topology
from pynet.lab.manifests import service_catalogue
from pynet.lab.plan import LabPlan
from pynet.lab.state import LabState, pid_is_ours

__all__ = ["render_status"]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def render_status(plan: LabPlan, state: LabState) -> str:
    marker = str(plan.root)
    out = [f"lab {plan.name}: backend {plan.backend}, overlay {plan.overlay}, directory {plan.root}", ""]
    rows: list[tuple[str, ...]] = [("NODE", "NETNS", "ADDRESS", "POD CIDR", "VTEP", "AGENT")]
    for node in plan.nodes:
        present = netns.exists(node.netns)
        addrs = topology.link_addresses(node.netns) if present else {}
        vtep = ",".join(a for a in addrs.get("pynet-vxlan", []) if ":" not in a) or "-"
        pid = state.agents.get(node.name)
        agent = f"pid {pid} running" if pid and pid_is_ours(pid, marker) else f"pid {pid} NOT running"
        if node.name in state.removed_nodes:
            agent += " (removed from manifests)"
        rows.append((node.name, node.netns if present else f"{node.netns} (missing)", str(node.address),
                     str(node.pod_cidr), vtep, agent))
    out += [_table(rows), ""]
    rows = [("POD", "NODE", "NETNS", "ADDRESS", "SERVER")]
    for pod in plan.pods():
        pid = state.servers.get(pod.name)
        server = "running" if pid and pid_is_ours(pid, marker) else "NOT running"
        rows.append((pod.name, f"node{pod.node}", pod.netns, state.pod_ips.get(pod.name, "-"), server))
    out += [_table(rows), ""]
    rows = [("SERVICE", "CLUSTER-IP", "NODE-PORT", "ENDPOINTS")]
    for svc in service_catalogue(plan):
        eps = [f"{state.pod_ips[p.name]}:8080" for p in svc.pods if p.name in state.pod_ips]
        rows.append((f"lab/{svc.name}", f"{svc.cluster_ip}:80", str(svc.node_port or "-"), ", ".join(eps)))
    out += [_table(rows), "", f"external client: netns {plan.external_netns}, 192.168.100.200"]
    return "\n".join(out)
