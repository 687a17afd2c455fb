"""Background sender that drains the outbox into the catalogue, strictly in queue order.

Order matters (3M store-and-forward hazards, sip2.md §6): a later loan must never
overtake an earlier one, so on any failure the worker waits and retries the SAME
loan. Each loan is marked in flight before it is sent, so after a crash the replay
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
- any other exception from the backend      -> back off; after `max_errors` in a
                                               row the loan goes to conflicts so one
                                               poisoned loan cannot block the queue
A withdrawn loan whose send was never answered is not sent again: it goes to staff.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Sequence

from kiosk.catalogue import Catalogue, CatalogueUnavailable, LoanRequest, LoanResult, Refusal
from kiosk.outbox import KIOSK_ERROR, WITHDRAWN as WITHDRAWN_STATE, WITHDRAWN_UNANSWERED, Outbox, PendingLoan

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainReport:
    acknowledged: int = 0       # accepted by the catalogue and purged
    refused: int = 0            # online loans refused, acknowledged with ok=False
    conflicts: int = 0          # moved to the review list
    remaining: int = 0          # still queued when the pass ended
    unavailable: bool = False   # the pass stopped because the catalogue did not answer
    error: str = ""             # why, when unavailable (exception type and text, no loan data)


@dataclass(frozen=True)
class WorkerStatus:
    failures: int                   # consecutive failed attempts on the head loan
    next_retry_at: datetime | None
    last_error: str


class OutboxWorker:
    """Sends queued loans one at a time. `on_result` runs on the worker thread, after the
    outbox has durably recorded the outcome; it gets every result (accepted, refused,
    conflict) and must hop to the UI thread itself."""

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
    ) -> None:
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

        self._send_lock = threading.Lock()  # one loan on the wire at a time, thread or drain_once
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._errors: dict[str, int] = {}   # txn_id -> unexpected backend errors in a row
        self._next_retry_at: datetime | None = None
        self._last_error = ""

    # -- control -------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("worker already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A loan was appended (or staff asked for a retry): go now, skipping any wait."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the loan on the wire (if any) is recorded; joins the thread."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def status(self) -> WorkerStatus:
        return WorkerStatus(self._failures, self._next_retry_at, self._last_error)

    # -- draining ------------------------------------------------------------

    def drain_once(self) -> DrainReport:
        """One synchronous pass: send loans in order until the queue is empty or the
        catalogue fails. Never waits; safe to call while the thread runs."""
        with self._send_lock:
            return self._drain(lambda: False)

    def _drain(self, should_stop: Callable[[], bool]) -> DrainReport:
        counts: Counter[str] = Counter()
        while not should_stop():
            window = self._outbox.head(self._window)
            if not window:
                break
            if not self._drain_window(window, counts, should_stop):
                return DrainReport(counts["accepted"], counts["refused"], counts["conflict"],
                                   self._outbox.stats().pending, True, self._last_error)
        return DrainReport(counts["accepted"], counts["refused"], counts["conflict"],
                           self._outbox.stats().pending)

    def _drain_window(self, window: list[PendingLoan], counts: Counter[str],
                      should_stop: Callable[[], bool]) -> bool:
        """Send a window of loans in order with two durable writes in all: every loan is
        marked in flight before any goes out, and every answer is settled together after.
        A crash between the two only means loans are sent again, which the catalogue
        recognises (idempotency key / SIP2 renewal of the same loan). False: the
        catalogue failed; what was not sent is queued again."""
        sendable: list[PendingLoan] = []
        with self._outbox.batch():
            for entry in window:
                if entry.withdrawn:
                    counts[self._withdrawn_to_staff(entry.loan)] += 1
                    continue
                try:
                    if self._outbox.mark_sent(entry.loan.txn_id):
                        sendable.append(entry)
                    else:
                        counts[self._withdrawn_to_staff(entry.loan)] += 1
                except KeyError:
                    counts["skipped"] += 1       # withdrawn before it was ever sent: nothing to do
        answers: list[tuple[PendingLoan, LoanResult]] = []
        unsent: list[PendingLoan] = []
        healthy = True
        for n, entry in enumerate(sendable):
            loan = entry.loan
            if should_stop():
                unsent = sendable[n:]
                break
            if self._outbox.state(loan.txn_id) == WITHDRAWN_STATE and not entry.sent_before:
                self._outbox.forget_unsent(loan.txn_id)      # the patron left; it never went out
                continue
            try:
                result = self._catalogue.checkout(loan)
                if result.txn_id != loan.txn_id:
                    raise ValueError(f"catalogue answered txn {result.txn_id!r} for {loan.txn_id!r}")
            except CatalogueUnavailable as exc:
                self._failed(f"CatalogueUnavailable: {exc}")
                unsent, healthy = sendable[n + 1:], False     # this one was on the wire: stays in flight
                break
            except Exception as exc:  # a backend bug must not kill the worker or lose the loan
                _log.error("outbox: backend error %s on txn %s", type(exc).__name__, loan.txn_id)
                errors = self._errors.get(loan.txn_id, 0) + 1
                self._errors[loan.txn_id] = errors
                if errors < self._max_errors:
                    self._failed(f"{type(exc).__name__}: {exc}")
                    unsent, healthy = sendable[n + 1:], False
                    break
                counts[self._to_staff(loan, KIOSK_ERROR, f"kiosk error: {type(exc).__name__}")] += 1
                continue
            answers.append((entry, result))
        with self._outbox.batch():
            outcomes = [self._outbox.settle(e.loan.txn_id, r, refused_is_conflict=e.loan.offline or e.sent_before)
                        for e, r in answers]
            for entry in unsent:
                self._outbox.unmark(entry.loan.txn_id)
        for (entry, result), outcome in zip(answers, outcomes):
            _log.info("outbox: txn %s -> %s", entry.loan.txn_id, outcome)
            counts[outcome] += 1
            self._answered(entry.loan.txn_id)
            self._report(result)             # only once the answer is on disk
        return healthy

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

    def _failed(self, error: str) -> None:
        # Exception text may quote catalogue replies (patron ids): it stays in memory for
        # `status`/`drain_once`, the log gets only its type.
        self._failures += 1
        self._last_error = error
        _log.warning("outbox: catalogue attempt %d failed: %s", self._failures, error.split(":", 1)[0])

    def _answered(self, txn_id: str) -> None:
        self._failures = 0
        self._next_retry_at = None
        self._last_error = ""
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
        while not self._stopping.is_set():
            self._wake.clear()          # before the pass: a notify() during it is not lost
            try:
                with self._send_lock:
                    report = self._drain(self._stopping.is_set)
            except Exception as exc:    # e.g. the store failed: keep the loans, retry later
                _log.error("outbox: drain failed: %s", type(exc).__name__)
                self._failed(f"store error: {type(exc).__name__}")
                report = DrainReport(unavailable=True)
            if self._stopping.is_set():
                break
            if report.unavailable:
                delay = self.next_delay()
                self._next_retry_at = self._clock() + timedelta(seconds=delay)
                if self._sleep is not None:
                    self._sleep(delay)
                else:
                    self._wake.wait(delay)
            else:
                self._wake.wait(self._idle_poll)
