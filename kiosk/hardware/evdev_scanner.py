"""A HID ("keyboard wedge") barcode scanner read straight from /dev/input, grabbed.

The device is grabbed (EVIOCGRAB) so its keystrokes reach only this reader: never SDL,
a focused text field, the IME or the console. A thread owns the device: it finds it
under /dev/input/by-id (a stable name that survives replugging), decodes keys with
kiosk.hardware.keymaps, and when the device vanishes (unplugged, ENODEV) releases it
and looks again every `rescan_interval` seconds: hot-plug without udev callbacks.

Scans are handed to the listener on this thread; the launcher hops them onto the UI
thread. A scan that stopped without a terminator is delivered marked partial
(kiosk.core.barcodes.mark_partial) so the patron is told to scan again; re-reads of one
label within the debounce window are dropped. Scan text is never logged.
"""

from __future__ import annotations

import errno
import os
import select
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from kiosk.core.barcodes import mark_partial
from kiosk.hardware.keymaps import KeyDecoder
from kiosk.hardware.scanner_thread import ScannerThread

if TYPE_CHECKING:
    from kiosk.config.settings import EvdevScannerSettings

BY_ID = Path("/dev/input/by-id")
EV_KEY = 1


class EventSource(Protocol):
    """One open input device: its key events, exclusively."""

    def fileno(self) -> int: ...

    def read_keys(self) -> list[tuple[int, int]]:
        """(code, value) of the EV_KEY events waiting; [] if none. OSError when the device is gone."""

    def grab(self) -> None: ...

    def close(self) -> None: ...


class EvdevSource:
    """EventSource over python-evdev."""

    def __init__(self, path: str) -> None:
        import evdev

        self.device = evdev.InputDevice(path)
        self._grabbed = False

    def fileno(self) -> int:
        return self.device.fd

    def read_keys(self) -> list[tuple[int, int]]:
        try:
            return [(e.code, e.value) for e in self.device.read() if e.type == EV_KEY]
        except BlockingIOError:
            return []

    def grab(self) -> None:
        self.device.grab()
        self._grabbed = True

    def close(self) -> None:
        if self._grabbed:
            self._grabbed = False
            try:
                self.device.ungrab()
            except OSError:
                pass                        # unplugged: the kernel dropped the grab with it
        try:
            self.device.close()
        except OSError:
            pass


def find_device(wanted: str, by_id: Path = BY_ID) -> str | None:
    """The scanner's device path: `wanted` itself if it is a path, else the first
    /dev/input/by-id keyboard whose name contains `wanted` (any keyboard when empty)."""
    if wanted.startswith("/"):
        return wanted if os.path.exists(wanted) else None
    try:
        names = sorted(os.listdir(by_id))
    except OSError:
        return None
    for name in names:
        if name.endswith("-event-kbd") and wanted.lower() in name.lower():
            return str(by_id / name)
    return None


class EvdevScanner(ScannerThread):
    """kiosk.core.interfaces.Scanner for a HID scanner under an exclusive grab."""

    kind = "evdev"

    def __init__(self, device: str = "", *, layout: str = "us", flush_after: float = 0.3,
                 debounce: float = 1.0, by_id: Path = BY_ID, rescan_interval: float = 2.0,
                 open_source: Callable[[str], EventSource] = EvdevSource,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(debounce=debounce, rescan_interval=rescan_interval, clock=clock)
        self.device = device
        self.decoder = KeyDecoder(layout=layout, flush_after=flush_after)
        self.by_id = by_id
        self.open_source = open_source
        self._wake_r, self._wake_w = -1, -1    # select() in the thread wakes on this pipe at stop
        self._source: EventSource | None = None

    def start(self, listener: Callable[[str], None]) -> None:
        if not self.running:
            self._wake_r, self._wake_w = os.pipe()
        super().start(listener)

    def stop(self, timeout: float = 5.0) -> None:
        running = self.running
        super().stop(timeout)
        if running:
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- the thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        os.write(self._wake_w, b"x")

    def _wait(self, seconds: float) -> None:
        select.select([self._wake_r], [], [], seconds)

    def _attached(self) -> bool:
        return self._source is not None

    def _attach(self) -> bool:
        path = find_device(self.device, self.by_id)
        if path is None:
            return False
        try:
            source = self.open_source(path)
        except OSError as e:
            self._refuse(path, errno.errorcode.get(e.errno or 0, str(e.errno)))
            return False
        try:
            source.grab()
        except OSError as e:                   # EBUSY: someone else holds it
            source.close()
            self._refuse(path, errno.errorcode.get(e.errno or 0, str(e.errno)))
            return False
        self._source = source
        self.decoder.reset()
        self._connected(path)
        return True

    def _detach(self, why: str) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.close()
            self._disconnected(why)
        self.decoder.reset()

    def _pump(self) -> None:
        assert self._source is not None
        timeout = max(self.decoder.flush_after / 3, 0.01)
        try:
            ready, _, _ = select.select([self._source.fileno(), self._wake_r], [], [], timeout)
        except (OSError, ValueError):
            self._detach("gone")
            return
        if self._source.fileno() in ready:
            try:
                keys = self._source.read_keys()
            except OSError:                    # ENODEV: unplugged
                self._detach("gone")
                return
            now = self.clock()
            for code, value in keys:
                for typed in self.decoder.feed(code, value, now):
                    self._deliver(typed.text if typed.complete else mark_partial(typed.text), now)
        now = self.clock()
        for typed in self.decoder.poll(now):
            self._deliver(mark_partial(typed.text), now)


def build_evdev_scanner(settings: EvdevScannerSettings) -> EvdevScanner:
    return EvdevScanner(settings.device, layout=settings.layout, flush_after=settings.flush_after,
                        debounce=settings.debounce)
