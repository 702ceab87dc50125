"""The small server every lab pod runs (stdlib only; started inside the pod's namespace).

- TCP :8080 answers one line, ``<pod name> <peer ip>``, and closes: the peer IP shows whether a
  service path masqueraded the client.
- TCP :8081 reads one line with a byte count N (at most 64 MiB) and sends N bytes, then closes: a
  full-size transfer that stalls when the path MTU is wrong.

Run: ``python -m pynet.lab.podserver NAME``.
"""

from __future__ import annotations

import socketserver
import sys
import threading

__all__ = ["MAX_BULK", "main"]

ECHO_PORT = 8080
BULK_PORT = 8081
MAX_BULK = 64 * 1024 * 1024
CHUNK = bytes(64 * 1024)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def _echo_handler(pod: str) -> type[socketserver.BaseRequestHandler]:
    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(f"{pod} {self.client_address[0]}\n".encode())

    return Echo


class Bulk(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            n = min(int(self.rfile.readline(32).strip() or 0), MAX_BULK)
        except ValueError:
            return
        while n > 0:
            chunk = CHUNK[: min(n, len(CHUNK))]
            self.wfile.write(chunk)
            n -= len(chunk)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    pod = args[0] if args else "pod"
    servers = [_Server(("0.0.0.0", ECHO_PORT), _echo_handler(pod)), _Server(("0.0.0.0", BULK_PORT), Bulk)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    print(f"podserver {pod} listening on :{ECHO_PORT} and :{BULK_PORT}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
