"""The accepted signed layer on disk: the raw bundle and the version high-water mark.

The bundle is kept exactly as central IT signed it, so every start-up verifies it
again against the keys pinned *now* (a key removed from `management.trusted_keys`
stops its bundles at the next restart). The version is the floor for the next push,
so a rollback is refused across restarts too, even when the stored bundle itself no
longer verifies. Both sit in one JSON document written through the store's
`AtomicJSONStorage`: after a power cut the file is the old or the new one, whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.config.signed import Bundle, BundleRefused, verify_bundle
from kiosk.logs import log_event
from kiosk.store.database import AtomicJSONStorage, StoreError

LAYER_FILE = "signed_config.json"
_REREAD_MAX_BYTES = 1 << 20         # the bundle was size-checked when accepted; this only bounds a bad file

log = logging.getLogger("kiosk.config")


@dataclass(frozen=True)
class StoredLayer:
    raw: bytes
    version: int
    accepted_at: str


class SignedLayerStore:
    """`data_dir/signed_config.json`. Each call opens, locks and closes the file, so a
    second process writing it fails loudly (StoreBusy) instead of racing."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LAYER_FILE

    def read(self) -> StoredLayer | None:
        """The stored layer, or None when nothing was ever accepted. StoreError when the
        file is unreadable or not ours."""
        if not self.path.exists():
            return None
        storage = AtomicJSONStorage(self.path)
        try:
            doc = storage.read()
        finally:
            storage.close()
        if doc is None:
            return None
        try:
            raw = doc["bundle"].encode("utf-8")
            version = doc["version"]
            accepted_at = doc["accepted_at"]
        except (KeyError, TypeError, AttributeError):
            raise StoreError(f"{self.path} is not a signed layer file") from None
        if isinstance(version, bool) or not isinstance(version, int):
            raise StoreError(f"{self.path} is not a signed layer file")
        return StoredLayer(raw=raw, version=version, accepted_at=str(accepted_at))

    def highest_version(self) -> int | None:
        stored = self.read()
        return None if stored is None else stored.version

    def save(self, bundle: Bundle, accepted_at: datetime) -> None:
        """Replace the stored layer with `bundle` in one atomic write."""
        storage = AtomicJSONStorage(self.path, ensure_ascii=False)
        try:
            current = storage.read()
            if current is not None and isinstance(current.get("version"), int) \
                    and bundle.version <= current["version"]:
                raise StoreError(f"version {bundle.version} is not above the stored {current['version']}")
            storage.write({"version": bundle.version, "digest": bundle.digest,
                           "accepted_at": accepted_at.isoformat(timespec="seconds"),
                           "bundle": bundle.raw.decode("utf-8")})
        finally:
            storage.close()


def load_signed_bundle(data_dir: Path, pinned_keys: dict[str, Ed25519PublicKey], kiosk_id: str) -> Bundle | None:
    """The stored bundle, verified again (signature, pinned key, kiosk target), or None.

    Never raises for a bad file: the kiosk then starts on its site configuration and
    the reason goes to the log, because a bad layer must not stop a working kiosk.
    """
    store = SignedLayerStore(data_dir)
    try:
        stored = store.read()
    except (StoreError, OSError) as e:
        log_event(log, "config.signed_layer_unreadable", level=logging.ERROR, error=type(e).__name__)
        return None
    if stored is None:
        return None
    try:
        bundle = verify_bundle(stored.raw, pinned_keys, kiosk_id, None, None, None, max_bytes=_REREAD_MAX_BYTES)
    except BundleRefused as e:
        log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code=e.code, reason=e.reason,
                  version=stored.version)
        return None
    if bundle.version != stored.version:
        log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code="version_mismatch",
                  reason="the stored version does not match the bundle", version=stored.version)
        return None
    return bundle


def load_signed_layer(data_dir: Path, pinned_keys: dict[str, Ed25519PublicKey], kiosk_id: str) -> dict | None:
    bundle = load_signed_bundle(data_dir, pinned_keys, kiosk_id)
    return None if bundle is None else bundle.layer
