"""The outbox worker against a real in-process catalogue that fails, refuses or stalls on cue."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import replace

import pytest

from kiosk.core.catalogue import CatalogueUnavailable, LoanResult, Refusal
from kiosk.store.audit import Audit
from kiosk.store.database import open_store
from kiosk.store.link_cache import LinkCache
from kiosk.store.outbox import KIOSK_ERROR, WITHDRAWN_BUT_LENT, WITHDRAWN_UNANSWERED, Outbox
from kiosk.sync.outbox_worker import OutboxWorker
from kiosk_testing.store import (
    CANARY_CERT,
    CANARY_ITEM,
    CANARY_PATRON,
    CANARY_TITLE,
    ScriptedCatalogue,
    count_commits,
    files_containing,
    make_loan,
    wait_until,
)


@pytest.fixture
def outbox(kiosk_store, store_key, store_clock):
    return Outbox(kiosk_store, store_key, store_clock)


class Results(list):
    """on_result sink, thread-safe, that can be awaited."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, result: LoanResult) -> None:
        with self.lock:
            self.append(result)

    def txns(self):
        with self.lock:
            return [r.txn_id for r in self]


class RecordingSleep:
    """Injected backoff sleep: records the delay and returns at once."""

    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def worker_for(outbox, catalogue, clock, results, **kw):
    return OutboxWorker(outbox, catalogue, clock, results, **kw)


# -- drain_once: decisions and order -----------------------------------------------

def test_drain_once_sends_in_order_and_purges(outbox, store_clock):
    cat, results = ScriptedCatalogue(), Results()
    loans = [make_loan(i) for i in range(5)]
    for loan in loans:
        outbox.append(loan)
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert cat.calls == [l.txn_id for l in loans]
    assert results.txns() == [l.txn_id for l in loans] and all(r.ok for r in results)
    assert (report.acknowledged, report.remaining, report.unavailable) == (5, 0, False)
    assert outbox.pending() == [] and outbox.stats().last_success == store_clock.now


def test_online_refusal_is_acknowledged_and_reported(outbox, store_clock):
    cat, results = ScriptedCatalogue(refuse={"I000002": Refusal.ON_HOLD}), Results()
    for i in range(1, 4):
        outbox.append(make_loan(i))
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert [(r.txn_id, r.ok, r.refusal) for r in results] == [
        ("txn-0001", True, None), ("txn-0002", False, Refusal.ON_HOLD), ("txn-0003", True, None)]
    assert (report.acknowledged, report.refused, report.conflicts) == (2, 1, 0)
    assert outbox.pending() == [] and outbox.conflicts() == []


def test_offline_loan_refused_on_replay_becomes_a_conflict(outbox, store_clock):
    cat, results = ScriptedCatalogue(refuse={"I000002": Refusal.ALREADY_OUT}), Results()
    for i in range(1, 4):
        outbox.append(make_loan(i, offline=True))
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert report.conflicts == 1 and report.acknowledged == 2
    [c] = outbox.conflicts()
    assert c.id == "txn-0002" and c.loan.item_id == "I000002" and c.result.refusal is Refusal.ALREADY_OUT
    assert [r.txn_id for r in results] == ["txn-0001", "txn-0002", "txn-0003"]


def test_refusal_after_an_ambiguous_earlier_send_goes_to_review(outbox, store_clock):
    """Sent before (crash or timeout after sending): our own first send may be why it is refused."""
    loan = make_loan(1)
    outbox.append(loan)
    outbox.mark_sent(loan.txn_id)
    cat = ScriptedCatalogue(refuse={loan.item_id: Refusal.ALREADY_YOURS})
    worker_for(outbox, cat, store_clock, Results()).drain_once()
    assert [c.id for c in outbox.conflicts()] == [loan.txn_id]


def test_unavailable_stops_the_pass_and_retries_the_same_loan_first(outbox, store_clock):
    cat, results = ScriptedCatalogue(fail_next=2), Results()
    for i in range(3):
        outbox.append(make_loan(i))
    w = worker_for(outbox, cat, store_clock, results)
    first = w.drain_once()
    assert first.unavailable and first.remaining == 3 and "CatalogueUnavailable" in first.error
    assert w.drain_once().unavailable
    assert w.status.failures == 2
    done = w.drain_once()
    assert not done.unavailable and done.acknowledged == 3
    assert cat.calls == ["txn-0000", "txn-0000", "txn-0000", "txn-0001", "txn-0002"]   # never overtaken
    assert outbox.pending() == [] and w.status.failures == 0


def test_a_loan_that_keeps_crashing_the_backend_goes_to_review_not_blocking_the_rest(outbox, store_clock):
    class Flaky(ScriptedCatalogue):
        def checkout(self, loan):
            if loan.txn_id == "txn-0001":
                self.calls.append(loan.txn_id)
                raise TypeError("backend bug")
            return super().checkout(loan)

    cat, results = Flaky(), Results()
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))
    w = worker_for(outbox, cat, store_clock, results, max_errors=3)
    assert w.drain_once().unavailable and w.drain_once().unavailable
    assert outbox.conflicts() == []
    report = w.drain_once()
    assert report.conflicts == 1 and report.acknowledged == 1
    [c] = outbox.conflicts()
    assert c.id == "txn-0001" and c.result.refusal is Refusal.OTHER and "TypeError" in c.result.message
    assert c.reason == KIOSK_ERROR
    assert cat.calls == ["txn-0001"] * 3 + ["txn-0002"]


def test_a_failing_listener_does_not_stop_draining(outbox, store_clock):
    def boom(result):
        raise RuntimeError("screen gone")
    for i in range(2):
        outbox.append(make_loan(i))
    assert worker_for(outbox, ScriptedCatalogue(), store_clock, boom).drain_once().acknowledged == 2


# -- the patron withdraws a loan (left before the catalogue confirmed it) ----------------

class WithdrawnOnTheWire(ScriptedCatalogue):
    """The patron walks away while this checkout is on the wire (the UI thread's withdraw)."""

    def __init__(self, outbox, **kw):
        super().__init__(**kw)
        self.outbox = outbox

    def checkout(self, loan):
        self.outbox.withdraw(loan.txn_id)
        return super().checkout(loan)


def test_loan_withdrawn_before_sending_is_never_sent(outbox, store_clock):
    cat, results = ScriptedCatalogue(), Results()
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))
    outbox.withdraw("txn-0001")
    worker_for(outbox, cat, store_clock, results).drain_once()
    assert cat.calls == ["txn-0002"] and results.txns() == ["txn-0002"]


def test_loan_withdrawn_on_the_wire_and_lent_goes_to_staff(outbox, store_clock):
    cat, results = WithdrawnOnTheWire(outbox), Results()
    outbox.append(make_loan(1))
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert report.conflicts == 1 and outbox.pending() == []
    [c] = outbox.conflicts()
    assert c.reason == WITHDRAWN_BUT_LENT and c.result.ok


def test_loan_withdrawn_on_the_wire_and_refused_is_purged(outbox, store_clock):
    cat, results = WithdrawnOnTheWire(outbox, refuse={"I000001": Refusal.ON_HOLD}), Results()
    outbox.append(make_loan(1, offline=True))
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert report.refused == 1 and outbox.pending() == [] and outbox.conflicts() == []


def test_withdrawn_loan_whose_send_went_unanswered_is_not_resent(outbox, store_clock):
    cat, results = ScriptedCatalogue(fail_next=1), Results()
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))
    w = worker_for(outbox, cat, store_clock, results)
    assert w.drain_once().unavailable                 # sent, no answer
    outbox.withdraw("txn-0001")
    report = w.drain_once()
    assert cat.calls == ["txn-0001", "txn-0002"]      # txn-0001 never went out again
    assert report.conflicts == 1 and report.acknowledged == 1
    [c] = outbox.conflicts()
    assert c.id == "txn-0001" and c.reason == WITHDRAWN_UNANSWERED


# -- the background thread -------------------------------------------------------------

def test_backoff_progression_is_capped_and_resets_after_success(outbox, store_clock):
    cat, results, sleep = ScriptedCatalogue(fail_next=8), Results(), RecordingSleep()
    outbox.append(make_loan(1))
    w = worker_for(outbox, cat, store_clock, results, sleep=sleep, idle_poll=3600)
    w.start()
    try:
        assert wait_until(lambda: results.txns() == ["txn-0001"])
        assert sleep.delays == [1, 2, 5, 10, 30, 60, 60, 60]
        cat.fail_next = 2
        outbox.append(make_loan(2))
        w.notify()
        assert wait_until(lambda: results.txns() == ["txn-0001", "txn-0002"])
        assert sleep.delays[8:] == [1, 2]
    finally:
        w.stop(timeout=5)
    assert cat.calls == ["txn-0001"] * 9 + ["txn-0002"] * 3


def test_jitter_is_deterministic_with_a_seeded_rng(outbox, store_clock):
    def delays(seed):
        w = worker_for(outbox, ScriptedCatalogue(), store_clock, Results(), jitter=0.5, rng=random.Random(seed))
        out = []
        for _ in range(6):
            w._failed("x")
            out.append(w.next_delay())
        return out

    a = delays(7)
    assert a == delays(7) and a != delays(8)
    assert all(0.5 * base <= d <= 1.5 * base for d, base in zip(a, (1, 2, 5, 10, 30, 60)))


def test_notify_wakes_an_idle_worker_at_once(outbox, store_clock):
    cat, results = ScriptedCatalogue(), Results()
    w = worker_for(outbox, cat, store_clock, results, idle_poll=3600)
    w.start()
    try:
        assert wait_until(lambda: w.status.failures == 0)
        outbox.append(make_loan(1))
        w.notify()
        assert wait_until(lambda: results.txns() == ["txn-0001"], timeout=3)
    finally:
        w.stop(timeout=5)


def test_notify_cuts_a_long_backoff_short_and_the_same_loan_goes_first(outbox, store_clock):
    cat, results = ScriptedCatalogue(fail_next=1), Results()
    outbox.append(make_loan(1))
    w = worker_for(outbox, cat, store_clock, results, backoff=(3600,), idle_poll=3600)
    w.start()
    try:
        assert wait_until(lambda: w.status.failures == 1)
        assert w.status.next_retry_at is not None
        outbox.append(make_loan(2))
        w.notify()
        assert wait_until(lambda: results.txns() == ["txn-0001", "txn-0002"], timeout=3)
        assert w.status.next_retry_at is None
    finally:
        w.stop(timeout=5)
    assert cat.calls == ["txn-0001", "txn-0001", "txn-0002"]


def test_never_two_checkouts_at_once_and_each_acknowledged_once(outbox, store_clock):
    cat, results = ScriptedCatalogue(delay=0.01), Results()
    w = worker_for(outbox, cat, store_clock, results, idle_poll=3600)
    w.start()
    try:
        for i in range(30):
            outbox.append(make_loan(i))
            w.notify()
            if i % 5 == 0:
                w.drain_once()                     # `kiosk sync drain` racing the thread
        assert wait_until(lambda: len(results.txns()) == 30, timeout=10)
    finally:
        w.stop(timeout=5)
    assert cat.max_concurrent == 1
    assert results.txns() == [f"txn-{i:04d}" for i in range(30)]
    assert Counter(cat.calls) == Counter({f"txn-{i:04d}": 1 for i in range(30)})
    assert outbox.pending() == []


def test_stop_lets_the_loan_on_the_wire_finish_and_joins(outbox, store_clock):
    cat, results = ScriptedCatalogue(delay=0.2), Results()
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))
    w = worker_for(outbox, cat, store_clock, results, idle_poll=3600)
    w.start()
    assert wait_until(lambda: cat.in_checkout == 1)
    w.stop(timeout=5)
    assert results.txns() == ["txn-0001"]          # finished and recorded, then stopped
    assert [l.txn_id for l in outbox.pending()] == ["txn-0002"]
    assert not any(t.name == "outbox-worker" for t in threading.enumerate())


# -- restart ---------------------------------------------------------------------------

def test_restart_drains_the_rest_and_a_crashed_send_is_not_doubled(store_dir, store_key, store_clock):
    cat = ScriptedCatalogue()
    store = open_store(store_dir / "kiosk.db")
    outbox = Outbox(store, store_key, store_clock)
    loans = [make_loan(i) for i in range(6)]
    for loan in loans:
        outbox.append(loan)
    # Drain two, then "crash" in the middle of the third: sent, answered, never acknowledged.
    for loan in loans[:2]:
        outbox.mark_sent(loan.txn_id)
        outbox.acknowledge(loan.txn_id, cat.checkout(loan))
    outbox.mark_sent(loans[2].txn_id)
    cat.checkout(loans[2])
    store.close()

    with open_store(store_dir / "kiosk.db") as store2:
        outbox2 = Outbox(store2, store_key, store_clock)
        assert [l.txn_id for l in outbox2.pending()] == [l.txn_id for l in loans[2:]]
        assert outbox2.pending_entries()[0].sent_before
        results2 = Results()
        report = worker_for(outbox2, cat, store_clock, results2).drain_once()
        assert report.acknowledged == 4 and outbox2.pending() == []
    assert results2.txns() == [l.txn_id for l in loans[2:]]
    assert results2[0].replayed and not any(r.replayed for r in results2[1:])
    assert len(cat.charged) == 6                     # one loan per item at the catalogue


def test_restart_with_a_background_worker_drains_what_the_first_one_could_not(store_dir, store_key, store_clock):
    cat = ScriptedCatalogue(fail_next=10**6)         # catalogue down for the first run
    with open_store(store_dir / "kiosk.db") as store:
        outbox = Outbox(store, store_key, store_clock)
        for i in range(4):
            outbox.append(make_loan(i, offline=True))
        w = worker_for(outbox, cat, store_clock, Results(), sleep=RecordingSleep(), idle_poll=3600)
        w.start()
        assert wait_until(lambda: w.status.failures >= 3)
        w.stop(timeout=5)
    cat.fail_next = 0
    results = Results()
    with open_store(store_dir / "kiosk.db") as store:
        outbox = Outbox(store, store_key, store_clock)
        w = worker_for(outbox, cat, store_clock, results, idle_poll=3600)
        w.start()
        try:
            assert wait_until(lambda: len(results.txns()) == 4)
        finally:
            w.stop(timeout=5)
        assert outbox.pending() == []
    # the head loan was retried many times, the others only once, in order
    assert results.txns() == [f"txn-{i:04d}" for i in range(4)]
    assert Counter(c for c in cat.calls[-4:]) == Counter({f"txn-{i:04d}": 1 for i in range(4)})


# -- privacy -----------------------------------------------------------------------

def test_whole_pipeline_leaves_no_canary_on_disk(store_dir, store_key, store_clock):
    cat = ScriptedCatalogue(refuse={"I000001": Refusal.ON_HOLD}, title=CANARY_TITLE)
    results = Results()
    with open_store(store_dir / "kiosk.db") as store:
        outbox = Outbox(store, store_key, store_clock)
        loans = [make_loan(i, patron=CANARY_PATRON, offline=True) for i in range(3)]
        loans.append(replace(make_loan(9, patron=CANARY_PATRON), item_id=CANARY_ITEM))
        for loan in loans:
            outbox.append(loan)
        cat.fail_next = 1
        w = worker_for(outbox, cat, store_clock, results)
        w.drain_once()                                   # fails: everything still queued
        assert files_containing(store_dir, [CANARY_PATRON, CANARY_ITEM]) == []
        w.drain_once()                                   # one offline loan -> conflict, rest purged
        assert len(outbox.conflicts()) == 1
        assert CANARY_TITLE in [r.title for r in results]  # the title did pass through the kiosk
        LinkCache(store, store_key, store_clock, 30).put(CANARY_CERT, CANARY_PATRON)
        Audit(store, store_clock).record("staff", "drain", acknowledged=3)
    assert files_containing(store_dir, [CANARY_PATRON, CANARY_ITEM, CANARY_TITLE, CANARY_CERT]) == []


def test_logs_carry_no_patron_or_item_data_even_from_exception_text(outbox, store_clock, caplog):
    class Chatty(ScriptedCatalogue):
        def checkout(self, loan):
            if self.fail_next:
                self.fail_next -= 1
                raise CatalogueUnavailable(f"odd reply for patron {loan.patron_id} item {loan.item_id}")
            if loan.txn_id == "txn-0002":
                raise KeyError(loan.patron_id)
            return super().checkout(loan)

    def listener(result):
        raise RuntimeError(f"screen choked on {result.title}")

    outbox.append(replace(make_loan(1, patron=CANARY_PATRON), item_id=CANARY_ITEM))
    outbox.append(make_loan(2, patron=CANARY_PATRON))
    w = worker_for(outbox, Chatty(fail_next=1, title=CANARY_TITLE), store_clock, listener, max_errors=1)
    with caplog.at_level("DEBUG"):
        assert w.drain_once().unavailable
        assert CANARY_PATRON in w.status.last_error           # kept in memory for staff ...
        w.drain_once()
    assert outbox.pending() == []
    assert "CatalogueUnavailable" in caplog.text and "KeyError" in caplog.text
    for canary in (CANARY_PATRON, CANARY_ITEM, CANARY_TITLE):
        assert canary not in caplog.text                        # ... but never logged


# -- a backlog drains with few durable writes --------------------------------------------

def test_bookkeeping_is_two_writes_per_window_not_two_per_loan(outbox, store_clock):
    for n in range(1, 101):
        outbox.append(make_loan(n))
    commits = count_commits(outbox._store)
    cat, results = ScriptedCatalogue(), Results()
    report = worker_for(outbox, cat, store_clock, results, window=25).drain_once()
    assert report.acknowledged == 100 and outbox.stats().pending == 0
    assert cat.calls == [f"txn-{n:04d}" for n in range(1, 101)]       # still strictly in order
    assert len(commits) <= 2 * 4 + 1                                    # 4 windows: mark + settle


def test_loan_withdrawn_while_waiting_in_the_window_is_never_sent(outbox, store_clock):
    outbox.append(make_loan(1))
    outbox.append(make_loan(2))

    class WithdrawDuringFirst(ScriptedCatalogue):
        def checkout(self, loan):
            if loan.txn_id == "txn-0001":
                outbox.withdraw("txn-0002")             # the patron walks away meanwhile
            return super().checkout(loan)

    cat, results = WithdrawDuringFirst(), Results()
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    assert cat.calls == ["txn-0001"] and report.acknowledged == 1
    assert outbox.stats().pending == 0 and outbox.conflicts() == []


def test_catalogue_failing_mid_window_requeues_what_never_went_out(outbox, store_clock):
    for n in range(1, 4):
        outbox.append(make_loan(n))

    class FailSecond(ScriptedCatalogue):
        def checkout(self, loan):
            if loan.txn_id == "txn-0002" and not getattr(self, "failed", False):
                self.failed = True
                self.calls.append(loan.txn_id)
                raise CatalogueUnavailable("down")
            return super().checkout(loan)

    cat, results = FailSecond(), Results()
    assert worker_for(outbox, cat, store_clock, results).drain_once().unavailable
    entries = {e.loan.txn_id: e for e in outbox.pending_entries()}
    assert entries["txn-0002"].sent_before                  # on the wire, unanswered
    assert not entries["txn-0003"].sent_before              # never went out: queued again


def test_a_big_backlog_drains_in_bigger_windows_and_stays_in_order(outbox, store_clock):
    """Every durable write rewrites the whole store: after an outage the backlog goes out
    an eighth at a time (capped), not `window` loans at a time."""
    for n in range(1, 401):
        outbox.append(make_loan(n))
    commits = count_commits(outbox._store)
    cat = ScriptedCatalogue()
    report = worker_for(outbox, cat, store_clock, Results(), window=8, max_window=40).drain_once()
    assert report.acknowledged == 400 and outbox.count() == 0
    assert cat.calls == [f"txn-{n:04d}" for n in range(1, 401)]
    # windows of 40 while 320+ wait, shrinking to 8: far fewer than 2 writes per 8 loans ...
    assert len(commits) <= 2 * 26 + 1 < 2 * 400 // 8
    # ... and never more than max_window loans marked in flight at once
    assert len(commits) >= 2 * 400 // 40


class BatchingCatalogue(ScriptedCatalogue):
    """A ScriptedCatalogue that also takes batches; `poison` items make a whole batch raise."""

    checkout_batch_size = 10

    def __init__(self, poison=(), **kw):
        super().__init__(**kw)
        self.poison = set(poison)
        self.batches: list[list[str]] = []

    def checkout(self, loan):
        if loan.item_id in self.poison:
            self.calls.append(loan.txn_id)
            raise KeyError("kiosk bug")
        return super().checkout(loan)

    def checkout_many(self, loans):
        self.batches.append([l.txn_id for l in loans])
        if any(l.item_id in self.poison for l in loans):
            raise KeyError("kiosk bug")
        return [super(BatchingCatalogue, self).checkout(l) for l in loans]


def test_backends_that_take_batches_get_the_queue_in_ordered_batches(outbox, store_clock):
    for n in range(1, 26):
        outbox.append(make_loan(n))
    cat, results = BatchingCatalogue(), Results()
    report = worker_for(outbox, cat, store_clock, results).drain_once()
    txns = [f"txn-{n:04d}" for n in range(1, 26)]
    assert cat.batches == [txns[:10], txns[10:20], txns[20:]]
    assert results.txns() == txns and report.acknowledged == 25 and outbox.count() == 0


def test_a_batch_that_breaks_is_sent_again_one_by_one_and_the_culprit_goes_to_staff(outbox, store_clock):
    for n in range(1, 13):
        outbox.append(make_loan(n))
    cat, results = BatchingCatalogue(poison={"I000004"}), Results()
    worker = worker_for(outbox, cat, store_clock, results, max_errors=2)
    first = worker.drain_once()
    assert first.unavailable and [r.txn_id for r in results] == ["txn-0001", "txn-0002", "txn-0003"]
    second = worker.drain_once()                  # second error on the same loan: staff review
    assert not second.unavailable and outbox.count() == 0
    assert [c.id for c in outbox.conflicts()] == ["txn-0004"]
    assert [r.txn_id for r in results if r.ok] == [f"txn-{n:04d}" for n in range(1, 13) if n != 4]
    assert len(cat.charged) == 11                                         # nothing lent twice


def test_withdrawn_loan_in_a_waiting_batch_is_left_out(outbox, store_clock):
    for n in range(1, 16):
        outbox.append(make_loan(n))

    class WithdrawDuringFirstBatch(BatchingCatalogue):
        def checkout_many(self, loans):
            if not self.batches:
                outbox.withdraw("txn-0012")      # the patron of loan 12 walks away meanwhile
            return super().checkout_many(loans)

    cat = WithdrawDuringFirstBatch()
    report = worker_for(outbox, cat, store_clock, Results()).drain_once()
    assert cat.batches[1] == [f"txn-{n:04d}" for n in range(11, 16) if n != 12]
    assert report.acknowledged == 14 and outbox.count() == 0 and outbox.conflicts() == []


# -- against the real REST catalogue server -----------------------------------------------

def test_rest_backlog_drains_in_batches_exactly_once_through_a_lost_answer(
        outbox, store_clock, make_rest_server, rest_tls):
    from kiosk_testing.rest_server import ITEMS_FREE, PATRON_OK, RestLibrary, fast_catalogue, lost_answer

    library = RestLibrary.seeded()
    server = make_rest_server(library)
    # 50 loans a request, each checked by the server's openapi-core: give a busy CI machine time.
    catalogue = fast_catalogue(server, rest_tls, retries=0, timeout=10.0)
    loans = [replace(make_loan(n), patron_id=PATRON_OK, item_id=item) for n, item in enumerate(ITEMS_FREE[:70], 1)]
    for loan in loans:
        outbox.append(loan)
    server.inject(lost_answer(path="/loans"))            # the first batch is lent, its answer lost
    results = Results()
    worker = worker_for(outbox, catalogue, store_clock, results)
    try:
        assert worker.drain_once().unavailable
        assert sum(e.sent_before for e in outbox.pending_entries()) == 50
        report = worker.drain_once()
    finally:
        catalogue.close()
    assert report.acknowledged == 70 and outbox.count() == 0 and outbox.conflicts() == []
    assert [key for key, _, _ in library.lent] == [l.txn_id for l in loans]          # once each, in order
    assert sum(r.replayed for r in results) == 50
    assert server.count("/loans") == 1 + 2                 # lost batch, its replay + the other 20


# -- against a real SIP2 ACS that says when it takes checkouts -----------------------------

@pytest.fixture
def held_acs(sip2_library):
    """The Koha-quirks ACS on loopback, reporting 'checkout not allowed' in its 98 until told."""
    from kiosk_testing.sip2_server import KohaQuirksAcs

    acs = KohaQuirksAcs(sip2_library)
    acs.checkout_ok = False
    yield acs
    acs.stop()


def sip2_catalogue_for(acs):
    from kiosk.sync.sip2_backend import Sip2Catalogue
    from kiosk.sync.sip2_client import Sip2Client
    from kiosk_testing.sip2_server import INSTITUTION, TERMINAL_PASSWORD, sip2_config

    client = Sip2Client(sip2_config(acs.host, acs.port), sleep=lambda s: None)
    return Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD)


def sip2_loans(outbox):
    from kiosk_testing.sip2_server import ITEM_NEKO, ITEM_NFD, ITEM_SNOW, PATRON_OK

    loans = [replace(make_loan(n), patron_id=PATRON_OK, item_id=item)
             for n, item in enumerate((ITEM_NEKO, ITEM_SNOW, ITEM_NFD), 1)]
    for loan in loans:
        outbox.append(loan)
    return loans


def test_checkouts_wait_while_the_acs_says_checkout_not_allowed_then_go_exactly_once(
        outbox, store_clock, held_acs, sip2_library, kiosk_store, store_dir):
    """98 'checkout ok' = N: every 11 would be refused and the refusal purged as if the patron
    could not borrow. The queue holds (nothing sent, nothing marked in flight), staff see
    why, the worker backs off and asks again; once allowed, each loan goes exactly once."""
    from kiosk.shell.staff_backend import StaffBackend
    from kiosk.sync.sip2_backend import HOLD_CHECKOUT_NOT_ALLOWED

    loans = sip2_loans(outbox)
    catalogue = sip2_catalogue_for(held_acs)
    results = Results()
    worker = worker_for(outbox, catalogue, store_clock, results)
    staff = StaffBackend(kiosk_store, outbox, Audit(kiosk_store, store_clock), store_dir, wall=store_clock,
                         config_version=lambda: "site", worker_status=lambda: worker.status)
    try:
        for attempt in (1, 2, 3):
            report = worker.drain_once()
            assert report.unavailable and report.held and report.acknowledged == 0 and report.remaining == 3
            assert worker.status.failures == attempt and worker.status.held == HOLD_CHECKOUT_NOT_ALLOWED
        assert "11" not in sip2_library.requests and sip2_library.checkouts == []          # nothing sent
        assert sip2_library.requests.count("99") >= 3                                        # asked each time
        assert not any(e.sent_before for e in outbox.pending_entries()) and results == []
        assert worker.next_delay() == 5                               # the backoff grows: (1, 2, 5, ...)
        assert worker.status.last_error.startswith("CheckoutsHeld")
        shown = staff.status()
        assert shown["catalogue"] == "failing (3)" and shown["catalogue_error"] == "held"
        assert shown["outbox_pending"] == 3

        held_acs.checkout_ok = True                                    # the library opens circulation
        report = worker.drain_once()
    finally:
        catalogue.close()
    assert not report.unavailable and not report.held and report.acknowledged == 3
    assert [(c["item"], c["outcome"]) for c in sip2_library.checkouts] == [(l.item_id, "loan") for l in loans]
    assert outbox.count() == 0 and outbox.conflicts() == [] and all(r.ok for r in results)
    assert worker.status.failures == 0 and worker.status.held == "" and staff.status()["catalogue"] == "ok"


def test_acs_off_line_holds_the_queue_too(outbox, store_clock, held_acs, sip2_library):
    from kiosk.sync.sip2_backend import HOLD_OFFLINE

    held_acs.checkout_ok, held_acs.online = True, False
    sip2_loans(outbox)
    catalogue = sip2_catalogue_for(held_acs)
    worker = worker_for(outbox, catalogue, store_clock, Results())
    try:
        report = worker.drain_once()
        assert report.held and worker.status.held == HOLD_OFFLINE and "11" not in sip2_library.requests
        held_acs.online = True
        assert worker.drain_once().acknowledged == 3
    finally:
        catalogue.close()
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan"] * 3


def test_background_worker_holds_backs_off_and_sends_once_allowed(outbox, store_clock, held_acs, sip2_library):
    sip2_loans(outbox)
    catalogue = sip2_catalogue_for(held_acs)
    worker = worker_for(outbox, catalogue, store_clock, Results(), backoff=(0.05, 0.1, 0.2))
    worker.start()
    try:
        assert wait_until(lambda: worker.status.failures >= 3)       # asked again and again, with backoff
        assert worker.status.held and worker.status.next_retry_at is not None
        assert "11" not in sip2_library.requests
        held_acs.checkout_ok = True
        assert wait_until(lambda: outbox.count() == 0)
    finally:
        worker.stop(5)
        catalogue.close()
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan"] * 3
    assert worker.status.held == ""
