"""One background thread's lifecycle, written once for every edge that owns a thread (the PC/SC
reader's watcher, the scanners, the outbox worker, config polling, the management endpoint, the
vpcd card bridge): start once, stop from any thread, wake a blocking wait, join with a deadline
and say so in the log when the thread does not end (a stuck device must not hang shutdown)."""

from __future__ import annotations

import logging
import threading

from kiosk.logs import log_event

log = logging.getLogger("kiosk.worker_thread")


class WorkerThread:
    """Subclasses give the loop (`_run`, which returns once `stopping` is set) and, when it
    blocks in something other than `stopping.wait`, a `_wake` that cuts it short."""

    thread_name = "worker"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _start_thread(self) -> None:
        """Starts the loop; a second start without a stop is a programming error."""
        with self._lifecycle:
            if self._thread is not None:
                raise RuntimeError(f"{self.thread_name} already started")
            self.stopping.clear()
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _stop_thread(self, timeout: float | None = 5.0) -> bool:
        """Asks the loop to end, wakes it, and joins it. Idempotent. False (and an error in the
        log) when the thread is still running after `timeout` seconds."""
        with self._lifecycle:
            thread, self._thread = self._thread, None
            if thread is None:
                return True
            self.stopping.set()
            self._wake()
        if thread is threading.current_thread():
            return True                  # stopped from its own loop: it ends when the loop returns
        thread.join(timeout)
        if thread.is_alive():
            log_event(log, "thread.stuck", level=logging.ERROR, thread=self.thread_name, timeout=timeout)
            return False
        return True

    def _run(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Cut a blocking call in `_run` short; `stopping` is already set."""
