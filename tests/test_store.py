"""The local store (atomic TinyDB storage, locking, transactions) and the audit ring on top of it."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading

import pytest
from tinydb import Query, TinyDB

import kiosk.store.database as store_mod
from kiosk.store.audit import Audit, check_field_name
from kiosk.store.database import AtomicJSONStorage, StoreBusy, StoreCorrupt, StoreError, open_store
from kiosk_testing.store import ManualClock


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- AtomicJSONStorage ---------------------------------------------------------

def test_storage_reads_none_when_file_missing_and_does_not_create_it(tmp_path):
    s = AtomicJSONStorage(tmp_path / "db.json")
    assert s.read() is None
    assert not (tmp_path / "db.json").exists()
    s.close()


def test_storage_roundtrip_keeps_japanese_readable_and_file_private(tmp_path):
    old = os.umask(0o022)
    try:
        db = TinyDB(tmp_path / "db.json", storage=AtomicJSONStorage, ensure_ascii=False)
        db.table("t").insert({"title": "吾輩は猫である"})
        db.close()
    finally:
        os.umask(old)
    raw = (tmp_path / "db.json").read_bytes()
    assert "吾輩は猫である".encode() in raw          # ensure_ascii=False reached json.dumps
    assert mode(tmp_path / "db.json") == 0o600
    db = TinyDB(tmp_path / "db.json", storage=AtomicJSONStorage, ensure_ascii=False)
    assert db.table("t").all() == [{"title": "吾輩は猫である"}]
    db.close()


def test_write_replaces_the_file_instead_of_rewriting_it_in_place(tmp_path):
    db = TinyDB(tmp_path / "db.json", storage=AtomicJSONStorage)
    db.insert({"n": 1})
    before = os.stat(tmp_path / "db.json").st_ino
    db.insert({"n": 2})
    assert os.stat(tmp_path / "db.json").st_ino != before      # a new file was renamed over it
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    db.close()


def test_leftover_temp_files_from_a_crash_are_removed_and_ignored(tmp_path):
    db = TinyDB(tmp_path / "db.json", storage=AtomicJSONStorage)
    db.insert({"n": 1})
    db.close()
    torn = tmp_path / ".db.json.abc123.tmp"
    torn.write_bytes(b'{"_default": {"1": {"n": 1}, "2": {"n"')     # a write cut short
    db = TinyDB(tmp_path / "db.json", storage=AtomicJSONStorage)
    assert not torn.exists()
    assert db.all() == [{"n": 1}]
    db.close()


def test_corrupt_file_is_reported_not_silently_replaced(tmp_path):
    (tmp_path / "db.json").write_text('{"outbox": {"1": ')
    s = AtomicJSONStorage(tmp_path / "db.json")
    with pytest.raises(StoreCorrupt):
        s.read()
    s.close()
    assert (tmp_path / "db.json").read_text() == '{"outbox": {"1": '


def test_existing_db_file_is_tightened_to_0600(tmp_path):
    (tmp_path / "db.json").write_text("{}")
    os.chmod(tmp_path / "db.json", 0o644)
    AtomicJSONStorage(tmp_path / "db.json").close()
    assert mode(tmp_path / "db.json") == 0o600


# -- Store -----------------------------------------------------------------------

def test_open_store_creates_private_directory(tmp_path):
    path = tmp_path / "var" / "kiosk" / "kiosk.json"
    old = os.umask(0o022)
    try:
        store = open_store(path)
    finally:
        os.umask(old)
    store.outbox.insert({"x": 1})
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    assert mode(path.parent / ".kiosk.json.lock") == 0o600
    store.close()


def test_store_has_the_kiosk_tables_and_settings(kiosk_store):
    for name in ("outbox", "conflicts", "links", "settings", "audit"):
        assert len(getattr(kiosk_store, name)) == 0
    assert kiosk_store.get_setting("mode", "online") == "online"
    kiosk_store.set_setting("mode", "offline")
    kiosk_store.set_setting("mode", "online")
    assert kiosk_store.get_setting("mode") == "online"
    assert len(kiosk_store.settings) == 1


def test_second_open_of_the_same_store_is_refused_until_closed(store_dir):
    first = open_store(store_dir / "kiosk.json")
    with pytest.raises(StoreBusy):
        open_store(store_dir / "kiosk.json")
    first.close()
    second = open_store(store_dir / "kiosk.json")
    second.close()


def test_closed_store_refuses_use(store_dir):
    store = open_store(store_dir / "kiosk.json")
    store.close()
    store.close()                     # idempotent
    with pytest.raises(StoreError):
        store.outbox.insert({"x": 1})
    with pytest.raises(StoreError):
        with store.transaction():
            pass


def test_transaction_is_one_atomic_write(kiosk_store, monkeypatch):
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(store_mod.os, "replace", lambda a, b: (replaced.append(b), real_replace(a, b)))
    with kiosk_store.transaction():
        kiosk_store.outbox.insert({"txn_id": "a"})
        kiosk_store.conflicts.insert({"txn_id": "b"})
        kiosk_store.outbox.remove(Query().txn_id == "a")
        assert replaced == []                           # nothing on disk yet
        assert kiosk_store.conflicts.all() == [{"txn_id": "b"}]  # but visible inside
    assert len(replaced) == 1
    on_disk = json.loads(kiosk_store.path.read_text())
    assert list(on_disk["conflicts"].values()) == [{"txn_id": "b"}]
    assert on_disk["outbox"] == {}


def test_failed_transaction_leaves_file_and_tables_untouched(kiosk_store):
    kiosk_store.outbox.insert({"txn_id": "keep"})
    before = kiosk_store.path.read_bytes()
    with pytest.raises(RuntimeError):
        with kiosk_store.transaction():
            kiosk_store.outbox.insert({"txn_id": "lost"})
            kiosk_store.outbox.remove(Query().txn_id == "keep")
            assert kiosk_store.outbox.search(Query().txn_id == "lost")   # fills the query cache
            raise RuntimeError("power went")
    assert kiosk_store.path.read_bytes() == before
    assert kiosk_store.outbox.search(Query().txn_id == "lost") == []
    assert [d["txn_id"] for d in kiosk_store.outbox.all()] == ["keep"]
    doc_id = kiosk_store.outbox.insert({"txn_id": "next"})
    assert doc_id == 2 and len(kiosk_store.outbox) == 2


def test_two_threads_writing_lose_nothing(kiosk_store):
    """TinyDB is read-modify-write: without the store lock one thread's inserts vanish."""
    def writer(tag):
        for i in range(60):
            kiosk_store.outbox.insert({"w": tag, "i": i})
            kiosk_store.audit.insert({"w": tag, "i": i})

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kiosk_store.outbox) == 120
    assert len(kiosk_store.audit) == 120
    assert len(json.loads(kiosk_store.path.read_text())["outbox"]) == 120


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
    assert len(kiosk_store.audit) == 0


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
    assert len(kiosk_store.audit) == 5

    smaller = Audit(kiosk_store, clock, capacity=3)
    smaller.record("kiosk", "tick", n=12)
    assert [e["fields"]["n"] for e in smaller.entries()] == [10, 11, 12]


# -- in-memory copy never runs ahead of the disk ----------------------------------------

def test_failed_disk_write_leaves_memory_and_file_at_the_old_state(kiosk_store, monkeypatch):
    kiosk_store.outbox.insert({"txn_id": "a"})
    before = kiosk_store.path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", disk_full)
    with pytest.raises(OSError):
        kiosk_store.outbox.insert({"txn_id": "b"})
    monkeypatch.undo()
    assert kiosk_store.path.read_bytes() == before
    assert [d["txn_id"] for d in kiosk_store.outbox.all()] == ["a"]
    assert list(kiosk_store.path.parent.glob("*.tmp")) == []
    kiosk_store.outbox.insert({"txn_id": "c"})
    assert [d["txn_id"] for d in kiosk_store.outbox.all()] == ["a", "c"]


def test_half_applied_tinydb_update_is_not_seen_or_written_later(kiosk_store):
    kiosk_store.outbox.insert({"txn_id": "a", "state": "queued"})
    kiosk_store.outbox.insert({"txn_id": "b", "state": "queued"})

    def transform(doc):                     # TinyDB applies this doc by doc, in place
        doc["state"] = "in_flight"
        if doc["txn_id"] == "b":
            raise ValueError("bad doc")

    with pytest.raises(ValueError):
        kiosk_store.outbox.update(transform)
    assert [d["state"] for d in kiosk_store.outbox.all()] == ["queued", "queued"]
    kiosk_store.settings.insert({"name": "x", "value": 1})                  # the next write
    on_disk = json.loads(kiosk_store.path.read_text())["outbox"]
    assert [d["state"] for d in on_disk.values()] == ["queued", "queued"]


def test_an_error_swallowed_inside_a_transaction_still_aborts_it(kiosk_store):
    kiosk_store.outbox.insert({"txn_id": "a", "state": "queued"})
    before = kiosk_store.path.read_bytes()

    def transform(doc):
        doc["state"] = "in_flight"
        raise ValueError("bad doc")

    with pytest.raises(StoreError):
        with kiosk_store.transaction():
            kiosk_store.outbox.insert({"txn_id": "b"})
            try:
                kiosk_store.outbox.update(transform)
            except ValueError:
                pass                                   # a careless caller carries on
    assert kiosk_store.path.read_bytes() == before
    assert [(d["txn_id"], d["state"]) for d in kiosk_store.outbox.all()] == [("a", "queued")]
