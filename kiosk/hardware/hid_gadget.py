"""The counter terminal as a USB keyboard into the staff PC: reports to the HID gadget.

scripts/hid-gadget.sh makes the gadget through configfs (Pi 4/5 USB-C port in device
mode, dtoverlay=dwc2); the kernel then offers /dev/hidg0, where each 8-byte write is one
boot-keyboard report the PC reads on its next poll. A write blocks until the host has
taken the previous report, so a PC that is off or unplugged would hold the writer:
every write waits at most `timeout` seconds and the hand-over then fails as "keyboard
not connected" (staff still have the barcode, and the patron can try again).
Nothing here logs what is typed.
"""

from __future__ import annotations

import os
import select
import time

from kiosk.core.hid_keyboard import reports


class KeyboardUnavailable(RuntimeError):
    """The gadget device is missing or the host does not read it."""


class HidKeyboard:
    def __init__(self, device: str, layout: str = "us", timeout: float = 2.0, pace: float = 0.004) -> None:
        self.device = device
        self.layout = layout
        self.timeout = timeout
        self.pace = pace            # between reports: some hosts poll every 8 ms and drop bursts

    def type_line(self, text: str) -> None:
        """Type `text` and Enter. KeyboardUnavailable when the host cannot be reached."""
        keys = reports(text, self.layout)       # ValueError before anything is typed
        try:
            fd = os.open(self.device, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise KeyboardUnavailable(f"{self.device}: {exc.strerror}") from None
        try:
            for report in keys:
                self._write(fd, report)
                if self.pace:
                    time.sleep(self.pace)
        finally:
            os.close(fd)

    def _write(self, fd: int, report: bytes) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if os.write(fd, report) == len(report):
                    return
            except BlockingIOError:
                pass
            except OSError as exc:      # ESHUTDOWN: the PC is not connected
                raise KeyboardUnavailable(exc.strerror or "write failed") from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise KeyboardUnavailable("the staff PC does not read the keyboard")
            select.select([], [fd], [], min(left, 0.05))
