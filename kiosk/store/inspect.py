"""A look at the kiosk's store from outside the running kiosk (`kiosk doctor`,
`kiosk sync status`): what state it is in and, when it cannot be used, what to do.

Only reads: opens a snapshot, never creates a key, never moves a row, never repairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from kiosk.store.database import open_store
from kiosk.store.errors import KeyUnavailable, StoreCorrupt, StoreError, StoreReadOnly
from kiosk.store.key_guard import RESTORE_HINT, open_device_key
from kiosk.store.outbox import Outbox, OutboxStats
from kiosk.store.sealed import KeyFileError

DB_FILE = "kiosk.db"
KEY_FILE = "device.key"


@dataclass(frozen=True)
class StoreReport:
    problem: str                    # "" when the store can be used
    detail: str
    fix: str
    stats: OutboxStats | None = None
    damaged: tuple[tuple[int, str, str, str], ...] = ()     # id, source, reason, found_at


def inspect_store(data_dir: Path) -> StoreReport:
    db = data_dir / DB_FILE
    if not db.exists():
        return StoreReport("no_store", f"no kiosk data in {data_dir}", "")
    try:
        store = open_store(db, snapshot=True)
    except StoreCorrupt as exc:
        return StoreReport("database_damaged", str(exc),
                           f"do not delete it: copy {data_dir} aside for recovery, then call central IT; "
                           "the kiosk stays out of service until the file is restored or moved away")
    except StoreError as exc:
        return StoreReport("database_unreadable", str(exc), "run as the kiosk user (sudo -u kiosk ...)")
    try:
        try:
            key = open_device_key(data_dir / KEY_FILE, store)
        except KeyUnavailable as exc:
            return StoreReport("device_key_missing" if "missing" in str(exc) else "device_key_mismatch",
                               str(exc), RESTORE_HINT)
        except KeyFileError as exc:
            return StoreReport("device_key_unsafe", str(exc), "fix the key file's owner and mode (chmod 600)")
        outbox = Outbox(store, key, lambda: datetime.now().astimezone())
        stats = outbox.stats()
        damaged = tuple((d.id, d.source, d.reason, d.found_at.isoformat(timespec="seconds"))
                        for d in outbox.damaged())
    finally:
        store.close()
    writable = _writable(data_dir)
    if not writable:
        return StoreReport("data_read_only", f"{data_dir} cannot be written: the kiosk cannot record loans",
                           "remount the data partition read-write (or fix its owner) and restart the kiosk",
                           stats, damaged)
    if damaged:
        return StoreReport("damaged_rows", f"{len(damaged)} loan record(s) could not be read and wait for staff",
                           "staff: check those loans in the library system, then settle them in the review list",
                           stats, damaged)
    return StoreReport("", f"{stats.pending} loan(s) pending, {stats.conflicts} for staff review", "", stats)


def _writable(data_dir: Path) -> bool:
    import os

    probe = data_dir / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


__all__ = ["StoreReport", "StoreReadOnly", "inspect_store"]
