"""systemd's notify protocol (READY, WATCHDOG, STOPPING) with the standard library.

The watchdog is pinged from the UI loop's clock, so a hung UI stops the pings and
systemd restarts the kiosk. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1_000_000 if usec.isdigit() else None
        self._stopping_sent = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ping_interval(self) -> float | None:
        """Ping at under half the watchdog period, as systemd recommends."""
        return self.watchdog_seconds / 3 if self.watchdog_seconds else None

    def _send(self, message: str) -> None:
        if not self.address:
            return
        addr = self.address
        if addr.startswith("@"):                   # abstract namespace socket
            addr = "\0" + addr[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(message.encode())

    def ready(self) -> None:
        self._send("READY=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send("STATUS=" + text.replace("\n", " "))

    def stopping(self) -> None:
        """Idempotent: Kivy's on_stop can run twice."""
        if not self._stopping_sent:
            self._stopping_sent = True
            self._send("STOPPING=1")
