"""The one thread lifecycle every edge shares (kiosk/worker_thread.py), with real threads."""

from __future__ import annotations

import logging
import threading

import pytest

from kiosk.worker_thread import WorkerThread


class Blocking(WorkerThread):
    """Blocks on its own event, not on `stopping`: only `_wake` can end it."""

    thread_name = "test-blocking"

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.laps = 0

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.laps += 1
            self.gate.wait()
            self.gate.clear()

    def _wake(self) -> None:
        self.gate.set()


class Stuck(WorkerThread):
    thread_name = "test-stuck"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def _run(self) -> None:
        self.release.wait(30)          # ignores stopping, like a device call that hangs


def test_start_runs_the_loop_and_stop_wakes_and_joins_it():
    w = Blocking()
    w._start_thread()
    assert w.running
    assert w._stop_thread(timeout=5) is True
    assert not w.running and w.stopping.is_set()
    assert not any(t.name == "test-blocking" for t in threading.enumerate())


def test_a_second_start_is_refused_and_stop_is_idempotent():
    w = Blocking()
    w._start_thread()
    with pytest.raises(RuntimeError, match="already started"):
        w._start_thread()
    assert w._stop_thread() is True
    assert w._stop_thread() is True            # again: nothing to do


def test_it_can_start_again_after_a_stop():
    w = Blocking()
    w._start_thread()
    w._stop_thread()
    w._start_thread()
    assert w.running and not w.stopping.is_set()
    w._stop_thread()


def test_a_thread_that_does_not_end_is_reported_not_waited_for(caplog):
    w = Stuck()
    w._start_thread()
    with caplog.at_level(logging.ERROR, logger="kiosk.worker_thread"):
        assert w._stop_thread(timeout=0.2) is False
    [record] = [r for r in caplog.records if r.getMessage() == "thread.stuck"]
    assert record.kiosk_fields["thread"] == "test-stuck"
    w.release.set()


def test_stop_from_the_threads_own_loop_does_not_deadlock():
    stopped = threading.Event()

    class SelfStopping(WorkerThread):
        thread_name = "test-self-stop"

        def _run(self) -> None:
            self._stop_thread(timeout=5)
            stopped.set()

    w = SelfStopping()
    w._start_thread()
    assert stopped.wait(5)
    assert not w.running
