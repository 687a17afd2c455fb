"""The patron's checkout journey as a pure state machine.

`Session.handle(event, now)` takes one event (kiosk/events.py) and the monotonic
time in seconds, and returns effects (kiosk/effects.py) for the shell to carry out.
It imports neither Kivy nor pyscard and does no I/O, so every transition, timeout
and error path is unit-tested with plain data and a fake clock.

Screens and the keys of their `Show.model` (every model also has `language`,
`countdown` (seconds left once the timeout warning starts, else None),
`card_reminder` (a used card is still in the reader), `test_pki` and `notice`):

- idle: reader_ok, library_card (sign-in by library card allowed), help (overlay open),
  card_number (only when the number may be typed: loans.manual_card_entry)
- reading_card: -
- pin: purpose ("card" or "library"), digits (how many typed, never the digits),
  max_digits, tries_left (card only)
- last_try: - (one PIN try left: an explicit confirmation is required)
- authenticating: stage ("card" or "patron")
- library_card: - (scan your library card)
- card_number: number (the library card number typed so far), max_digits
- take_card: -
- scanning: rows, lent, pending, allowance (None = no limit), name, holds_ready, offline
- finishing: pending
- summary: rows (borrowed first, then refused and unconfirmed, each in scan order), receipt_available,
  due (the one due date every borrowed row shares, else None: the rows then carry their own)
- thank_you: lent, due (the earliest due date, None when nothing was borrowed), several_dates
- error: code (a CardError/Refusal value or "timeout"), counter (go to the counter),
  library_card (offer the library-card sign-in instead: certificate, locked PIN, card kind)
- out_of_service: -

A row is a dict: txn_id, item_id, state ("pending", "ok", "refused", "unconfirmed"),
title, due (ISO date or the catalogue's text), refusal, offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Callable

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.barcodes import BarcodeKind, BarcodeRules
from kiosk.core.card import CardError, CardIdentity, PinPrompt, pin_prompt
from kiosk.core.catalogue import LoanRequest, PatronStatus, Refusal
from kiosk.core.loan_rules import OfflineRules, allowance, check_scan

IDLE = "idle"
READING_CARD = "reading_card"
PIN = "pin"
LAST_TRY = "last_try"
AUTHENTICATING = "authenticating"
LIBRARY_CARD = "library_card"
CARD_NUMBER = "card_number"
TAKE_CARD = "take_card"
SCANNING = "scanning"
FINISHING = "finishing"
SUMMARY = "summary"
THANK_YOU = "thank_you"
ERROR = "error"
OUT_OF_SERVICE = "out_of_service"

SCREENS = (
    IDLE, READING_CARD, PIN, LAST_TRY, AUTHENTICATING, LIBRARY_CARD, CARD_NUMBER, TAKE_CARD, SCANNING,
    FINISHING, SUMMARY, THANK_YOU, ERROR, OUT_OF_SERVICE,
)

# While the card is being read or signs, its presence is expected: no reminder.
_CARD_BUSY = (READING_CARD, PIN, LAST_TRY, AUTHENTICATING)
# A card pulled out during these screens ends the sign-in.
_CARD_NEEDED = (READING_CARD, PIN, LAST_TRY)

# Errors that staff must help with: the screen says "please go to the counter".
_COUNTER_ERRORS = {
    CardError.PIN_LOCKED.value, CardError.NOT_REGISTERED.value, CardError.CERT_EXPIRED.value,
    CardError.CERT_NOT_YET_VALID.value, CardError.UNKNOWN_CA.value, CardError.BAD_SIGNATURE.value,
    CardError.BAD_CERTIFICATE.value, CardError.JUKI_CARD.value, CardError.READER_GONE.value,
    CardError.PCSCD_GONE.value, Refusal.PATRON_BLOCKED.value, Refusal.PATRON_UNKNOWN.value,
    Refusal.OFFLINE.value, Refusal.WRONG_PASSWORD.value,
}

# Card errors where signing in with the library card instead helps the patron today: the error
# screen offers it (when library-card sign-in is enabled).
_LIBRARY_CARD_HELPS = {
    CardError.CERT_EXPIRED.value, CardError.CERT_NOT_YET_VALID.value, CardError.UNKNOWN_CA.value,
    CardError.BAD_CERTIFICATE.value, CardError.PIN_LOCKED.value, CardError.JUKI_CARD.value,
    CardError.SMARTPHONE_UNSUPPORTED.value,
}

_LIGHTS = {
    IDLE: "ready", READING_CARD: "busy", AUTHENTICATING: "busy", FINISHING: "busy",
    ERROR: "error", OUT_OF_SERVICE: "out_of_service",
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds of inactivity per screen before the session ends; `warning` seconds
    before that the screen shows a countdown and a "more time" button."""

    default: float = 60.0
    per_screen: dict[str, float] = field(default_factory=lambda: {
        READING_CARD: 30.0, PIN: 60.0, LAST_TRY: 60.0, AUTHENTICATING: 45.0, LIBRARY_CARD: 45.0,
        TAKE_CARD: 45.0, SCANNING: 120.0, FINISHING: 30.0, SUMMARY: 60.0, THANK_YOU: 8.0,
        ERROR: 20.0,
    })
    warning: float = 15.0

    def for_screen(self, screen: str) -> float | None:
        if screen in (IDLE, OUT_OF_SERVICE):
            return None
        return self.per_screen.get(screen, self.default)


@dataclass(frozen=True)
class SessionSettings:
    default_language: str = "ja"
    languages: tuple[str, ...] = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
    timeouts: Timeouts = field(default_factory=Timeouts)
    library_card_enabled: bool = True
    library_card_password: bool = True
    library_password_max: int = 16
    offline_lending: bool = False
    offline_rules: OfflineRules = field(default_factory=OfflineRules)
    receipt_printer: bool = False
    show_patron_name: bool = False
    barcodes: BarcodeRules = field(default_factory=BarcodeRules)
    reminder_interval: float = 4.0
    max_password_failures: int = 3
    return_button: bool = False          # idle offers "return books" (the return desk, kiosk/core/returns.py)
    manual_card_entry: bool = True       # idle offers a keypad for the library card number
    card_number_max: int = 16


@dataclass
class _Row:
    txn_id: str
    item_id: str
    state: str
    title: str = ""
    due: str = ""
    refusal: str | None = None
    offline: bool = False

    def as_dict(self) -> dict:
        return {
            "txn_id": self.txn_id, "item_id": self.item_id, "state": self.state,
            "title": self.title, "due": self.due, "refusal": self.refusal, "offline": self.offline,
        }


@dataclass
class _Patron:
    """Everything known about the current patron; replaced wholesale when the session ends."""

    method: str | None = None               # "card" or "library"
    pin: bytearray = field(default_factory=bytearray)
    tries_left: int | None = None
    identity: CardIdentity | None = None
    patron_id: str | None = None
    status: PatronStatus | None = None
    offline: bool = False
    rows: list[_Row] = field(default_factory=list)
    password_failures: int = 0
    printing: bool = False
    receipt_failed: bool = False
    error: str | None = None
    counter: bool = False
    number: str = ""                        # a library card number being typed on the keypad
    thanks: dict = field(default_factory=dict)   # the thank-you screen's count and date, outliving the wipe

    def wipe(self) -> None:
        for i in range(len(self.pin)):
            self.pin[i] = 0
        self.pin.clear()


_SUMMARY_ORDER = {"ok": 0, "refused": 1, "unconfirmed": 2, "pending": 3}


def summary_model(rows: list[_Row]) -> dict:
    """Borrowed books first (what the patron takes home), then the others; and the one due
    date they share, so the summary says it once instead of on every row."""
    ordered = sorted(rows, key=lambda r: _SUMMARY_ORDER.get(r.state, 3))   # stable: scan order within a group
    dues = {r.due for r in rows if r.state == "ok"}
    return {"rows": [r.as_dict() for r in ordered],
            "due": dues.pop() if len(dues) == 1 and "" not in dues else None}


def thanks_model(rows: list[_Row]) -> dict:
    """How many were borrowed and the first date one is due back (ISO dates sort as text;
    a catalogue's own wording counts only when it gave no date)."""
    dues = {r.due for r in rows if r.state == "ok" and r.due}
    iso = sorted(d for d in dues if _is_iso(d))
    first = iso[0] if iso else (sorted(dues)[0] if dues else None)
    return {"lent": sum(r.state == "ok" for r in rows), "due": first, "several_dates": len(dues) > 1}


def _is_iso(text: str) -> bool:
    try:
        date.fromisoformat(text[:10])
    except ValueError:
        return False
    return len(text) >= 10


class Session:
    """One kiosk's patron journey. Not thread-safe: the shell calls it from one thread."""

    def __init__(
        self,
        settings: SessionSettings,
        new_txn_id: Callable[[], str],
        wall: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._new_txn_id = new_txn_id
        self._wall = wall
        self.screen = IDLE
        self.serial = 0                     # tags replies so a late answer never reaches a new patron
        self.p = _Patron()
        self.language = settings.default_language
        self.card_present = False
        self.card_used = False
        self.reader_ok = True
        self.out_of_service = False
        self._out_of_service_requested: bool | None = None
        self.offline_lending = settings.offline_lending
        self.notice: str | None = None
        self.help_open = False
        self._deadline: float | None = None
        self._shown_countdown: int | None = None
        self._last_reminder: float | None = None

    # ------------------------------------------------------------------ entry points

    def start(self, now: float) -> list[fx.Effect]:
        return self._go_idle_or(IDLE, now)       # a kiosk left out of service starts out of service

    def handle(self, event: ev.Event, now: float) -> list[fx.Effect]:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is None:
            return []
        return handler(event, now)

    @property
    def in_session(self) -> bool:
        return self.screen not in (IDLE, OUT_OF_SERVICE)

    # ------------------------------------------------------------------ rendering

    def _countdown(self, now: float) -> int | None:
        if self._deadline is None:
            return None
        left = self._deadline - now
        if left > self.settings.timeouts.warning:
            return None
        return max(0, math.ceil(left))

    def _reminding(self) -> bool:
        return self.card_present and self.card_used and self.screen not in _CARD_BUSY

    def _model(self, now: float) -> dict:
        p = self.p
        m: dict = {
            "language": self.language,
            "countdown": self._countdown(now),
            "card_reminder": self._reminding(),
            "test_pki": bool(p.identity and p.identity.test_pki),
            "notice": self.notice,
        }
        s = self.screen
        if s == IDLE:
            m.update(reader_ok=self.reader_ok, library_card=self.settings.library_card_enabled,
                     help=self.help_open)
            if self.settings.return_button:
                m["return_button"] = True           # only when configured: the usual idle model is unchanged
            if self._card_number_allowed():
                m["card_number"] = True
        elif s == PIN:
            card = p.method == "card"
            m.update(purpose="card" if card else "library", digits=len(p.pin),
                     max_digits=4 if card else self.settings.library_password_max,
                     tries_left=p.tries_left if card else None)
        elif s == CARD_NUMBER:
            m.update(number=p.number, max_digits=self.settings.card_number_max)
        elif s == AUTHENTICATING:
            m.update(stage="patron" if p.identity or p.method == "library" else "card")
        elif s == SCANNING:
            m.update(self._loan_model())
        elif s == FINISHING:
            m.update(pending=sum(r.state == "pending" for r in p.rows))
        elif s == SUMMARY:
            m.update(summary_model(p.rows), receipt_available=self._receipt_possible())
        elif s == THANK_YOU:
            m.update(p.thanks or thanks_model([]))
        elif s == ERROR:
            m.update(code=p.error, counter=p.counter, library_card=self._library_card_helps())
        return m

    def _card_number_allowed(self) -> bool:
        return self.settings.library_card_enabled and self.settings.manual_card_entry

    def _library_card_helps(self) -> bool:
        return self.settings.library_card_enabled and self.p.error in _LIBRARY_CARD_HELPS

    def _loan_model(self) -> dict:
        p = self.p
        status = p.status
        lent = sum(r.state == "ok" for r in p.rows)
        pending = sum(r.state == "pending" for r in p.rows)
        left = allowance(status, lent + pending, self._offline_rules()) if status else None
        name = status.name if (status and self.settings.show_patron_name) else None
        return {
            "rows": [r.as_dict() for r in p.rows], "lent": lent, "pending": pending,
            "allowance": left, "name": name, "holds_ready": status.holds_ready if status else 0,
            "offline": p.offline,
        }

    def _render(self, now: float) -> list[fx.Effect]:
        self._shown_countdown = self._countdown(now)
        return [fx.Show(self.screen, self._model(now))]

    def _lights(self) -> fx.Lights:
        if self._reminding():
            return fx.Lights("card_left")
        return fx.Lights(_LIGHTS.get(self.screen, "ready"))

    # ------------------------------------------------------------------ transitions

    def _arm(self, now: float) -> None:
        t = self.settings.timeouts.for_screen(self.screen)
        self._deadline = None if t is None else now + t

    def _go(self, screen: str, now: float, notice: str | None = None) -> list[fx.Effect]:
        self.screen = screen
        self.notice = notice
        self._arm(now)
        return self._render(now) + [self._lights()]

    def _end(self, now: float, reason: str, then: str = IDLE) -> list[fx.Effect]:
        """End the patron's session: tell the shell, then forget everything about them."""
        out: list[fx.Effect] = []
        p = self.p
        for row in p.rows:
            if row.state == "pending":
                row.state = "unconfirmed"
                out.append(fx.Withdraw(row.txn_id))
        if p.method is not None:
            out.append(fx.EndSession(p.patron_id, reason))
        p.wipe()
        if then == ERROR:
            self.p = _Patron(error=p.error, counter=p.counter)
        else:
            self.p = _Patron(thanks=thanks_model(p.rows) if then == THANK_YOU else {})
        self.serial += 1
        self.help_open = False
        return out + self._go_idle_or(then, now)

    def _go_idle_or(self, screen: str, now: float) -> list[fx.Effect]:
        if screen == IDLE:
            self.p = _Patron()          # an error screen's code must not outlive it either
            self.language = self.settings.default_language
            if self._out_of_service_requested is not None:
                self.out_of_service = self._out_of_service_requested
                self._out_of_service_requested = None
            if self.out_of_service:
                return self._go(OUT_OF_SERVICE, now)
        return self._go(screen, now)

    def _fail(self, code: str, now: float, counter: bool | None = None) -> list[fx.Effect]:
        self.p.error = code
        self.p.counter = code in _COUNTER_ERRORS if counter is None else counter
        return self._end(now, "error", then=ERROR) + [fx.Cue("refused")]

    # ------------------------------------------------------------------ card events

    def _on_CardInserted(self, e: ev.CardInserted, now: float) -> list[fx.Effect]:
        self.card_present = True
        if self.screen in (IDLE, LIBRARY_CARD, CARD_NUMBER) and not self.out_of_service and self.reader_ok:
            out = self._end(now, "cancelled") if self.screen != IDLE else []
            self.card_used = True
            if self.screen != IDLE:     # ending that session let a deferred out-of-service take effect
                return out + self._render(now) + [self._lights()]
            self.p = _Patron(method="card")
            return out + self._go(READING_CARD, now) + [fx.ProbeCard(serial=self.serial)]
        if self.screen == ERROR and not self.out_of_service and self._out_of_service_requested is None \
                and self.reader_ok:
            # A card put down while an error shows is a new attempt (the card that failed
            # was taken away first): read it, rather than ask for it to be taken away later.
            self.card_used = True
            self.p = _Patron(method="card")
            return self._go(READING_CARD, now) + [fx.ProbeCard(serial=self.serial)]
        self.card_used = True           # not ours to read now: remind the patron to take it
        return self._render(now) + [self._lights()]

    def _on_CardRemoved(self, e: ev.CardRemoved, now: float) -> list[fx.Effect]:
        self.card_present = False
        self.card_used = False
        self._last_reminder = None
        if self.screen in _CARD_NEEDED or (self.screen == AUTHENTICATING and self.p.identity is None
                                           and self.p.method == "card"):
            return self._fail(CardError.CARD_REMOVED.value, now, counter=False)
        if self.screen == TAKE_CARD:
            return self._go(SCANNING, now)
        return self._render(now) + [self._lights()]

    def _on_ReaderChanged(self, e: ev.ReaderChanged, now: float) -> list[fx.Effect]:
        self.reader_ok = e.available
        if not e.available and not (self.screen in _CARD_NEEDED or self.screen == AUTHENTICATING):
            self.card_present = False           # a reader that is gone holds no card to remind about
            self.card_used = False
        if not e.available and (self.screen in _CARD_NEEDED or (
                self.screen == AUTHENTICATING and self.p.method == "card" and self.p.identity is None)):
            self.card_present = False
            return self._fail(CardError.READER_GONE.value, now)
        return self._render(now) if self.screen == IDLE else []

    def _stale(self, e) -> bool:
        return e.serial is not None and e.serial != self.serial

    def _on_CardProbed(self, e: ev.CardProbed, now: float) -> list[fx.Effect]:
        if self.screen != READING_CARD or self._stale(e):
            return []
        probe = e.probe
        if probe.error is not None:
            return self._fail(probe.error.value, now)
        prompt = pin_prompt(probe.tries_left)
        if prompt is PinPrompt.LOCKED:
            return self._fail(CardError.PIN_LOCKED.value, now)
        self.p.tries_left = probe.tries_left
        if prompt is PinPrompt.CONFIRM_LAST_TRY:
            return self._go(LAST_TRY, now) + [fx.Cue("attention")]
        return self._go(PIN, now)

    def _on_AuthDone(self, e: ev.AuthDone, now: float) -> list[fx.Effect]:
        if self.screen != AUTHENTICATING or self._stale(e) or self.p.identity is not None:
            return []
        out = e.outcome
        if out.ok:
            identity = out.identity
            assert identity is not None, "an ok outcome carries the identity"
            self.p.identity = identity
            return self._render(now) + [fx.ResolvePatron(identity, serial=self.serial)]
        if out.error == CardError.PIN_WRONG:
            self.p.tries_left = out.tries_left
            prompt = pin_prompt(out.tries_left)
            if prompt is PinPrompt.LOCKED:
                return self._fail(CardError.PIN_LOCKED.value, now)
            if prompt is PinPrompt.CONFIRM_LAST_TRY:
                return self._go(LAST_TRY, now, notice="pin_wrong") + [fx.Cue("refused")]
            return self._go(PIN, now, notice="pin_wrong") + [fx.Cue("refused")]
        return self._fail((out.error or CardError.BAD_SIGNATURE).value, now)

    def _on_PatronResolved(self, e: ev.PatronResolved, now: float) -> list[fx.Effect]:
        if self.screen != AUTHENTICATING or self._stale(e) or self.p.identity is None:
            return []
        if e.unavailable:
            return self._fail(Refusal.OFFLINE.value, now)
        if e.patron_id is None:
            return self._fail(CardError.NOT_REGISTERED.value, now)
        self.p.patron_id = e.patron_id
        return [fx.LoadPatron(e.patron_id, None, serial=self.serial)]

    def _on_PatronLoaded(self, e: ev.PatronLoaded, now: float) -> list[fx.Effect]:
        p = self.p
        if self.screen != AUTHENTICATING or self._stale(e) or p.patron_id is None:
            return []
        status = e.status
        if status is None:
            refusal = e.refusal or Refusal.OFFLINE
            if refusal == Refusal.OFFLINE and self.offline_lending and p.method == "card":
                # Authenticated by PIN + signature and found in the link cache: lend under local rules.
                p.offline = True
                status = PatronStatus(patron_id=p.patron_id, valid=True)
            else:
                return self._fail(refusal.value, now)
        if not status.valid:
            return self._fail(Refusal.PATRON_UNKNOWN.value, now)
        if status.password_ok is False:
            p.password_failures += 1
            if p.password_failures >= self.settings.max_password_failures:
                return self._fail(Refusal.WRONG_PASSWORD.value, now)
            return self._go(PIN, now, notice="password_wrong") + [fx.Cue("refused")]
        if status.blocked:
            return self._fail(Refusal.PATRON_BLOCKED.value, now)
        p.status = status
        if p.method == "card" and self.card_present:
            self._last_reminder = now           # this cue counts: the next Tick must not repeat it at once
            return self._go(TAKE_CARD, now) + [fx.Cue("card_reminder")]
        return self._go(SCANNING, now) + [fx.Cue("accepted")]

    # ------------------------------------------------------------------ scanner

    def _bad_barcode(self, rejection) -> str:
        """A clear reason where the scan tells us one (partial, doubled, check digit, ISBN...)."""
        if rejection is None or rejection.value in ("garbage", "unknown"):
            return "bad_barcode"
        return "barcode_" + rejection.value

    def _on_Barcode(self, e: ev.Barcode, now: float) -> list[fx.Effect]:
        scan = self.settings.barcodes.check(e.code)
        kind, code = scan.kind, scan.code
        s = self.screen
        if s == IDLE:
            if kind == BarcodeKind.PATRON and self.settings.library_card_enabled:
                return self._library_card(code, now)
            notice = "sign_in_first" if kind == BarcodeKind.ITEM else self._bad_barcode(scan.rejection)
            return self._go(IDLE, now, notice=notice) + [fx.Cue("refused")]
        if s == LIBRARY_CARD:
            if kind == BarcodeKind.PATRON:
                return self._library_card(code, now)
            return self._go(LIBRARY_CARD, now, notice="not_a_library_card") + [fx.Cue("refused")]
        if s == SCANNING:
            self._arm(now)
            if kind == BarcodeKind.ITEM:
                return self._scan_item(code, now)
            notice = "not_an_item" if kind == BarcodeKind.PATRON else self._bad_barcode(scan.rejection)
            return self._go(SCANNING, now, notice=notice) + [fx.Cue("refused")]
        return []

    def _library_card(self, patron_id: str, now: float) -> list[fx.Effect]:
        self.p = _Patron(method="library", patron_id=patron_id)
        if self.settings.library_card_password:
            return self._go(PIN, now)
        return self._go(AUTHENTICATING, now) + [fx.LoadPatron(patron_id, None, serial=self.serial)]

    def _offline_rules(self) -> OfflineRules | None:
        return self.settings.offline_rules if self.p.offline else None

    def _scan_item(self, item_id: str, now: float) -> list[fx.Effect]:
        p = self.p
        assert p.status is not None and p.patron_id is not None
        taken = {r.item_id for r in p.rows if r.state in ("ok", "pending")}
        in_session = sum(r.state in ("ok", "pending") for r in p.rows)
        refusal = check_scan(item_id, taken, p.status, in_session, self._offline_rules())
        if refusal is Refusal.ALREADY_YOURS:
            # Scanned again: it is already borrowed (or being lent) in this session. Nothing
            # is refused, so no row, no refusal sound or light: a neutral note on the list.
            return self._go(SCANNING, now, notice="already_on_list")
        txn_id = self._new_txn_id()
        if refusal is not None:
            p.rows.append(_Row(txn_id, item_id, "refused", refusal=refusal.value))
            return self._go(SCANNING, now) + [fx.Cue("refused"), fx.Lights("refused")]
        wall = self._wall()
        due = self.settings.offline_rules.due_date(wall.date()) if p.offline else None
        loan = LoanRequest(txn_id=txn_id, patron_id=p.patron_id, item_id=item_id, created_at=wall,
                           offline=p.offline, due_date=due)
        if due is not None:                     # only an offline loan has its due date set here
            # Journaled before the screen says so; the catalogue gets it with no-block later.
            p.rows.append(_Row(txn_id, item_id, "ok", due=due.isoformat(), offline=True))
            return [fx.Checkout(loan)] + self._go(SCANNING, now) + [fx.Cue("accepted"), fx.Lights("success")]
        p.rows.append(_Row(txn_id, item_id, "pending"))
        return [fx.Checkout(loan)] + self._go(SCANNING, now)

    def _on_ItemDone(self, e: ev.ItemDone, now: float) -> list[fx.Effect]:
        r = e.result
        row = next((x for x in self.p.rows if x.txn_id == r.txn_id), None)
        if row is None or row.state != "pending":
            return []
        if r.ok:
            row.state = "ok"
            row.title = r.title
            row.due = r.due_date.isoformat() if isinstance(r.due_date, date) else r.due_text
            cues: list[fx.Effect] = [fx.Cue("accepted"), fx.Lights("success")]
        else:
            row.state = "refused"
            row.title = r.title
            row.refusal = (r.refusal or Refusal.OTHER).value
            cues = [fx.Cue("refused"), fx.Lights("refused")]
        if self.screen == FINISHING:
            if not any(x.state == "pending" for x in self.p.rows):
                return self._go(SUMMARY, now) + cues
            return self._render(now) + cues
        if self.screen == SCANNING:
            return self._render(now) + cues
        return []

    def _on_JournalFailed(self, e: ev.JournalFailed, now: float) -> list[fx.Effect]:
        """Not durable, so not lent: the row says "take it to the counter", red light, refusal sound."""
        row = next((x for x in self.p.rows if x.txn_id == e.txn_id), None)
        if row is None or row.state not in ("ok", "pending"):
            return []
        row.state = "refused"
        row.due = ""
        row.refusal = Refusal.COUNTER_ONLY.value
        cues: list[fx.Effect] = [fx.Cue("refused"), fx.Lights("refused")]
        if self.screen == FINISHING and not any(x.state == "pending" for x in self.p.rows):
            return self._go(SUMMARY, now) + cues
        if self.screen in (SCANNING, FINISHING):
            return self._render(now) + cues
        return cues

    # ------------------------------------------------------------------ touches

    def _on_Press(self, e: ev.Press, now: float) -> list[fx.Effect]:
        a, s = e.action, self.screen
        if a == "more_time" and self._deadline is not None:
            self._arm(now)
            return self._render(now)
        if a == "language" and e.value in self.settings.languages and s != OUT_OF_SERVICE:
            self.language = e.value
            self._arm(now)
            return self._render(now)
        if s == IDLE:
            if a == "library_card" and self.settings.library_card_enabled and not self.out_of_service:
                self.p = _Patron(method="library")
                return self._go(LIBRARY_CARD, now)
            if a == "card_number" and self._card_number_allowed() and not self.out_of_service:
                self.p = _Patron(method="library")
                return self._go(CARD_NUMBER, now)
            if a in ("help", "close_help"):
                self.help_open = a == "help"
                return self._render(now)
            return []
        if a == "cancel" and s in (PIN, LAST_TRY, LIBRARY_CARD, CARD_NUMBER, TAKE_CARD):
            return self._end(now, "cancelled")
        if s == CARD_NUMBER:
            return self._card_number_press(a, e.value, now)
        if s == PIN:
            return self._pin_press(a, e.value, now)
        if s == LAST_TRY and a == "confirm_last_try":
            return self._go(PIN, now)
        if s == SCANNING and a == "finish":
            return self._finish(now)
        if s == SCANNING and a == "cancel":
            # Only before anything is borrowed or being checked: a loan once journaled is the
            # patron's (and the catalogue's), and a "cancel" that seemed to undo it would lie.
            if any(r.state in ("ok", "pending") for r in self.p.rows):
                return []
            return self._end(now, "cancelled")
        if s == SUMMARY and self.p.printing:
            return []                           # wait for the printer's answer
        if s == SUMMARY and a == "receipt" and self._receipt_possible():
            # The summary stays up until the receipt is out: on paper-out it is the fallback.
            self.p.printing = True
            lines = tuple((r.title or r.item_id, r.due) for r in self.p.rows if r.state == "ok")
            return [fx.PrintReceipt(lines, self.language)] + self._go(SUMMARY, now, notice="printing")
        if s == SUMMARY and a in ("receipt", "done"):
            return self._end(now, "finished", then=THANK_YOU) + [fx.Cue("accepted")]
        if s == ERROR and a == "library_card" and self._library_card_helps():
            if self.out_of_service or self._out_of_service_requested is not None:
                return self._go_idle_or(IDLE, now)
            self.p = _Patron(method="library")
            return self._go(LIBRARY_CARD, now)
        if s in (ERROR, THANK_YOU) and a in ("ok", "done"):
            return self._go_idle_or(IDLE, now)
        return []

    def _card_number_press(self, a: str, value: str | None, now: float) -> list[fx.Effect]:
        """The keypad for a library card number that will not scan: once OK is pressed the
        number takes the path of a scanned library card (same pattern, same password rule)."""
        p = self.p
        if a == "digit" and value is not None and len(value) == 1 and value in "0123456789":
            if len(p.number) < self.settings.card_number_max:
                p.number += value
            return self._go(CARD_NUMBER, now)
        if a == "delete":
            p.number = p.number[:-1]
            return self._go(CARD_NUMBER, now)
        if a == "clear":
            p.number = ""
            return self._go(CARD_NUMBER, now)
        if a == "ok":
            scan = self.settings.barcodes.check(p.number)
            if scan.kind == BarcodeKind.PATRON:
                return self._library_card(scan.code, now)
            p.number = ""
            return self._go(CARD_NUMBER, now, notice="not_a_library_card") + [fx.Cue("refused")]
        return []

    def _pin_press(self, a: str, value: str | None, now: float) -> list[fx.Effect]:
        p = self.p
        limit = 4 if p.method == "card" else self.settings.library_password_max
        # ASCII only: str.isdigit() also accepts e.g. "١" or "²", which are not PIN digits
        # (and "１" does not even fit in a byte).
        if a == "digit" and value is not None and len(value) == 1 and value in "0123456789":
            if len(p.pin) < limit:
                p.pin.append(ord(value))
            return self._go(PIN, now)
        if a == "delete":
            if p.pin:
                p.pin[-1] = 0
                del p.pin[-1]
            return self._go(PIN, now)
        if a == "clear":
            p.wipe()
            return self._go(PIN, now)
        if a == "ok":
            if (p.method == "card" and len(p.pin) != 4) or not p.pin:
                return self._go(PIN, now, notice="pin_incomplete")
            pin, p.pin = p.pin, bytearray()      # the shell zeroes it after VERIFY
            if p.method == "card":
                return self._go(AUTHENTICATING, now) + [fx.Authenticate(pin, serial=self.serial)]
            assert p.patron_id is not None
            return self._go(AUTHENTICATING, now) + [fx.LoadPatron(p.patron_id, pin, serial=self.serial)]
        return []

    def _receipt_possible(self) -> bool:
        return (self.settings.receipt_printer and not self.p.receipt_failed
                and any(r.state == "ok" for r in self.p.rows))

    def _finish(self, now: float) -> list[fx.Effect]:
        rows = self.p.rows
        if not any(r.state in ("ok", "pending", "refused") for r in rows):
            return self._end(now, "finished", then=THANK_YOU)
        if any(r.state == "pending" for r in rows):
            return self._go(FINISHING, now)
        return self._go(SUMMARY, now)

    # ------------------------------------------------------------------ staff and clock

    def _on_SetOutOfService(self, e: ev.SetOutOfService, now: float) -> list[fx.Effect]:
        if self.in_session and self.screen not in (ERROR, THANK_YOU):
            self._out_of_service_requested = e.on     # never in the middle of a patron's session
            return []
        self.out_of_service = e.on
        self._out_of_service_requested = None
        return self._go_idle_or(IDLE, now)          # also resets the language and patron context

    def _on_ReceiptDone(self, e: ev.ReceiptDone, now: float) -> list[fx.Effect]:
        if self.screen != SUMMARY or not self.p.printing:
            return []
        self.p.printing = False
        if e.ok:
            return self._end(now, "finished", then=THANK_YOU) + [fx.Cue("accepted")]
        self.p.receipt_failed = True
        return self._go(SUMMARY, now, notice="receipt_failed") + [fx.Cue("attention")]

    def _on_Reset(self, e: ev.Reset, now: float) -> list[fx.Effect]:
        if self.in_session and self.screen != OUT_OF_SERVICE:
            return self._end(now, e.reason)
        return self.refresh(now)

    def _on_CardPresence(self, e: ev.CardPresence, now: float) -> list[fx.Effect]:
        self.card_present = e.present
        self.card_used = e.present
        return []

    def refresh(self, now: float) -> list[fx.Effect]:
        """Draw the current screen again (after staff mode had the display)."""
        self._arm(now)
        return self._render(now) + [self._lights()]

    def _on_SetOfflineLending(self, e: ev.SetOfflineLending, now: float) -> list[fx.Effect]:
        self.offline_lending = e.on
        return []

    def _on_Tick(self, e: ev.Tick, now: float) -> list[fx.Effect]:
        out: list[fx.Effect] = []
        if self._reminding():
            if self._last_reminder is None or now - self._last_reminder >= self.settings.reminder_interval:
                self._last_reminder = now
                out += [fx.Cue("card_reminder"), fx.Lights("card_left")]
        if self._deadline is not None and now >= self._deadline:
            return out + self._timeout(now)
        if self._countdown(now) != self._shown_countdown:
            out += self._render(now)
        return out

    def _timeout(self, now: float) -> list[fx.Effect]:
        s = self.screen
        if s == FINISHING:
            for row in self.p.rows:
                if row.state == "pending":
                    row.state = "unconfirmed"
            out = [fx.Withdraw(r.txn_id) for r in self.p.rows if r.state == "unconfirmed"]
            return out + self._go(SUMMARY, now, notice="not_confirmed")
        if s in (ERROR, THANK_YOU):
            return self._go_idle_or(IDLE, now)
        if s in (READING_CARD, AUTHENTICATING):
            return self._fail("timeout", now, counter=True)
        return self._end(now, "timeout")


def replace_settings(settings: SessionSettings, **changes) -> SessionSettings:
    """A copy of `settings` with `changes`; live config updates use this at idle."""
    return replace(settings, **changes)
