"""Signed software releases: the manifest central IT signs, and the kiosk's checks.

A release is a directory: the kiosk wheel, its lock file, optional extra wheels (for
kiosks that install offline), and manifest.json:
  {"format": "kiosk-release/1",
   "payload": {version, created_at, expires_at, target, files: {name: {sha256, size, role}}},
   "signature": {alg, key_id, value}}
Signed with the same Ed25519 key handling as configuration layers (kiosk/config/signed.py)
but over a prefix of its own ("kiosk-release/1\\0"), and verified only against the
release keys (management.release_keys): a configuration signature is never a release
signature, and a configuration key is not a release key (tests/test_release.py).

Pure code over bytes and plain data: the clock, the pinned keys and what this kiosk has
installed (ReleaseState: high-water mark, rolled-back versions) are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.config.signed import (ALG, BAD_SIGNATURE, EXPIRED, MALFORMED, OTHER_TARGET, TOO_LARGE, UNSIGNED,
                                 WRONG_KEY, BundleRefused, canonical_json, check_signature, key_id, parse_json,
                                 keys_by_id)
from kiosk.release.guard import ReleaseState, parse_version

FORMAT = "kiosk-release/1"
SIGNED_PREFIX = FORMAT.encode("ascii") + b"\x00"     # domain separation from config bundles
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 65536
MAX_FILE_BYTES = 512 * 1024 * 1024
ROLES = ("wheel", "lock", "dependency")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")

HASH_MISMATCH = "hash_mismatch"
REPLAYED, OLDER_VERSION, ROLLED_BACK = "replayed", "older_version", "rolled_back"
REFUSAL_CODES = (TOO_LARGE, MALFORMED, UNSIGNED, WRONG_KEY, BAD_SIGNATURE, EXPIRED, OTHER_TARGET, REPLAYED,
                 OLDER_VERSION, ROLLED_BACK, HASH_MISMATCH)

_TOP = {"format", "payload", "signature"}
_PAYLOAD = {"version", "created_at", "expires_at", "target", "files"}
_SIG = {"alg", "key_id", "value"}


class ReleaseRefused(BundleRefused):
    """Why a release is not taken: a stable `code` (REFUSAL_CODES) and a `reason`."""


@dataclass(frozen=True)
class ReleaseFile:
    name: str
    sha256: str
    size: int
    role: str


@dataclass(frozen=True)
class Manifest:
    version: str
    key_id: str
    created_at: datetime
    expires_at: datetime
    target_kiosk: str | None
    target_group: str | None
    files: tuple[ReleaseFile, ...]
    raw: bytes

    def one(self, role: str) -> ReleaseFile:
        return next(f for f in self.files if f.role == role)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_version(name: str) -> str:
    """The version in a wheel's file name (name-version-...whl)."""
    parts = name.split("-")
    if not name.endswith(".whl") or len(parts) < 5:
        raise ValueError(f"{name}: not a wheel file name")
    return parts[1]


def sign_manifest(version: str, files: Mapping[str, tuple[str, int, str]], private_key: Ed25519PrivateKey, *,
                  created_at: datetime, expires_at: datetime, target_kiosk: str | None = None,
                  target_group: str | None = None) -> bytes:
    """manifest.json for `files` ({name: (sha256, size, role)}), signed for releases only."""
    parse_version(version)
    if target_kiosk and target_group:
        raise ValueError("a release targets one kiosk or one group, not both")
    if created_at.tzinfo is None or expires_at.tzinfo is None:
        raise ValueError("created_at and expires_at need a time zone")
    target = {"kiosk": target_kiosk} if target_kiosk else {"group": target_group} if target_group else None
    payload = {"version": version, "created_at": created_at.isoformat(timespec="seconds"),
               "expires_at": expires_at.isoformat(timespec="seconds"), "target": target,
               "files": {n: {"sha256": h, "size": s, "role": r} for n, (h, s, r) in sorted(files.items())}}
    _files(payload["files"])                 # the builder is held to what the kiosk checks
    signature = private_key.sign(SIGNED_PREFIX + canonical_json(payload))
    doc = {"format": FORMAT, "payload": payload,
           "signature": {"alg": ALG, "key_id": key_id(private_key.public_key()),
                         "value": base64.b64encode(signature).decode("ascii")}}
    return canonical_json(doc) + b"\n"


def verify_manifest(raw: bytes, release_keys: dict[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
                    kiosk_id: str, group: str | None, state: ReleaseState, running: str | None,
                    now: datetime | None) -> Manifest:
    """The manifest in `raw` if this kiosk may install it, else ReleaseRefused (the only
    exception, whatever `raw` holds). `running` is the version running now: it counts as
    installed for the replay and downgrade checks. `now=None` skips the expiry check."""
    try:
        return _verify(raw, release_keys, kiosk_id, group, state, running, now)
    except ReleaseRefused:
        raise
    except BundleRefused as e:
        raise ReleaseRefused(e.code, e.reason) from None


def _verify(raw: bytes, release_keys: Any, kiosk_id: str, group: str | None, state: ReleaseState,
            running: str | None, now: datetime | None) -> Manifest:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseRefused(TOO_LARGE, f"{len(raw)} bytes; a manifest has at most {MAX_MANIFEST_BYTES}")
    doc = parse_json(raw)
    if doc.get("signature") is None:
        raise ReleaseRefused(UNSIGNED, "the release carries no signature")
    if set(doc) != _TOP or doc.get("format") != FORMAT:
        raise ReleaseRefused(MALFORMED, f"not a release manifest (format must be {FORMAT!r})")
    payload, sig = doc["payload"], doc["signature"]
    if not isinstance(payload, dict) or set(payload) != _PAYLOAD:
        raise ReleaseRefused(MALFORMED, f"payload must have exactly {', '.join(sorted(_PAYLOAD))}")
    if (not isinstance(sig, dict) or set(sig) != _SIG or sig["alg"] != ALG
            or not isinstance(sig["key_id"], str) or not isinstance(sig["value"], str)):
        raise ReleaseRefused(MALFORMED, "signature must be {alg: Ed25519, key_id, value}")
    try:
        version = str(payload["version"])
        parse_version(payload["version"])
        created, expires = (datetime.fromisoformat(payload[k]) for k in ("created_at", "expires_at"))
    except (ValueError, TypeError) as e:
        raise ReleaseRefused(MALFORMED, f"payload: {e}") from None
    if created.tzinfo is None or expires.tzinfo is None or expires <= created:
        raise ReleaseRefused(MALFORMED, "created_at/expires_at need time zones, expiry after creation")
    target_kiosk, target_group = _target(payload["target"])
    files = _files(payload["files"])
    kid = check_signature(payload, sig, keys_by_id(release_keys), prefix=SIGNED_PREFIX)
    if now is not None and now >= expires:
        raise ReleaseRefused(EXPIRED, f"expired at {expires.isoformat(timespec='seconds')}")
    if target_kiosk is not None and target_kiosk != kiosk_id:
        raise ReleaseRefused(OTHER_TARGET, f"meant for kiosk {target_kiosk[:64]!r}, this is {kiosk_id!r}")
    if target_group is not None and group is not None and target_group != group:
        raise ReleaseRefused(OTHER_TARGET, f"meant for group {target_group[:64]!r}, this kiosk is in {group!r}")
    refused = state.refuses(version, running)
    if refused is not None:
        raise ReleaseRefused(*refused)
    wheel = next(f for f in files if f.role == "wheel")
    try:
        named = wheel_version(wheel.name)
    except ValueError as e:
        raise ReleaseRefused(MALFORMED, str(e)) from None
    if named != version:
        raise ReleaseRefused(MALFORMED, f"the wheel {wheel.name} is not version {version}")
    return Manifest(version=version, key_id=kid, created_at=created, expires_at=expires,
                    target_kiosk=target_kiosk, target_group=target_group, files=files, raw=raw)


def _target(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, dict) and len(value) == 1:
        (k, v), = value.items()
        if k in ("kiosk", "group") and isinstance(v, str) and v:
            return (v, None) if k == "kiosk" else (None, v)
    raise ReleaseRefused(MALFORMED, 'payload.target must be null, {"kiosk": ID} or {"group": NAME}')


def _files(value: Any) -> tuple[ReleaseFile, ...]:
    if not isinstance(value, dict) or not value:
        raise ReleaseRefused(MALFORMED, "payload.files must name the release's files")
    out = []
    for name, spec in value.items():
        if not isinstance(name, str) or not NAME_RE.match(name) or name == MANIFEST:
            raise ReleaseRefused(MALFORMED, f"file name {str(name)[:60]!r} is not allowed")
        if (not isinstance(spec, dict) or set(spec) != {"sha256", "size", "role"}
                or not isinstance(spec["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", spec["sha256"])
                or isinstance(spec["size"], bool) or not isinstance(spec["size"], int)
                or not 0 < spec["size"] <= MAX_FILE_BYTES or spec["role"] not in ROLES):
            raise ReleaseRefused(MALFORMED, f"{name}: needs sha256 (hex), size (bytes) and role {ROLES}")
        if spec["role"] in ("wheel", "dependency") and not name.endswith(".whl"):
            raise ReleaseRefused(MALFORMED, f"{name}: a wheel's name ends in .whl")
        out.append(ReleaseFile(name, spec["sha256"], spec["size"], spec["role"]))
    for role in ("wheel", "lock"):
        if sum(f.role == role for f in out) != 1:
            raise ReleaseRefused(MALFORMED, f"a release has exactly one {role}")
    return tuple(sorted(out, key=lambda f: f.name))


def check_files(manifest: Manifest, directory: Path) -> None:
    """Every listed file is in `directory`, a regular file of the signed size and hash."""
    for f in manifest.files:
        path = directory / f.name
        if path.is_symlink() or not path.is_file():
            raise ReleaseRefused(HASH_MISMATCH, f"{f.name}: missing")
        if path.stat().st_size != f.size or sha256_file(path) != f.sha256:
            raise ReleaseRefused(HASH_MISMATCH, f"{f.name}: not the file that was signed (size or SHA-256)")


__all__ = ["FORMAT", "MANIFEST", "Manifest", "REFUSAL_CODES", "ReleaseFile", "ReleaseRefused", "check_files",
           "sha256_file", "sign_manifest", "verify_manifest", "wheel_version"]
