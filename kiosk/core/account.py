"""My account, as a pure state machine: loans, holds, fines and blocks, and renewals.

Opened from the scanning screen of a signed-in patron; the data is asked for only then
(fx.LoadAccount), kept only in this object, never logged, and dropped by `close()`
with the session. A renewal needs the catalogue's answer: while the catalogue does not
answer, every renew button says why it is not available ("offline"). One tap is one
renewal: the tap's key goes with it (REST idempotency key; SIP2 sends a 29 once and
never repeats it on a new connection), and the row ignores further taps until the
answer is in.

Screen "account" model: loading, unavailable (the catalogue did not answer), loans
(this page), holds_ready, holds_pending, fines, fee_amount, currency, blocks, page,
pages, renew_all (state: "", "renewing", "done"), renew_all_result, can_renew, why_not
(why renewals are not available: "offline", "blocked", ""), language.
A loan row: item_id, title, due (ISO date or the catalogue's text), overdue, state
("", "renewing", "renewed", "refused"), reason (a Refusal value in plain words on screen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.catalogue import PatronAccount, Refusal

SCREEN = "account"
PAGE_SIZE = 5

#: Patron-status flags that stop renewals (SIP2 names); the screen explains each in plain words.
RENEWAL_BLOCKS = frozenset({
    "charge_privileges_denied", "renewal_privileges_denied", "card_reported_lost", "too_many_items_overdue",
    "too_many_items_lost", "excessive_outstanding_fines", "excessive_outstanding_fees", "recall_overdue",
    "too_many_items_billed", "too_many_claims_of_items_returned",
})

#: Refusals the screen words for renewals; anything else is "other" (ask at the counter).
RENEWAL_REASONS = frozenset({Refusal.ON_HOLD, Refusal.RENEWAL_LIMIT, Refusal.OVERDUE, Refusal.PATRON_BLOCKED,
                             Refusal.NOT_ON_LOAN, Refusal.OFFLINE})


@dataclass
class _Loan:
    item_id: str
    title: str
    due: str
    overdue: bool
    state: str = ""
    reason: str = ""
    key: str = ""


@dataclass
class AccountView:
    """Events in, effects out; `new_key` gives each tap its own key."""

    new_key: Callable[[], str]
    page_size: int = PAGE_SIZE
    active: bool = False
    patron_id: str = ""
    language: str = "ja"
    serial: int = 0
    account: PatronAccount | None = None
    loading: bool = False
    unavailable: bool = False
    page: int = 0
    loans: list[_Loan] = field(default_factory=list)
    renew_all_state: str = ""
    renew_all_key: str = ""
    renew_all_result: dict[str, int] = field(default_factory=dict)

    def open(self, patron_id: str, language: str) -> list[fx.Effect]:
        self.close()
        self.active, self.patron_id, self.language = True, patron_id, language
        self.serial += 1
        self.loading = True
        return self._show() + [fx.LoadAccount(patron_id, serial=self.serial)]

    def close(self) -> None:
        """Forget everything about the patron (the session ended or they went back).
        `serial` is kept: late answers for the old patron stay stale."""
        self.active, self.patron_id, self.account = False, "", None
        self.loading = self.unavailable = False
        self.page, self.loans = 0, []
        self.renew_all_state, self.renew_all_key, self.renew_all_result = "", "", {}

    # ------------------------------------------------------------------ events

    def handle(self, event: ev.Event, now: float) -> list[fx.Effect]:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        return handler(event) if handler is not None and self.active else []

    def _on_AccountLoaded(self, e: ev.AccountLoaded) -> list[fx.Effect]:
        if e.serial != self.serial or not self.loading:
            return []
        self.loading = False
        if e.account is None or not e.account.valid:
            self.unavailable = True
            return self._show()
        self.account = e.account
        before = {x.item_id: x for x in self.loans}          # a reload after renew-all keeps each result
        self.loans = [_Loan(x.item_id, x.title, x.due_date.isoformat() if x.due_date else x.due_text, x.overdue)
                      for x in e.account.loans]
        for row in self.loans:
            if row.item_id in before:
                row.state, row.reason = before[row.item_id].state, before[row.item_id].reason
        self.loans.sort(key=lambda x: (not x.overdue, x.due or "9999"))     # overdue first, then soonest due
        return self._show()

    def _on_Press(self, e: ev.Press) -> list[fx.Effect]:
        if e.action == "renew":
            return self._renew(str(e.value))
        if e.action == "renew_all":
            return self._renew_all()
        if e.action == "page" and self.loans:
            self.page = max(0, min(int(e.value or 0), self._pages() - 1))
            return self._show()
        if e.action == "language":
            self.language = str(e.value)
            return self._show()
        if e.action == "retry" and self.unavailable:
            return self.open(self.patron_id, self.language)
        return []

    def _renew(self, item_id: str) -> list[fx.Effect]:
        row = next((x for x in self.loans if x.item_id == item_id), None)
        if row is None or row.state in ("renewing", "renewed") or self.renew_all_state == "renewing":
            return []                       # one tap, one renewal: repeats wait for the answer
        if self._why_not():
            return []
        row.state, row.reason, row.key = "renewing", "", self.new_key()
        return self._show() + [fx.Renew(self.patron_id, item_id, row.key)]

    def _renew_all(self) -> list[fx.Effect]:
        if self.renew_all_state == "renewing" or any(x.state == "renewing" for x in self.loans) or self._why_not():
            return []
        self.renew_all_state, self.renew_all_key = "renewing", self.new_key()
        return self._show() + [fx.RenewAll(self.patron_id, self.renew_all_key)]

    def _on_RenewDone(self, e: ev.RenewDone) -> list[fx.Effect]:
        row = next((x for x in self.loans if x.item_id == e.item_id and x.key == e.key), None)
        if row is None or row.state != "renewing":
            return []
        r = e.result
        if r is None:
            # The catalogue did not answer: nothing is known, the button says why; a new tap may try again.
            row.state, row.reason = "", Refusal.OFFLINE.value
            self.unavailable = True
            return self._show() + [fx.Cue("refused")]
        if r.ok:
            row.state, row.reason = "renewed", ""
            row.due = r.due_date.isoformat() if r.due_date else (r.due_text or row.due)
            row.overdue = False
            self.unavailable = False
            return self._show() + [fx.Cue("accepted")]
        refusal = r.refusal if r.refusal in RENEWAL_REASONS else Refusal.OTHER
        row.state, row.reason = "refused", (refusal or Refusal.OTHER).value
        return self._show() + [fx.Cue("refused")]

    def _on_RenewAllDone(self, e: ev.RenewAllDone) -> list[fx.Effect]:
        if e.key != self.renew_all_key or self.renew_all_state != "renewing":
            return []
        if e.result is None:
            self.renew_all_state, self.unavailable = "", True
            return self._show() + [fx.Cue("refused")]
        self.renew_all_state = "done"
        renewed = set(e.result.renewed)
        for row in self.loans:
            if row.item_id in renewed:
                row.state, row.reason = "renewed", ""
            elif row.item_id in e.result.unrenewed and row.state != "renewed":
                row.state, row.reason = "refused", ""
        self.renew_all_result = {"renewed": len(renewed), "unrenewed": len(e.result.unrenewed)}
        # New due dates come from the catalogue: ask for the account again.
        self.serial += 1
        self.loading = True
        return self._show() + [fx.LoadAccount(self.patron_id, serial=self.serial), fx.Cue("accepted")]

    # ------------------------------------------------------------------ model

    def _why_not(self) -> str:
        if self.unavailable:
            return Refusal.OFFLINE.value
        if self.account is not None and set(self.account.blocked) & RENEWAL_BLOCKS:
            return "blocked"
        return ""

    def _pages(self) -> int:
        return max(1, -(-len(self.loans) // self.page_size))

    def _show(self) -> list[fx.Effect]:
        a = self.account
        start = self.page * self.page_size
        model: dict[str, Any] = {
            "language": self.language,
            "loading": self.loading,
            "unavailable": self.unavailable,
            "loans": [{"item_id": x.item_id, "title": x.title, "due": x.due, "overdue": x.overdue,
                       "state": x.state, "reason": x.reason} for x in self.loans[start:start + self.page_size]],
            "loan_count": len(self.loans),
            "holds_ready": [h.title for h in a.holds_ready] if a else [],
            "holds_pending": [h.title for h in a.holds_pending] if a else [],
            "fines": [f.description for f in a.fines] if a else [],
            "fee_amount": str(a.fee_amount) if a and a.fee_amount is not None else "",
            "currency": a.currency if a else "",
            "blocks": list(a.blocked) if a else [],
            "page": self.page,
            "pages": self._pages(),
            "renew_all": self.renew_all_state,
            "renew_all_result": dict(self.renew_all_result),
            "can_renew": not self._why_not() and bool(self.loans),
            "why_not": self._why_not(),
        }
        return [fx.Show(SCREEN, model)]
