"""The only module that imports the official ``kubernetes`` client.

It builds an API client from a kubeconfig (or the in-cluster service account) and exposes, per
resource, the two callables an :class:`~pynet.k8s.informer.Informer` needs. Objects travel as raw
JSON dicts (``_preload_content=False``): the client's model classes are never built, which saves
time and memory at 10,000 services and keeps :mod:`pynet.k8s.convert` the single validator.

Library shortfall worked around: ``kubernetes.watch.Watch.stream`` retries internally after a 410
and, with ``deserialize=False``, fails on ERROR events (it looks up a ``raw_object`` key it only adds
when deserialising). So the watch here issues the list call with ``watch=True`` itself and splits the
chunked response into lines with the client's own ``iter_resp_lines``.

Errors are translated here, once: 410 -> Gone; other HTTP errors and connection failures -> ApiError;
a stream cut mid-way (urllib3 ProtocolError / read timeout) -> StreamBroken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from pynet.k8s.errors import ApiError, Gone, StreamBroken
from pynet.k8s.events import Kind
from pynet.k8s.informer import ListFn, WatchEvent, WatchFn

__all__ = ["ApiClient"]

#: server-side watch timeout; the client re-watches from the last resourceVersion afterwards
WATCH_TIMEOUT_SECONDS = 240
LIST_PAGE_SIZE = 500


def _translate(err: BaseException, what: str) -> ApiError:
    if isinstance(err, ApiException):
        if err.status == 410:
            return Gone(f"{what}: {err.reason}")
        return ApiError(f"{what}: HTTP {err.status} {err.reason}", err.status)
    if isinstance(err, urllib3.exceptions.ProtocolError | urllib3.exceptions.ReadTimeoutError):
        return StreamBroken(f"{what}: {err}")
    return ApiError(f"{what}: {err}")


class ApiClient:
    """A thin wrapper: list/watch callables per kind, and the Node annotation patch."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self.api = api
        self.core = k8s_client.CoreV1Api(api)
        self.discovery = k8s_client.DiscoveryV1Api(api)

    @classmethod
    def from_config(cls, kubeconfig: str | None, *, in_cluster: bool = False) -> ApiClient:
        conf = k8s_client.Configuration()
        try:
            if in_cluster and not kubeconfig:
                k8s_config.load_incluster_config(client_configuration=conf)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=conf)  # type: ignore[no-untyped-call]
        except Exception as err:
            raise ApiError(f"cannot load cluster credentials ({kubeconfig or 'in-cluster'}): {err}") from err
        return cls(k8s_client.ApiClient(conf))

    def _functions(self) -> dict[Kind, Callable[..., Any]]:
        return {
            Kind.SERVICE: self.core.list_service_for_all_namespaces,
            Kind.ENDPOINT_SLICE: self.discovery.list_endpoint_slice_for_all_namespaces,
            Kind.NODE: self.core.list_node,
        }

    def resources(self) -> dict[Kind, tuple[ListFn, WatchFn]]:
        return {
            kind: (self._lister(kind, fn), self._watcher(kind, fn)) for kind, fn in self._functions().items()
        }

    def _lister(self, kind: Kind, fn: Callable[..., Any]) -> ListFn:
        def list_all() -> tuple[Iterable[Mapping[str, Any]], str]:
            items: list[Mapping[str, Any]] = []
            token: str | None = None
            rv = ""
            while True:
                kwargs: dict[str, Any] = {
                    "limit": LIST_PAGE_SIZE,
                    "_preload_content": False,
                    "_request_timeout": 60,
                }
                if token:
                    kwargs["_continue"] = token
                try:
                    resp = fn(**kwargs)
                    doc = json.loads(resp.data)
                except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
                    raise _translate(err, f"list {kind.value}") from err
                items.extend(doc.get("items") or ())
                meta = doc.get("metadata") or {}
                rv = str(meta.get("resourceVersion") or rv)
                token = meta.get("continue") or None
                if not token:
                    return items, rv

        return list_all

    def _watcher(self, kind: Kind, fn: Callable[..., Any]) -> WatchFn:
        def watch(rv: str) -> Iterator[WatchEvent]:
            what = f"watch {kind.value}"
            try:
                resp = fn(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    _preload_content=False,
                    _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30),
                )
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
                raise _translate(err, what) from err
            try:
                for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except ValueError as err:
                        raise StreamBroken(f"{what}: undecodable event line") from err
                    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
                        raise StreamBroken(f"{what}: malformed event")
                    yield WatchEvent(str(doc.get("type")), doc["object"])
            except (urllib3.exceptions.HTTPError, OSError) as err:
                raise StreamBroken(f"{what}: stream broke: {err}") from err
            finally:
                resp.close()
                resp.release_conn()

        return watch

    def patch_node_annotations(self, node_name: str, annotations: Mapping[str, str]) -> None:
        try:
            self.core.patch_node(node_name, {"metadata": {"annotations": dict(annotations)}})
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as err:
            raise _translate(err, f"patch node {node_name}") from err
