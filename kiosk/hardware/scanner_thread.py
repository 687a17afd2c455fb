"""What the evdev and the serial scanner share: a thread that finds the device (again
after an unplug), pumps it, and hands debounced scans to the listener.

Subclasses say how to attach, pump and detach their kind of device; `_wake` and
`_wait` let one whose pump blocks in select() be woken by `stop`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from kiosk.core.barcodes import Debouncer
from kiosk.logs import log_event
from kiosk.worker_thread import WorkerThread

log = logging.getLogger("kiosk.hardware.scanner")


class ScannerThread(WorkerThread):
    kind = ""          # "evdev" / "serial": the log's `kind`

    def __init__(self, *, debounce: float, rescan_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.thread_name = f"{self.kind}-scanner"
        self.debouncer = Debouncer(debounce)
        self.rescan_interval = rescan_interval
        self.clock = clock
        self.connected = threading.Event()     # for `kiosk doctor` and tests
        self._listener: Callable[[str], None] | None = None
        self._refused: str | None = None       # last path that could not be opened (logged once)

    def start(self, listener: Callable[[str], None]) -> None:
        """Idempotent: a scanner already running keeps its listener."""
        if self.running:
            return
        self._listener = listener
        self._start_thread()

    def stop(self, timeout: float = 5.0) -> None:
        """Release the device and end the thread. Idempotent."""
        self._stop_thread(timeout)

    # -- what a kind of scanner provides --------------------------------------------------

    def _attached(self) -> bool:
        raise NotImplementedError

    def _attach(self) -> bool:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def _detach(self, why: str) -> None:
        raise NotImplementedError

    def _wait(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    # -- shared --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                if not self._attached():
                    if not self._attach():
                        self._wait(self.rescan_interval)
                    continue
                self._pump()
        finally:
            self._detach("stopped")

    def _refuse(self, path: str, error: str) -> None:
        if self._refused != path:
            self._refused = path
            log_event(log, "scanner.cannot_open", level=logging.WARNING, device=os.path.basename(path),
                      error=error, kind=self.kind)

    def _connected(self, path: str) -> None:
        self._refused = None
        self.connected.set()
        log_event(log, "scanner.connected", device=os.path.basename(path), kind=self.kind)

    def _disconnected(self, why: str) -> None:
        self.connected.clear()
        log_event(log, "scanner.disconnected", reason=why, kind=self.kind)

    def _deliver(self, text: str, now: float) -> None:
        if not self.debouncer.accept(text, now) or self._listener is None:
            return
        try:
            self._listener(text)
        except Exception:
            log.exception("scanner.listener_failed")
