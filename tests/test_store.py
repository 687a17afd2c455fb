"""The local store (SQLite: WAL, durable commits, one writer, schema versions) and the
audit trail on top of it, on real files."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading

import pytest

from kiosk.store.audit import Audit, check_field_name
from kiosk.store.database import SCHEMA_VERSION, StoreBusy, StoreCorrupt, StoreError, open_store
from kiosk_testing.store import ManualClock, count_commits, sqlite_rows


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- Store -----------------------------------------------------------------------

def test_open_store_creates_private_directory_and_files(tmp_path):
    path = tmp_path / "var" / "kiosk" / "kiosk.db"
    old = os.umask(0o022)
    try:
        store = open_store(path)
        store.set_setting("x", 1)
        assert mode(path.parent) == 0o700
        assert mode(path) == 0o600
        assert mode(path.parent / ".kiosk.db.lock") == 0o600
        assert mode(path.parent / "kiosk.db-wal") == 0o600
    finally:
        os.umask(old)
        store.close()


def test_store_is_wal_full_sync_with_a_schema_version(kiosk_store):
    assert kiosk_store.query("PRAGMA journal_mode") == [("wal",)]
    assert kiosk_store.query("PRAGMA synchronous") == [(2,)]          # FULL
    assert kiosk_store.query("PRAGMA busy_timeout")[0][0] >= 1000
    assert kiosk_store.query("PRAGMA page_size") == [(1024,)]        # fewer bytes per commit on the SD card
    assert kiosk_store.query("PRAGMA secure_delete") == [(1,)]       # a purged loan leaves no bytes
    assert kiosk_store.schema_version() == SCHEMA_VERSION >= 1
    tables = {r[0] for r in kiosk_store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox", "conflicts", "damaged", "links", "settings", "audit", "refusals"} <= tables


def test_settings_round_trip_and_survive_reopen(store_dir):
    with open_store(store_dir / "kiosk.db") as store:
        assert store.get_setting("mode", "online") == "online"
        store.set_setting("mode", "offline")
        store.set_setting("mode", "online")
        store.set_setting("ja", "貸出中")
    with open_store(store_dir / "kiosk.db") as store:
        assert store.get_setting("mode") == "online" and store.get_setting("ja") == "貸出中"
        assert len(store.query("SELECT * FROM settings")) == 2


def test_migrations_bring_an_old_store_up_and_a_newer_one_is_refused_untouched(store_dir):
    path = store_dir / "kiosk.db"
    sqlite3.connect(path).close()                                   # version 0: an empty file
    with open_store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer kiosk"):
        open_store(path)
    assert path.read_bytes() == before


def test_second_open_of_the_same_store_is_refused_until_closed(store_dir):
    first = open_store(store_dir / "kiosk.db")
    with pytest.raises(StoreBusy):
        open_store(store_dir / "kiosk.db")
    first.close()
    second = open_store(store_dir / "kiosk.db")
    second.close()


def test_snapshot_reads_beside_the_writer_but_never_writes(store_dir):
    with open_store(store_dir / "kiosk.db") as writer:
        writer.set_setting("a", 1)
        with open_store(store_dir / "kiosk.db", snapshot=True) as snap:
            assert snap.get_setting("a") == 1
            with pytest.raises(StoreError):
                snap.set_setting("a", 2)
        writer.set_setting("a", 3)
        assert writer.get_setting("a") == 3


def test_closed_store_refuses_use(store_dir):
    store = open_store(store_dir / "kiosk.db")
    store.close()
    store.close()                     # idempotent
    with pytest.raises(StoreError):
        store.set_setting("x", 1)
    with pytest.raises(StoreError):
        with store.transaction():
            pass


def test_transaction_is_one_commit_visible_inside_only(kiosk_store):
    commits = count_commits(kiosk_store)
    with kiosk_store.transaction():
        kiosk_store.set_setting("a", 1)
        kiosk_store.set_setting("b", 2)
        kiosk_store.write("DELETE FROM settings WHERE name = 'a'")
        assert kiosk_store.get_setting("b") == 2                       # visible inside
        assert sqlite_rows(kiosk_store.path, "settings") == []         # not to another reader
        assert commits == []
    assert len(commits) == 1
    assert sqlite_rows(kiosk_store.path, "settings") == [{"name": "b", "value": "2"}]


def test_failed_transaction_leaves_the_file_and_the_store_untouched(kiosk_store):
    kiosk_store.set_setting("keep", 1)
    with pytest.raises(RuntimeError):
        with kiosk_store.transaction():
            kiosk_store.set_setting("lost", 1)
            kiosk_store.write("DELETE FROM settings WHERE name = 'keep'")
            raise RuntimeError("power went")
    assert kiosk_store.get_setting("lost") is None and kiosk_store.get_setting("keep") == 1
    assert [r["name"] for r in sqlite_rows(kiosk_store.path, "settings")] == ["keep"]
    kiosk_store.set_setting("next", 2)
    assert kiosk_store.get_setting("next") == 2


def test_two_threads_writing_lose_nothing(kiosk_store):
    def writer(tag):
        for i in range(60):
            kiosk_store.set_setting(f"{tag}{i}", i)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sqlite_rows(kiosk_store.path, "settings")) == 120


@pytest.mark.parametrize("damage", ["garbage", "truncated", "zeroed_page"])
def test_a_damaged_database_is_refused_and_kept_byte_for_byte(store_dir, damage):
    path = store_dir / "kiosk.db"
    with open_store(path) as store:
        for i in range(200):
            store.set_setting(f"k{i}", "x" * 200)
    data = path.read_bytes()
    if damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "truncated":
        data = data[: len(data) // 2 + 100]
    else:
        data = data[:4096 * 2] + b"\xff" * 4096 + data[4096 * 3:]
    path.write_bytes(data)
    with pytest.raises(StoreCorrupt, match="kept as is"):
        open_store(path)
    with pytest.raises(StoreCorrupt):
        open_store(path, snapshot=True)
    assert path.read_bytes() == data


# -- Audit -------------------------------------------------------------------------

def test_audit_records_who_what_when_and_logs_it(kiosk_store, caplog):
    clock = ManualClock()
    audit = Audit(kiosk_store, clock, logging.getLogger("test.audit"))
    with caplog.at_level(logging.INFO, logger="test.audit"):
        audit.record("staff", "offline_mode_on", reason="network down", pending=3)
    [entry] = audit.entries()
    assert entry["actor"] == "staff" and entry["action"] == "offline_mode_on"
    assert entry["at"] == clock.now
    assert entry["fields"] == {"reason": "network down", "pending": 3}
    assert "offline_mode_on" in caplog.text and "pending=3" in caplog.text


@pytest.mark.parametrize("field", [
    "patron", "patron_id", "patronId", "PatronNo", "title", "book_title", "pin", "user_pin", "serial",
    "cert_serial", "item", "item_id", "itemId", "name", "user_name", "barcode", "my_number", "birth_date",
    "card", "isbn", "email",
])
def test_audit_refuses_fields_that_could_carry_patron_data(kiosk_store, field):
    audit = Audit(kiosk_store, ManualClock())
    with pytest.raises(ValueError):
        audit.record("kiosk", "checkout", **{field: "x"})
    assert audit.entries() == []


@pytest.mark.parametrize("field", ["txn_id", "count", "pending", "reason", "mapping", "shipping", "mode"])
def test_audit_accepts_harmless_fields(field):
    check_field_name(field)


def test_audit_refuses_non_scalar_values(kiosk_store):
    audit = Audit(kiosk_store, ManualClock())
    with pytest.raises(ValueError):
        audit.record("kiosk", "x", detail={"patron_id": "P1"})


def test_audit_is_a_bounded_ring_keeping_the_newest(kiosk_store):
    clock = ManualClock()
    audit = Audit(kiosk_store, clock, capacity=5)
    for i in range(12):
        clock.advance(seconds=1)
        audit.record("kiosk", "tick", n=i)
    entries = audit.entries()
    assert [e["fields"]["n"] for e in entries] == [7, 8, 9, 10, 11]
    assert len(audit.entries()) == 5

    smaller = Audit(kiosk_store, clock, capacity=3)
    smaller.record("kiosk", "tick", n=12)
    assert [e["fields"]["n"] for e in smaller.entries()] == [10, 11, 12]


def test_anonymous_refusals_are_counted_per_cause_and_hour_and_never_evict_staff_actions(kiosk_store):
    clock = ManualClock()
    audit = Audit(kiosk_store, clock, capacity=20)
    audit.record("staff", "staff.out_of_service", on=True)
    audit.record("central_it", "config.applied", version=7)
    for i in range(600):                                       # a flood of forged pushes
        clock.advance(seconds=0.01)
        audit.record("central_it", "config.refused", code="bad_signature" if i % 2 else "too_large")
        if i % 100 == 0:
            audit.record("central_it", "management.rate_limited")
    assert [e["action"] for e in audit.entries()] == ["staff.out_of_service", "config.applied"]
    counts = {(r.action, r.cause): r.count for r in audit.refusals()}
    assert counts == {("config.refused", "bad_signature"): 300, ("config.refused", "too_large"): 300,
                      ("management.rate_limited", "-"): 6}
    clock.advance(hours=1)
    audit.record("central_it", "config.refused", code="too_large")
    assert [(r.cause, r.count) for r in audit.refusals()][-1] == ("too_large", 1)    # a new window
    assert len(sqlite_rows(kiosk_store.path, "refusals")) == 4
    recent = audit.recent_refusals()                         # the last ones in detail, a ring of their own
    assert len(recent) == 100 and recent[-1]["fields"] == {"code": "too_large"}
    assert [e["action"] for e in audit.timeline()][:2] == ["staff.out_of_service", "config.applied"]
