"""Offline patron-link cache: card identity -> library card number, for when the catalogue is down.

Rows are keyed by HMAC-SHA256(cert_hash) under a key derived from the device key,
so the file never holds the certificate hash itself (which would link a card to a
patron for anyone holding another copy of it). The patron id is sealed, bound to
its row key and store time. Entries expire after `max_age_days`; the cache is
bounded and drops the oldest entries first.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from typing import Any, Callable

from tinydb import Query

from kiosk.store.database import Store
from kiosk.store.sealed import DeviceKey, SealBroken

_Q = Query()
_log = logging.getLogger(__name__)

# A Pi has no RTC: after a bad boot the clock may run behind. Entries stamped more
# than this far in the future are treated as expired rather than kept forever.
CLOCK_SKEW = timedelta(minutes=5)


class LinkCache:
    def __init__(
        self,
        store: Store,
        key: DeviceKey,
        clock: Callable[[], datetime],
        max_age_days: float,
        capacity: int = 2000,
    ) -> None:
        self._store = store
        self._key = key
        self._hmac_key = key.subkey(b"kiosk link-cache row key v1")
        self._clock = clock
        self._max_age = timedelta(days=max_age_days)
        self._capacity = capacity

    def put(self, cert_hash: str, patron_id: str) -> None:
        row_key = self._row_key(cert_hash)
        stored = self._clock().isoformat()
        doc = {
            "k": row_key,
            "stored": stored,
            "sealed": self._key.seal({"patron_id": patron_id}, _aad(row_key, stored)),
        }
        with self._store.transaction():
            links = self._store.links
            links.remove(_Q.k == row_key)
            rows = links.all()
            overflow = len(rows) + 1 - self._capacity
            if overflow > 0:
                oldest = sorted(rows, key=lambda r: (r["stored"], r.doc_id))[:overflow]
                links.remove(doc_ids=[r.doc_id for r in oldest])
            links.insert(doc)

    def get(self, cert_hash: str) -> str | None:
        """The cached library card number, or None (unknown, expired, or unreadable)."""
        row_key = self._row_key(cert_hash)
        row = self._store.links.get(_Q.k == row_key)
        if row is None:
            return None
        if self._expired(row, self._clock()):
            self._store.links.remove(doc_ids=[row.doc_id])
            return None
        try:
            return self._key.unseal(row["sealed"], _aad(row_key, row["stored"]))["patron_id"]
        except (SealBroken, KeyError, TypeError):
            _log.warning("link cache: dropping an entry that failed to unseal")
            self._store.links.remove(doc_ids=[row.doc_id])
            return None

    def forget(self, cert_hash: str) -> None:
        self._store.links.remove(_Q.k == self._row_key(cert_hash))

    def purge_expired(self) -> int:
        """Remove every expired entry; returns how many went."""
        now = self._clock()
        with self._store.transaction():
            stale = [r.doc_id for r in self._store.links.all() if self._expired(r, now)]
            if stale:
                self._store.links.remove(doc_ids=stale)
        return len(stale)

    def __len__(self) -> int:
        return len(self._store.links)

    def _row_key(self, cert_hash: str) -> str:
        return hmac.new(self._hmac_key, cert_hash.lower().encode("ascii"), hashlib.sha256).hexdigest()

    def _expired(self, row: dict[str, Any], now: datetime) -> bool:
        try:
            stored = datetime.fromisoformat(row["stored"])
            age = now - stored
        except (KeyError, TypeError, ValueError):
            return True
        return age > self._max_age or age < -CLOCK_SKEW


def _aad(row_key: str, stored: str) -> bytes:
    return f"link|{row_key}|{stored}".encode()
