"""FakeApiServer: an in-test HTTP server speaking the Kubernetes list/watch protocol.

No kube-apiserver can run on the test machines, so the informer and the real ``kubernetes`` client
are tested against this. It serves, for Services (``/api/v1/services``), EndpointSlices
(``/apis/discovery.k8s.io/v1/endpointslices``) and Nodes (``/api/v1/nodes``):

* list: ``{"kind": "...List", "metadata": {"resourceVersion": rv, "continue": token}, "items": [...]}``
  with ``limit``/``continue`` paging;
* watch (``?watch=true&resourceVersion=N``): a chunked HTTP/1.1 stream of JSON lines
  ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": {...}}``; ``timeoutSeconds`` ends it
  cleanly; a resourceVersion older than the compaction point gets an ERROR event with code 410;
* PATCH ``/api/v1/nodes/NAME`` (merge of ``metadata.annotations``, as the agent sends).

Test controls: :meth:`apply`, :meth:`delete`, :meth:`bookmark` (send a BOOKMARK on open watches),
:meth:`compact` (make older resourceVersions 410), :meth:`expire_watches` (send ERROR 410 on open
watches), :meth:`drop_watches` (cut open streams mid-chunk, as a crashed apiserver or proxy would),
:meth:`write_kubeconfig`, and request counters (``lists(kind)``, ``watches(kind)``).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import socket
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["FakeApiServer"]

RESOURCES: dict[str, tuple[str, str, bool]] = {
    # path -> (kind, apiVersion, namespaced)
    "/api/v1/services": ("Service", "v1", True),
    "/apis/discovery.k8s.io/v1/endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
    "/api/v1/nodes": ("Node", "v1", False),
}
_PATH_OF = {kind: path for path, (kind, _, _) in RESOURCES.items()}


class FakeApiServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self._cond = threading.Condition()
        self._rv = 100
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            k: {} for k, _, _ in RESOURCES.values()
        }
        # per kind, in resourceVersion order: (rv, type, object); rvs mirrored for bisect
        self._events: dict[str, list[tuple[int, str, dict[str, Any]]]] = {
            k: [] for k, _, _ in RESOURCES.values()
        }
        self._event_rvs: dict[str, list[int]] = {k: [] for k, _, _ in RESOURCES.values()}
        self._compacted = 0
        self._drop_gen = 0
        self._expire_gen = 0
        self._bookmark_gen = 0
        self._open_watches: dict[str, int] = {k: 0 for k, _, _ in RESOURCES.values()}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self._httpd = ThreadingHTTPServer((host, 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-apiserver", daemon=True)
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path) -> Path:
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "test-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        path.write_text(json.dumps(doc))
        return path

    # ------------------------------------------------------------------ state controls

    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj`` (its ``kind`` picks the resource); returns the stored copy."""
        kind = str(obj["kind"])
        stored = copy.deepcopy(dict(obj))
        meta = stored.setdefault("metadata", {})
        namespaced = RESOURCES[_PATH_OF[kind]][2]
        if namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace", "") if namespaced else "", meta["name"])
        with self._cond:
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            etype = "MODIFIED" if key in self._objects[kind] else "ADDED"
            self._objects[kind][key] = stored
            self._record(kind, etype, copy.deepcopy(stored))
            self._cond.notify_all()
        return stored

    def delete(self, kind: str, namespace: str, name: str) -> None:
        with self._cond:
            obj = self._objects[kind].pop((namespace, name))
            self._rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._record(kind, "DELETED", obj)
            self._cond.notify_all()

    def _record(self, kind: str, etype: str, obj: dict[str, Any]) -> None:
        self._events[kind].append((self._rv, etype, obj))
        self._event_rvs[kind].append(self._rv)

    def _clear_events(self) -> None:
        for kind in self._events:
            self._events[kind] = []
            self._event_rvs[kind] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._cond:
            obj = self._objects[kind].get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def bookmark(self) -> None:
        """Send a BOOKMARK with the current resourceVersion on every open watch that asked for them."""
        with self._cond:
            self._rv += 1  # bookmarks carry a version newer than any event so far
            self._bookmark_gen += 1
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget history: a watch from any older resourceVersion now gets 410 Gone."""
        with self._cond:
            self._compacted = self._rv
            self._clear_events()

    def expire_watches(self) -> None:
        """Compact and send ERROR 410 on the open watches (what etcd compaction does)."""
        with self._cond:
            self._compacted = self._rv
            self._clear_events()
            self._expire_gen += 1
            self._cond.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch stream abruptly, in the middle of a chunk."""
        with self._cond:
            self._drop_gen += 1
            self._cond.notify_all()

    def lists(self, kind: str) -> int:
        return sum(
            1
            for m, p, q in self.requests
            if m == "GET" and p == _PATH_OF[kind] and q.get("watch") not in ("true", "1")
        )

    def watches(self, kind: str) -> int:
        return sum(
            1
            for m, p, q in self.requests
            if m == "GET" and p == _PATH_OF[kind] and q.get("watch") in ("true", "1")
        )

    def wait_watching(
        self, kinds: tuple[str, ...] = ("Service", "EndpointSlice", "Node"), timeout: float = 10.0
    ) -> None:
        """Block until each of ``kinds`` has an open watch (so that later changes arrive as events)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(self._open_watches[k] > 0 for k in kinds):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no open watch for all of {kinds}: {self._open_watches}")
                self._cond.wait(left)

    # ------------------------------------------------------------------ HTTP

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send_json(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send_json(
                    code,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": reason,
                        "message": message,
                        "code": code,
                    },
                )

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                server.requests.append(("GET", url.path, query))
                if url.path not in RESOURCES:
                    self._status(404, "NotFound", f"no resource at {url.path}")
                    return
                kind, api_version, _ = RESOURCES[url.path]
                if query.get("watch") in ("true", "1"):
                    server._serve_watch(self, kind, query)
                else:
                    server._serve_list(self, kind, api_version, query)

            def do_PATCH(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                server.requests.append(("PATCH", url.path, {}))
                length = int(self.headers.get("Content-Length") or 0)
                patch = json.loads(self.rfile.read(length) or b"{}")
                prefix = "/api/v1/nodes/"
                if not url.path.startswith(prefix):
                    self._status(405, "MethodNotAllowed", "only nodes can be patched here")
                    return
                name = url.path[len(prefix) :]
                current = server.get("Node", "", name)
                if current is None:
                    self._status(404, "NotFound", f'nodes "{name}" not found')
                    return
                server.patches.append((name, patch))
                annotations = (patch.get("metadata") or {}).get("annotations") or {}
                current.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
                current.setdefault("kind", "Node")
                stored = server.apply(current)
                self._send_json(200, stored)

        return Handler

    def _serve_list(
        self, h: BaseHTTPRequestHandler, kind: str, api_version: str, query: dict[str, str]
    ) -> None:
        start = int(query.get("continue", "0") or 0)
        limit = int(query.get("limit", "0") or 0)
        with self._cond:
            keys = sorted(self._objects[kind])
            rv = self._rv
            chosen = keys[start : start + limit] if limit else keys[start:]
            page = [copy.deepcopy(self._objects[kind][k]) for k in chosen]
            total = len(keys)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and start + limit < total:
            meta["continue"] = str(start + limit)
        for obj in page:
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        doc = {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": page}
        body = json.dumps(doc).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _serve_watch(self, h: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        since = int(query.get("resourceVersion", "0") or 0)
        timeout = float(query.get("timeoutSeconds", "300") or 300)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        deadline = time.monotonic() + timeout
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        def event(etype: str, obj: Mapping[str, Any]) -> None:
            chunk(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

        with self._cond:
            drop_gen, expire_gen, bm_gen = self._drop_gen, self._expire_gen, self._bookmark_gen
            too_old = since < self._compacted
            self._open_watches[kind] += 1
            self._cond.notify_all()
        try:
            if too_old:
                event(
                    "ERROR",
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "Expired",
                        "message": f"too old resource version: {since} ({self._compacted})",
                        "code": 410,
                    },
                )
                chunk(b"")
                return
            while True:
                with self._cond:
                    pending = self._events[kind][bisect.bisect_right(self._event_rvs[kind], since) :]
                    if (
                        not pending
                        and not self._stopping
                        and drop_gen == self._drop_gen
                        and expire_gen == self._expire_gen
                        and bm_gen == self._bookmark_gen
                    ):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            chunk(b"")
                            return
                        self._cond.wait(min(left, 0.5))
                        continue
                    dropped = drop_gen != self._drop_gen
                    expired = expire_gen != self._expire_gen
                    bookmark = bm_gen != self._bookmark_gen
                    bm_gen = self._bookmark_gen
                    current_rv = self._rv
                if dropped:
                    # half a chunk, then a hard close: the client sees a broken stream
                    h.wfile.write(b'40\r\n{"type": "MODIF')
                    h.wfile.flush()
                    h.connection.shutdown(socket.SHUT_RDWR)
                    h.close_connection = True
                    return
                for rv, etype, obj in pending:
                    event(etype, obj)
                    since = rv
                if self._stopping:
                    chunk(b"")
                    return
                if expired:
                    event(
                        "ERROR",
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "Expired",
                            "message": "too old resource version",
                            "code": 410,
                        },
                    )
                    chunk(b"")
                    return
                if bookmark and bookmarks:
                    event(
                        "BOOKMARK",
                        {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(current_rv)}},
                    )
                    since = max(since, current_rv)
        except (BrokenPipeError, ConnectionResetError, OSError):
            h.close_connection = True
        finally:
            with self._cond:
                self._open_watches[kind] -= 1


def main(argv: list[str] | None = None) -> int:
    """``python -m pynet.testing.apiserver --objects FILE --kubeconfig OUT``: serve until killed.

    For tests whose agent runs inside a network namespace (loopback is per namespace): start this
    inside the same namespace. FILE is a JSON list of objects; OUT receives a kubeconfig pointing here.
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="pynet.testing.apiserver")
    parser.add_argument("--objects", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    args = parser.parse_args(argv)
    server = FakeApiServer().start()
    for obj in json.loads(args.objects.read_text()):
        server.apply(obj)
    tmp = args.kubeconfig.with_name(args.kubeconfig.name + ".tmp")
    server.write_kubeconfig(tmp)
    tmp.replace(args.kubeconfig)  # appears atomically: its presence means "serving"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
