"""Informer: list -> synced -> watch(rv); bookmarks advance rv; ERROR 410 / Gone -> relist (deletes
what vanished); a broken stream -> re-watch from the last rv; list failures back off exponentially
in virtual time. Then the same against the in-test API server through the real kubernetes client:
list, watch, bookmark, 410 -> relist, dropped stream mid-watch -> rewatch, paging."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pynet._clock import FakeClock
from pynet.k8s.errors import Gone, StreamBroken
from pynet.k8s.events import Kind
from pynet.k8s.informer import Informer
from pynet.testing.apiserver import FakeApiServer
from pynet.testing.builders import make_service, port
from pynet.testing.fakeapi import FakeApi, RecordingHandler, event, fail


def svc(name: str, ip: str, rv: int | None = None) -> dict[str, object]:
    raw = make_service(name, ip)
    if rv is not None:
        raw["metadata"]["resourceVersion"] = str(rv)
    return raw


def make(api: FakeApi, h: RecordingHandler, clock: FakeClock) -> Informer:
    return Informer(
        Kind.SERVICE, api.list_fn, api.watch_fn, h, clock=clock, initial_backoff=1.0, max_backoff=8.0
    )


def test_list_then_watch_with_bookmark(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    api, h = FakeApi(stop), RecordingHandler()
    api.items, api.rv = [svc("a", "10.96.0.1")], 10
    api.streams = [
        [
            event("ADDED", svc("b", "10.96.0.2"), 11),
            event("BOOKMARK", {"kind": "Service", "metadata": {}}, 15),
            event("MODIFIED", svc("b", "10.96.0.2"), 16),  # no-op change: not delivered
            event("DELETED", svc("a", "10.96.0.1"), 17),
        ]
    ]
    inf = make(api, h, fake_clock)
    inf.run(stop)
    assert h.synced == [Kind.SERVICE]
    assert h.take() == [("svc", None, "default/a"), ("svc", None, "default/b"), ("svc", "default/a", None)]
    assert api.watch_calls == ["10", "17"]  # re-watch after a clean end continues from the last rv
    assert api.list_calls == 1


def test_gone_relists_and_delivers_deletes(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    api, h = FakeApi(stop), RecordingHandler()
    api.items, api.rv = [svc("a", "10.96.0.1"), svc("b", "10.96.0.2")], 10
    api.streams = [[event("ERROR", {"kind": "Status", "code": 410, "message": "too old"})], [Gone()]]
    inf = make(api, h, fake_clock)

    # after the first 410, the server state changed: "a" is gone and "c" exists
    orig = api.list_fn

    def list_fn() -> tuple[object, str]:
        if api.list_calls == 1:
            api.items, api.rv = [svc("b", "10.96.0.2"), svc("c", "10.96.0.3")], 20
        return orig()

    inf._list = list_fn  # type: ignore[assignment]
    start = fake_clock.monotonic()
    inf.run(stop)
    assert api.list_calls == 3  # initial list + one relist per 410
    assert h.take() == [
        ("svc", None, "default/a"),
        ("svc", None, "default/b"),
        ("svc", None, "default/c"),
        ("svc", "default/a", None),
    ]
    assert h.synced == [Kind.SERVICE]  # synced is reported once
    assert fake_clock.monotonic() == start  # 410 relists immediately, no backoff


def test_broken_stream_rewatches_from_last_rv(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    api, h = FakeApi(stop), RecordingHandler()
    api.rv = 5
    api.streams = [
        [event("ADDED", svc("a", "10.96.0.1"), 6), StreamBroken("cut")],
        [event("ADDED", svc("b", "10.96.0.2"), 7)],
    ]
    inf = make(api, h, fake_clock)
    inf.run(stop)
    assert api.watch_calls == ["5", "6", "7"]
    assert api.list_calls == 1
    assert h.take() == [("svc", None, "default/a"), ("svc", None, "default/b")]


def test_list_failures_back_off_exponentially(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    api, h = FakeApi(stop), RecordingHandler()
    api.list_failures = [fail(), fail(), fail(), fail(), fail()]
    waits: list[float] = []
    orig_wait = fake_clock.wait

    def wait(ev: threading.Event, timeout: float) -> bool:
        waits.append(timeout)
        return orig_wait(ev, timeout)

    fake_clock.wait = wait  # type: ignore[method-assign]
    inf = make(api, h, fake_clock)
    inf.run(stop)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert api.list_calls == 6 and h.synced == [Kind.SERVICE]


def test_invalid_object_in_watch_is_reported_and_skipped(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    api, h = FakeApi(stop), RecordingHandler()
    bad = make_service("bad", "10.96.0.9", [port(80, protocol="XTP")])
    api.streams = [[event("ADDED", bad, 2), event("ADDED", svc("ok", "10.96.0.8"), 3)]]
    make(api, h, fake_clock).run(stop)
    assert h.take() == [("svc", None, "default/ok")]
    assert [(e.kind, e.name) for e in h.invalid] == [("Service", "bad")]


# --------------------------------------------------------------------------- real client, HTTP server


def wait_until(pred: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(pred) and pred():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_real_client_against_fake_apiserver(tmp_path: Path) -> None:
    from pynet.k8s.client import ApiClient

    with FakeApiServer() as srv:
        for i in range(7):
            srv.apply(svc(f"s{i}", f"10.96.0.{i + 1}"))
        api = ApiClient.from_config(str(srv.write_kubeconfig(tmp_path / "kubeconfig")))
        import pynet.k8s.client as client_mod

        client_mod.LIST_PAGE_SIZE = 3  # exercise paging (continue tokens)
        try:
            list_fn, watch_fn = api.resources()[Kind.SERVICE]
            h = RecordingHandler()
            inf = Informer(Kind.SERVICE, list_fn, watch_fn, h, initial_backoff=0.05)
            stop = threading.Event()
            t = threading.Thread(target=inf.run, args=(stop,), daemon=True)
            t.start()
            wait_until(lambda: h.synced == [Kind.SERVICE])
            assert len(h.take()) == 7
            assert srv.lists("Service") == 3  # 7 items in pages of 3
            srv.wait_watching(("Service",))

            srv.apply(svc("new", "10.96.1.1"))
            wait_until(lambda: ("svc", None, "default/new") in h.calls)

            srv.bookmark()
            wait_until(lambda: inf.resource_version == str(srv.resource_version))

            watches = srv.watches("Service")
            srv.drop_watches()  # cut mid-chunk (before pending events): re-watch from the last rv, no relist
            srv.apply(svc("after-drop", "10.96.1.2"))
            wait_until(lambda: srv.watches("Service") > watches)
            wait_until(lambda: ("svc", None, "default/after-drop") in h.calls)
            assert srv.lists("Service") == 3

            srv.wait_watching(("Service",))
            srv.expire_watches()  # ERROR 410 on the open watch: relist
            srv.delete("Service", "default", "s0")
            wait_until(lambda: ("svc", "default/s0", None) in h.calls)
            wait_until(lambda: srv.lists("Service") >= 6)  # a second full (paged) listing happened

            srv.compact()  # a watch from an old rv now gets 410 at once
            srv.drop_watches()
            srv.apply(svc("after-compact", "10.96.1.3"))
            wait_until(lambda: ("svc", None, "default/after-compact") in h.calls)
            stop.set()
            srv.drop_watches()
            t.join(10)
            assert not t.is_alive()
        finally:
            client_mod.LIST_PAGE_SIZE = 500


def test_unreachable_server_retries_with_backoff(tmp_path: Path) -> None:
    from pynet.k8s.client import ApiClient

    srv = FakeApiServer()
    kubeconfig = srv.write_kubeconfig(tmp_path / "kubeconfig")
    srv.stop()  # nothing listens there any more (never started)
    list_fn, watch_fn = ApiClient.from_config(str(kubeconfig)).resources()[Kind.NODE]
    clock = FakeClock()
    stop = threading.Event()
    h = RecordingHandler()
    inf = Informer(Kind.NODE, list_fn, watch_fn, h, clock=clock, initial_backoff=1.0, max_backoff=4.0)
    waits: list[float] = []
    orig = clock.wait

    def wait(ev: threading.Event, timeout: float) -> bool:
        waits.append(timeout)
        if len(waits) >= 4:
            stop.set()
        return orig(ev, timeout)

    clock.wait = wait  # type: ignore[method-assign]
    inf.run(stop)
    assert h.synced == []
    assert waits == [1.0, 2.0, 4.0, 4.0]  # capped at max_backoff
