"""Staff sign-in state that must outlive a restart: the failure count and the lockout.

Kept in the store, so pulling the plug between wrong guesses does not reset the
count (40 guesses over 10 restarts must still lock staff mode).
"""

from __future__ import annotations

from datetime import datetime

from kiosk.store.database import Store

FAILURES = "staff_signin_failures"
LOCKED_UNTIL = "staff_signin_locked_until"


class StaffState:
    def __init__(self, store: Store) -> None:
        self._store = store

    def failures(self) -> int:
        value = self._store.get_setting(FAILURES, 0)
        return value if isinstance(value, int) and value >= 0 else 0

    def record_failures(self, count: int) -> None:
        self._store.set_setting(FAILURES, int(count))

    def clear_failures(self) -> None:
        self._store.set_setting(FAILURES, 0)

    def lock_until(self, until: datetime) -> None:
        """Lock sign-in until `until` and start the count afresh, in one commit."""
        with self._store.transaction():
            self._store.set_setting(LOCKED_UNTIL, until.isoformat())
            self._store.set_setting(FAILURES, 0)

    def locked_until(self) -> datetime | None:
        raw = self._store.get_setting(LOCKED_UNTIL)
        try:
            return datetime.fromisoformat(raw) if raw else None
        except (TypeError, ValueError):
            return None
