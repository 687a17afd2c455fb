"""The device key, checked against the store it opens.

A key file that went missing (or was replaced) while sealed loans wait would make
every one of them unreadable. So a new key is made only for a store that holds no
sealed data, and the store keeps a sealed check value: a different key fails on it
at start-up, before the kiosk lends anything, with a reason staff can act on.
"""

from __future__ import annotations

import os
from pathlib import Path

from kiosk.store.database import Store
from kiosk.store.errors import KeyUnavailable
from kiosk.store.sealed import KEY_BYTES, DeviceKey, KeyFileError, SealBroken

KEY_CHECK = "store.key_check"
_CHECK_AAD = b"kiosk device key check v1"
_CHECK_VALUE = "this store was sealed with this key"

RESTORE_HINT = ("restore the kiosk's device.key from its backup and restart; if the key is lost for good, "
                "the queued loans cannot be read: move the data directory aside for the record and "
                "start afresh (see `kiosk doctor`)")


def open_device_key(path: str | os.PathLike[str], store: Store) -> DeviceKey:
    """The key that opens `store`'s sealed rows. KeyUnavailable when it is missing or a
    different key while sealed data exists; KeyFileError when the file is unsafe."""
    path = Path(path)
    try:
        key = DeviceKey.load(path)
    except FileNotFoundError:
        if store.holds_sealed_data():
            raise KeyUnavailable(f"the device key {path} is missing but the store holds sealed loans; "
                                 + RESTORE_HINT) from None
        if store.snapshot:                  # a reader makes no key: nothing sealed to open anyway
            return DeviceKey(os.urandom(KEY_BYTES))
        key = DeviceKey.load_or_create(path)
    check = store.get_setting(KEY_CHECK)
    if check is None or not store.holds_sealed_data() and not _opens(key, check):
        if not store.snapshot:
            store.set_setting(KEY_CHECK, key.seal(_CHECK_VALUE, _CHECK_AAD))
        return key
    if not _opens(key, check):
        raise KeyUnavailable(f"the device key {path} is not the key this store was sealed with; " + RESTORE_HINT)
    return key


def _opens(key: DeviceKey, check: str) -> bool:
    try:
        return bool(key.unseal(check, _CHECK_AAD) == _CHECK_VALUE)
    except SealBroken:
        return False


__all__ = ["KEY_CHECK", "KeyFileError", "KeyUnavailable", "RESTORE_HINT", "open_device_key"]
