"""A Loop for tests: callbacks queue up and run when the test pumps them, with a fake clock.

The controller runs exactly as in the app; only Kivy's Clock is replaced.
"""

from __future__ import annotations

import queue
import time
from typing import Callable

import pytest

from kiosk.core.screen_models import ScreenModelError, check_model
from kiosk_testing.checked_models import REFUSED


class ManualLoop:
    def __init__(self) -> None:
        self._q: queue.Queue[Callable[[], None]] = queue.Queue()
        self._every: list[tuple[float, Callable[[], None]]] = []

    def call_soon(self, fn: Callable[[], None]) -> None:
        self._q.put(fn)

    def call_every(self, seconds: float, fn: Callable[[], None]) -> None:
        self._every.append((seconds, fn))

    def run_pending(self) -> int:
        n = 0
        while True:
            try:
                fn = self._q.get_nowait()
            except queue.Empty:
                return n
            fn()
            n += 1

    def tick(self) -> None:
        for _, fn in self._every:
            fn()

    def pump_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Run callbacks as worker threads post them until `predicate()` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.run_pending()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            time.sleep(0.005)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingView:
    """A View that keeps what it was asked to show, for assertions. Like KioskView it
    refuses a model that does not fit its screen (the test then fails at teardown)."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, dict]] = []
        self.light_log: list[str] = []
        self.cues: list[str] = []

    def show(self, screen: str, model: dict) -> None:
        try:
            check_model(screen, model)
        except ScreenModelError as e:
            REFUSED.append((screen, e.key))
            return
        self.shown.append((screen, model))

    def lights(self, pattern: str) -> None:
        self.light_log.append(pattern)

    def cue(self, sound: str) -> None:
        self.cues.append(sound)

    @property
    def screen(self) -> str | None:
        return self.shown[-1][0] if self.shown else None

    @property
    def model(self) -> dict:
        return self.shown[-1][1] if self.shown else {}


@pytest.fixture
def manual_loop() -> ManualLoop:
    return ManualLoop()
