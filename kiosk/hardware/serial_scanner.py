"""A barcode scanner in USB-COM (CDC-ACM) mode, read with pyserial.

Serial mode sends the label's bytes as they are: no keyboard layout to get wrong, no
focus, nothing for the IME to catch, which is why it is the better mode for a kiosk.
The device is opened exclusively (flock) by a stable name (the udev rule's
/dev/kiosk-scanner symlink, a /dev/serial/by-id glob, or any pyserial URL such as
loop:// in tests); when it vanishes the thread closes it and opens it again when it
is back. Framing is pure (`LineSplitter`): CR, LF, CR LF or Tab end a scan, and bytes
that stop without one become a partial scan after `flush_after` seconds. A line is
cut at MAX_SCAN_CHARS bytes (then rejected as garbage), so a noisy or stuck line that
never sends a terminator cannot grow the buffer without end; nothing here raises.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from kiosk.core.barcodes import mark_partial
from kiosk.hardware.keymaps import MAX_SCAN_CHARS, Typed
from kiosk.hardware.scanner_thread import ScannerThread

if TYPE_CHECKING:
    from kiosk.config.settings import SerialScannerSettings

TERMINATOR_BYTES = b"\r\n\t"


@dataclass
class LineSplitter:
    """Bytes from the port in, scans out. Non-ASCII bytes decode to U+FFFD (rejected as garbage)."""

    flush_after: float = 0.3
    _buf: bytearray = field(default_factory=bytearray, repr=False)
    _last: float = field(default=0.0, repr=False)

    def feed(self, data: bytes, now: float) -> list[Typed]:
        out = self.poll(now)
        for byte in data:
            if byte in TERMINATOR_BYTES:
                if self._buf:
                    out.append(self._take(True))
            elif len(self._buf) < MAX_SCAN_CHARS:
                self._buf.append(byte)
        if data:
            self._last = now
        return out

    def poll(self, now: float) -> list[Typed]:
        if self._buf and now - self._last >= self.flush_after:
            return [self._take(False)]
        return []

    def _take(self, complete: bool) -> Typed:
        text = self._buf.decode("ascii", "replace")
        self._buf.clear()
        return Typed(text, complete)

    def reset(self) -> None:
        self._buf.clear()


def resolve_port(device: str) -> str | None:
    """The port to open now: a URL as is, the first match of a glob, a path if it exists."""
    if "://" in device:
        return device
    if any(c in device for c in "*?["):
        matches = sorted(glob.glob(device))
        return matches[0] if matches else None
    return device if device and os.path.exists(device) else None


def open_serial(port: str, baudrate: int) -> Any:
    import serial

    kwargs: dict[str, Any] = {"baudrate": baudrate, "timeout": 0.05}
    if "://" not in port:
        kwargs["exclusive"] = True          # no second reader (or ModemManager) on the same port
    return serial.serial_for_url(port, **kwargs)


class SerialScanner(ScannerThread):
    """kiosk.core.interfaces.Scanner for a CDC-ACM / RS-232 scanner."""

    kind = "serial"

    def __init__(self, device: str, *, baudrate: int = 9600, flush_after: float = 0.3, debounce: float = 1.0,
                 rescan_interval: float = 2.0, open_port: Callable[[str, int], Any] = open_serial,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(debounce=debounce, rescan_interval=rescan_interval, clock=clock)
        self.device = device
        self.baudrate = baudrate
        self.splitter = LineSplitter(flush_after)
        self.open_port = open_port
        self._port: Any = None

    def _attached(self) -> bool:
        return self._port is not None

    def _attach(self) -> bool:
        port = resolve_port(self.device)
        if port is None:
            return False
        try:
            self._port = self.open_port(port, self.baudrate)
        except Exception as e:               # SerialException, OSError: not there (yet), or busy
            self._refuse(port, type(e).__name__)
            return False
        self.splitter.reset()
        self._connected(port)
        return True

    def _detach(self, why: str) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:
                pass
            self._disconnected(why)
        self.splitter.reset()

    def _pump(self) -> None:
        try:
            data = self._port.read(max(1, self._port.in_waiting))
        except Exception:                    # SerialException / OSError: unplugged
            self._detach("gone")
            return
        now = self.clock()
        for typed in self.splitter.feed(data, now) + self.splitter.poll(now):
            self._deliver(typed.text if typed.complete else mark_partial(typed.text), now)


def build_serial_scanner(settings: SerialScannerSettings) -> SerialScanner:
    return SerialScanner(settings.device, baudrate=settings.baudrate, flush_after=settings.flush_after,
                         debounce=settings.debounce)
