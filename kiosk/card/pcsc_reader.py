"""The kiosk's CardReader over PC/SC (pyscard): watches readers, opens the present card.

One thread owns one PC/SC context and waits in SCardGetStatusChange on every watched
reader plus the PnP pseudo-reader (reader plug/unplug). When pcscd goes away (not
running at start, crashed, restarted) the thread reports READER_UNAVAILABLE, drops the
context and re-establishes one with backoff; it never dies, so the app never needs a
restart. What to report is decided by `events_between()`, a pure function over snapshots.

`open()` uses a context of its own (a blocking GetStatusChange would serialise it), asks
for T=1 first (what JPKI cards speak, contact and contactless) and falls back to any
protocol, takes the card exclusively so no other process can interleave APDUs with a
verified PIN, and resets the card on close so the VERIFY state never outlives the session.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from smartcard import scard

from kiosk.card.apdu_allowlist import AllowlistTransport
from kiosk.core.interfaces import CardEvent, CardEventKind, CardGoneError, PcscdGoneError, ReaderGoneError, Transport
from kiosk.worker_thread import WorkerThread

log = logging.getLogger(__name__)

PNP_READER = "\\\\?PnP?\\Notification"

PCSCD_GONE = "pcscd_gone"
NO_READER = "no_reader"


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def _codes(*names: str) -> frozenset[int]:
    return frozenset(_code(getattr(scard, n)) for n in names if hasattr(scard, n))


# The daemon itself is unreachable, or its handles are from a daemon that has restarted.
SERVICE_GONE = _codes("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED", "SCARD_F_COMM_ERROR",
                      "SCARD_E_INVALID_HANDLE")
READER_GONE = _codes("SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER",
                     "SCARD_E_NO_READERS_AVAILABLE")
CARD_GONE = _codes("SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_RESET_CARD",
                   "SCARD_W_UNPOWERED_CARD", "SCARD_W_UNRESPONSIVE_CARD",
                   "SCARD_E_NOT_TRANSACTED", "SCARD_E_COMM_DATA_LOST", "SCARD_E_TIMEOUT")
_SUCCESS = _code(scard.SCARD_S_SUCCESS)
_TIMEOUT = _code(scard.SCARD_E_TIMEOUT)
_CANCELLED = _code(scard.SCARD_E_CANCELLED)
_NO_READERS = _code(scard.SCARD_E_NO_READERS_AVAILABLE)
_SHARING = _code(scard.SCARD_E_SHARING_VIOLATION)
_PROTO_MISMATCH = _code(scard.SCARD_E_PROTO_MISMATCH)


def error_name(hresult: int) -> str:
    code = _code(hresult)
    for name in dir(scard):
        if name.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_")) and _code(getattr(scard, name)) == code:
            return name
    return f"0x{code:08X}"


def error_for(hresult: int, what: str) -> Exception:
    """The kiosk exception for a failed PC/SC call. Unknown failures end the card session."""
    code = _code(hresult)
    detail = f"{what}: {error_name(code)}"
    if code in SERVICE_GONE:
        return PcscdGoneError(f"{PCSCD_GONE} ({detail})")
    if code in READER_GONE:
        return ReaderGoneError(f"reader_gone ({detail})")
    return CardGoneError(detail)


def reader_matches(name: str, wanted: Sequence[str]) -> bool:
    """Reader filter from config: any case-insensitive substring; empty = every reader."""
    return not wanted or any(w.lower() in name.lower() for w in wanted)


# -- the pure core: what changed between two looks at the readers ----------------------------

@dataclass(frozen=True)
class Snapshot:
    service: bool                                   # pcscd answered
    cards: Mapping[str, bool] = field(default_factory=dict)   # watched reader -> card present

    @property
    def available(self) -> bool:
        return self.service and bool(self.cards)

    @property
    def unavailable_detail(self) -> str:
        return "" if self.available else (NO_READER if self.service else PCSCD_GONE)


def events_between(before: Snapshot | None, after: Snapshot) -> list[CardEvent]:
    """Events for the UI, in order: cards that left, availability, cards that arrived.

    `before` None means the very first look: availability is always reported then, so the
    session core knows the state at start-up, including a card already in a reader.
    """
    events: list[CardEvent] = []
    old_cards = before.cards if before is not None else {}
    for reader, present in old_cards.items():
        if present and not after.cards.get(reader, False):
            events.append(CardEvent(CardEventKind.REMOVED, reader))
    if before is None or before.unavailable_detail != after.unavailable_detail:
        if after.available:
            events.append(CardEvent(CardEventKind.READER_AVAILABLE, next(iter(sorted(after.cards)))))
        else:
            events.append(CardEvent(CardEventKind.READER_UNAVAILABLE, "", after.unavailable_detail))
    for reader, present in sorted(after.cards.items()):
        if present and not old_cards.get(reader, False):
            events.append(CardEvent(CardEventKind.INSERTED, reader))
    return events


def card_present(event_state: int) -> bool:
    if event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE):
        return False
    return bool(event_state & scard.SCARD_STATE_PRESENT)


# -- the transport -----------------------------------------------------------------------------

class PcscTransport:
    """An exclusive connection to one card. Not thread-safe; one session uses it."""

    def __init__(self, context: int, handle: int, protocol: int, reader: str) -> None:
        self.reader = reader
        self.protocol = protocol
        self._context = context
        self._handle: int | None = handle

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        if self._handle is None:
            raise CardGoneError("transport closed")
        hr, response = scard.SCardTransmit(self._handle, self.protocol, list(apdu))
        if _code(hr) != _SUCCESS:
            raise error_for(hr, "transmit")
        if len(response) < 2:
            raise CardGoneError("transmit: response without status word")
        return bytes(response[:-2]), (response[-2] << 8) | response[-1]

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        # Reset, not leave: the user-auth PIN's VERIFY state must not outlive the session.
        scard.SCardDisconnect(handle, scard.SCARD_RESET_CARD)
        scard.SCardReleaseContext(self._context)


# -- the reader --------------------------------------------------------------------------------

class PcscReader(WorkerThread):
    """CardReader (kiosk/core/interfaces.py) for every PC/SC reader whose name matches the filter."""

    thread_name = "pcsc-reader"

    def __init__(self, name_filter: str | Sequence[str] | None = None, *, mode: str = "kiosk",
                 poll_interval: float = 2.0, backoff: tuple[float, float] = (0.25, 4.0),
                 sharing_wait: float = 2.0) -> None:
        super().__init__()
        if isinstance(name_filter, str):
            name_filter = [name_filter]
        self.name_filter: tuple[str, ...] = tuple(f for f in (name_filter or ()) if f)
        self.mode = mode
        self._poll_ms = int(poll_interval * 1000)     # re-list readers at least this often
        self._backoff = backoff
        self._sharing_wait = sharing_wait
        self._listener: Callable[[CardEvent], None] | None = None
        self._lock = threading.Lock()
        self._context: int | None = None               # the watcher's, for SCardCancel
        self._snapshot: Snapshot | None = None
        self._last_inserted: str | None = None

    # -- CardReader ------------------------------------------------------------------

    def start(self, listener: Callable[[CardEvent], None]) -> None:
        if self.running:
            raise RuntimeError("reader already started")
        self._listener = listener
        self._snapshot = None            # a new listener hears the whole state again
        self._start_thread()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_thread(timeout)

    def _wake(self) -> None:
        """SCardGetStatusChange blocks: cancel it."""
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)

    def open(self) -> Transport:
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _code(hr) != _SUCCESS:
            raise error_for(hr, "establish context")
        try:
            reader = self._reader_with_card(context)
            handle, protocol = self._connect(context, reader)
        except BaseException:
            scard.SCardReleaseContext(context)
            raise
        log.info("card opened on %s (T=%d)", reader, 1 if protocol == scard.SCARD_PROTOCOL_T1 else 0)
        return AllowlistTransport(PcscTransport(context, handle, protocol, reader), mode=self.mode)

    # -- open() helpers --------------------------------------------------------------

    def _reader_with_card(self, context: int) -> str:
        """Ask pcscd now (the watcher may lag): the latest inserted reader if it still has a card."""
        readers = self._list_readers(context)
        if not readers:
            raise ReaderGoneError(f"{NO_READER} (open)")
        hr, states = scard.SCardGetStatusChange(
            context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers])
        if _code(hr) != _SUCCESS:
            raise error_for(hr, "reader status")
        with_card = [name for name, event, _atr in states if card_present(event)]
        if not with_card:
            raise CardGoneError("no card in any reader")
        last = self._last_inserted
        return last if last is not None and last in with_card else with_card[0]

    def _connect(self, context: int, reader: str) -> tuple[int, int]:
        deadline = time.monotonic() + self._sharing_wait
        while True:
            for protocols in (scard.SCARD_PROTOCOL_T1, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1):
                hr, handle, protocol = scard.SCardConnect(
                    context, reader, scard.SCARD_SHARE_EXCLUSIVE, protocols)
                if _code(hr) != _PROTO_MISMATCH:
                    break
            if _code(hr) == _SUCCESS:
                return handle, protocol
            if _code(hr) == _SHARING and time.monotonic() < deadline:
                time.sleep(0.05)      # another process has the card for a moment
                continue
            raise error_for(hr, "connect")

    def _list_readers(self, context: int) -> list[str]:
        hr, names = scard.SCardListReaders(context, [])
        if _code(hr) == _NO_READERS:
            return []
        if _code(hr) != _SUCCESS:
            raise error_for(hr, "list readers")
        return [n for n in names if reader_matches(n, self.name_filter)]

    # -- the watcher thread ----------------------------------------------------------

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self.stopping.is_set():
            try:
                watched_ok = self._watch_once()
            except Exception:   # never let the thread die: report, back off, try again
                log.exception("pcsc reader watcher failed")
                watched_ok = False
            if watched_ok:
                delay = self._backoff[0]
            if self.stopping.is_set():
                break
            self._publish(Snapshot(service=False))
            self.stopping.wait(delay)
            delay = min(delay * 2, self._backoff[1])

    def _watch_once(self) -> bool:
        """Watch with one context until pcscd goes away (or stop). True if pcscd answered."""
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _code(hr) != _SUCCESS:
            log.debug("no pcscd: %s", error_name(hr))
            return False
        with self._lock:
            if self.stopping.is_set():
                scard.SCardReleaseContext(context)
                return True
            self._context = context
        try:
            self._watch(context)
        except PcscdGoneError as exc:
            log.info("pcscd lost: %s", exc)
        finally:
            with self._lock:
                self._context = None
            scard.SCardReleaseContext(context)
        return True

    def _watch(self, context: int) -> None:
        known: dict[str, int] = {}
        pnp = scard.SCARD_STATE_UNAWARE
        while not self.stopping.is_set():
            try:
                readers = self._list_readers(context)
            except PcscdGoneError:
                raise
            except ReaderGoneError:
                readers = []
            known = {r: known.get(r, scard.SCARD_STATE_UNAWARE) for r in readers}
            if not any(state == scard.SCARD_STATE_UNAWARE for state in known.values()):
                self._publish(Snapshot(True, {r: card_present(s) for r, s in known.items()}))
            request = [(r, s) for r, s in known.items()] + [(PNP_READER, pnp)]
            hr, states = scard.SCardGetStatusChange(context, self._poll_ms, request)
            code = _code(hr)
            if code == _CANCELLED or self.stopping.is_set():
                return
            if code == _TIMEOUT:
                continue
            if code in READER_GONE:        # a reader went between list and wait: list again
                known.clear()
                continue
            if code != _SUCCESS:
                raise error_for(hr, "status change")
            for name, event, _atr in states:
                if name == PNP_READER:
                    pnp = event & ~scard.SCARD_STATE_CHANGED
                elif name in known:
                    known[name] = event & ~scard.SCARD_STATE_CHANGED
            self._publish(Snapshot(True, {r: card_present(s) for r, s in known.items()}))

    def _publish(self, snapshot: Snapshot) -> None:
        events = events_between(self._snapshot, snapshot)
        self._snapshot = snapshot
        for event in events:
            if event.kind is CardEventKind.INSERTED:
                self._last_inserted = event.reader
            log.info("card event %s %s %s", event.kind.value, event.reader, event.detail)
            listener = self._listener
            if listener is None:
                continue
            try:
                listener(event)
            except Exception:       # the UI's problem must not stop card watching
                log.exception("card event listener failed")

