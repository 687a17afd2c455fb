"""The durable loan outbox: every checkout and every return waits here, sealed, until the
catalogue answers (one queue, so a return and a later loan of the same book stay in order).

Only what the worker needs to order and retry loans is in clear (txn_id, sequence
number, state, queued time, attempts); patron and item ids live in the sealed blob.
A loan is purged the moment the catalogue acknowledges it: the kiosk keeps no
reading history. Loans the catalogue refused on replay go to the sealed conflicts
list for staff, who need patron id, item id and the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterator, Sequence

from kiosk.core.catalogue import CHECKIN, CHECKOUT, LoanRequest, LoanResult, Refusal
from kiosk.store.database import Store
from kiosk.store.sealed import DeviceKey, SealBroken

_log = logging.getLogger(__name__)

QUEUED = "queued"
IN_FLIGHT = "in_flight"      # sent at least once: the catalogue may already hold it
WITHDRAWN = "withdrawn"      # sent, then the patron left unconfirmed: never send it again
LAST_SUCCESS = "outbox.last_success"


class OutboxFull(Exception):
    """Too many loans wait for the catalogue; stop lending until it drains (nothing was added)."""


@dataclass(frozen=True)
class PendingLoan:
    loan: LoanRequest
    seq: int
    state: str
    attempts: int
    queued_at: datetime

    @property
    def sent_before(self) -> bool:
        return self.attempts > 0

    @property
    def withdrawn(self) -> bool:
        return self.state == WITHDRAWN


# Why a loan waits for staff (Conflict.reason).
REFUSED = "refused"                        # refused on replay (offline loan, or after an unclear send)
WITHDRAWN_BUT_LENT = "withdrawn_but_lent"  # the catalogue lent it, but the patron had left unconfirmed
WITHDRAWN_UNANSWERED = "withdrawn_unanswered"  # patron left; whether the catalogue lent it is unknown
KIOSK_ERROR = "kiosk_error"                # the backend kept failing on this loan


@dataclass(frozen=True)
class Conflict:
    """A loan staff must check; `id` is its txn_id. The result carries no title."""

    id: str
    loan: LoanRequest
    result: LoanResult
    recorded_at: datetime
    reason: str = REFUSED


@dataclass(frozen=True)
class OutboxStats:
    pending: int                        # loans not yet acknowledged, in-flight ones included
    in_flight: int                      # of those, sent at least once (withdrawn ones included)
    oldest_created: datetime | None     # when the oldest pending loan was queued
    last_success: datetime | None       # last time the catalogue answered a queued loan
    conflicts: int
    damaged: int = 0                    # rows that could not be opened (staff review)


@dataclass(frozen=True)
class DamagedRow:
    """A row that could not be unsealed or parsed: kept (sealed, as found) for staff and
    recovery, out of the queue so the rest drains. No patron or item id is readable."""

    id: int
    source: str                 # "outbox" or "conflicts"
    txn_id: str | None
    found_at: datetime
    reason: str


_ROW = "seq, txn_id, state, created, attempts, sealed"


class Outbox:
    """Ordered, idempotent, encrypted queue of loans over `Store` tables outbox/conflicts.

    A row that cannot be opened (a flipped bit, a swapped blob) moves to the damaged
    list the moment it is met; the queue goes on with the next one."""

    def __init__(self, store: Store, key: DeviceKey, clock: Callable[[], datetime], capacity: int = 5000) -> None:
        self._store = store
        self._key = key
        self._clock = clock
        self._capacity = capacity

    def append(self, loan: LoanRequest) -> None:
        """Queue `loan`; durable (committed and fsynced) on return. A txn_id already held
        (pending or conflict) is a no-op. OutboxFull or a StoreError: nothing was added."""
        with self._store.transaction():
            q = self._store.query
            if q("SELECT 1 FROM outbox WHERE txn_id = ?", (loan.txn_id,)):
                return
            if q("SELECT 1 FROM conflicts WHERE txn_id = ?", (loan.txn_id,)):
                return
            held = q("SELECT count(*) FROM outbox")[0][0]
            if held >= self._capacity:
                raise OutboxFull(f"{held} loans wait for the catalogue")
            seq = 1 + q("SELECT coalesce(max(seq), 0) FROM outbox")[0][0]    # after every loan held
            queued = self._clock().isoformat()
            sealed = self._key.seal(_loan_to_json(loan), _loan_aad(loan.txn_id, seq, queued))
            self._store.write("INSERT INTO outbox (seq, txn_id, state, created, attempts, sealed) "
                              "VALUES (?, ?, ?, ?, 0, ?)", (seq, loan.txn_id, QUEUED, queued, sealed))

    def pending_entries(self) -> list[PendingLoan]:
        """Every unacknowledged loan in queue order, with its retry state (damaged rows
        are moved aside, not returned)."""
        return self._opened(self._store.query(f"SELECT {_ROW} FROM outbox ORDER BY seq"))

    def next_pending(self) -> PendingLoan | None:
        """The head of the queue (unseals only that one)."""
        head = self.head(1)
        return head[0] if head else None

    def head(self, n: int) -> list[PendingLoan]:
        """The first `n` readable loans in queue order (unseals only those)."""
        while True:
            rows = self._store.query(f"SELECT {_ROW} FROM outbox ORDER BY seq LIMIT ?", (n,))
            opened = self._opened(rows)
            if len(opened) == len(rows):
                return opened
            # damaged rows were moved aside: read the window again

    def count(self) -> int:
        """Loans not yet acknowledged (cheap: no unsealing)."""
        return int(self._store.query("SELECT count(*) FROM outbox")[0][0])

    def state(self, txn_id: str) -> str | None:
        return self.states([txn_id])[txn_id]

    def states(self, txn_ids: Sequence[str]) -> dict[str, str | None]:
        """Each loan's state now (None: no longer queued)."""
        rows = self._rows(txn_ids)
        return {t: rows[t][2] if t in rows else None for t in txn_ids}

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Several outbox changes as one commit (the worker's bookkeeping for a window)."""
        with self._store.transaction():
            yield

    def unmark(self, txn_id: str) -> None:
        self.unmark_many([txn_id])

    def unmark_many(self, txn_ids: Sequence[str]) -> None:
        """Marked in flight but never put on the wire (the catalogue failed first): queued again."""
        with self._store.transaction():
            seqs = [(r[0],) for r in self._rows(txn_ids).values() if r[2] == IN_FLIGHT]
            if seqs:
                self._store.write_many("UPDATE outbox SET state = 'queued', attempts = max(0, attempts - 1) "
                                       "WHERE seq = ?", seqs)

    def forget_unsent(self, txn_id: str) -> None:
        self.forget_unsent_many([txn_id])

    def forget_unsent_many(self, txn_ids: Sequence[str]) -> None:
        """Withdrawn while they waited in the worker's window and never sent: nothing was lent."""
        with self._store.transaction():
            seqs = [(r[0],) for r in self._rows(txn_ids).values() if r[2] == WITHDRAWN]
            if seqs:
                self._store.write_many("DELETE FROM outbox WHERE seq = ?", seqs)

    def pending(self) -> list[LoanRequest]:
        return [entry.loan for entry in self.pending_entries()]

    def mark_sent(self, txn_id: str) -> bool:
        """Record that `txn_id` is about to go out: after a crash it may already be at the catalogue.

        False (and nothing changed) if it was withdrawn: it must not be sent again.
        KeyError if it is not queued (withdrawn before it was ever sent, or answered).
        """
        marked = self.mark_sent_many([txn_id])[txn_id]
        if marked is None:
            raise KeyError(txn_id)
        return marked

    def mark_sent_many(self, txn_ids: Sequence[str]) -> dict[str, bool | None]:
        """`mark_sent` for a window of loans in one commit: True marked, False withdrawn
        (must not be sent again), None not queued any more."""
        with self._store.transaction():
            rows = self._rows(txn_ids)
            seqs = [(r[0],) for r in rows.values() if r[2] != WITHDRAWN]
            if seqs:
                self._store.write_many("UPDATE outbox SET state = 'in_flight', attempts = attempts + 1 "
                                       "WHERE seq = ?", seqs)
        return {t: (rows[t][2] != WITHDRAWN) if t in rows else None for t in txn_ids}

    def withdraw(self, txn_id: str) -> bool:
        """The patron left before this loan was confirmed, so it must not be lent.

        Never sent: purged, True. Already sent: the catalogue may hold it, so it stays,
        marked withdrawn; the worker will not send it again and hands it to staff if
        the catalogue lent it (False). Unknown or already answered: False.
        """
        with self._store.transaction():
            row = self._rows([txn_id]).get(txn_id)
            if row is None:
                return False
            if row[2] == QUEUED:
                self._store.write("DELETE FROM outbox WHERE seq = ?", (row[0],))
                return True
            self._store.write("UPDATE outbox SET state = ? WHERE seq = ?", (WITHDRAWN, row[0]))
            return False

    def settle(self, txn_id: str, result: LoanResult, refused_is_conflict: bool) -> str:
        """Record the catalogue's answer in one step, looking at the entry's state *now*
        (the patron may have withdrawn it while it was on the wire).

        Returns "accepted" or "refused" (purged), "conflict" (moved to review), or
        "gone" (no such entry any more; nothing changed).
        """
        return self.settle_many([(txn_id, result, refused_is_conflict)])[0]

    def settle_many(self, answers: Sequence[tuple[str, LoanResult, bool]]) -> list[str]:
        """`settle` for a window of answers (txn_id, result, refused_is_conflict), in one commit."""
        outcomes: list[str] = []
        with self._store.transaction():
            rows = self._rows([txn_id for txn_id, _, _ in answers])
            purged: list[tuple[int]] = []
            moved: list[tuple[Any, LoanResult, str]] = []
            for txn_id, result, refused_is_conflict in answers:
                row = rows.pop(txn_id, None)          # pop: an answer given twice settles once
                if row is None:
                    outcomes.append("gone")
                elif result.ok and row[2] == WITHDRAWN:
                    moved.append((row, result, WITHDRAWN_BUT_LENT))
                    outcomes.append("conflict")
                elif not result.ok and refused_is_conflict and row[2] != WITHDRAWN:
                    moved.append((row, result, REFUSED))
                    outcomes.append("conflict")
                else:
                    purged.append((row[0],))
                    outcomes.append("accepted" if result.ok else "refused")
            if moved:
                self._move_to_conflicts(moved)
            if purged:
                self._store.write_many("DELETE FROM outbox WHERE seq = ?", purged)
                self._store.set_setting(LAST_SUCCESS, self._clock().isoformat())
        return outcomes

    def acknowledge(self, txn_id: str, result: LoanResult) -> None:
        """The catalogue answered (accepted, or refused an online loan): purge every trace of it."""
        with self._store.transaction():
            if self._store.write("DELETE FROM outbox WHERE txn_id = ?", (txn_id,)):
                self._store.set_setting(LAST_SUCCESS, self._clock().isoformat())

    def conflict(self, txn_id: str, result: LoanResult, reason: str = REFUSED) -> None:
        """Move `txn_id` to the sealed review list in one commit (idempotent)."""
        with self._store.transaction():
            row = self._rows([txn_id]).get(txn_id)
            if row is None:
                if self._store.query("SELECT 1 FROM conflicts WHERE txn_id = ?", (txn_id,)):
                    return
                raise KeyError(txn_id)
            self._move_to_conflicts([(row, result, reason)])

    def conflicts(self) -> list[Conflict]:
        """The review list, oldest first; an entry that cannot be opened moves to damaged."""
        rows = self._store.query("SELECT txn_id, recorded, sealed FROM conflicts ORDER BY recorded, rowid")
        out = []
        for txn_id, recorded, sealed in rows:
            try:
                payload = self._key.unseal(sealed, _conflict_aad(txn_id, recorded))
                out.append(Conflict(
                    id=txn_id,
                    loan=_loan_from_json(payload["loan"]),
                    result=_result_from_json(payload["result"]),
                    recorded_at=datetime.fromisoformat(recorded),
                    reason=payload.get("reason", REFUSED),
                ))
            except (SealBroken, KeyError, TypeError, ValueError) as exc:
                self._quarantine("conflicts", txn_id, {"txn_id": txn_id, "recorded": recorded, "sealed": sealed},
                                 exc, "DELETE FROM conflicts WHERE txn_id = ?", txn_id)
        return out

    def resolve_conflict(self, conflict_id: str) -> bool:
        """Staff dealt with it: purge. False if there was no such conflict."""
        return bool(self._store.write("DELETE FROM conflicts WHERE txn_id = ?", (conflict_id,)))

    def damaged(self) -> list[DamagedRow]:
        """Rows that could not be opened, oldest first (no reading record is readable here)."""
        return [DamagedRow(id=r[0], source=r[1], txn_id=r[2], found_at=datetime.fromisoformat(r[3]), reason=r[4])
                for r in self._store.query("SELECT id, source, txn_id, found_at, reason FROM damaged ORDER BY id")]

    def discard_damaged(self, damaged_id: int) -> bool:
        """Staff settled a damaged row by hand (at the counter, with the catalogue): drop it."""
        return bool(self._store.write("DELETE FROM damaged WHERE id = ?", (damaged_id,)))

    def stats(self) -> OutboxStats:
        with self._store.lock:
            q = self._store.query
            pending, in_flight = q("SELECT count(*), coalesce(sum(state != 'queued'), 0) FROM outbox")[0]
            oldest = q("SELECT created FROM outbox ORDER BY seq LIMIT 1")
            n_conflicts = q("SELECT count(*) FROM conflicts")[0][0]
            n_damaged = q("SELECT count(*) FROM damaged")[0][0]
            last = self._store.get_setting(LAST_SUCCESS)
        return OutboxStats(
            pending=pending,
            in_flight=in_flight,
            oldest_created=datetime.fromisoformat(oldest[0][0]) if oldest else None,
            last_success=datetime.fromisoformat(last) if last else None,
            conflicts=n_conflicts,
            damaged=n_damaged,
        )

    def _move_to_conflicts(self, moves: Sequence[tuple[Any, LoanResult, str]]) -> None:
        # Call inside a transaction: inserts + deletes land in one commit.
        recorded = self._clock().isoformat()
        docs = []
        for row, result, reason in moves:
            loan = self._open_row(row).loan
            payload = {"loan": _loan_to_json(loan), "result": _result_to_json(result), "reason": reason}
            docs.append((row[1], recorded, self._key.seal(payload, _conflict_aad(row[1], recorded))))
        self._store.write_many("INSERT OR REPLACE INTO conflicts (txn_id, recorded, sealed) VALUES (?, ?, ?)", docs)
        self._store.write_many("DELETE FROM outbox WHERE seq = ?", [(row[0],) for row, _, _ in moves])
        if any(reason in (REFUSED, WITHDRAWN_BUT_LENT) for _, _, reason in moves):   # the catalogue did answer
            self._store.set_setting(LAST_SUCCESS, recorded)

    def _rows(self, txn_ids: Sequence[str]) -> dict[str, Any]:
        """The outbox rows of these loans by txn_id (by the unique index: no table scan)."""
        found: dict[str, Any] = {}
        for txn_id in dict.fromkeys(txn_ids):
            rows = self._store.query(f"SELECT {_ROW} FROM outbox WHERE txn_id = ?", (txn_id,))
            if rows:
                found[txn_id] = rows[0]
        return found

    def _opened(self, rows: Sequence[Any]) -> list[PendingLoan]:
        out = []
        for row in rows:
            try:
                out.append(self._open_row(row))
            except (SealBroken, KeyError, TypeError, ValueError) as exc:
                raw = dict(zip(("seq", "txn_id", "state", "created", "attempts", "sealed"), row))
                self._quarantine("outbox", row[1], raw, exc, "DELETE FROM outbox WHERE seq = ?", row[0])
        return out

    def _quarantine(self, source: str, txn_id: str | None, raw: dict[str, Any], exc: Exception,
                    delete_sql: str, key: Any) -> None:
        """Move one unreadable row to `damaged` in one commit: kept sealed, as found."""
        reason = "seal_broken" if isinstance(exc, SealBroken) else "unparsable"
        with self._store.transaction():
            self._store.write("INSERT INTO damaged (source, txn_id, found_at, reason, raw) VALUES (?, ?, ?, ?, ?)",
                              (source, txn_id, self._clock().isoformat(), reason, json.dumps(raw)))
            self._store.write(delete_sql, (key,))
        _log.error("outbox.row_damaged source=%s reason=%s", source, reason)

    def _open_row(self, row: Sequence[Any]) -> PendingLoan:
        seq, txn_id, state, created, attempts, sealed = row
        data = self._key.unseal(sealed, _loan_aad(txn_id, seq, created))
        loan = _loan_from_json(data)
        if loan.txn_id != txn_id:
            raise ValueError("sealed loan belongs to another transaction")
        return PendingLoan(loan=loan, seq=seq, state=state, attempts=attempts,
                           queued_at=datetime.fromisoformat(created))


def _loan_aad(txn_id: str, seq: int, created: str) -> bytes:
    return f"outbox|{txn_id}|{seq}|{created}".encode()


def _conflict_aad(txn_id: str, recorded: str) -> bytes:
    return f"conflict|{txn_id}|{recorded}".encode()


def _loan_to_json(loan: LoanRequest) -> dict[str, Any]:
    return {
        "txn_id": loan.txn_id,
        "patron_id": loan.patron_id,
        "item_id": loan.item_id,
        "created_at": loan.created_at.isoformat(),
        "offline": loan.offline,
        "due_date": loan.due_date.isoformat() if loan.due_date else None,
        **({"kind": CHECKIN} if loan.kind == CHECKIN else {}),     # loans keep their old shape
    }


def _loan_from_json(d: dict[str, Any]) -> LoanRequest:
    return LoanRequest(
        txn_id=d["txn_id"],
        patron_id=d["patron_id"],
        item_id=d["item_id"],
        created_at=datetime.fromisoformat(d["created_at"]),
        offline=d["offline"],
        due_date=date.fromisoformat(d["due_date"]) if d["due_date"] else None,
        kind=CHECKIN if d.get("kind") == CHECKIN else CHECKOUT,
    )


def _result_to_json(r: LoanResult) -> dict[str, Any]:
    """Everything staff need to judge the refusal; the title is left out (reading record)."""
    return {
        "txn_id": r.txn_id,
        "ok": r.ok,
        "item_id": r.item_id,
        "due_date": r.due_date.isoformat() if r.due_date else None,
        "due_text": r.due_text,
        "refusal": r.refusal.value if r.refusal else None,
        "message": r.message,
        "replayed": r.replayed,
    }


def _result_from_json(d: dict[str, Any]) -> LoanResult:
    return LoanResult(
        txn_id=d["txn_id"],
        ok=d["ok"],
        item_id=d["item_id"],
        due_date=date.fromisoformat(d["due_date"]) if d["due_date"] else None,
        due_text=d["due_text"],
        refusal=Refusal(d["refusal"]) if d["refusal"] else None,
        message=d["message"],
        replayed=d["replayed"],
    )
