"""Background sender that drains the outbox into the catalogue, strictly in queue order.

Order matters (3M store-and-forward hazards, sip2.md §6): a later loan must never
overtake an earlier one, so on any failure the worker waits and retries the SAME
loan. A backend with `checkout_many` (REST) gets the queue in ordered batches. Each loan is marked in flight before it is sent, so after a crash the replay
is known to be ambiguous; the catalogue recognises a replay by txn_id.

Decisions per answer (made atomically by `Outbox.settle`):
- accepted                                  -> purge
- refused, online loan, first send          -> purge; the refusal is reported
- refused, offline loan                     -> conflict (staff review)
- refused after an earlier ambiguous send   -> conflict: our own first send may be
                                               why it is refused now
- accepted, but the patron withdrew it      -> conflict (lent, yet never confirmed)
- refused, and the patron withdrew it       -> purge (nothing was lent)
- CatalogueUnavailable                      -> back off, retry the same loan
- the catalogue says it takes no checkouts  -> hold: nothing is sent, the worker backs
  (CheckoutGate.checkout_hold, e.g. SIP2       off and asks again; staff see it in
  98 "checkout not allowed" or off-line)       `status` (held, reason "held")
- any other exception from the backend      -> back off; after `max_errors` in a
                                               row the loan goes to conflicts so one
                                               poisoned loan cannot block the queue
A withdrawn loan whose send was never answered is not sent again: it goes to staff.
Returns (kind CHECKIN) share the queue: "not on loan" after an earlier send is our own
first send's work (done, replayed); an offline return the catalogue refuses goes to staff.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable, Sequence, cast

from kiosk.core.catalogue import (
    CHECKIN,
    BatchCheckout,
    Catalogue,
    CatalogueUnavailable,
    CheckoutGate,
    CheckoutsHeld,
    LoanRequest,
    LoanResult,
    Outage,
    Refusal,
)
from kiosk.store.outbox import KIOSK_ERROR, WITHDRAWN_UNANSWERED, Outbox, PendingLoan
from kiosk.store.outbox import WITHDRAWN as WITHDRAWN_STATE
from kiosk.sync.outage import outage_of
from kiosk.worker_thread import WorkerThread

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainReport:
    acknowledged: int = 0       # accepted by the catalogue and purged
    refused: int = 0            # online loans refused, acknowledged with ok=False
    conflicts: int = 0          # moved to the review list
    remaining: int = 0          # still queued when the pass ended
    unavailable: bool = False   # the pass stopped because the catalogue did not answer
    error: str = ""             # why, when unavailable (exception type and text, no loan data)
    held: bool = False          # ... or because it said it takes no checkouts now (nothing was sent)


@dataclass(frozen=True)
class WorkerStatus:
    failures: int                   # consecutive failed attempts on the head loan
    next_retry_at: datetime | None
    last_error: str                 # exception type and text: may quote a reply, never shown to staff
    held: str = ""                  # why the catalogue takes no checkouts now ("" = not held)
    reason: str = ""                # last_error as an Outage code for staff and metrics ("" = none)


def _replayed_return(entry: PendingLoan, result: LoanResult) -> LoanResult:
    """A return sent before (the answer was lost, or the kiosk died) that the catalogue now
    calls "not on loan" was checked in by that first send: it is done, not refused."""
    if (entry.loan.kind == CHECKIN and entry.sent_before and not result.ok
            and result.refusal == Refusal.NOT_ON_LOAN):
        return replace(result, ok=True, refusal=None, replayed=True)
    return result


def _refusal_needs_staff(entry: PendingLoan, result: LoanResult) -> bool:
    """A loan refused on replay or lent offline needs staff (the patron has the book);
    a return only when it was taken offline (the book is back, the catalogue disagrees)."""
    if entry.loan.kind == CHECKIN:
        return entry.loan.offline
    return entry.loan.offline or entry.sent_before


class OutboxWorker(WorkerThread):
    """Sends queued loans in queue order (batched where the backend takes batches). `on_result` runs on the worker thread, after the
    outbox has durably recorded the outcome; it gets every result (accepted, refused,
    conflict) and must hop to the UI thread itself."""

    thread_name = "outbox-worker"

    def __init__(
        self,
        outbox: Outbox,
        catalogue: Catalogue,
        clock: Callable[[], datetime],
        on_result: Callable[[LoanResult], None],
        backoff: Sequence[float] = (1, 2, 5, 10, 30, 60),
        sleep: Callable[[float], object] | None = None,
        *,
        idle_poll: float = 60.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        max_errors: int = 5,
        window: int = 32,
        max_window: int = 512,
    ) -> None:
        super().__init__()
        if not backoff:
            raise ValueError("backoff needs at least one delay")
        self._outbox = outbox
        self._catalogue = catalogue
        self._clock = clock
        self._on_result = on_result
        self._backoff = tuple(backoff)
        self._sleep = sleep                 # None: wait on the wake event (notify/stop cut it short)
        self._idle_poll = idle_poll
        self._jitter = jitter
        self._rng = rng or random.Random()
        self._max_errors = max_errors
        self._window = max(1, window)        # loans per pair of durable bookkeeping writes
        self._max_window = max(self._window, max_window)

        self._send_lock = threading.Lock()  # one sender at a time, thread or drain_once
        self._wake_up = threading.Event()
        self._failures = 0
        self._errors: dict[str, int] = {}   # txn_id -> unexpected backend errors in a row
        self._next_retry_at: datetime | None = None
        self._last_error = ""
        self._reason: Outage | None = None
        self._held = ""

    # -- control -------------------------------------------------------------

    def start(self) -> None:
        self._start_thread()

    def notify(self) -> None:
        """A loan was appended (or staff asked for a retry): go now, skipping any wait."""
        self._wake_up.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the loan on the wire (if any) is recorded; joins the thread. False when
        it was still sending after `timeout` seconds (the caller must not close the store)."""
        return self._stop_thread(timeout)

    def _wake(self) -> None:
        self._wake_up.set()

    @property
    def status(self) -> WorkerStatus:
        return WorkerStatus(self._failures, self._next_retry_at, self._last_error, self._held,
                            self._reason.value if self._reason else "")

    # -- draining ------------------------------------------------------------

    def drain_once(self) -> DrainReport:
        """One synchronous pass: send loans in order until the queue is empty or the
        catalogue fails. Never waits; safe to call while the thread runs."""
        with self._send_lock:
            return self._drain(lambda: False)

    def _drain(self, should_stop: Callable[[], bool]) -> DrainReport:
        counts: Counter[str] = Counter()
        while not should_stop():
            window = self._outbox.head(self._window_size())
            if not window:
                break
            if not self._may_send():
                return DrainReport(counts["accepted"], counts["refused"], counts["conflict"],
                                   self._outbox.stats().pending, True, self._last_error, bool(self._held))
            if not self._drain_window(window, counts, should_stop):
                return DrainReport(counts["accepted"], counts["refused"], counts["conflict"],
                                   self._outbox.stats().pending, True, self._last_error)
        return DrainReport(counts["accepted"], counts["refused"], counts["conflict"],
                           self._outbox.stats().pending)

    def _may_send(self) -> bool:
        """Ask a backend that can say so (CheckoutGate) whether it takes checkouts now.

        Asked before every window, before anything is marked in flight: a held loan was
        never sent, so it stays an ordinary first send. Held, unreachable or broken, the
        answer counts as a failure, so the worker backs off and asks again.
        """
        if not callable(getattr(self._catalogue, "checkout_hold", None)):
            return True
        gate = cast(CheckoutGate, self._catalogue)
        try:
            reason = gate.checkout_hold()
        except CheckoutsHeld as exc:
            reason = str(exc) or "held"
        except CatalogueUnavailable as exc:
            self._failed(f"{type(exc).__name__}: {exc}", outage_of(exc))
            return False
        except Exception as exc:  # a backend bug must not kill the worker; hold rather than guess
            _log.error("outbox: checkout status check failed: %s", type(exc).__name__)
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        if reason:
            if not self._held:
                _log.warning("outbox: catalogue takes no checkouts now; holding the queue")
            self._held = reason
            self._failed(f"{CheckoutsHeld.__name__}: {reason}", Outage.HELD)
            return False
        if self._held:
            _log.info("outbox: catalogue takes checkouts again; sending the queue")
        self._held = ""
        return True

    def _window_size(self) -> int:
        """Loans per pair of durable writes. Each write rewrites the whole store, so a big
        backlog (after an outage) drains in bigger windows, an eighth of it at a time: the
        drain stays near-linear. Normal traffic (a loan or two) is unaffected. A window
        holds whole batches of a backend that takes batches."""
        batch = self._batch_size()
        size = min(self._max_window, max(self._window, self._outbox.count() // 8))
        return max(batch, size // batch * batch)

    def _batch_size(self) -> int:
        return max(1, int(getattr(self._catalogue, "checkout_batch_size", 1)))

    def _drain_window(self, window: list[PendingLoan], counts: Counter[str],
                      should_stop: Callable[[], bool]) -> bool:
        """Send a window of loans in order with two durable writes in all: every loan is
        marked in flight before any goes out, and every answer is settled together after.
        A crash between the two only means loans are sent again, which the catalogue
        recognises (idempotency key / SIP2 renewal of the same loan). False: the
        catalogue failed; what was not sent is queued again."""
        sendable: list[PendingLoan] = []
        with self._outbox.batch():
            marked = self._outbox.mark_sent_many([e.loan.txn_id for e in window if not e.withdrawn])
            for entry in window:
                ok = False if entry.withdrawn else marked[entry.loan.txn_id]
                if ok:
                    sendable.append(entry)
                elif ok is None:
                    counts["skipped"] += 1       # withdrawn before it was ever sent: nothing to do
                else:
                    counts[self._withdrawn_to_staff(entry.loan)] += 1
        answers, unsent, healthy = self._send(sendable, counts, should_stop)
        answers = [(e, _replayed_return(e, r)) for e, r in answers]
        with self._outbox.batch():
            outcomes = self._outbox.settle_many(
                [(e.loan.txn_id, r, _refusal_needs_staff(e, r)) for e, r in answers])
            self._outbox.unmark_many([e.loan.txn_id for e in unsent])
        for (entry, result), outcome in zip(answers, outcomes):
            _log.info("outbox: txn %s -> %s", entry.loan.txn_id, outcome)
            counts[outcome] += 1
            self._answered(entry.loan.txn_id)
            self._report(result)             # only once the answer is on disk
        return healthy

    def _send(self, sendable: list[PendingLoan], counts: Counter[str], should_stop: Callable[[], bool],
              ) -> tuple[list[tuple[PendingLoan, LoanResult]], list[PendingLoan], bool]:
        """Put the marked loans on the wire in order, `checkout_batch_size` per round trip
        where the backend takes batches (REST), else one by one (SIP2).

        Returns (answers, loans never sent, healthy). A group that failed in transit
        stays in flight; a batch that raised something unexpected is sent again one
        loan at a time, so the loan that breaks it is found and cannot block the queue.
        """
        answers: list[tuple[PendingLoan, LoanResult]] = []
        size = self._batch_size()
        pos = 0
        while pos < len(sendable):
            if should_stop():
                return answers, sendable[pos:], True
            group = sendable[pos:pos + size]
            chunk = self._still_wanted(group)
            try:
                results = self._checkout([e.loan for e in chunk], batched=size > 1) if chunk else []
            except CatalogueUnavailable as exc:
                self._failed(f"CatalogueUnavailable: {exc}", outage_of(exc))
                return answers, sendable[pos + len(group):], False    # the group was on the wire
            except Exception as exc:  # a backend bug must not kill the worker or lose the loan
                if size > 1:
                    size = 1                     # this group again, one by one
                    continue
                loan = chunk[0].loan
                _log.error("outbox: backend error %s on txn %s", type(exc).__name__, loan.txn_id)
                errors = self._errors.get(loan.txn_id, 0) + 1
                self._errors[loan.txn_id] = errors
                if errors < self._max_errors:
                    self._failed(f"{type(exc).__name__}: {exc}")
                    return answers, sendable[pos + 1:], False
                counts[self._to_staff(loan, KIOSK_ERROR, f"kiosk error: {type(exc).__name__}")] += 1
                pos += 1
                continue
            answers.extend(zip(chunk, results))
            pos += len(group)
        return answers, [], True

    def _still_wanted(self, group: list[PendingLoan]) -> list[PendingLoan]:
        """Drop loans the patron withdrew while they waited in the window, never sent:
        nothing was lent, so they are forgotten."""
        states = self._outbox.states([e.loan.txn_id for e in group])
        forget = [e.loan.txn_id for e in group if states[e.loan.txn_id] == WITHDRAWN_STATE and not e.sent_before]
        if forget:
            self._outbox.forget_unsent_many(forget)
        return [e for e in group if states[e.loan.txn_id] is not None and e.loan.txn_id not in forget]

    def _checkout(self, loans: list[LoanRequest], *, batched: bool) -> list[LoanResult]:
        if batched and not any(loan.kind == CHECKIN for loan in loans):
            batch_catalogue: BatchCheckout = self._catalogue  # type: ignore[assignment]
            results = list(batch_catalogue.checkout_many(loans))
        else:
            results = [self._catalogue.checkin(loan) if loan.kind == CHECKIN else self._catalogue.checkout(loan)
                       for loan in loans]
        answered = [r.txn_id for r in results]
        asked = [loan.txn_id for loan in loans]
        if answered != asked:
            raise ValueError(f"catalogue answered txns {answered!r} for {asked!r}")
        return results

    def _withdrawn_to_staff(self, loan: LoanRequest) -> str:
        return self._to_staff(loan, WITHDRAWN_UNANSWERED, "patron left before the catalogue answered; "
                              "check whether it was lent")

    def _to_staff(self, loan: LoanRequest, reason: str, message: str) -> str:
        result = LoanResult(txn_id=loan.txn_id, ok=False, item_id=loan.item_id,
                            refusal=Refusal.OTHER, message=message)
        self._outbox.conflict(loan.txn_id, result, reason)
        _log.info("outbox: txn %s -> review (%s)", loan.txn_id, reason)
        self._errors.pop(loan.txn_id, None)
        self._report(result)
        return "conflict"

    def _failed(self, error: str, reason: Outage = Outage.OTHER) -> None:
        # Exception text may quote catalogue replies (patron ids): it stays in memory for
        # `status`/`drain_once`, the log gets only its type; staff see only `reason`.
        self._failures += 1
        self._last_error = error
        self._reason = reason
        _log.warning("outbox: catalogue attempt %d failed: %s (%s)", self._failures, error.split(":", 1)[0],
                     reason.value)

    def _answered(self, txn_id: str) -> None:
        self._failures = 0
        self._next_retry_at = None
        self._last_error = ""
        self._reason = None
        self._errors.pop(txn_id, None)

    def _report(self, result: LoanResult) -> None:
        try:
            self._on_result(result)
        except Exception as exc:
            _log.error("outbox: on_result listener failed: %s", type(exc).__name__)

    # -- thread --------------------------------------------------------------

    def next_delay(self) -> float:
        """Seconds to wait after the current run of failures (capped at the last step)."""
        step = self._backoff[min(max(self._failures, 1), len(self._backoff)) - 1]
        if self._jitter:
            step *= self._rng.uniform(1 - self._jitter, 1 + self._jitter)
        return max(0.0, float(step))

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._wake_up.clear()          # before the pass: a notify() during it is not lost
            try:
                with self._send_lock:
                    report = self._drain(self.stopping.is_set)
            except Exception as exc:    # e.g. the store failed: keep the loans, retry later
                _log.error("outbox: drain failed: %s", type(exc).__name__)
                self._failed(f"store error: {type(exc).__name__}")
                report = DrainReport(unavailable=True)
            if self.stopping.is_set():
                break
            if report.unavailable:
                delay = self.next_delay()
                self._next_retry_at = self._clock() + timedelta(seconds=delay)
                if self._sleep is not None:
                    self._sleep(delay)
                else:
                    self._wake_up.wait(delay)
            else:
                self._wake_up.wait(self._idle_poll)
