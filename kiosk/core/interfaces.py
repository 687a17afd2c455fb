"""The small interfaces between the kiosk core and its edges.

Dependencies point one way: screens -> session core -> these interfaces <- hardware
and sync backends. Every interface has a real backend and a virtual/mock one with
the same shape, chosen by config (like gpiozero's pin factories).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Protocol


class Transport(Protocol):
    """An open channel to one card: send a command APDU, get (data, SW) back.

    The APDU may be a bytearray: a VERIFY carries the PIN, and the caller zeroes it after."""

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]: ...

    def close(self) -> None: ...


class CardEventKind(str, enum.Enum):
    INSERTED = "inserted"
    REMOVED = "removed"
    READER_UNAVAILABLE = "reader_unavailable"   # no reader, or pcscd not running
    READER_AVAILABLE = "reader_available"


@dataclass(frozen=True)
class CardEvent:
    kind: CardEventKind
    reader: str = ""
    detail: str = ""        # e.g. "pcscd_gone" for READER_UNAVAILABLE


class CardReader(Protocol):
    """Watches readers for cards and opens a transport to the present card.

    Listeners are called from the reader's own thread; the shell hops them onto the
    UI thread. `open()` raises CardGoneError / ReaderGoneError.
    """

    mode: str       # the APDU allowlist mode of the transports it opens: "kiosk" or "counter"

    def start(self, listener: Callable[[CardEvent], None]) -> None: ...

    def stop(self) -> None: ...

    def open(self) -> Transport: ...


class CardGoneError(Exception):
    """The card left the reader (or never answered) while we talked to it."""


class ReaderGoneError(Exception):
    """The reader or pcscd went away."""


class PcscdGoneError(ReaderGoneError):
    """pcscd itself is gone (not just one reader): the patron sees its own message."""


class Leds(Protocol):
    """Status light patterns: ready, busy, success, refused, error, card_left, out_of_service, off."""

    def show(self, pattern: str) -> None: ...

    def close(self) -> None: ...


class Sounds(Protocol):
    """Sound cues: accepted, refused, card_reminder, attention."""

    def play(self, cue: str) -> None: ...


class Scanner(Protocol):
    """Barcode input. Calls the listener with one complete, stripped scan."""

    def start(self, listener: Callable[[str], None]) -> None: ...

    def stop(self) -> None: ...


class View(Protocol):
    """The patron's screen as the controller sees it (implemented by kiosk/screens/).

    `show` draws one screen from its plain model (keys and types in kiosk/core/screen_models.py);
    `lights` and `cue` let a screen echo the LED pattern and sound (the demo's on-screen
    indicator). A view never reaches hardware or the network: touches go back as
    kiosk.core.events.Press through the `post` callable it is given.
    """

    def show(self, screen: str, model: dict) -> None: ...

    def lights(self, pattern: str) -> None: ...

    def cue(self, sound: str) -> None: ...


class Loop(Protocol):
    """The UI thread's scheduler (Kivy's Clock in the app, a plain queue in tests)."""

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the UI thread soon. Safe to call from any thread."""

    def call_every(self, seconds: float, fn: Callable[[], None]) -> None: ...
