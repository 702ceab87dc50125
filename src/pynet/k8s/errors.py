"""The Kubernetes layer's errors: translated once in :mod:`pynet.k8s.client`, chained to the cause.

* :class:`ApiError` - a request failed (HTTP status, connection refused, bad response); retry with backoff;
* :class:`Gone` - HTTP 410 / a watch ERROR event with code 410: the resourceVersion is too old, relist;
* :class:`StreamBroken` - a watch stream ended abnormally mid-way; re-watch from the last resourceVersion.
"""

from __future__ import annotations

from pynet.errors import PynetError

__all__ = ["ApiError", "Gone", "StreamBroken"]


class ApiError(PynetError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Gone(ApiError):
    def __init__(self, message: str = "resource version too old") -> None:
        super().__init__(message, 410)


class StreamBroken(ApiError):
    pass
