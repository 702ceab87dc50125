"""Packet-level service scenarios, run against every backend in ``SCENARIO_BACKENDS``.

Each test writes Services/EndpointSlices into the running agent's ``--source`` directory and proves,
with real connections between namespaces, where traffic landed and which source address the backend
saw. Covered: ClusterIP TCP/UDP/SCTP, spread over endpoints, NodePort (from outside and from the node
itself), ExternalIP, LoadBalancer IP with loadBalancerSourceRanges (allowed and denied client),
ClientIP session affinity, externalTrafficPolicy Local (client address kept, local endpoint only),
internalTrafficPolicy Local, terminating-endpoint fallback, masquerade from outside the cluster CIDR
versus none from a pod, hairpin, REJECT without endpoints (fast), an endpoint removed with the stale
UDP conntrack entry cleared, a malformed Service beside good ones, a file updated while running,
and ``--cleanup`` (plus ``--once``) leaving a foreign table untouched.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

from pynet.testing.netns import TestNetns
from pynet.testing.services import (
    BRIDGE_IP,
    EXT_IP,
    EXT_IP2,
    NODE_IP,
    OTHER_NODE,
    POD_IPS,
    AgentProcess,
    Endpoint,
    ManifestDir,
    Reply,
    ServiceLab,
    endpoint_slice,
    node_manifest,
    service,
)

CLIENT = POD_IPS["client"]


def lands_on(*pods: str):  # type: ignore[no-untyped-def]
    return lambda r: r.result == "ok" and r.name in pods


def names(replies: list[Reply]) -> Counter[str]:
    return Counter(r.name if r.result == "ok" else r.result for r in replies)


def test_clusterip_tcp_no_masquerade_from_pod(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("tcp1", service("tcp1", "10.96.1.1"), endpoint_slice("tcp1", [Endpoint("pod-a")]))
    first = lab.wait_reply("client", "10.96.1.1", 80, lands_on("pod-a"), "tcp1 -> pod-a")
    assert first.peer == CLIENT  # a pod inside the cluster CIDR is not masqueraded


def test_clusterip_udp(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("udp1", service("udp1", "10.96.1.2", port=53, protocol="UDP"),
                endpoint_slice("udp1", [Endpoint("pod-b")], protocol="UDP"))
    reply = lab.wait_reply("client", "10.96.1.2", 53, lands_on("pod-b"), "udp1 -> pod-b", proto="udp")
    assert reply.peer == CLIENT


def test_clusterip_sctp(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("sctp1", service("sctp1", "10.96.1.3", port=7777, protocol="SCTP"),
                endpoint_slice("sctp1", [Endpoint("pod-c")], protocol="SCTP"))
    seen = lab.sctp_probe("client", "10.96.1.3", 7777, sniff_at="pod-c", attempts=40)
    assert seen is not None, "no SCTP INIT reached pod-c through the service"
    assert seen == {"src": CLIENT, "dst": POD_IPS["pod-c"], "sport": seen["sport"], "dport": 8080}


def test_load_spreads_over_all_endpoints(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("spread", service("spread", "10.96.1.4"),
                endpoint_slice("spread", [Endpoint("pod-a"), Endpoint("pod-b"), Endpoint("pod-c")]))
    lab.wait_reply("client", "10.96.1.4", 80, lands_on("pod-a", "pod-b", "pod-c"), "spread reachable")
    seen = names(lab.connect("client", "10.96.1.4", 80, count=45))
    assert set(seen) == {"pod-a", "pod-b", "pod-c"}, seen


def test_nodeport_from_external_and_from_node(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("np", service("np", "10.96.1.5", type="NodePort", node_port=30501), endpoint_slice("np", [Endpoint("pod-a")]))
    reply = lab.wait_reply("ext", NODE_IP, 30501, lands_on("pod-a"), "NodePort from outside")
    assert reply.peer == BRIDGE_IP  # externalTrafficPolicy Cluster: masqueraded to the node
    local = lab.wait_reply("node", NODE_IP, 30501, lands_on("pod-a"), "NodePort from the node itself")
    assert local.result == "ok"


def test_external_ip(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("extip", service("extip", "10.96.1.6", external_ips=["192.0.2.6"]), endpoint_slice("extip", [Endpoint("pod-b")]))
    reply = lab.wait_reply("ext", "192.0.2.6", 80, lands_on("pod-b"), "external IP -> pod-b")
    assert reply.peer == BRIDGE_IP


def test_loadbalancer_source_ranges(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("lb", service("lb", "10.96.1.7", type="LoadBalancer", node_port=30507, lb_ips=["198.51.100.7"],
                              source_ranges=[f"{EXT_IP}/32"]),
                endpoint_slice("lb", [Endpoint("pod-c")]))
    lab.wait_reply("ext", "198.51.100.7", 80, lands_on("pod-c"), "LB IP from an allowed client", src=EXT_IP)
    denied = lab.connect("ext", "198.51.100.7", 80, src=EXT_IP2, count=2, timeout=1.0)
    assert [r.result for r in denied] == ["timeout", "timeout"], denied  # dropped, not answered


def test_session_affinity_client_ip(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("aff", service("aff", "10.96.1.8", affinity_timeout=60),
                endpoint_slice("aff", [Endpoint("pod-a"), Endpoint("pod-b"), Endpoint("pod-c")]))
    first = lab.wait_reply("client", "10.96.1.8", 80, lands_on("pod-a", "pod-b", "pod-c"), "aff reachable")
    seen = names(lab.connect("client", "10.96.1.8", 80, count=20))
    assert seen == Counter({first.name: 20})


def test_external_traffic_policy_local(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("etp", service("etp", "10.96.1.9", type="NodePort", node_port=30509, etp_local=True),
                endpoint_slice("etp", [Endpoint("pod-a"), Endpoint("pod-c", node=OTHER_NODE)]))
    lab.wait_reply("ext", NODE_IP, 30509, lands_on("pod-a"), "ETP Local NodePort")
    replies = lab.connect("ext", NODE_IP, 30509, count=20)
    assert names(replies) == Counter({"pod-a": 20})  # only the local endpoint
    assert {r.peer for r in replies} == {EXT_IP}  # the client address is preserved
    internal = names(lab.connect("client", "10.96.1.9", 80, count=30))
    assert set(internal) == {"pod-a", "pod-c"}, internal  # internal traffic keeps the cluster policy


def test_internal_traffic_policy_local(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("itp", service("itp", "10.96.1.10", itp_local=True),
                endpoint_slice("itp", [Endpoint("pod-a"), Endpoint("pod-c", node=OTHER_NODE)]))
    lab.wait_reply("client", "10.96.1.10", 80, lands_on("pod-a"), "ITP Local reachable")
    assert names(lab.connect("client", "10.96.1.10", 80, count=20)) == Counter({"pod-a": 20})


def test_terminating_fallback_then_ready_preferred(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    terminating = [Endpoint("pod-a", ready=False, serving=True, terminating=True),
                   Endpoint("pod-b", ready=False, serving=False, terminating=True)]
    files.write("term", service("term", "10.96.1.11"), endpoint_slice("term", terminating))
    lab.wait_reply("client", "10.96.1.11", 80, lands_on("pod-a"), "serving+terminating fallback")
    assert names(lab.connect("client", "10.96.1.11", 80, count=10)) == Counter({"pod-a": 10})
    files.write("term", service("term", "10.96.1.11"), endpoint_slice("term", [*terminating, Endpoint("pod-c")]))
    lab.wait_reply("client", "10.96.1.11", 80, lands_on("pod-c"), "ready endpoint preferred")
    assert names(lab.connect("client", "10.96.1.11", 80, count=10)) == Counter({"pod-c": 10})


def test_masquerade_only_from_outside_cluster_cidr(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("masq", service("masq", "10.96.1.12"), endpoint_slice("masq", [Endpoint("pod-b")]))
    from_pod = lab.wait_reply("client", "10.96.1.12", 80, lands_on("pod-b"), "masq from a pod")
    from_outside = lab.wait_reply("ext", "10.96.1.12", 80, lands_on("pod-b"), "masq from outside")
    assert from_pod.peer == CLIENT
    assert from_outside.peer == BRIDGE_IP


def test_hairpin(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("hair", service("hair", "10.96.1.13"), endpoint_slice("hair", [Endpoint("pod-a")]))
    reply = lab.wait_reply("pod-a", "10.96.1.13", 80, lands_on("pod-a"), "pod-a reaches itself")
    assert reply.peer == BRIDGE_IP  # the hairpin flow is masqueraded


def test_reject_without_endpoints(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("noeps", service("noeps", "10.96.1.14"), endpoint_slice("noeps", []))
    files.write("noeps-udp", service("noeps-udp", "10.96.1.15", port=53, protocol="UDP"),
                endpoint_slice("noeps-udp", [], protocol="UDP"))
    tcp = lab.wait_reply("client", "10.96.1.14", 80, lambda r: r.result == "refused", "TCP rejected")
    assert tcp.elapsed < 0.4, tcp  # a fast failure, not a timeout
    udp = lab.wait_reply("client", "10.96.1.15", 53, lambda r: r.result == "refused", "UDP rejected", proto="udp")
    assert udp.elapsed < 0.4, udp
    # a port of a known cluster IP that no service defines is refused too
    files.write("noeps", service("noeps", "10.96.1.14"), endpoint_slice("noeps", [Endpoint("pod-a")]))
    lab.wait_reply("client", "10.96.1.14", 80, lands_on("pod-a"), "noeps got an endpoint")
    assert lab.connect("client", "10.96.1.14", 81)[0].result == "refused"


def test_endpoint_removed_moves_udp_flow(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("udpmove", service("udpmove", "10.96.1.16", port=53, protocol="UDP"),
                endpoint_slice("udpmove", [Endpoint("pod-a")], protocol="UDP"))
    lab.wait_reply("client", "10.96.1.16", 53, lands_on("pod-a"), "udp flow on pod-a", proto="udp", sport=41016)
    assert names(lab.connect("client", "10.96.1.16", 53, proto="udp", sport=41016, count=3)) == Counter({"pod-a": 3})
    files.write("udpmove", service("udpmove", "10.96.1.16", port=53, protocol="UDP"),
                endpoint_slice("udpmove", [Endpoint("pod-b")], protocol="UDP"))
    # the same 5-tuple keeps hitting pod-a (still running) unless the stale conntrack entry is cleared;
    # UDP conntrack entries live 30-120 s, far longer than this wait
    lab.wait_reply("client", "10.96.1.16", 53, lands_on("pod-b"), "udp flow moved to pod-b",
                   proto="udp", sport=41016, timeout=8)


def test_malformed_service_beside_good_ones(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    bad_port = service("bad-port", "10.96.1.30", port=70000)
    bad_ip = service("bad-ip", "10.96.999.1")
    bad_slice = endpoint_slice("good", [Endpoint("pod-b")])
    bad_slice["metadata"]["name"] = "good-broken"
    bad_slice["endpoints"][0]["addresses"] = ["not-an-ip"]
    files.write("mixed", bad_port, service("good", "10.96.1.17"), bad_ip, endpoint_slice("good", [Endpoint("pod-c")]), bad_slice)
    files.write_text("garbage", "{ this is: [not yaml\n")
    lab.wait_reply("client", "10.96.1.17", 80, lands_on("pod-c"), "good service beside bad ones")
    assert names(lab.connect("client", "10.96.1.17", 80, count=10)) == Counter({"pod-c": 10})
    assert agent.alive()


def test_file_update_while_running(lab: ServiceLab, agent: AgentProcess, files: ManifestDir) -> None:
    files.write("upd", service("upd", "10.96.1.18"), endpoint_slice("upd", [Endpoint("pod-a")]))
    lab.wait_reply("client", "10.96.1.18", 80, lands_on("pod-a"), "upd -> pod-a")
    files.write("upd", service("upd", "10.96.1.18"), endpoint_slice("upd", [Endpoint("pod-c")]))
    lab.wait_reply("client", "10.96.1.18", 80, lands_on("pod-c"), "upd follows the file to pod-c")
    assert names(lab.connect("client", "10.96.1.18", 80, count=10)) == Counter({"pod-c": 10})
    files.remove("upd")
    lab.wait_reply("client", "10.96.1.18", 80, lambda r: r.result != "ok", "upd gone with its file")


def test_once_and_cleanup_leave_foreign_table(backend: str, tmp_path: Path) -> None:
    node = TestNetns.create("svcclean")
    try:
        node.run("nft", "-f", "-", input="table ip foreign {\n chain c {\n  type filter hook input priority 0;\n"
                 "  tcp dport 9 counter accept\n }\n}\n")
        foreign = node.run("nft", "list", "table", "ip", "foreign").stdout
        src = ManifestDir(tmp_path / "m")
        src.write("all", node_manifest(), service("once", "10.96.2.1"), endpoint_slice("once", [Endpoint("pod-a")]))
        agent = AgentProcess(node, src.path, backend, tmp_path / "agent.log")
        once = agent.run_once("--once")
        assert once.returncode == 0, once.stdout + once.stderr
        assert owned_present(backend, node), "--once programmed nothing"
        cleanup = agent.run_once("--cleanup")
        assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
        assert not owned_present(backend, node), "--cleanup left objects behind"
        assert node.run("nft", "list", "table", "ip", "foreign").stdout == foreign
    finally:
        node.destroy()


def owned_present(backend: str, node: TestNetns) -> bool:
    """Whether the objects ``backend`` owns exist in ``node`` (one entry per backend)."""
    if backend == "nftables":
        return "table ip pynet" in node.run("nft", "list", "tables").stdout
    if backend == "iptables":
        out = subprocess.run(node.argv("iptables-save"), capture_output=True, text=True, check=True).stdout
        return "PYNET-" in out
    raise AssertionError(f"no ownership check for backend {backend}")
