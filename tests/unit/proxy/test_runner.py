"""BoundedFrequencyRunner in virtual time: the first run is immediate, requests coalesce within
min_interval, max_interval forces periodic runs, failures retry after retry_interval."""

from __future__ import annotations

import threading

import pytest

from pynet._clock import FakeClock
from pynet.proxy.runner import BoundedFrequencyRunner


def test_coalescing_min_interval_and_periodic(fake_clock: FakeClock) -> None:
    times: list[float] = []
    r = BoundedFrequencyRunner(
        "t",
        lambda: times.append(fake_clock.monotonic()),
        min_interval=1.0,
        retry_interval=2.0,
        max_interval=10.0,
        clock=fake_clock,
    )
    assert r.step() and times == [1000.0]
    r.run()
    r.run()
    r.run()  # three requests inside the minimum gap...
    assert not r.step()
    fake_clock.advance(0.5)
    assert not r.step()
    fake_clock.advance(0.5)
    assert r.step() and times == [1000.0, 1001.0]  # ...become one run, exactly min_interval later
    assert not r.step()
    fake_clock.advance(9.99)
    assert not r.step()
    fake_clock.advance(0.01)
    assert r.step() and times[-1] == 1011.0  # periodic run after max_interval without requests


def test_retry_after_failure(fake_clock: FakeClock) -> None:
    calls: list[float] = []
    errors: list[BaseException] = []

    def fn() -> None:
        calls.append(fake_clock.monotonic())
        if len(calls) <= 2:
            raise RuntimeError("boom")

    r = BoundedFrequencyRunner(
        "t",
        fn,
        min_interval=0.5,
        retry_interval=3.0,
        max_interval=60.0,
        clock=fake_clock,
        on_error=errors.append,
    )
    r.step()
    fake_clock.advance(2.9)
    assert not r.step()
    fake_clock.advance(0.1)
    assert r.step()
    fake_clock.advance(3.0)
    assert r.step()
    assert calls == [1000.0, 1003.0, 1006.0] and len(errors) == 2
    fake_clock.advance(3.0)
    assert not r.step()  # succeeded: no more retries


def test_loop_in_virtual_time_stops(fake_clock: FakeClock) -> None:
    stop = threading.Event()
    times: list[float] = []

    def fn() -> None:
        times.append(fake_clock.monotonic())
        if len(times) == 4:
            stop.set()

    r = BoundedFrequencyRunner(
        "t", fn, min_interval=1.0, retry_interval=1.0, max_interval=5.0, clock=fake_clock
    )
    r.loop(stop)
    assert times == [1000.0, 1005.0, 1010.0, 1015.0]


def test_invalid_intervals() -> None:
    with pytest.raises(ValueError):
        BoundedFrequencyRunner("t", lambda: None, min_interval=-1, retry_interval=1, max_interval=1)
