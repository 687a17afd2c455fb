"""Loan rules the kiosk applies itself, before or instead of the catalogue.

Online, the catalogue decides (limits and loan periods come from the ILS, never
hard-coded here); the kiosk only refuses what it can see for itself: a second
scan of the same book, the patron's remaining allowance, and, when lending offline
under the library's local rules, the local limit, loan period and refused types.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from kiosk.core.catalogue import PatronStatus, Refusal
from kiosk.core.patterns import fullmatch


@dataclass(frozen=True)
class OfflineRules:
    max_items: int = 5
    loan_days: int = 14
    refused_patterns: tuple[str, ...] = ()   # item barcodes lent only at the counter when offline

    def due_date(self, today: date) -> date:
        return today + timedelta(days=self.loan_days)

    def refuses(self, item_id: str) -> bool:
        return any(fullmatch(p, item_id) for p in self.refused_patterns)


def allowance(status: PatronStatus, in_session: int, offline: OfflineRules | None) -> int | None:
    """How many more items the patron may take now; None when the catalogue sets no limit."""
    limits = []
    if status.limit is not None:
        limits.append(status.limit - status.charged - in_session)
    if offline is not None:
        limits.append(offline.max_items - in_session)
    return max(0, min(limits)) if limits else None


def check_scan(
    item_id: str,
    taken: set[str],
    status: PatronStatus,
    in_session: int,
    offline: OfflineRules | None,
) -> Refusal | None:
    """Refusal for scanning `item_id` now, or None to go ahead with the checkout."""
    if item_id in taken:
        return Refusal.ALREADY_YOURS
    left = allowance(status, in_session, offline)
    if left is not None and left <= 0:
        return Refusal.LIMIT_REACHED
    if offline is not None and offline.refuses(item_id):
        return Refusal.COUNTER_ONLY
    return None
