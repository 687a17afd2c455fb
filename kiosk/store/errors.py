"""What can go wrong with the kiosk's local data, as exceptions the shell can act on.

Every one of them means: stop lending and say why; never carry on, never rebuild.
"""

from __future__ import annotations


class StoreError(Exception):
    """The local store cannot be used; the kiosk must stop lending, not carry on."""


class StoreBusy(StoreError):
    """Another process (or another open in this process) holds the store."""


class StoreCorrupt(StoreError):
    """The database file cannot be read as ours. It is kept untouched for recovery."""


class StoreReadOnly(StoreError):
    """The data directory or database cannot be written (read-only mount, permissions)."""


class KeyUnavailable(StoreError):
    """Sealed data exists but the device key that sealed it is missing or a different one.

    A new key would make every queued loan unreadable, so none is made: the kiosk goes
    out of service until staff restore the key file (from the kiosk's backup)."""
