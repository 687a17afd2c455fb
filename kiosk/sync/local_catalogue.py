"""A catalogue kept on the kiosk itself in tinydb: the demo's library system.

It behaves like a small ILS: patrons with limits and blocks, items that can be on
hold for someone else or lent only at the counter, loans made idempotent by their
transaction id, and card-identity links. It is also the reference the SIP2 and REST
backends are compared with in tests.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tinydb import Query, TinyDB

from kiosk.core.catalogue import (
    CHECKIN,
    AccountFine,
    AccountHold,
    AccountLoan,
    CatalogueUnavailable,
    ItemInfo,
    LoanRequest,
    LoanResult,
    Outage,
    PatronAccount,
    PatronStatus,
    Refusal,
    RenewAllResult,
    from_catalogue,
)
from kiosk.data import shipped
from kiosk.store.database import AtomicJSONStorage

DEMO_SEED = shipped("demo_catalogue.json")
LOAN_DAYS = 14


class LocalCatalogue:
    """Implements kiosk.core.catalogue.Catalogue over one tinydb file."""

    # Its patrons have no birth dates to check a link against: registration does not read the
    # card's (no 券面事項入力補助 PIN asked for nothing), whatever staff.registration_birth_date says.
    checks_birth_date = False

    def __init__(self, path: Path, loan_days: int = LOAN_DAYS) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(path, storage=AtomicJSONStorage, ensure_ascii=False)
        self._lock = threading.RLock()
        self._loan_days = loan_days
        self.available = True           # tests and the demo panel can take it "offline"

    def reset(self) -> None:
        """A local file: no connection to start afresh."""

    def close(self) -> None:
        self._db.close()

    # -- seeding -------------------------------------------------------------

    def seed(self, data: dict) -> None:
        """Load patrons and items once; a seeded catalogue is left as it is."""
        with self._lock:
            if len(self._db.table("patrons")):
                return
            today = date.today()
            items = [_dated(i, today) for i in data["items"]]
            on_loan: dict[str, list[str]] = {}
            for i in items:
                if i.get("on_loan_to"):
                    on_loan.setdefault(i["on_loan_to"], []).append(i["id"])
            self._db.table("patrons").insert_multiple(
                {**p, "loans": on_loan.get(p["id"], []),
                 "holds_ready": p.get("holds_ready", sum(bool(h.get("ready")) for h in p.get("holds", [])))}
                for p in data["patrons"])
            self._db.table("items").insert_multiple(
                {"on_loan_to": None, "on_hold_for": None, "counter_only": False, **i} for i in items)

    @staticmethod
    def demo_seed() -> dict:
        return json.loads(DEMO_SEED.read_text(encoding="utf-8"))

    # -- helpers ------------------------------------------------------------

    def _check(self) -> None:
        if not self.available:
            raise CatalogueUnavailable("local catalogue switched off", reason=Outage.UNREACHABLE)  # the demo's outage

    def _patron(self, patron_id: str) -> dict | None:
        return self._db.table("patrons").get(Query().id == patron_id)

    def _item(self, item_id: str) -> dict | None:
        return self._db.table("items").get(Query().id == item_id)

    # -- Catalogue ------------------------------------------------------------

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus:
        with self._lock:
            self._check()
            p = self._patron(patron_id)
            if p is None:
                return PatronStatus(patron_id=patron_id, valid=False)
            password_ok = None if password is None else password == p.get("password")
            return from_catalogue(PatronStatus(
                patron_id=patron_id, valid=True, password_ok=password_ok,
                blocked=tuple(p.get("blocked", ())), limit=p.get("limit"),
                charged=p.get("charged", 0) + len(p["loans"]), holds_ready=p.get("holds_ready", 0),
                name=p.get("name"),
            ))

    def item_info(self, item_id: str) -> ItemInfo:
        with self._lock:
            self._check()
            i = self._item(item_id)
            if i is None:
                return ItemInfo(item_id=item_id, title="", available=False)
            return from_catalogue(ItemInfo(item_id=item_id, title=i["title"], available=i["on_loan_to"] is None,
                                           counter_only=i["counter_only"], media_type=i.get("media", "book")))

    def checkout(self, loan: LoanRequest) -> LoanResult:
        with self._lock:
            self._check()
            done = self._db.table("loans").get(Query().txn_id == loan.txn_id)
            if done is not None:
                return from_catalogue(_result_from(done["result"], replayed=True))
            result = from_catalogue(self._decide(loan))
            if result.ok:
                due = result.due_date.isoformat() if result.due_date else None
                self._db.table("items").update({"on_loan_to": loan.patron_id, "due_date": due, "renewals": 0},
                                               Query().id == loan.item_id)
                patrons = self._db.table("patrons")
                p = self._patron(loan.patron_id) or {"loans": []}     # a lent-to patron exists (_decide)
                patrons.update({"loans": p["loans"] + [loan.item_id]}, Query().id == loan.patron_id)
            self._db.table("loans").insert({"txn_id": loan.txn_id, "result": _result_to(result)})
            return result

    def _decide(self, loan: LoanRequest) -> LoanResult:
        def refuse(why: Refusal, title: str = "") -> LoanResult:
            return LoanResult(txn_id=loan.txn_id, ok=False, item_id=loan.item_id, title=title, refusal=why)

        p = self._patron(loan.patron_id)
        i = self._item(loan.item_id)
        if p is None:
            return refuse(Refusal.PATRON_UNKNOWN)
        if i is None:
            return refuse(Refusal.ITEM_UNKNOWN)
        title = i["title"]
        if p.get("blocked") and not loan.offline:
            return refuse(Refusal.PATRON_BLOCKED, title)
        if i["counter_only"] and not loan.offline:
            return refuse(Refusal.COUNTER_ONLY, title)
        if i["on_loan_to"] == loan.patron_id:
            return refuse(Refusal.ALREADY_YOURS, title)
        if i["on_loan_to"] is not None:
            return refuse(Refusal.ALREADY_OUT, title)
        if i.get("on_hold_for") not in (None, loan.patron_id):
            return refuse(Refusal.ON_HOLD, title)
        limit = p.get("limit")
        if limit is not None and not loan.offline and p.get("charged", 0) + len(p["loans"]) >= limit:
            return refuse(Refusal.LIMIT_REACHED, title)
        due = loan.due_date if loan.offline and loan.due_date else loan.created_at.date() + timedelta(days=self._loan_days)
        return LoanResult(txn_id=loan.txn_id, ok=True, item_id=loan.item_id, title=title, due_date=due)

    def renew(self, patron_id: str, item_id: str, key: str | None = None) -> LoanResult:
        """Renewals are idempotent by `key` (one per tap), like the REST contract's."""
        with self._lock:
            self._check()
            if key is not None:
                done = self._db.table("renewals").get(Query().key == key)
                if done is not None:
                    return from_catalogue(_result_from(done["result"], replayed=True))
            result = from_catalogue(self._renew(patron_id, item_id, key or ""))
            if key is not None:
                self._db.table("renewals").insert({"key": key, "result": _result_to(result)})
            return result

    def _renew(self, patron_id: str, item_id: str, key: str) -> LoanResult:
        i = self._item(item_id)
        p = self._patron(patron_id)
        why = renewal_refusal(p, i, patron_id, date.today())
        if why is not None or i is None:
            return LoanResult(txn_id=key, ok=False, item_id=item_id, title=i["title"] if i else "",
                              refusal=why or Refusal.ITEM_UNKNOWN)
        due = date.today() + timedelta(days=self._loan_days)
        self._db.table("items").update({"due_date": due.isoformat(), "renewals": i.get("renewals", 0) + 1},
                                       Query().id == item_id)
        return LoanResult(txn_id=key, ok=True, item_id=item_id, title=i["title"], due_date=due)

    def renew_all(self, patron_id: str, key: str | None = None) -> RenewAllResult:
        with self._lock:
            self._check()
            if key is not None:
                done = self._db.table("renewals").get(Query().key == key)
                if done is not None:
                    r = done["result"]
                    return RenewAllResult(ok=r["ok"], renewed=tuple(r["renewed"]), unrenewed=tuple(r["unrenewed"]))
            p = self._patron(patron_id)
            renewed: list[str] = []
            unrenewed: list[str] = []
            for item_id in list(p["loans"]) if p else []:
                (renewed if self._renew(patron_id, item_id, "").ok else unrenewed).append(item_id)
            result = RenewAllResult(ok=p is not None, renewed=tuple(renewed), unrenewed=tuple(unrenewed))
            if key is not None:
                self._db.table("renewals").insert({"key": key, "result": {
                    "ok": result.ok, "renewed": renewed, "unrenewed": unrenewed}})
            return result

    def patron_account(self, patron_id: str) -> PatronAccount:
        with self._lock:
            self._check()
            p = self._patron(patron_id)
            if p is None:
                return PatronAccount(patron_id=patron_id, valid=False)
            today = date.today()
            loans = []
            for item_id in p["loans"]:
                i = self._item(item_id) or {"title": "", "due_date": None}
                due = date.fromisoformat(i["due_date"]) if i.get("due_date") else None
                loans.append(from_catalogue(AccountLoan(item_id=item_id, title=i["title"], due_date=due,
                                                        overdue=due is not None and due < today)))
            return PatronAccount(
                patron_id=patron_id, valid=True, loans=tuple(loans),
                holds=tuple(from_catalogue(AccountHold(item_id=h.get("item_id", ""), title=h["title"],
                                                       ready=bool(h.get("ready")))) for h in p.get("holds", [])),
                fines=tuple(from_catalogue(AccountFine(description=f["description"],
                                                       amount=_amount(f.get("amount")))) for f in p.get("fines", [])),
                fee_amount=_amount(p.get("fee_amount")), currency=p.get("currency") or "",
                blocked=tuple(p.get("blocked", ())), name=p.get("name"))

    def checkin(self, request: LoanRequest) -> LoanResult:
        """A return, idempotent by its txn_id (a replay checks nothing in twice)."""
        with self._lock:
            self._check()
            done = self._db.table("returns").get(Query().txn_id == request.txn_id)
            if done is not None:
                return from_catalogue(replace(_result_from(done["result"], replayed=True), kind=CHECKIN,
                                              hold_shelf=done.get("hold_shelf", False),
                                              alert=done.get("alert", False)))
            i = self._item(request.item_id)
            hold = alert = False
            if i is None:
                result = LoanResult(txn_id=request.txn_id, ok=False, item_id=request.item_id,
                                    refusal=Refusal.ITEM_UNKNOWN, kind=CHECKIN, alert=True)
                alert = True
            elif i["on_loan_to"] is None:
                result = LoanResult(txn_id=request.txn_id, ok=False, item_id=request.item_id, title=i["title"],
                                    refusal=Refusal.NOT_ON_LOAN, kind=CHECKIN)
            else:
                holder = i["on_loan_to"]
                p = self._patron(holder)
                if p is not None:
                    self._db.table("patrons").update({"loans": [x for x in p["loans"] if x != request.item_id]},
                                                     Query().id == holder)
                self._db.table("items").update({"on_loan_to": None, "due_date": None, "renewals": 0},
                                               Query().id == request.item_id)
                hold = alert = i.get("on_hold_for") not in (None, holder)
                result = LoanResult(txn_id=request.txn_id, ok=True, item_id=request.item_id, title=i["title"],
                                    kind=CHECKIN, hold_shelf=hold, alert=alert)
            self._db.table("returns").insert({"txn_id": request.txn_id, "result": _result_to(result),
                                              "hold_shelf": hold, "alert": alert,
                                              "offline": request.offline})
            return from_catalogue(result)

    def end_session(self, patron_id: str) -> None:
        self._check()

    def resolve_identity(self, cert_hash: str) -> str | None:
        with self._lock:
            self._check()
            link = self._db.table("links").get(Query().cert_hash == cert_hash)
            return link["patron_id"] if link else None

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None:
        with self._lock:
            self._check()
            links = self._db.table("links")
            links.remove(Query().cert_hash == cert_hash)
            links.insert({"cert_hash": cert_hash, "patron_id": patron_id,
                          "linked_at": datetime.now().isoformat(timespec="seconds")})

    def unlink_identity(self, cert_hash: str) -> None:
        with self._lock:
            self._check()
            self._db.table("links").remove(Query().cert_hash == cert_hash)

    # -- for tests and staff --------------------------------------------------

    def loans_of(self, patron_id: str) -> list[str]:
        with self._lock:
            p = self._patron(patron_id)
            return list(p["loans"]) if p else []


#: Renewals per loan unless an item says otherwise ("max_renewals").
MAX_RENEWALS = 2


def renewal_refusal(p: dict | None, i: dict | None, patron_id: str, today: date) -> Refusal | None:
    """Why this loan may not be renewed now, or None: the demo library's rules."""
    if i is None:
        return Refusal.ITEM_UNKNOWN
    if p is None or i["on_loan_to"] != patron_id:
        return Refusal.NOT_ON_LOAN
    if p.get("blocked"):
        return Refusal.PATRON_BLOCKED
    if i.get("on_hold_for") not in (None, patron_id):
        return Refusal.ON_HOLD
    if i.get("renewals", 0) >= i.get("max_renewals", MAX_RENEWALS):
        return Refusal.RENEWAL_LIMIT
    if i.get("due_date") and date.fromisoformat(i["due_date"]) < today:
        return Refusal.OVERDUE
    return None


def _dated(item: dict, today: date) -> dict:
    """A seed item with `due_in_days` (the demo: one loan always overdue) as a real due date."""
    if "due_in_days" not in item:
        return item
    out = {k: v for k, v in item.items() if k != "due_in_days"}
    out["due_date"] = (today + timedelta(days=item["due_in_days"])).isoformat()
    return out


def _amount(text: str | None) -> Decimal | None:
    return Decimal(text) if text else None


def _result_to(r: LoanResult) -> dict:
    return {"txn_id": r.txn_id, "ok": r.ok, "item_id": r.item_id, "title": r.title,
            "due_date": r.due_date.isoformat() if r.due_date else None,
            "refusal": r.refusal.value if r.refusal else None}


def _result_from(d: dict, replayed: bool) -> LoanResult:
    return LoanResult(txn_id=d["txn_id"], ok=d["ok"], item_id=d["item_id"], title=d["title"],
                      due_date=date.fromisoformat(d["due_date"]) if d["due_date"] else None,
                      refusal=Refusal(d["refusal"]) if d["refusal"] else None, replayed=replayed)
