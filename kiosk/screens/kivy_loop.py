"""kiosk.core.interfaces.Loop on Kivy's Clock.

Kivy's Clock documents every scheduling and cancelling method as thread-safe since
1.10 ("all the scheduling and canceling methods are fully thread safe and can be
safely used from external threads", kivy/clock.py, 2.3.1), and callbacks scheduled
for the same frame run in the order they were scheduled. So worker threads may call
`call_soon` directly; no extra queue or lock is needed.
"""

from __future__ import annotations

from typing import Callable

from kivy.clock import Clock


class KivyLoop:
    def __init__(self) -> None:
        self._intervals: list = []
        self._closed = False

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the UI thread at the next frame. Safe from any thread."""
        if not self._closed:
            Clock.schedule_once(lambda _dt: fn(), 0)

    def call_every(self, seconds: float, fn: Callable[[], None]) -> None:
        if not self._closed:
            self._intervals.append(Clock.schedule_interval(lambda _dt: fn(), seconds))

    def close(self) -> None:
        """Stop the intervals; idempotent (Kivy calls on_stop twice)."""
        self._closed = True
        for event in self._intervals:
            event.cancel()
        self._intervals.clear()
