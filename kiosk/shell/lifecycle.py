"""How the running kiosk ends: stop signals, and staff's "shut down" handed to systemd.

SIGTERM (systemd's stop) always ends the app cleanly; SIGINT only outside kiosk mode, so a
keyboard on the kiosk's own tty cannot quit it. SDL is told not to install its own handlers
(they would turn both into a window-close request, which kiosk mode refuses).

The kiosk user may not power the Pi off, and the cage compositor does not pass its client's exit
status on, so a staff shutdown is a request file in the data directory: the units'
`ExecStopPost=+/usr/local/libexec/kiosk-power-request` (root, after the app has exited) carries
it out. A plain `systemctl stop` writes no request, so it never powers the Pi off. A staff
restart is just a clean exit: `Restart=always` starts the app again.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Callable

from kiosk.logs import log_event

log = logging.getLogger("kiosk.lifecycle")

POWER_REQUEST = "power-request"
POWER_ACTIONS = {"shutdown": "poweroff"}      # staff menu action -> what the root helper does


def sdl_without_signal_handlers(environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Before Kivy creates its window: leave SIGINT/SIGTERM to Python."""
    environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")


def install_stop_signals(stop: Callable[[], None], kiosk_mode: bool) -> None:
    """`stop` runs on the main thread (Python runs signal handlers there) and must only ask
    the UI loop to end. In kiosk mode SIGINT is ignored."""

    def on_signal(signum: int, _frame: object) -> None:
        log_event(log, "kiosk.signal", signal=signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN if kiosk_mode else on_signal)


def clear_power_request(data_dir: Path) -> None:
    """At start: a request left by an earlier run (a power cut before the helper ran) is void."""
    try:
        (data_dir / POWER_REQUEST).unlink()
    except FileNotFoundError:
        pass


def request_power(data_dir: Path, how: str) -> bool:
    """Writes the request for the root helper (durably: the helper runs after this process).
    False when `how` needs nothing from systemd (a restart)."""
    action = POWER_ACTIONS.get(how)
    if action is None:
        return False
    path = data_dir / POWER_REQUEST
    tmp = path.with_name(f".{POWER_REQUEST}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, action.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log_event(log, "kiosk.power_request", action=action)
    return True
