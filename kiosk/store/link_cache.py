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

from kiosk.store.database import Store
from kiosk.store.sealed import DeviceKey, SealBroken

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
        sealed = self._key.seal({"patron_id": patron_id}, _aad(row_key, stored))
        with self._store.transaction():
            self._store.write("DELETE FROM links WHERE k = ?", (row_key,))
            held = self._store.query("SELECT count(*) FROM links")[0][0]
            overflow = held + 1 - self._capacity
            if overflow > 0:
                self._store.write("DELETE FROM links WHERE k IN "
                                  "(SELECT k FROM links ORDER BY stored, rowid LIMIT ?)", (overflow,))
            self._store.write("INSERT INTO links (k, stored, sealed) VALUES (?, ?, ?)", (row_key, stored, sealed))

    def get(self, cert_hash: str) -> str | None:
        """The cached library card number, or None (unknown, expired, or unreadable)."""
        row_key = self._row_key(cert_hash)
        rows = self._store.query("SELECT stored, sealed FROM links WHERE k = ?", (row_key,))
        if not rows:
            return None
        stored, sealed = rows[0]
        if self._expired(stored, self._clock()):
            self._store.write("DELETE FROM links WHERE k = ?", (row_key,))
            return None
        try:
            return str(self._key.unseal(sealed, _aad(row_key, stored))["patron_id"])
        except (SealBroken, KeyError, TypeError):
            _log.warning("link cache: dropping an entry that failed to unseal")
            self._store.write("DELETE FROM links WHERE k = ?", (row_key,))
            return None

    def forget(self, cert_hash: str) -> None:
        self._store.write("DELETE FROM links WHERE k = ?", (self._row_key(cert_hash),))

    def purge_expired(self) -> int:
        """Remove every expired entry; returns how many went."""
        now = self._clock()
        with self._store.transaction():
            stale = [(k,) for k, stored in self._store.query("SELECT k, stored FROM links")
                     if self._expired(stored, now)]
            if stale:
                self._store.write_many("DELETE FROM links WHERE k = ?", stale)
        return len(stale)

    def __len__(self) -> int:
        return int(self._store.query("SELECT count(*) FROM links")[0][0])

    def _row_key(self, cert_hash: str) -> str:
        return hmac.new(self._hmac_key, cert_hash.lower().encode("ascii"), hashlib.sha256).hexdigest()

    def _expired(self, stored_at: Any, now: datetime) -> bool:
        try:
            age = now - datetime.fromisoformat(stored_at)
        except (KeyError, TypeError, ValueError):
            return True
        return age > self._max_age or age < -CLOCK_SKEW


def _aad(row_key: str, stored: str) -> bytes:
    return f"link|{row_key}|{stored}".encode()
