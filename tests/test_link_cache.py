"""Offline patron-link cache: HMAC row keys, sealed values, expiry, bound."""

from __future__ import annotations

import pytest

from kiosk.store.database import open_store
from kiosk.store.link_cache import LinkCache
from kiosk.store.sealed import DeviceKey
from kiosk_testing.store import CANARY_CERT, CANARY_PATRON, files_containing, sqlite_rows, sqlite_write

CERT_A = "a1" * 32
CERT_B = "b2" * 32


@pytest.fixture
def cache(kiosk_store, store_key, store_clock):
    return LinkCache(kiosk_store, store_key, store_clock, max_age_days=30)


def test_put_get_forget(cache):
    assert cache.get(CERT_A) is None
    cache.put(CERT_A, "P0001")
    cache.put(CERT_B, "P0002")
    assert cache.get(CERT_A) == "P0001" and cache.get(CERT_B) == "P0002"
    assert cache.get(CERT_A.upper()) == "P0001"          # hex case does not matter
    cache.forget(CERT_A)
    assert cache.get(CERT_A) is None and cache.get(CERT_B) == "P0002"


def test_put_replaces_the_link_for_a_card(cache):
    cache.put(CERT_A, "P0001")
    cache.put(CERT_A, "P0009")
    assert cache.get(CERT_A) == "P0009" and len(cache) == 1


def test_file_holds_neither_cert_hash_nor_patron_id(cache, kiosk_store, store_dir):
    cache.put(CANARY_CERT, CANARY_PATRON)
    [row] = sqlite_rows(kiosk_store.path, "links")
    assert set(row) == {"k", "stored", "sealed"}
    assert len(row["k"]) == 64 and row["k"] != CANARY_CERT
    kiosk_store.close()
    assert files_containing(store_dir, [CANARY_CERT, CANARY_PATRON]) == []


def test_survives_reopen_with_the_same_key_only(cache, kiosk_store, store_dir, store_key, store_clock, tmp_path):
    cache.put(CERT_A, "P0001")
    kiosk_store.close()
    with open_store(store_dir / "kiosk.db") as store:
        assert LinkCache(store, store_key, store_clock, 30).get(CERT_A) == "P0001"
        other_key = DeviceKey.load_or_create(tmp_path / "other.key")
        assert LinkCache(store, other_key, store_clock, 30).get(CERT_A) is None   # row key differs too


def test_entries_expire(cache, store_clock):
    cache.put(CERT_A, "P0001")
    store_clock.advance(days=20)
    cache.put(CERT_B, "P0002")
    store_clock.advance(days=10, seconds=1)
    assert cache.get(CERT_A) is None                       # 30 days + 1 s old
    assert cache.get(CERT_B) == "P0002"
    assert len(cache) == 1                                 # the expired one was dropped on read
    store_clock.advance(days=21)
    assert cache.purge_expired() == 1 and len(cache) == 0


def test_entries_dated_in_the_future_are_not_trusted(cache, store_clock):
    store_clock.advance(days=365)                          # a Pi booted with a wrong clock
    cache.put(CERT_A, "P0001")
    store_clock.advance(days=-365)
    assert cache.get(CERT_A) is None


def test_purge_expired_keeps_fresh_entries(cache, store_clock):
    for i in range(5):
        cache.put(f"{i:064x}", f"P{i}")
        store_clock.advance(days=10)
    assert cache.purge_expired() == 2                     # 50 and 40 days old; exactly 30 stays
    assert [cache.get(f"{i:064x}") for i in range(5)] == [None, None, "P2", "P3", "P4"]


def test_bounded_drops_oldest(kiosk_store, store_key, store_clock):
    cache = LinkCache(kiosk_store, store_key, store_clock, max_age_days=30, capacity=3)
    for i in range(5):
        cache.put(f"{i:064x}", f"P{i}")
        store_clock.advance(minutes=1)
    assert len(cache) == 3
    assert [cache.get(f"{i:064x}") for i in range(5)] == [None, None, "P2", "P3", "P4"]


def test_tampered_entry_is_dropped(cache, kiosk_store):
    cache.put(CERT_A, "P0001")
    cache.put(CERT_B, "P0002")
    a, b = sqlite_rows(kiosk_store.path, "links")
    sqlite_write(kiosk_store.path, "UPDATE links SET sealed = ? WHERE k = ?", (b["sealed"], a["k"]))  # B's value onto A
    assert cache.get(CERT_A) is None
    assert cache.get(CERT_B) == "P0002"
    assert len(cache) == 1
