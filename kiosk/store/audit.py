"""The audit trail: who did what when (staff actions, mode changes, sync events).

Audit entries sit in clear in the store and in the log, so they must never carry
reading records or identity data. Callers name every field; `Audit` refuses field
names that smell of patron data (see DENIED_WORDS / DENIED_TOKENS) and any value
that is not a plain scalar, so a dict or object cannot smuggle such data in. The
trail is a ring of the last `capacity` entries, so the file stays bounded; each
record (drop oldest + add newest) is one atomic write.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable, Protocol

from kiosk.logs import check_field_name, log_event
from kiosk.store.database import Store

_SCALARS = (str, int, float, bool, type(None))


class Audit:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        logger: logging.Logger | None = None,
        capacity: int = 500,
    ) -> None:
        if capacity < 1:
            raise ValueError("audit capacity must be at least 1")
        self._store = store
        self._clock = clock
        self._log = logger or logging.getLogger("kiosk.audit")
        self._capacity = capacity

    def record(self, actor: str, action: str, **safe_fields: Any) -> None:
        """Store and log one entry. `actor` is a role ("staff", "kiosk"), never a person's name."""
        for name, value in safe_fields.items():
            check_field_name(name)
            if not isinstance(value, _SCALARS):
                raise ValueError(f"audit field {name!r} must be a plain scalar, not {type(value).__name__}")
        when = self._clock().isoformat()
        with self._store.transaction():       # one atomic write: drop the oldest, add the new
            table = self._store.audit
            rows = sorted(table.all(), key=lambda r: r["seq"])
            seq = 1 + (rows[-1]["seq"] if rows else 0)
            overflow = len(rows) + 1 - self._capacity
            if overflow > 0:
                table.remove(doc_ids=[r.doc_id for r in rows[:overflow]])
            table.insert({"seq": seq, "at": when, "actor": actor, "action": action, "fields": dict(safe_fields)})
        self._log.info("audit %s %s %s", actor, action,
                       " ".join(f"{k}={v}" for k, v in sorted(safe_fields.items())))

    def entries(self) -> list[dict[str, Any]]:
        """The kept entries, oldest first: dicts with seq, at (datetime), actor, action, fields."""
        rows = sorted(self._store.audit.all(), key=lambda r: r["seq"])
        return [{**r, "at": datetime.fromisoformat(r["at"]), "fields": dict(r["fields"])} for r in rows]


class AuditTrail(Protocol):
    """What log_and_audit needs of a trail: callers hold an Audit or a test double."""

    def record(self, actor: str, action: str, **safe_fields: Any) -> None: ...


def log_and_audit(log: logging.Logger, audit: AuditTrail | None, actor: str, action: str, *, failure: str,
                  level: int = logging.INFO, **fields: Any) -> None:
    """Log `action` and, when there is a trail, record it there too. A failing audit
    write is logged as `failure`, never raised: it must not decide what it only records."""
    log_event(log, action, level=level, **fields)
    if audit is None:
        return
    try:
        audit.record(actor, action, **fields)
    except Exception as e:                          # noqa: BLE001
        log_event(log, failure, level=logging.ERROR, error=type(e).__name__)
