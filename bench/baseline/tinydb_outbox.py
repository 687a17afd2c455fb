# Frozen copy of the TinyDB store as it was before issue 13, kept only as the baseline
# of bench/bench_store.py (same durability: an fsync per write). Not part of the kiosk.
"""The durable loan outbox: every checkout waits here, sealed, until the catalogue answers.

Only what the worker needs to order and retry loans is in clear (txn_id, sequence
number, state, queued time, attempts); patron and item ids live in the sealed blob.
A loan is purged the moment the catalogue acknowledges it: the kiosk keeps no
reading history. Loans the catalogue refused on replay go to the sealed conflicts
list for staff, who need patron id, item id and the reason.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Callable, Iterator, Sequence

from tinydb import Query

from kiosk.core.catalogue import LoanRequest, LoanResult, Refusal
from tinydb_store import Store
from kiosk.store.sealed import DeviceKey

QUEUED = "queued"
IN_FLIGHT = "in_flight"      # sent at least once: the catalogue may already hold it
WITHDRAWN = "withdrawn"      # sent, then the patron left unconfirmed: never send it again
LAST_SUCCESS = "outbox.last_success"

_Q = Query()


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


class Outbox:
    """Ordered, idempotent, encrypted queue of loans over `Store` tables outbox/conflicts."""

    def __init__(self, store: Store, key: DeviceKey, clock: Callable[[], datetime], capacity: int = 5000) -> None:
        self._store = store
        self._key = key
        self._clock = clock
        self._capacity = capacity
        self._doc_ids: dict[str, int] = {}      # txn_id -> TinyDB doc id: a hint, every hit is checked

    def append(self, loan: LoanRequest) -> None:
        """Queue `loan`; durable on return. A txn_id already held (pending or conflict) is a no-op."""
        with self._store.transaction():
            if self._store.outbox.contains(_Q.txn_id == loan.txn_id):
                return
            if self._store.conflicts.contains(_Q.txn_id == loan.txn_id):
                return
            rows = self._store.outbox.all()
            if len(rows) >= self._capacity:
                raise OutboxFull(f"{len(rows)} loans wait for the catalogue")
            seq = 1 + max((r["seq"] for r in rows), default=0)
            queued = self._clock().isoformat()
            self._doc_ids[loan.txn_id] = self._store.outbox.insert({
                "txn_id": loan.txn_id,
                "seq": seq,
                "state": QUEUED,
                "created": queued,
                "attempts": 0,
                "sealed": self._key.seal(_loan_to_json(loan), _loan_aad(loan.txn_id, seq, queued)),
            })

    def pending_entries(self) -> list[PendingLoan]:
        """Every unacknowledged loan in queue order, with its retry state."""
        rows = sorted(self._store.outbox.all(), key=lambda r: r["seq"])
        return [self._open(r) for r in rows]

    def next_pending(self) -> PendingLoan | None:
        """The head of the queue (unseals only that one)."""
        rows = self._store.outbox.all()
        if not rows:
            return None
        return self._open(min(rows, key=lambda r: r["seq"]))

    def head(self, n: int) -> list[PendingLoan]:
        """The first `n` loans in queue order (unseals only those)."""
        rows = sorted(self._store.outbox.all(), key=lambda r: r["seq"])[:n]
        return [self._open(r) for r in rows]

    def count(self) -> int:
        """Loans not yet acknowledged (cheap: no unsealing, no sorting)."""
        return len(self._store.outbox)

    def state(self, txn_id: str) -> str | None:
        return self.states([txn_id])[txn_id]

    def states(self, txn_ids: Sequence[str]) -> dict[str, str | None]:
        """Each loan's state now (None: no longer queued), in one pass over the table."""
        rows = self._rows(txn_ids)
        return {t: rows[t]["state"] if t in rows else None for t in txn_ids}

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Several outbox changes as one atomic, fsynced write (the worker's bookkeeping for
        a window of loans: one write instead of one per loan keeps a backlog drain linear)."""
        with self._store.transaction():
            yield

    def unmark(self, txn_id: str) -> None:
        self.unmark_many([txn_id])

    def unmark_many(self, txn_ids: Sequence[str]) -> None:
        """Marked in flight but never put on the wire (the catalogue failed first): queued again."""
        with self._store.transaction():
            ids = [r.doc_id for r in self._rows(txn_ids).values() if r["state"] == IN_FLIGHT]
            if ids:
                self._store.outbox.update(_requeue, doc_ids=ids)

    def forget_unsent(self, txn_id: str) -> None:
        self.forget_unsent_many([txn_id])

    def forget_unsent_many(self, txn_ids: Sequence[str]) -> None:
        """Withdrawn while they waited in the worker's window and never sent: nothing was lent."""
        with self._store.transaction():
            ids = [r.doc_id for r in self._rows(txn_ids).values() if r["state"] == WITHDRAWN]
            if ids:
                self._store.outbox.remove(doc_ids=ids)

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
        """`mark_sent` for a window of loans in one write: True marked, False withdrawn
        (must not be sent again), None not queued any more."""
        with self._store.transaction():
            rows = self._rows(txn_ids)
            ids = [r.doc_id for r in rows.values() if r["state"] != WITHDRAWN]
            if ids:
                self._store.outbox.update(_mark_in_flight, doc_ids=ids)
        return {t: (rows[t]["state"] != WITHDRAWN) if t in rows else None for t in txn_ids}

    def withdraw(self, txn_id: str) -> bool:
        """The patron left before this loan was confirmed, so it must not be lent.

        Never sent: purged, True. Already sent: the catalogue may hold it, so it stays,
        marked withdrawn; the worker will not send it again and hands it to staff if
        the catalogue lent it (False). Unknown or already answered: False.
        """
        with self._store.transaction():
            row = self._store.outbox.get(_Q.txn_id == txn_id)
            if row is None:
                return False
            if row["state"] == QUEUED:
                self._store.outbox.remove(doc_ids=[row.doc_id])
                return True
            self._store.outbox.update({"state": WITHDRAWN}, doc_ids=[row.doc_id])
            return False

    def settle(self, txn_id: str, result: LoanResult, refused_is_conflict: bool) -> str:
        """Record the catalogue's answer in one step, looking at the entry's state *now*
        (the patron may have withdrawn it while it was on the wire).

        Returns "accepted" or "refused" (purged), "conflict" (moved to review), or
        "gone" (no such entry any more; nothing changed).
        """
        return self.settle_many([(txn_id, result, refused_is_conflict)])[0]

    def settle_many(self, answers: Sequence[tuple[str, LoanResult, bool]]) -> list[str]:
        """`settle` for a window of answers (txn_id, result, refused_is_conflict), in one write."""
        outcomes: list[str] = []
        with self._store.transaction():
            rows = self._rows([txn_id for txn_id, _, _ in answers])
            purged: list[int] = []
            moved: list[tuple[Any, LoanResult, str]] = []
            for txn_id, result, refused_is_conflict in answers:
                row = rows.pop(txn_id, None)          # pop: an answer given twice settles once
                if row is None:
                    outcomes.append("gone")
                elif result.ok and row["state"] == WITHDRAWN:
                    moved.append((row, result, WITHDRAWN_BUT_LENT))
                    outcomes.append("conflict")
                elif not result.ok and refused_is_conflict and row["state"] != WITHDRAWN:
                    moved.append((row, result, REFUSED))
                    outcomes.append("conflict")
                else:
                    purged.append(row.doc_id)
                    outcomes.append("accepted" if result.ok else "refused")
            if moved:
                self._move_to_conflicts(moved)
            if purged:
                self._store.outbox.remove(doc_ids=purged)
                self._store.set_setting(LAST_SUCCESS, self._clock().isoformat())
        return outcomes

    def acknowledge(self, txn_id: str, result: LoanResult) -> None:
        """The catalogue answered (accepted, or refused an online loan): purge every trace of it."""
        with self._store.transaction():
            row = self._store.outbox.get(_Q.txn_id == txn_id)
            if row is not None:
                self._purge(row)

    def conflict(self, txn_id: str, result: LoanResult, reason: str = REFUSED) -> None:
        """Move `txn_id` to the sealed review list in one atomic write (idempotent)."""
        with self._store.transaction():
            row = self._store.outbox.get(_Q.txn_id == txn_id)
            if row is None:
                if self._store.conflicts.contains(_Q.txn_id == txn_id):
                    return
                raise KeyError(txn_id)
            self._move_to_conflicts([(row, result, reason)])

    def conflicts(self) -> list[Conflict]:
        rows = sorted(self._store.conflicts.all(), key=lambda r: (r["recorded"], r.doc_id))
        out = []
        for r in rows:
            payload = self._key.unseal(r["sealed"], _conflict_aad(r["txn_id"], r["recorded"]))
            out.append(Conflict(
                id=r["txn_id"],
                loan=_loan_from_json(payload["loan"]),
                result=_result_from_json(payload["result"]),
                recorded_at=datetime.fromisoformat(r["recorded"]),
                reason=payload.get("reason", REFUSED),
            ))
        return out

    def resolve_conflict(self, conflict_id: str) -> bool:
        """Staff dealt with it: purge. False if there was no such conflict."""
        return bool(self._store.conflicts.remove(_Q.txn_id == conflict_id))

    def stats(self) -> OutboxStats:
        with self._store.lock:
            rows = self._store.outbox.all()
            n_conflicts = len(self._store.conflicts)
            last = self._store.get_setting(LAST_SUCCESS)
        oldest = min((r["created"] for r in rows), default=None, key=datetime.fromisoformat)
        return OutboxStats(
            pending=len(rows),
            in_flight=sum(1 for r in rows if r["state"] != QUEUED),
            oldest_created=datetime.fromisoformat(oldest) if oldest else None,
            last_success=datetime.fromisoformat(last) if last else None,
            conflicts=n_conflicts,
        )

    def _purge(self, row: Any) -> None:
        # Call inside a transaction.
        self._store.outbox.remove(doc_ids=[row.doc_id])
        self._store.set_setting(LAST_SUCCESS, self._clock().isoformat())

    def _move_to_conflicts(self, moves: Sequence[tuple[Any, LoanResult, str]]) -> None:
        # Call inside a transaction: inserts + removes land in one atomic write.
        recorded = self._clock().isoformat()
        docs = []
        for row, result, reason in moves:
            loan = self._open(row).loan
            payload = {"loan": _loan_to_json(loan), "result": _result_to_json(result), "reason": reason}
            docs.append({
                "txn_id": row["txn_id"],
                "recorded": recorded,
                "sealed": self._key.seal(payload, _conflict_aad(row["txn_id"], recorded)),
            })
        self._store.conflicts.insert_multiple(docs)
        self._store.outbox.remove(doc_ids=[row.doc_id for row, _, _ in moves])
        if any(reason in (REFUSED, WITHDRAWN_BUT_LENT) for _, _, reason in moves):   # the catalogue did answer
            self._store.set_setting(LAST_SUCCESS, recorded)

    def _rows(self, txn_ids: Sequence[str]) -> dict[str, Any]:
        """The outbox rows of these loans by txn_id. The worker asks about each loan just
        before it goes out, so lookups go by doc id (O(1)); a miss rescans the table once."""
        table = self._store.outbox
        found: dict[str, Any] = {}
        for txn_id in txn_ids:
            doc_id = self._doc_ids.get(txn_id)
            row = None if doc_id is None else table.get(doc_id=doc_id)
            if row is not None and row["txn_id"] == txn_id:
                found[txn_id] = row
        if len(found) < len(set(txn_ids)):
            rows = table.all()
            self._doc_ids = {r["txn_id"]: r.doc_id for r in rows}
            wanted = set(txn_ids)
            found.update((r["txn_id"], r) for r in rows if r["txn_id"] in wanted)
        return found

    def _open(self, row: dict[str, Any]) -> PendingLoan:
        data = self._key.unseal(row["sealed"], _loan_aad(row["txn_id"], row["seq"], row["created"]))
        return PendingLoan(
            loan=_loan_from_json(data),
            seq=row["seq"],
            state=row["state"],
            attempts=row["attempts"],
            queued_at=datetime.fromisoformat(row["created"]),
        )


def _mark_in_flight(doc: dict[str, Any]) -> None:
    doc.update(state=IN_FLIGHT, attempts=doc["attempts"] + 1)


def _requeue(doc: dict[str, Any]) -> None:
    doc.update(state=QUEUED, attempts=max(0, doc["attempts"] - 1))


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
    }


def _loan_from_json(d: dict[str, Any]) -> LoanRequest:
    return LoanRequest(
        txn_id=d["txn_id"],
        patron_id=d["patron_id"],
        item_id=d["item_id"],
        created_at=datetime.fromisoformat(d["created_at"]),
        offline=d["offline"],
        due_date=date.fromisoformat(d["due_date"]) if d["due_date"] else None,
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
