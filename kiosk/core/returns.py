"""Returning books, as a pure state machine: no sign-in, one row per scanned book.

A return station (`kiosk.mode = "return"`) is always at this desk; a lending kiosk opens
it from the idle screen's "return books" button (`loans.return_button`) and goes back to
idle when the patron is done. Like a loan, each return is journaled durably before the
screen says anything about it (fx.CheckIn); the outbox worker sends it (SIP2 09 / REST)
and its answer comes back as ev.ItemDone. A return still unanswered after
`pending_seconds` (the catalogue is slow or away) is shown as received: it is on disk and
will reach the library system, with SIP2's no-block flag when it was taken offline.

Screen "returns" model: rows, notice, language, countdown, station, summary (the patron
pressed done: the receipt choice is shown), receipt_available, printing.
A row: txn_id, item_id, title, state:
  pending    journaled, waiting for the catalogue
  returned   the catalogue checked it in (or: received, recorded when the catalogue is back)
  hold_shelf another patron waits for it: please put it on the hold shelf
  counter    unknown item, an alert, or not recorded: please take it to the counter
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.barcodes import BarcodeKind, BarcodeRules
from kiosk.core.catalogue import CHECKIN, LoanRequest, LoanResult, ReturnOutcome, return_outcome

SCREEN = "returns"
DONE_STATES = ("returned", "hold_shelf")      # shown as done: durable, and counted by the crash proof


@dataclass(frozen=True)
class ReturnSettings:
    barcodes: BarcodeRules
    languages: tuple[str, ...] = ("ja", "en")
    station: bool = False               # a return station: the desk never closes
    idle_seconds: float = 60.0          # untouched this long: the desk closes (a station clears)
    warning_seconds: float = 10.0       # the countdown shown before that
    pending_seconds: float = 6.0        # a return unanswered this long is shown as received
    receipts: bool = False              # a printer is there: offer a receipt


@dataclass
class _Row:
    txn_id: str
    item_id: str
    since: float
    state: str = "pending"
    title: str = ""
    queued: bool = False                # received while the catalogue did not answer

    def model(self) -> dict[str, Any]:
        return {"txn_id": self.txn_id, "item_id": self.item_id, "title": self.title, "state": self.state,
                "queued": self.queued}


@dataclass
class ReturnDesk:
    """Events in, effects out; `now` is monotonic seconds, `wall` the time on receipts and returns."""

    settings: ReturnSettings
    new_txn_id: Callable[[], str]
    wall: Callable[[], datetime]
    offline: bool = False               # the shell says the catalogue is away: returns are queued
    active: bool = False
    language: str = ""
    rows: list[_Row] = field(default_factory=list)
    summary: bool = False
    printing: bool = False
    notice: str = ""
    _touched: float = 0.0

    @property
    def in_use(self) -> bool:
        """A patron is at the desk (a station's empty desk is its idle screen): new
        configuration and restarts wait until the desk is closed or cleared."""
        return self.active and (not self.settings.station or bool(self.rows) or self.summary or self.printing)

    # ------------------------------------------------------------------ lifecycle

    def open(self, now: float) -> list[fx.Effect]:
        self.active = True
        self.language = self.language or self.settings.languages[0]
        self._touched = now
        return self._show(now) + [fx.Lights("ready")]

    def close(self, now: float) -> list[fx.Effect]:
        """Wipe everything shown; a station starts again, a lending kiosk goes back to idle."""
        self.rows, self.summary, self.printing, self.notice = [], False, False, ""
        self.language = self.settings.languages[0]
        if self.settings.station:
            return self.open(now)
        self.active = False
        return []

    def set_offline(self, away: bool, now: float) -> list[fx.Effect]:
        """The shell's news about the catalogue: returns taken while it is away are queued
        (and replayed with no-block); the screen says so."""
        if away == self.offline:
            return []
        self.offline = away
        return self._show(now) if self.active else []

    # ------------------------------------------------------------------ events

    def handle(self, event: ev.Event, now: float) -> list[fx.Effect]:
        name = "_on_" + type(event).__name__
        handler = getattr(self, name, None)
        return handler(event, now) if handler is not None else []

    def _on_Barcode(self, e: ev.Barcode, now: float) -> list[fx.Effect]:
        self._touched = now
        scan = self.settings.barcodes.check(e.code)
        if self.summary or self.printing:
            return []
        if scan.kind != BarcodeKind.ITEM:
            self.notice = "not_an_item"
            return self._show(now) + [fx.Cue("refused")]
        self.notice = ""
        if any(r.item_id == scan.code and r.state in ("pending", *DONE_STATES) for r in self.rows):
            self.notice = "already_returned"
            return self._show(now)
        txn_id = self.new_txn_id()
        request = LoanRequest(txn_id=txn_id, patron_id="", item_id=scan.code, created_at=self.wall(),
                              offline=self.offline, kind=CHECKIN)
        row = _Row(txn_id, scan.code, now)
        self.rows.append(row)
        if self.offline:
            # On disk once CheckIn has run; the screen update after it is dropped if it failed.
            row.state, row.queued = "returned", True
            return [fx.CheckIn(request)] + self._show(now) + [fx.Cue("accepted"), fx.Lights("success")]
        return [fx.CheckIn(request)] + self._show(now)

    def _on_ItemDone(self, e: ev.ItemDone, now: float) -> list[fx.Effect]:
        result: LoanResult = e.result
        if result.kind != CHECKIN:
            return []
        row = next((r for r in self.rows if r.txn_id == result.txn_id), None)
        if row is None or row.state not in ("pending",) and not row.queued:
            return []
        outcome = return_outcome(result)
        row.title = result.title or row.title
        if row.queued and row.state != "pending":
            # Already told "received"; only a hold-shelf or counter answer is news worth showing.
            if outcome == ReturnOutcome.RETURNED:
                return []
        row.queued = False
        row.state = {ReturnOutcome.RETURNED: "returned", ReturnOutcome.HOLD_SHELF: "hold_shelf",
                     ReturnOutcome.COUNTER: "counter"}[outcome]
        good = outcome == ReturnOutcome.RETURNED
        return self._show(now) + [fx.Cue("accepted" if good else "attention"),
                                  fx.Lights("success" if good else "refused")]

    def _on_JournalFailed(self, e: ev.JournalFailed, now: float) -> list[fx.Effect]:
        """Not durable, so not returned: the row says "take it to the counter"."""
        row = next((r for r in self.rows if r.txn_id == e.txn_id), None)
        if row is None:
            return []
        row.state, row.queued = "counter", False
        return self._show(now) + [fx.Cue("refused"), fx.Lights("refused")]

    def _on_Press(self, e: ev.Press, now: float) -> list[fx.Effect]:
        self._touched = now
        if e.action == "language" and e.value in self.settings.languages:
            self.language = str(e.value)
            return self._show(now)
        if e.action == "more_time":
            return self._show(now)
        if e.action == "finish":
            if not self.rows:
                return self.close(now)
            self._settle_pending(now, force=True)
            self.summary = True
            return self._show(now)
        if e.action == "receipt" and self.summary and self.settings.receipts and not self.printing:
            self.printing = True
            lines = tuple((r.title or r.item_id, r.state) for r in self.rows)
            return self._show(now) + [fx.PrintReceipt(lines, lang=self.language, returns=True)]
        if e.action in ("no_receipt", "done", "cancel") and not self.printing:
            return self.close(now)
        return []

    def _on_ReceiptDone(self, e: ev.ReceiptDone, now: float) -> list[fx.Effect]:
        if not self.printing:
            return []
        self.printing = False
        if not e.ok:
            self.notice = "receipt_failed"
            return self._show(now)
        return self.close(now)

    def _on_Tick(self, e: ev.Tick, now: float) -> list[fx.Effect]:
        changed = self._settle_pending(now)
        idle = now - self._touched
        if (self.rows or self.summary or not self.settings.station) and idle >= self.settings.idle_seconds \
                and not self.printing:
            return self.close(now)
        warning = self.settings.idle_seconds - idle <= self.settings.warning_seconds
        if changed or (warning and (self.rows or not self.settings.station)):
            return self._show(now)
        return []

    # ------------------------------------------------------------------ helpers

    def _settle_pending(self, now: float, force: bool = False) -> bool:
        """Rows the catalogue has not answered yet are shown as received: they are on disk."""
        changed = False
        for r in self.rows:
            if r.state == "pending" and (force or now - r.since >= self.settings.pending_seconds):
                r.state, r.queued = "returned", True
                changed = True
        return changed

    def _countdown(self, now: float) -> int | None:
        left = self.settings.idle_seconds - (now - self._touched)
        if left > self.settings.warning_seconds or (self.settings.station and not self.rows):
            return None
        return max(0, int(left + 0.999))

    def _show(self, now: float) -> list[fx.Effect]:
        return [fx.Show(SCREEN, {
            "rows": [r.model() for r in self.rows],
            "returned": sum(r.state in DONE_STATES for r in self.rows),
            "notice": self.notice,
            "language": self.language,
            "countdown": self._countdown(now),
            "station": self.settings.station,
            "summary": self.summary,
            "receipt_available": self.settings.receipts,
            "printing": self.printing,
            "offline": self.offline,
        })]
