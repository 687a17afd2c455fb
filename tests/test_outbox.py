"""The loan outbox: ordered, idempotent, sealed, purged on acknowledgement."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest

from kiosk.core.catalogue import LoanResult, Refusal
from kiosk.store.database import open_store
from kiosk.store.outbox import (
    IN_FLIGHT,
    QUEUED,
    REFUSED,
    WITHDRAWN,
    WITHDRAWN_BUT_LENT,
    Outbox,
    OutboxFull,
)
from kiosk_testing.store import (
    CANARY_ITEM,
    CANARY_PATRON,
    CANARY_TITLE,
    count_commits,
    disk_bytes,
    sqlite_rows,
    sqlite_write,
    files_containing,
    make_loan,
)

CLEAR_FIELDS = {"txn_id", "seq", "state", "created", "attempts", "sealed"}


@pytest.fixture
def outbox(kiosk_store, store_key, store_clock):
    return Outbox(kiosk_store, store_key, store_clock)


def ok(loan, **kw):
    return LoanResult(loan.txn_id, ok=True, item_id=loan.item_id, title=CANARY_TITLE, due_date=date(2025, 4, 15), **kw)


def refused(loan, refusal=Refusal.ON_HOLD):
    return LoanResult(loan.txn_id, ok=False, item_id=loan.item_id, title=CANARY_TITLE, refusal=refusal,
                      message="on hold for another patron")


def disk_rows(store, table):
    """The rows of `table` as committed on disk, read by a second, independent connection."""
    return sqlite_rows(store.path, table)


def test_append_is_durable_and_pending_keeps_order(outbox, kiosk_store, store_key, store_clock, store_dir):
    loans = [make_loan(i, offline=i % 2 == 0) for i in range(5)]
    for loan in loans:
        outbox.append(loan)
        store_clock.advance(seconds=1)
    assert outbox.pending() == loans
    assert [r["seq"] for r in sorted(disk_rows(kiosk_store, "outbox"), key=lambda r: r["seq"])] == [1, 2, 3, 4, 5]
    kiosk_store.close()
    with open_store(store_dir / "kiosk.db") as reopened:
        assert Outbox(reopened, store_key, store_clock).pending() == loans   # dates, flags, due date


def test_only_bookkeeping_is_in_clear(outbox, kiosk_store):
    outbox.append(make_loan(1, patron=CANARY_PATRON))
    [row] = disk_rows(kiosk_store, "outbox")
    assert set(row) == CLEAR_FIELDS
    assert row["state"] == QUEUED and row["attempts"] == 0 and row["txn_id"] == "txn-0001"
    assert CANARY_PATRON not in json.dumps(row) and "I000001" not in json.dumps(row)


def test_appending_the_same_txn_twice_is_a_no_op(outbox, kiosk_store):
    loan = make_loan(1)
    outbox.append(loan)
    outbox.append(loan)
    outbox.append(replace(loan, item_id="I999"))       # same txn_id, even with other content
    assert outbox.pending() == [loan]
    assert len(disk_rows(kiosk_store, "outbox")) == 1


def test_mark_sent_records_in_flight_and_attempts(outbox, kiosk_store):
    outbox.append(make_loan(1))
    outbox.mark_sent("txn-0001")
    outbox.mark_sent("txn-0001")
    [entry] = outbox.pending_entries()
    assert entry.state == IN_FLIGHT and entry.attempts == 2 and entry.sent_before
    assert disk_rows(kiosk_store, "outbox")[0]["state"] == IN_FLIGHT
    with pytest.raises(KeyError):
        outbox.mark_sent("nope")


def test_acknowledge_purges_everything_and_records_last_success(outbox, kiosk_store, store_clock):
    loan = make_loan(1, patron=CANARY_PATRON)
    outbox.append(loan)
    outbox.mark_sent(loan.txn_id)
    store_clock.advance(minutes=3)
    outbox.acknowledge(loan.txn_id, ok(loan))
    assert outbox.pending() == []
    assert disk_rows(kiosk_store, "outbox") == []
    assert outbox.stats().last_success == store_clock.now
    outbox.acknowledge(loan.txn_id, ok(loan))                  # a second ack is harmless
    kiosk_store.close()
    assert b"txn-0001" not in disk_bytes(kiosk_store.path)     # nothing of the loan is kept


def test_refused_online_loan_is_simply_acknowledged(outbox):
    loan = make_loan(1)
    outbox.append(loan)
    outbox.acknowledge(loan.txn_id, refused(loan))
    assert outbox.pending() == [] and outbox.conflicts() == []


def test_conflict_moves_loan_to_sealed_review_list(outbox, kiosk_store, store_clock):
    loans = [make_loan(i, offline=True, patron=CANARY_PATRON) for i in range(3)]
    for loan in loans:
        outbox.append(loan)
    store_clock.advance(hours=1)
    result = refused(loans[1])
    outbox.conflict(loans[1].txn_id, result)
    outbox.conflict(loans[1].txn_id, result)                   # idempotent
    assert outbox.pending() == [loans[0], loans[2]]
    [c] = outbox.conflicts()
    assert c.id == loans[1].txn_id and c.loan == loans[1] and c.recorded_at == store_clock.now
    assert c.loan.patron_id == CANARY_PATRON and c.result.item_id == loans[1].item_id
    assert c.result.refusal is Refusal.ON_HOLD and c.result.message == "on hold for another patron"
    assert c.result.title == ""                                # the title is not kept even sealed
    [row] = disk_rows(kiosk_store, "conflicts")
    assert set(row) == {"txn_id", "recorded", "sealed"}
    assert CANARY_PATRON.encode() not in disk_bytes(kiosk_store.path)
    with pytest.raises(KeyError):
        outbox.conflict("never-queued", result)

    assert outbox.resolve_conflict(c.id) is True
    assert outbox.resolve_conflict(c.id) is False
    assert outbox.conflicts() == [] and disk_rows(kiosk_store, "conflicts") == []


def test_txn_held_as_conflict_is_not_queued_again(outbox):
    loan = make_loan(1, offline=True)
    outbox.append(loan)
    outbox.conflict(loan.txn_id, refused(loan))
    outbox.append(loan)
    assert outbox.pending() == []


def test_stats(outbox, store_clock):
    s = outbox.stats()
    assert (s.pending, s.in_flight, s.oldest_created, s.last_success, s.conflicts) == (0, 0, None, None, 0)
    first_queued = store_clock.now
    for i in range(4):
        outbox.append(make_loan(i, offline=True))
        store_clock.advance(minutes=1)
    outbox.mark_sent("txn-0000")
    outbox.mark_sent("txn-0001")
    outbox.conflict("txn-0001", refused(make_loan(1)))
    s = outbox.stats()
    assert s.pending == 3 and s.in_flight == 1 and s.conflicts == 1
    assert s.oldest_created == first_queued
    assert s.last_success == store_clock.now


def test_sequence_keeps_growing_while_entries_are_held(outbox):
    for i in range(3):
        outbox.append(make_loan(i))
    outbox.acknowledge("txn-0000", ok(make_loan(0)))
    outbox.append(make_loan(3))
    assert [e.seq for e in outbox.pending_entries()] == [2, 3, 4]
    assert outbox.next_pending().loan.txn_id == "txn-0001"


def test_capacity_refuses_new_loans_without_touching_the_queue(kiosk_store, store_key, store_clock):
    small = Outbox(kiosk_store, store_key, store_clock, capacity=2)
    small.append(make_loan(1))
    small.append(make_loan(2))
    with pytest.raises(OutboxFull):
        small.append(make_loan(3))
    small.append(make_loan(2))                                 # a replay of a held txn is still fine
    assert [l.txn_id for l in small.pending()] == ["txn-0001", "txn-0002"]


def test_sealed_blob_moved_to_another_row_is_detected(outbox, kiosk_store):
    outbox.append(make_loan(1, patron="P-A"))
    outbox.append(make_loan(2, patron="P-B"))
    sqlite_write(kiosk_store.path, "UPDATE outbox SET sealed = (SELECT sealed FROM outbox WHERE txn_id = ?) "
                 "WHERE txn_id = ?", ("txn-0001", "txn-0002"))
    # The swapped row cannot be opened: it goes to the damaged list, the other one stays queued.
    assert [l.txn_id for l in outbox.pending()] == ["txn-0001"]
    [damaged] = outbox.damaged()
    assert (damaged.source, damaged.txn_id, damaged.reason) == ("outbox", "txn-0002", "seal_broken")
    assert outbox.stats().damaged == 1


def test_no_canary_anywhere_under_the_data_dir(outbox, kiosk_store, store_dir, store_clock):
    loans = [make_loan(i, patron=CANARY_PATRON, offline=True) for i in range(3)]
    loans.append(replace(make_loan(9, patron=CANARY_PATRON), item_id=CANARY_ITEM))
    for loan in loans:
        outbox.append(loan)
    outbox.mark_sent(loans[0].txn_id)
    outbox.acknowledge(loans[0].txn_id, ok(loans[0]))
    outbox.conflict(loans[1].txn_id, refused(loans[1]))
    kiosk_store.close()
    assert files_containing(store_dir, [CANARY_PATRON, CANARY_ITEM, CANARY_TITLE]) == []


# -- withdraw and settle -------------------------------------------------------------

def test_withdrawing_a_loan_never_sent_purges_it(outbox, kiosk_store):
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))
    assert outbox.withdraw("txn-0001") is True
    assert [l.txn_id for l in outbox.pending()] == ["txn-0002"]
    assert [r["txn_id"] for r in disk_rows(kiosk_store, "outbox")] == ["txn-0002"]
    assert outbox.withdraw("txn-0001") is False                # already gone
    assert outbox.withdraw("never") is False
    with pytest.raises(KeyError):
        outbox.mark_sent("txn-0001")                           # the worker must skip it


def test_withdrawing_a_sent_loan_keeps_it_marked_and_it_is_not_sent_again(outbox):
    outbox.append(make_loan(1))
    outbox.mark_sent("txn-0001")
    assert outbox.withdraw("txn-0001") is False
    [entry] = outbox.pending_entries()
    assert entry.state == WITHDRAWN and entry.withdrawn and entry.attempts == 1
    assert outbox.mark_sent("txn-0001") is False               # refused, state unchanged
    assert outbox.pending_entries()[0].state == WITHDRAWN
    assert outbox.stats().in_flight == 1


def test_settle_decides_on_the_state_at_answer_time(outbox):
    loans = [make_loan(i) for i in range(5)]
    for loan in loans:
        outbox.append(loan)
        outbox.mark_sent(loan.txn_id)
    outbox.withdraw(loans[0].txn_id)
    outbox.withdraw(loans[1].txn_id)
    assert outbox.settle(loans[0].txn_id, ok(loans[0]), refused_is_conflict=False) == "conflict"
    assert outbox.settle(loans[1].txn_id, refused(loans[1]), refused_is_conflict=True) == "refused"
    assert outbox.settle(loans[2].txn_id, refused(loans[2]), refused_is_conflict=True) == "conflict"
    assert outbox.settle(loans[3].txn_id, refused(loans[3]), refused_is_conflict=False) == "refused"
    assert outbox.settle(loans[4].txn_id, ok(loans[4]), refused_is_conflict=True) == "accepted"
    assert outbox.settle(loans[4].txn_id, ok(loans[4]), refused_is_conflict=True) == "gone"
    assert outbox.pending() == []
    assert {c.id: c.reason for c in outbox.conflicts()} == {
        loans[0].txn_id: WITHDRAWN_BUT_LENT, loans[2].txn_id: REFUSED}


def test_a_window_is_marked_and_settled_in_one_write_each_with_the_same_decisions(outbox, kiosk_store):
    loans = [make_loan(i) for i in range(6)]
    for loan in loans:
        outbox.append(loan)
    outbox.mark_sent(loans[1].txn_id)
    outbox.withdraw(loans[1].txn_id)                     # sent once, then the patron left
    outbox.withdraw(loans[2].txn_id)                     # never sent: gone
    commits = count_commits(kiosk_store)
    marked = outbox.mark_sent_many([l.txn_id for l in loans] + ["never"])
    assert marked == {loans[0].txn_id: True, loans[1].txn_id: False, loans[2].txn_id: None,
                      loans[3].txn_id: True, loans[4].txn_id: True, loans[5].txn_id: True, "never": None}
    assert len(commits) == 1
    assert {e.loan.txn_id: (e.state, e.attempts) for e in outbox.pending_entries()} == {
        loans[0].txn_id: (IN_FLIGHT, 1), loans[1].txn_id: (WITHDRAWN, 1), loans[3].txn_id: (IN_FLIGHT, 1),
        loans[4].txn_id: (IN_FLIGHT, 1), loans[5].txn_id: (IN_FLIGHT, 1)}
    outcomes = outbox.settle_many([
        (loans[0].txn_id, ok(loans[0]), False),
        (loans[1].txn_id, ok(loans[1]), False),          # lent although withdrawn: staff
        (loans[3].txn_id, refused(loans[3]), True),      # refused after an unclear send: staff
        (loans[4].txn_id, refused(loans[4]), False),
        (loans[0].txn_id, ok(loans[0]), False),          # the same answer twice settles once
    ])
    assert outcomes == ["accepted", "conflict", "conflict", "refused", "gone"]
    assert len(commits) == 2
    outbox.unmark_many([loans[5].txn_id, loans[0].txn_id])
    [left] = outbox.pending_entries()
    assert (left.loan.txn_id, left.state, left.attempts) == (loans[5].txn_id, QUEUED, 0)
    assert {c.id: c.reason for c in outbox.conflicts()} == {
        loans[1].txn_id: WITHDRAWN_BUT_LENT, loans[3].txn_id: REFUSED}
    assert outbox.states([loans[5].txn_id, loans[0].txn_id]) == {loans[5].txn_id: QUEUED, loans[0].txn_id: None}
