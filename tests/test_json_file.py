"""The crash-safe JSON file (the signed config layer and the demo's local catalogue use it)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from tinydb import TinyDB

from kiosk.store.json_file import AtomicJSONStorage
from kiosk.store.errors import StoreCorrupt


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
