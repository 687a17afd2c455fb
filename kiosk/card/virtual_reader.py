"""An in-process card reader holding a VirtualJpkiCard: the demo's reader and the tests'.

Same shape as the PC/SC reader (kiosk.core.interfaces.CardReader), so the card service
and the session core cannot tell them apart; `open()` returns a transport behind
the APDU allowlist just like the real one. Listeners are called synchronously on
the thread that calls insert()/remove()/unplug()/replug().
"""

from __future__ import annotations

import threading
from typing import Callable

from kiosk.card.apdu_allowlist import AllowlistTransport
from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk.core.interfaces import CardEvent, CardEventKind, CardGoneError, ReaderGoneError, Transport


class _CardLink:
    """The raw link to one insertion of a card; dead once that card leaves or the reader goes."""

    def __init__(self, reader: VirtualReader, insertion: int) -> None:
        self._reader = reader
        self._insertion = insertion
        self._closed = False

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        card = self._reader._card_for(self._insertion)
        if self._closed:
            raise CardGoneError("transport closed")
        if self._reader._remove_before is not None and self._reader._remove_before(bytes(apdu[:4])):
            self._reader.remove()
            raise CardGoneError("card removed")
        response = card.process(apdu)
        if len(response) < 2:
            self._reader._card_for(self._insertion)   # pulled out meanwhile? then say so, not "mute"
            return b"", 0x0000            # no answer: the protocol layer reports a mute card
        return response[:-2], int.from_bytes(response[-2:], "big")

    def close(self) -> None:
        self._closed = True


class VirtualReader:
    """A reader with one slot. insert()/remove() a VirtualJpkiCard; unplug()/replug() the reader."""

    def __init__(self, name: str = "Virtual JPKI reader", mode: str = "kiosk") -> None:
        self.name = name
        self.mode = mode
        self._lock = threading.RLock()
        self._listener: Callable[[CardEvent], None] | None = None
        self._card: VirtualJpkiCard | None = None
        self._insertion = 0
        self._plugged = True
        self._remove_before: Callable[[bytes], bool] | None = None
        self.opened = 0                   # transports handed out (tests)

    # -- CardReader ------------------------------------------------------------------

    def start(self, listener: Callable[[CardEvent], None]) -> None:
        with self._lock:
            self._listener = listener
            if not self._plugged:
                self._emit(CardEventKind.READER_UNAVAILABLE, "unplugged")
                return
            self._emit(CardEventKind.READER_AVAILABLE)
            if self._card is not None:
                self._emit(CardEventKind.INSERTED)

    def stop(self) -> None:
        with self._lock:
            self._listener = None

    def open(self) -> Transport:
        with self._lock:
            if not self._plugged:
                raise ReaderGoneError(self.name)
            if self._card is None:
                raise CardGoneError("no card in the reader")
            self.opened += 1
            return AllowlistTransport(_CardLink(self, self._insertion), mode=self.mode)

    # -- the test/demo side ----------------------------------------------------------

    @property
    def card(self) -> VirtualJpkiCard | None:
        return self._card

    def insert(self, card: VirtualJpkiCard) -> None:
        with self._lock:
            if self._card is not None:
                self.remove()
            card.power_on()
            self._card = card
            self._insertion += 1
            if self._plugged:
                self._emit(CardEventKind.INSERTED)

    def remove(self) -> None:
        with self._lock:
            if self._card is None:
                return
            self._card.power_off()
            self._card = None
            self._insertion += 1
            self._remove_before = None
            if self._plugged:
                self._emit(CardEventKind.REMOVED)

    def remove_before(self, predicate: Callable[[bytes], bool] | None) -> None:
        """Pull the card out just before the first APDU whose header (CLA INS P1 P2) matches."""
        self._remove_before = predicate

    def unplug(self) -> None:
        """The USB reader (or pcscd) went away: open transports raise ReaderGoneError."""
        with self._lock:
            self._plugged = False
            self._insertion += 1
            self._emit(CardEventKind.READER_UNAVAILABLE, "unplugged")

    def replug(self) -> None:
        with self._lock:
            self._plugged = True
            self._insertion += 1
            self._emit(CardEventKind.READER_AVAILABLE)
            if self._card is not None:
                self._card.reset()
                self._emit(CardEventKind.INSERTED)

    # -- internals -------------------------------------------------------------------

    def _card_for(self, insertion: int) -> VirtualJpkiCard:
        with self._lock:
            if not self._plugged:
                raise ReaderGoneError(self.name)
            if self._card is None or insertion != self._insertion:
                raise CardGoneError("card removed")
            return self._card

    def _emit(self, kind: CardEventKind, detail: str = "") -> None:
        if self._listener is not None:
            self._listener(CardEvent(kind=kind, reader=self.name, detail=detail))
