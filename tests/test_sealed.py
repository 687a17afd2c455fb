"""Sealing with the device key: AES-256-GCM, fresh nonces, strict key-file permissions."""

from __future__ import annotations

import base64
import os
import stat
from datetime import datetime

import pytest

from kiosk.core.catalogue import LoanRequest
from kiosk.store.database import open_store
from kiosk.store.outbox import Outbox
from kiosk.store.sealed import KEY_BYTES, NONCE_BYTES, DeviceKey, KeyFileError, SealBroken
from kiosk_testing.store import CANARY_ITEM, CANARY_PATRON, CANARY_TITLE, ManualClock, files_containing

OBJ = {"patron_id": "P0001", "item_id": "I42", "title": "こころ", "n": 3, "ok": True, "none": None}


def test_roundtrip(store_key):
    token = store_key.seal(OBJ, b"outbox|t1")
    assert store_key.unseal(token, b"outbox|t1") == OBJ


def test_token_is_base64_of_nonce_and_ciphertext_with_fresh_nonce(store_key):
    a, b = store_key.seal(OBJ, b"x"), store_key.seal(OBJ, b"x")
    assert a != b
    raw_a, raw_b = base64.b64decode(a), base64.b64decode(b)
    assert raw_a[:NONCE_BYTES] != raw_b[:NONCE_BYTES]
    assert b"P0001" not in raw_a and "こころ".encode() not in raw_a


def test_every_flipped_bit_is_detected(store_key):
    raw = bytearray(base64.b64decode(store_key.seal(OBJ, b"x")))
    for i in range(len(raw)):
        tampered = bytearray(raw)
        tampered[i] ^= 0x01
        with pytest.raises(SealBroken):
            store_key.unseal(base64.b64encode(bytes(tampered)).decode(), b"x")


@pytest.mark.parametrize("token", ["", "not base64!", "AAAA", base64.b64encode(b"\0" * 20).decode()])
def test_garbage_is_refused(store_key, token):
    with pytest.raises(SealBroken):
        store_key.unseal(token, b"x")


def test_wrong_aad_is_refused(store_key):
    token = store_key.seal(OBJ, b"outbox|t1|1")
    with pytest.raises(SealBroken):
        store_key.unseal(token, b"outbox|t2|1")


def test_wrong_key_is_refused(store_key, tmp_path):
    other = DeviceKey.load_or_create(tmp_path / "other.key")
    with pytest.raises(SealBroken):
        other.unseal(store_key.seal(OBJ, b"x"), b"x")


def test_key_file_is_created_private_and_reloaded(tmp_path):
    old = os.umask(0o022)
    try:
        k1 = DeviceKey.load_or_create(tmp_path / "new" / "device.key")
    finally:
        os.umask(old)
    path = tmp_path / "new" / "device.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert os.path.getsize(path) == KEY_BYTES
    assert [p.name for p in path.parent.iterdir()] == ["device.key"]     # no temp file left
    k2 = DeviceKey.load_or_create(path)
    assert k2.unseal(k1.seal(OBJ, b"x"), b"x") == OBJ
    assert "secret" in repr(k1) and path.read_bytes().hex() not in repr(k1)


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_readable_key_file_is_refused_with_reason(tmp_path, bad_mode):
    path = tmp_path / "device.key"
    DeviceKey.load_or_create(path)
    os.chmod(path, bad_mode)
    with pytest.raises(KeyFileError, match="group/others.*decrypt.*chmod 600"):
        DeviceKey.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == bad_mode       # refused, not silently "fixed"


def test_key_file_of_wrong_length_is_refused_not_replaced(tmp_path):
    path = tmp_path / "device.key"
    path.write_bytes(b"short")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="not replacing"):
        DeviceKey.load_or_create(path)
    assert path.read_bytes() == b"short"


def test_symlinked_key_file_is_refused(tmp_path):
    real = tmp_path / "real.key"
    DeviceKey.load_or_create(real)
    (tmp_path / "device.key").symlink_to(real)
    with pytest.raises(OSError):
        DeviceKey.load_or_create(tmp_path / "device.key")


def test_subkeys_differ_by_purpose_and_from_each_other(store_key):
    a, b = store_key.subkey(b"a"), store_key.subkey(b"b")
    assert len(a) == 32 and a != b and a == store_key.subkey(b"a")


def test_nothing_in_clear_on_disk(store_dir, store_key):
    store = open_store(store_dir / "kiosk.db")
    outbox = Outbox(store, store_key, ManualClock())
    outbox.append(LoanRequest("t-1", CANARY_PATRON, CANARY_ITEM, datetime(2025, 4, 1)))
    store.set_setting("sealed_demo", store_key.seal({"title": CANARY_TITLE}, b"demo"))
    store.close()
    assert files_containing(store_dir, [CANARY_PATRON, CANARY_ITEM, CANARY_TITLE]) == []
    # ... and the search itself works: the same data in clear would be found.
    (store_dir / "control.json").write_text(f'{{"t": "{CANARY_TITLE}", "p": "{CANARY_PATRON}"}}', encoding="utf-8")
    assert {n for _, n in files_containing(store_dir, [CANARY_PATRON, CANARY_TITLE])} == {CANARY_PATRON, CANARY_TITLE}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the key file")
def test_key_file_owned_by_someone_else_is_refused(tmp_path):
    path = tmp_path / "device.key"
    DeviceKey.load_or_create(path)
    os.chown(path, 4321, 4321)
    with pytest.raises(KeyFileError, match="owned by uid 4321"):
        DeviceKey.load_or_create(path)
