"""The audit trail: who did what when (staff actions, central IT, mode changes, sync events).

Audit entries sit in clear in the store and in the log, so they must never carry
reading records or identity data. Callers name every field; `Audit` refuses field
names that smell of patron data (see DENIED_WORDS / DENIED_TOKENS) and any value
that is not a plain scalar, so a dict or object cannot smuggle such data in.

Accountable actions (staff, central IT, the kiosk itself) are a ring of the last
`capacity` entries. Anonymous refusals (a bundle that failed verification, a rate-
limited client: nobody proved who sent them) are only counted, per action, cause and
hour, in their own table: a flood of them cannot evict what staff did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

from kiosk.logs import check_field_name, log_event
from kiosk.store.database import Store

_SCALARS = (str, int, float, bool, type(None))

# Requests turned away before anyone was authenticated: counted, not kept one by one.
ANONYMOUS_REFUSALS = frozenset({"config.refused", "management.rate_limited", "management.refused"})
REFUSAL_WINDOWS_KEPT = 24 * 14          # hourly windows: two weeks of counts
RECENT_REFUSALS_KEPT = 100              # the last refusals in detail, in their own ring


@dataclass(frozen=True)
class RefusalCount:
    action: str
    cause: str
    window: datetime            # start of the hour
    count: int
    last_at: datetime


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
        now = self._clock()
        if action in ANONYMOUS_REFUSALS:
            self._count_refusal(action, safe_fields, now)
        else:
            with self._store.transaction():       # one commit: add the new, drop beyond the ring
                self._store.write("INSERT INTO audit (at, actor, action, fields) VALUES (?, ?, ?, ?)",
                                  (now.isoformat(), actor, action, json.dumps(safe_fields, ensure_ascii=False)))
                self._store.write("DELETE FROM audit WHERE seq <= (SELECT max(seq) FROM audit) - ?",
                                  (self._capacity,))
        self._log.info("audit %s %s %s", actor, action,
                       " ".join(f"{k}={v}" for k, v in sorted(safe_fields.items())))

    def _count_refusal(self, action: str, fields: dict[str, Any], now: datetime) -> None:
        cause = str(fields.get("code") or fields.get("reason_code") or "-")[:40]
        window = now.replace(minute=0, second=0, microsecond=0).isoformat()
        with self._store.transaction():
            self._store.write(
                "INSERT INTO refusals (action, cause, window, count, last_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT (action, cause, window) DO UPDATE SET count = count + 1, last_at = excluded.last_at",
                (action, cause, window, now.isoformat()))
            self._store.write("DELETE FROM refusals WHERE window NOT IN "
                              "(SELECT DISTINCT window FROM refusals ORDER BY window DESC LIMIT ?)",
                              (REFUSAL_WINDOWS_KEPT,))
            self._store.write("INSERT INTO refusal_log (after_seq, at, action, fields) VALUES "
                              "((SELECT coalesce(max(seq), 0) FROM audit), ?, ?, ?)",
                              (now.isoformat(), action, json.dumps(fields, ensure_ascii=False)))
            self._store.write("DELETE FROM refusal_log WHERE seq <= (SELECT max(seq) FROM refusal_log) - ?",
                              (RECENT_REFUSALS_KEPT,))

    def entries(self) -> list[dict[str, Any]]:
        """The kept entries, oldest first: dicts with seq, at (datetime), actor, action, fields."""
        rows = self._store.query("SELECT seq, at, actor, action, fields FROM audit ORDER BY seq")
        return [{"seq": seq, "at": datetime.fromisoformat(at), "actor": actor, "action": action,
                 "fields": json.loads(fields)} for seq, at, actor, action, fields in rows]

    def recent_refusals(self) -> list[dict[str, Any]]:
        """The last anonymous refusals in detail (a ring of their own), oldest first."""
        rows = self._store.query("SELECT seq, after_seq, at, action, fields FROM refusal_log ORDER BY seq")
        return [{"seq": seq, "after_seq": after, "at": datetime.fromisoformat(at), "actor": "anonymous",
                 "action": action, "fields": json.loads(fields)} for seq, after, at, action, fields in rows]

    def timeline(self) -> list[dict[str, Any]]:
        """Accountable entries and the recent refusals in the order they were recorded."""
        merged = [((e["seq"], 0, 0), e) for e in self.entries()]
        merged += [((r["after_seq"], 1, r["seq"]), r) for r in self.recent_refusals()]
        return [e for _, e in sorted(merged, key=lambda pair: pair[0])]

    def refusals(self) -> list[RefusalCount]:
        """Anonymous refusals counted per action, cause and hour, oldest first."""
        rows = self._store.query("SELECT action, cause, window, count, last_at FROM refusals "
                                 "ORDER BY window, action, cause")
        return [RefusalCount(a, c, datetime.fromisoformat(w), n, datetime.fromisoformat(last))
                for a, c, w, n, last in rows]


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
