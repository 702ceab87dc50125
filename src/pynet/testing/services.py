"""Harness for the packet-level service scenario suite (every backend runs the same suite).

IP plan (one node, everything inside namespaces the harness creates and removes)::

    cluster CIDR        10.244.0.0/16      (--cluster-cidr)
    this node's pods    10.244.1.0/24      bridge pynetbr0 = 10.244.1.1 in the node netns
      pod-a 10.244.1.11, pod-b 10.244.1.12, pod-c 10.244.1.13   backends (server on tcp+udp 8080)
      client 10.244.1.20                                        a client pod (no server)
    node <-> external   172.31.0.0/24      node ext0 = 172.31.0.1 (the Node's InternalIP, where
                                           NodePorts listen); external netns eth0 = 172.31.0.2 and
                                           172.31.0.3 (a second client address)
    service IPs         10.96.0.0/16       ClusterIPs (not routed anywhere: only the rules make them work)
    external IPs        192.0.2.0/24       spec.externalIPs
    LoadBalancer IPs    198.51.100.0/24    status.loadBalancer.ingress
    NodePorts           30000-32767

The node's default route points at the external netns (like a node's uplink), so a packet to a
service IP that no rule translates is forwarded (and can be rejected by the backend's filter rules)
rather than dropped for want of a route. Bridge ports have hairpin mode on and bridge-nf-call-iptables
is 1 in the node, so a pod can reach itself through its service (MACHINE-NOTES).

Backends are "pods" whose server answers every TCP connection and UDP datagram with one line
``<pod name> <peer ip>:<peer port>``: the test learns where the connection landed and which source
address the backend saw. Servers and clients are this module run as a program
(``python -m pynet.testing.services server|client|sctp-send|sctp-sniff``), bounded by counts and
timeouts. SCTP is exercised with raw sockets (one crafted INIT, sniffed at the backend), because this
kernel has no SCTP socket support; the NAT path for SCTP is the same either way.

The agent is the real one: ``.venv/bin/pynet agent --source DIR ...`` started inside the node netns,
fed Kubernetes manifests written into DIR (:class:`ManifestDir`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CLUSTER_CIDR",
    "NODE_IP",
    "NODE_NAME",
    "POD_IPS",
    "AgentProcess",
    "Endpoint",
    "ManifestDir",
    "Reply",
    "ServiceLab",
    "endpoint_slice",
    "service",
    "wait_until",
]

CLUSTER_CIDR = "10.244.0.0/16"
POD_CIDR = "10.244.1.0/24"
BRIDGE = "pynetbr0"
BRIDGE_IP = "10.244.1.1"
POD_IPS = {"pod-a": "10.244.1.11", "pod-b": "10.244.1.12", "pod-c": "10.244.1.13", "client": "10.244.1.20"}
BACKEND_PODS = ("pod-a", "pod-b", "pod-c")
NODE_NAME = "node-1"
OTHER_NODE = "node-2"
NODE_IP = "172.31.0.1"
EXT_IP = "172.31.0.2"
EXT_IP2 = "172.31.0.3"
SERVER_PORT = 8080
VENV_PYTHON = str(Path(sys.prefix) / "bin" / "python")
REPO_ROOT = Path(__file__).resolve().parents[3]


# =========================================================================== probe programs


def _serve(name: str, port: int, stop: threading.Event) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen(128)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while not stop.is_set():
        readable, _, _ = select.select([tcp, udp], [], [], 0.5)
        for sock in readable:
            if sock is tcp:
                conn, peer = tcp.accept()
                with conn, contextlib.suppress(OSError):
                    conn.sendall(f"{name} {peer[0]}:{peer[1]}\n".encode())
            else:
                data, peer = udp.recvfrom(2048)
                with contextlib.suppress(OSError):
                    udp.sendto(f"{name} {peer[0]}:{peer[1]}\n".encode(), peer)


def _client_once(proto: str, dst: str, port: int, timeout: float, src: str | None, sport: int) -> dict[str, Any]:
    start = time.monotonic()
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.settimeout(timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if src or sport:
            sock.bind((src or "0.0.0.0", sport))
        sock.connect((dst, port))
        if proto == "udp":
            sock.send(b"hello\n")
        data = sock.recv(2048).decode().strip()
        name, _, peer = data.partition(" ")
        result: dict[str, Any] = {"result": "ok", "name": name, "peer": peer.rpartition(":")[0]}
    except ConnectionRefusedError:
        result = {"result": "refused"}
    except ConnectionResetError:
        result = {"result": "reset"}
    except TimeoutError:
        result = {"result": "timeout"}
    except OSError as err:
        result = {"result": f"error:{err.errno}"}
    finally:
        sock.close()
    result["elapsed"] = round(time.monotonic() - start, 4)
    return result


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _sctp_init(sport: int, dport: int) -> bytes:
    """A minimal, valid SCTP INIT (conntrack checks the CRC32c and the chunk layout)."""
    chunk = struct.pack("!BBHIIHHI", 1, 0, 20, 0x1234ABCD, 65535, 1, 1, 1)
    header = struct.pack("!HHII", sport, dport, 0, 0)
    crc = _crc32c(header + chunk)
    return struct.pack("!HHI", sport, dport, 0) + struct.pack("<I", crc) + chunk


def _sctp_sniff(duration: float) -> list[dict[str, Any]]:
    """Print the SCTP packets reaching this netns (source, destination, ports) for ``duration``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
    sock.settimeout(0.2)
    print("ready", flush=True)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        try:
            pkt = sock.recv(4096)
        except TimeoutError:
            continue
        ihl = (pkt[0] & 0x0F) * 4
        src, dst = socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20])
        sport, dport = struct.unpack("!HH", pkt[ihl : ihl + 4])
        if pkt[ihl + 12] == 1:  # INIT only: ignore our own kernel's ABORTs
            seen.append({"src": src, "dst": dst, "sport": sport, "dport": dport})
            print(json.dumps(seen[-1]), flush=True)
    return seen


def _main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pynet.testing.services")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--name", required=True)
    s.add_argument("--port", type=int, default=SERVER_PORT)
    c = sub.add_parser("client")
    c.add_argument("proto", choices=["tcp", "udp"])
    c.add_argument("dst")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--timeout", type=float, default=1.0)
    c.add_argument("--src")
    c.add_argument("--sport", type=int, default=0)
    ss = sub.add_parser("sctp-send")
    ss.add_argument("dst")
    ss.add_argument("port", type=int)
    ss.add_argument("--sport", type=int, default=40123)
    sn = sub.add_parser("sctp-sniff")
    sn.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.cmd == "server":
        _serve(args.name, args.port, threading.Event())
    elif args.cmd == "client":
        out = [_client_once(args.proto, args.dst, args.port, args.timeout, args.src, args.sport) for _ in range(args.count)]
        print(json.dumps(out))
    elif args.cmd == "sctp-send":
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP)
        raw.sendto(_sctp_init(args.sport, args.port), (args.dst, 0))
    else:
        _sctp_sniff(args.duration)
    return 0


# =========================================================================== manifests


@dataclass(frozen=True)
class Endpoint:
    pod: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = NODE_NAME

    @property
    def ip(self) -> str:
        return POD_IPS[self.pod]


def service(
    name: str,
    cluster_ip: str,
    *,
    port: int = 80,
    protocol: str = "TCP",
    type: str = "ClusterIP",
    node_port: int = 0,
    external_ips: Iterable[str] = (),
    lb_ips: Iterable[str] = (),
    source_ranges: Iterable[str] = (),
    affinity_timeout: int | None = None,
    etp_local: bool = False,
    itp_local: bool = False,
    namespace: str = "default",
    target_port: int = SERVER_PORT,
) -> dict[str, Any]:
    """A Service manifest (dict) with one port named ``p``."""
    ports: dict[str, Any] = {"name": "p", "port": port, "targetPort": target_port, "protocol": protocol}
    if node_port:
        ports["nodePort"] = node_port
    spec: dict[str, Any] = {"type": type, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [ports]}
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    if source_ranges:
        spec["loadBalancerSourceRanges"] = list(source_ranges)
    if affinity_timeout is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_timeout}}
    if etp_local:
        spec["externalTrafficPolicy"] = "Local"
    if itp_local:
        spec["internalTrafficPolicy"] = "Local"
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if lb_ips:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}}
    return obj


def endpoint_slice(
    svc: str, endpoints: Sequence[Endpoint], *, protocol: str = "TCP", namespace: str = "default", port: int = SERVER_PORT
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{svc}-x1", "namespace": namespace, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "p", "port": port, "protocol": protocol}],
        "endpoints": [
            {
                "addresses": [ep.ip],
                "conditions": {"ready": ep.ready, "serving": ep.serving, "terminating": ep.terminating},
                "nodeName": ep.node,
            }
            for ep in endpoints
        ],
    }


def node_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE_NAME},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]},
    }


class ManifestDir:
    """The agent's ``--source`` directory. Files are replaced atomically (write, then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, *docs: dict[str, Any]) -> Path:
        import yaml

        target = self.path / f"{name}.yaml"
        tmp = self.path / f".{name}.yaml.tmp"
        tmp.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
        os.replace(tmp, target)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / f"{name}.yaml"
        tmp = self.path / f".{name}.yaml.tmp"
        tmp.write_text(text)
        os.replace(tmp, target)
        return target

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / f"{name}.yaml").unlink()


# =========================================================================== topology


@dataclass(frozen=True)
class Reply:
    result: str  # ok | refused | reset | timeout | error:<errno>
    name: str = ""
    peer: str = ""
    elapsed: float = 0.0


def wait_until(fn: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``fn`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


@dataclass
class ServiceLab:
    """A node netns with a pod bridge, three backend pods, a client pod and an external netns."""

    node: Any  # TestNetns
    ext: Any
    pods: dict[str, Any]
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    @classmethod
    def create(cls) -> ServiceLab:
        from pynet.testing.netns import TestNetns

        made: list[TestNetns] = []
        try:
            node = TestNetns.create("svcnode")
            made.append(node)
            ext = TestNetns.create("svcext")
            made.append(ext)
            pods: dict[str, TestNetns] = {}
            for pod in POD_IPS:
                pods[pod] = TestNetns.create("svcpod")
                made.append(pods[pod])
            lab = cls(node, ext, pods)
            lab._wire()
            lab._start_servers()
            return lab
        except BaseException:
            for ns in reversed(made):
                ns.destroy()
            raise

    def _wire(self) -> None:
        script = [
            "set -e",
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.ipv4.conf.all.send_redirects=0",
            f"ip link add {BRIDGE} type bridge",
            f"ip addr add {BRIDGE_IP}/24 dev {BRIDGE}",
            f"ip link set {BRIDGE} up",
            f"ip link add ext0 type veth peer name eth0 netns {self.ext.name}",
            f"ip addr add {NODE_IP}/24 dev ext0",
            "ip link set ext0 up",
            f"ip route add default via {EXT_IP}",
        ]
        for i, ns in enumerate(self.pods.values()):
            host = f"vpod{i}"
            script += [
                f"ip link add {host} type veth peer name eth0 netns {ns.name}",
                f"ip link set {host} master {BRIDGE}",
                f"ip link set {host} up",
                f"bridge link set dev {host} hairpin on",
            ]
        self.node.sh("\n".join(script))
        bnf = self.node.run("sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout.strip()
        if bnf != "1":
            self.node.run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        for pod, ns in self.pods.items():
            ns.sh(f"set -e; ip addr add {POD_IPS[pod]}/24 dev eth0; ip link set eth0 up; ip route add default via {BRIDGE_IP}")
        self.ext.sh(
            f"set -e; ip addr add {EXT_IP}/24 dev eth0; ip addr add {EXT_IP2}/24 dev eth0; "
            f"ip link set eth0 up; ip route add default via {NODE_IP}"
        )

    def _start_servers(self) -> None:
        for pod in BACKEND_PODS:
            proc = self.pods[pod].popen(
                [VENV_PYTHON, "-m", "pynet.testing.services", "server", "--name", pod],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
            self.servers.append(proc)
        for proc in self.servers:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            if not ready or proc.stdout.readline().strip() != "ready":
                raise AssertionError("a backend server did not start")

    def destroy(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        for ns in (*self.pods.values(), self.ext, self.node):
            ns.destroy()

    # ----------------------------------------------------------------- traffic
    def netns(self, where: str) -> Any:
        if where == "node":
            return self.node
        if where == "ext":
            return self.ext
        return self.pods[where]

    def connect(
        self,
        where: str,
        dst: str,
        port: int,
        *,
        proto: str = "tcp",
        count: int = 1,
        timeout: float = 1.0,
        src: str | None = None,
        sport: int = 0,
    ) -> list[Reply]:
        """``count`` connections (or datagrams) from ``where`` (a pod, "ext" or "node") to dst:port."""
        argv = [VENV_PYTHON, "-m", "pynet.testing.services", "client", proto, dst, str(port),
                "--count", str(count), "--timeout", str(timeout)]
        if src:
            argv += ["--src", src]
        if sport:
            argv += ["--sport", str(sport)]
        out = self.netns(where).run(*argv, timeout=count * (timeout + 1) + 10)
        return [Reply(**r) for r in json.loads(out.stdout)]

    def wait_reply(
        self,
        where: str,
        dst: str,
        port: int,
        ok: Callable[[Reply], bool],
        what: str,
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 0.5,
        **kw: Any,
    ) -> Reply:
        """Connect repeatedly (each attempt bounded by ``attempt_timeout``) until one reply
        satisfies ``ok``; return that reply. ``kw`` goes to :meth:`connect`."""
        found: list[Reply] = []

        def attempt() -> bool:
            reply = self.connect(where, dst, port, timeout=attempt_timeout, **kw)[0]
            if ok(reply):
                found.append(reply)
                return True
            return False

        wait_until(attempt, timeout, what, interval=0.05)
        return found[0]

    def sctp_probe(self, where: str, dst: str, port: int, sniff_at: str, *, attempts: int = 20) -> dict[str, Any] | None:
        """Send SCTP INITs from ``where`` until ``sniff_at`` sees one (returns what it saw)."""
        sniffer = self.netns(sniff_at).popen(
            [VENV_PYTHON, "-m", "pynet.testing.services", "sctp-sniff", "--duration", str(attempts * 0.3 + 2)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert sniffer.stdout is not None
            ready, _, _ = select.select([sniffer.stdout], [], [], 10)
            assert ready and sniffer.stdout.readline().strip() == "ready"
            for i in range(attempts):
                self.netns(where).run(VENV_PYTHON, "-m", "pynet.testing.services", "sctp-send", dst, str(port),
                                      "--sport", str(40000 + i))
                ready, _, _ = select.select([sniffer.stdout], [], [], 0.3)
                if ready:
                    line = sniffer.stdout.readline()
                    if line.strip():
                        return dict(json.loads(line))
            return None
        finally:
            sniffer.kill()
            sniffer.wait(timeout=5)


# =========================================================================== the agent


class AgentProcess:
    """``pynet agent --source DIR`` running inside the node netns; stopped by PID."""

    def __init__(self, node: Any, source: Path, backend: str, log_path: Path, *extra: str) -> None:
        self.node = node
        self.source = source
        self.backend = backend
        self.log_path = log_path
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None

    def argv(self, *more: str) -> list[str]:
        return [
            str(REPO_ROOT / ".venv" / "bin" / "pynet"), "agent",
            "--source", str(self.source), "--node-name", NODE_NAME, "--backend", self.backend,
            "--cluster-cidr", CLUSTER_CIDR, "--min-sync-period", "0.1", *self.extra, *more,
        ]

    def start(self) -> None:
        log = self.log_path.open("a")
        self.proc = self.node.popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)

    def run_once(self, *more: str) -> subprocess.CompletedProcess[str]:
        return self.node.run(*self.argv(*more), check=False, timeout=60)  # type: ignore[no-any-return]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(_main())
