"""What the staff menu does to the rest of the kiosk: audit, status, review list,
remembered switches, sign-in lockout, restart and shutdown.

Built by the launcher; the controller calls it for fx.Audit and fx.StaffCommand.
Everything shown to staff here is operational data; the review list is the one place
a patron id and item id appear, because staff must settle those loans at the counter.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kiosk import __version__
from kiosk.store.staff_state import LOCKED_UNTIL, StaffState

if TYPE_CHECKING:
    from kiosk.store.audit import Audit
    from kiosk.store.database import Store
    from kiosk.store.outbox import Outbox

log = logging.getLogger("kiosk.staff")

LOCK_SETTING = LOCKED_UNTIL
DAMAGED_PREFIX = "damaged:"          # review-list ids of damaged rows (txn ids are hex or "txn-…")


def store_problem_code(exc: BaseException) -> str:
    """A short, staff-readable name for why the store cannot be used (details go to the log,
    `kiosk doctor` and `kiosk sync status`)."""
    from kiosk.store.errors import KeyUnavailable, StoreBusy, StoreCorrupt, StoreReadOnly
    from kiosk.store.sealed import KeyFileError

    if isinstance(exc, KeyUnavailable):
        return "device_key_missing" if "missing" in str(exc) else "device_key_mismatch"
    if isinstance(exc, KeyFileError):
        return "device_key_unsafe"
    if isinstance(exc, StoreCorrupt):
        return "database_damaged"
    if isinstance(exc, StoreReadOnly):
        return "data_read_only"
    if isinstance(exc, StoreBusy):
        return "database_busy"
    return "journal_write_failed"


def remembered(store: Store, setting: str, default: object) -> object:
    """A staff switch as last set (the first screen needs them before the backend exists)."""
    return store.get_setting("staff." + setting, default)


class StaffBackend:
    def __init__(self, store: Store, outbox: Outbox, audit: Audit, data_dir: Path,
                 wall: Callable[[], datetime], config_version: Callable[[], str],
                 worker_status: Callable[[], Any] | None = None,
                 reader_ok: Callable[[], bool] | None = None,
                 on_exit: Callable[[str], None] | None = None, scanner: str = "") -> None:
        self.store, self.outbox, self._audit = store, outbox, audit
        self.data_dir = data_dir
        self.wall = wall
        self.config_version = config_version
        self.worker_status = worker_status
        self.reader_ok = reader_ok
        self.on_exit = on_exit
        self.scanner = scanner
        self.started = time.monotonic()
        self._staff_state = StaffState(store)
        self.store_problem = ""             # why the kiosk cannot record loans ("" when it can)

    def audit(self, actor: str, action: str, **fields: Any) -> None:
        # The sign-in failure count is kept with the audit entry that reports it, so a
        # restart between wrong guesses does not reset it.
        if action == "staff.signin_failed" and isinstance(fields.get("failures"), int):
            self._staff_state.record_failures(fields["failures"])
        elif action == "staff.signed_in":
            self._staff_state.clear_failures()
        self._audit.record(actor, action, **fields)

    def signin_failures(self) -> int:
        """Wrong sign-ins since the last success or lockout, across restarts."""
        return self._staff_state.failures()

    def load(self, kind: str) -> object:
        if kind == "status":
            return self.status()
        if kind == "conflicts":
            # Damaged rows join the review list: nothing in them can be read, so staff check
            # the loans at the counter and settle the row by hand.
            return [{"id": c.id, "item_id": c.loan.item_id, "patron_id": c.loan.patron_id,
                     "reason": c.reason, "refusal": c.result.refusal.value if c.result.refusal else None,
                     "offline": c.loan.offline, "recorded_at": c.recorded_at.isoformat(timespec="minutes")}
                    for c in self.outbox.conflicts()] + [
                    {"id": DAMAGED_PREFIX + str(d.id), "item_id": None, "patron_id": None, "reason": d.reason,
                     "refusal": "damaged_row", "offline": False,
                     "recorded_at": d.found_at.isoformat(timespec="minutes")} for d in self.outbox.damaged()]
        raise ValueError(kind)

    def status(self) -> dict[str, Any]:
        stats = self.outbox.stats()
        disk = shutil.disk_usage(self.data_dir)
        worker = self.worker_status() if self.worker_status else None
        return {
            "reader": "ok" if (self.reader_ok is None or self.reader_ok()) else "unavailable",
            "scanner": self.scanner,
            "catalogue": "ok" if worker is None or not worker.failures else f"failing ({worker.failures})",
            # An Outage code (staff read it in their language), never the exception text.
            "catalogue_error": worker.reason if worker and worker.failures else "",
            "outbox_pending": stats.pending,
            "oldest_pending": stats.oldest_created.isoformat(timespec="minutes") if stats.oldest_created else "",
            "last_sync": stats.last_success.isoformat(timespec="minutes") if stats.last_success else "",
            "conflicts": stats.conflicts,
            "damaged": stats.damaged,
            "store_problem": self.store_problem,
            "config_version": self.config_version(),
            "app_version": __version__,
            "disk_free_mb": disk.free // (1024 * 1024),
            "uptime_s": int(time.monotonic() - self.started),
        }

    def store_failed(self, exc: BaseException) -> None:
        """The journal could not write: staff see why on the status screen."""
        self.store_problem = store_problem_code(exc)

    def resolve_conflict(self, conflict_id: str) -> None:
        if conflict_id.startswith(DAMAGED_PREFIX) and conflict_id[len(DAMAGED_PREFIX):].isdigit():
            self.outbox.discard_damaged(int(conflict_id[len(DAMAGED_PREFIX):]))
            return
        self.outbox.resolve_conflict(conflict_id)

    def remember(self, setting: str, value: object) -> None:
        """Staff switches (out of service, offline lending) survive a restart."""
        self.store.set_setting("staff." + setting, value)

    def remembered(self, setting: str, default: object) -> object:
        return remembered(self.store, setting, default)

    def lock_signin(self, seconds: float) -> None:
        self._staff_state.lock_until(self.wall() + timedelta(seconds=seconds))

    def signin_locked_for(self) -> float:
        """Seconds of lockout left from before a restart (a reboot must not reset it)."""
        until = self._staff_state.locked_until()
        if until is None:
            return 0.0
        return max(0.0, (until - self.wall()).total_seconds())

    def exit(self, how: str) -> None:
        if self.on_exit is not None:
            self.on_exit(how)
