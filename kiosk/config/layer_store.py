"""The accepted signed layer on disk: the layer in force, the last known good one, the
version high-water mark and the last rollback.

The bundles are kept exactly as central IT signed them, so every start-up verifies them
again against the keys pinned *now* (a key removed from `management.trusted_keys`
stops its bundles at the next restart). `version` is the high-water mark: the floor
for the next push, so a rollback is refused across restarts too, even when the stored
bundle no longer verifies, and a layer the kiosk rolled back from is never accepted
again as new (a later version is). Everything sits in one JSON document written
through the store's `AtomicJSONStorage`: after a power cut the file is the old or the
new one, whole.

Last known good: `good` is the bundle that last brought the app to READY. A start with
a layer that is not the good one first writes `trial` (its digest); a start that finds
`trial` already naming the layer in force knows the previous start with it never
reached READY, and falls back (kiosk.config.applier.load_effective_config).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk.config.rollback import Rollback
from kiosk.config.signed import Bundle, BundleRefused, verify_bundle
from kiosk.logs import log_event
from kiosk.store.database import AtomicJSONStorage, StoreError

LAYER_FILE = "signed_config.json"
_REREAD_MAX_BYTES = 1 << 20         # the bundle was size-checked when accepted; this only bounds a bad file

log = logging.getLogger("kiosk.config")


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class StoredLayer:
    raw: bytes | None               # the layer in force (None: rolled back to the site file)
    version: int                    # the high-water mark
    accepted_at: str
    current_version: int | None = None
    good: bytes | None = None       # the last layer that reached READY
    trial: str | None = None        # digest of a layer whose start has not reached READY yet
    rollback: Rollback | None = None

    @property
    def digest(self) -> str | None:
        return None if self.raw is None else _digest(self.raw)

    @property
    def good_digest(self) -> str | None:
        return None if self.good is None else _digest(self.good)


def _text(value: Any, path: Path) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise StoreError(f"{path} is not a signed layer file")
    return value.encode("utf-8")


class SignedLayerStore:
    """`data_dir/signed_config.json`. Each call opens, locks and closes the file, so a
    second process writing it fails loudly (StoreBusy) instead of racing."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LAYER_FILE

    def _read_doc(self) -> dict | None:
        if not self.path.exists():
            return None
        storage = AtomicJSONStorage(self.path)
        try:
            return storage.read()
        finally:
            storage.close()

    def read(self) -> StoredLayer | None:
        """The stored layer, or None when nothing was ever accepted. StoreError when the
        file is unreadable or not ours."""
        doc = self._read_doc()
        if doc is None:
            return None
        try:
            raw = _text(doc["bundle"], self.path)
            version = doc["version"]
            accepted_at = doc["accepted_at"]
            current = doc.get("current_version", version)
            good = _text(doc.get("good"), self.path)
        except (KeyError, TypeError, AttributeError):
            raise StoreError(f"{self.path} is not a signed layer file") from None
        for number in (version, current):
            if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
                raise StoreError(f"{self.path} is not a signed layer file")
        if not isinstance(version, int):
            raise StoreError(f"{self.path} is not a signed layer file")
        trial = doc.get("trial") if isinstance(doc.get("trial"), str) else None
        return StoredLayer(raw=raw, version=version, accepted_at=str(accepted_at),
                           current_version=current if raw is not None else None, good=good, trial=trial,
                           rollback=Rollback.from_json(doc.get("rollback")))

    def highest_version(self) -> int | None:
        stored = self.read()
        return None if stored is None else stored.version

    def _update(self, change: Any) -> None:
        storage = AtomicJSONStorage(self.path, ensure_ascii=False)
        try:
            doc = storage.read()
            if doc is None:
                return
            new = change(dict(doc))
            if new is not None and new != doc:
                storage.write(new)
        finally:
            storage.close()

    def save(self, bundle: Bundle, accepted_at: datetime) -> None:
        """Make `bundle` the layer in force and its version the high-water mark, in one
        atomic write; the last good layer and the last rollback are kept."""
        storage = AtomicJSONStorage(self.path, ensure_ascii=False)
        try:
            current = storage.read() or {}
            if isinstance(current.get("version"), int) and bundle.version <= current["version"]:
                raise StoreError(f"version {bundle.version} is not above the stored {current['version']}")
            doc = {"version": bundle.version, "current_version": bundle.version, "digest": bundle.digest,
                   "accepted_at": accepted_at.isoformat(timespec="seconds"),
                   "bundle": bundle.raw.decode("utf-8")}
            for keep in ("good", "good_version", "rollback"):
                if keep in current:
                    doc[keep] = current[keep]
            if "good" not in current and current.get("bundle"):
                # written by a release without last-known-good: the layer it ran on was good
                doc["good"], doc["good_version"] = current["bundle"], current.get("version")
            storage.write(doc)
        finally:
            storage.close()

    def begin_trial(self, digest: str) -> None:
        """A start with the layer `digest` begins; cleared when it reaches READY."""
        self._update(lambda doc: {**doc, "trial": digest})

    def mark_good(self, digest: str) -> bool:
        """The layer `digest` brought the app to READY: it is the last known good one.
        False when it is no longer the layer in force (nothing changed)."""
        done: list[bool] = []

        def change(doc: dict) -> dict | None:
            raw = doc.get("bundle")
            if not isinstance(raw, str) or _digest(raw.encode("utf-8")) != digest:
                return None
            done.append(True)
            out = {**doc, "good": raw, "good_version": doc.get("current_version", doc.get("version"))}
            out.pop("trial", None)
            return out

        self._update(change)
        return bool(done)

    def roll_back(self, to: Bundle | None, rollback: Rollback) -> None:
        """Put `to` (None: the site file alone) in force instead of the stored layer. The
        high-water mark stays where it is."""
        def change(doc: dict) -> dict:
            out = {**doc, "bundle": None if to is None else to.raw.decode("utf-8"),
                   "current_version": None if to is None else to.version,
                   "digest": None if to is None else to.digest, "rollback": rollback.to_json()}
            if to is None:
                out["good"], out["good_version"] = None, None
            out.pop("trial", None)
            return out

        self._update(change)


def verify_stored(raw: bytes, pinned_keys: dict[str, Ed25519PublicKey], kiosk_id: str,
                  version: int | None) -> Bundle:
    """A stored bundle verified again (signature, pinned key, kiosk target); BundleRefused."""
    bundle = verify_bundle(raw, pinned_keys, kiosk_id, None, None, None, max_bytes=_REREAD_MAX_BYTES)
    if version is not None and bundle.version != version:
        raise BundleRefused("version_mismatch", "the stored version does not match the bundle", version)
    return bundle


def load_signed_bundle(data_dir: Path, pinned_keys: dict[str, Ed25519PublicKey], kiosk_id: str) -> Bundle | None:
    """The stored bundle in force, verified again, or None.

    Never raises for a bad file: the kiosk then starts on its site configuration and
    the reason goes to the log, because a bad layer must not stop a working kiosk.
    """
    store = SignedLayerStore(data_dir)
    try:
        stored = store.read()
    except (StoreError, OSError) as e:
        log_event(log, "config.signed_layer_unreadable", level=logging.ERROR, error=type(e).__name__)
        return None
    if stored is None or stored.raw is None:
        return None
    try:
        return verify_stored(stored.raw, pinned_keys, kiosk_id, stored.current_version)
    except BundleRefused as e:
        log_event(log, "config.signed_layer_ignored", level=logging.ERROR, code=e.code, reason=e.reason,
                  version=stored.current_version)
        return None


def load_signed_layer(data_dir: Path, pinned_keys: dict[str, Ed25519PublicKey], kiosk_id: str) -> dict | None:
    bundle = load_signed_bundle(data_dir, pinned_keys, kiosk_id)
    return None if bundle is None else bundle.layer
