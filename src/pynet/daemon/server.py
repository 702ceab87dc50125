"""The agent's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (stdlib server, one thread).

Health and readiness are callables returning ``(ok, text)`` so the server knows nothing about the
proxier. Metrics come from a prometheus_client registry of the agent's own. Binding to port 0 picks
a free port (tests); ``server.port`` tells which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pynet._log import get_logger

__all__ = ["AgentHTTPServer", "Check"]

log = get_logger("pynet.daemon.server")

Check = Callable[[], tuple[bool, str]]


class AgentHTTPServer:
    def __init__(
        self,
        address: tuple[str, int],
        *,
        healthz: Check | None = None,
        readyz: Check | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {}

        def check_route(check: Check) -> Callable[[], tuple[int, str, bytes]]:
            def handle() -> tuple[int, str, bytes]:
                ok, text = check()
                return (200 if ok else 503), "text/plain; charset=utf-8", (text + "\n").encode()

            return handle

        if healthz is not None:
            routes["/healthz"] = check_route(healthz)
            routes["/livez"] = routes["/healthz"]
        if readyz is not None:
            routes["/readyz"] = check_route(readyz)
        if registry is not None:
            reg = registry
            routes["/metrics"] = lambda: (200, CONTENT_TYPE_LATEST, generate_latest(reg))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, ctype, body = 404, "text/plain", b"not found\n"
                else:
                    try:
                        status, ctype, body = route()
                    except Exception as err:  # never let a probe kill the server thread
                        status, ctype, body = 500, "text/plain", f"error: {err!r}\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http " + format % args)

        host = address[0]
        server_cls = ThreadingHTTPServer
        if ":" in host:
            import socket

            class V6Server(ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_cls = V6Server
        self._httpd = server_cls(address, Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
