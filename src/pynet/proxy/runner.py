"""BoundedFrequencyRunner: run a function on request, at most every ``min_interval``, at least every
``max_interval``, and again after ``retry_interval`` when it failed.

``run()`` is non-blocking and coalescing: many requests during the minimum gap become one call.
``loop(stop)`` is the only place ``fn`` is called, on the caller's thread (the agent's one sync
thread). Time comes from an injected :class:`~pynet._clock.Clock`, so a ``FakeClock`` drives the
loop in virtual time in tests (its ``wait`` returns instantly, advancing the clock).

``fn`` signals failure by raising; the exception is logged by the caller's wrapper, not here, and
the runner schedules a retry. Pure stdlib.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pynet._clock import REAL_CLOCK, Clock

__all__ = ["BoundedFrequencyRunner"]


class BoundedFrequencyRunner:
    def __init__(
        self,
        name: str,
        fn: Callable[[], None],
        *,
        min_interval: float,
        retry_interval: float,
        max_interval: float,
        clock: Clock = REAL_CLOCK,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if min_interval < 0 or max_interval <= 0 or retry_interval <= 0:
            raise ValueError("intervals must be positive (min may be 0)")
        self.name = name
        self._fn = fn
        self.min_interval = min_interval
        self.retry_interval = retry_interval
        self.max_interval = max_interval
        self._clock = clock
        self._on_error = on_error
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending = True  # the first loop iteration runs right away
        self._last_run: float | None = None
        self._retry_at: float | None = None
        self.runs = 0

    def run(self) -> None:
        """Ask for a run as soon as the minimum interval allows. Never blocks."""
        with self._lock:
            self._pending = True
        self._wake.set()

    def next_due(self) -> float:
        """Clock time of the next run."""
        with self._lock:
            if self._last_run is None:
                return float("-inf")
            due = self._last_run + self.max_interval
            if self._pending:
                due = min(due, self._last_run + self.min_interval)
            if self._retry_at is not None:
                due = min(due, max(self._retry_at, self._last_run + self.min_interval))
            return due

    def step(self) -> bool:
        """Run ``fn`` when due; True when it ran. Loop body, public for tests."""
        now = self._clock.monotonic()
        if now < self.next_due():
            return False
        with self._lock:
            self._pending = False
            self._last_run = now
            self._retry_at = None
        self.runs += 1
        try:
            self._fn()
        except Exception as err:
            with self._lock:
                self._retry_at = now + self.retry_interval
            if self._on_error is not None:
                self._on_error(err)
        return True

    def loop(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (call ``run()`` after setting it to wake the loop promptly)."""
        while not stop.is_set():
            if self.step():
                continue
            # clear before reading the schedule: a run() after this point sets it again
            self._wake.clear()
            delay = self.next_due() - self._clock.monotonic()
            if delay > 0:
                self._clock.wait(self._wake, delay)
