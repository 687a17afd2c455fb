"""Configuration bundles signed by central IT: format, signing and the kiosk's checks.

A bundle is JSON: {"format", "payload": {version, issued_at, expires_at, target,
config}, "signature": {alg, key_id, value}}. The signature is Ed25519 over a fixed
prefix plus the canonical JSON of the payload, so the bundle stays readable, any
re-formatting that keeps the meaning still verifies, and nothing outside the payload
is trusted. Pure code over bytes and plain data: the clock, the pinned keys and the
version high-water mark are passed in.

`verify_bundle` runs its checks in a fixed order and refuses with the first failing
one (`BundleRefused.code`, see REFUSAL_CODES), so central IT always gets the same
reason for the same input. Size comes first: parsing an oversized body is itself the
attack. Everything that depends on who signed comes after the signature check.

Push-protected keys (PUSH_PROTECTED) stay with the site file, whoever signed the push:
  - management.*: the endpoint, its TLS material and the pinned signing keys. A push
    that could change them could lock central IT out with one mistake, or let a
    stolen signing key replace the pins and stay in control.
  - kiosk.id: the identity that targeting checks against.
  - kiosk.data_dir: where the loan outbox and the rollback high-water mark live;
    moving it would strand queued loans and reset rollback protection.
  - kiosk.demo, card.accept_test_pki, card.test_anchors: a public kiosk must never be
    switched to simulated cards or test CAs from the network.
card.trust_anchors (ADD_ONLY) may be pushed, but only adds: the kiosk keeps every
anchor it already has and appends the pushed ones, and each pushed anchor must be a
file shipped with the software in the J-LIS trust directory (config/trust/jpki). A
push can enable the next J-LIS CA generation ahead of a software release; it cannot
remove a J-LIS anchor or introduce a CA that did not arrive in a signed package, so
even a stolen config-signing key cannot mint patrons.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.card.identity import SHIPPED_TRUST_DIR
from kiosk.config.load import ConfigError, validate_layer
from kiosk.config.schema import field_at

FORMAT = "kiosk-config-bundle/1"
SIGNED_PREFIX = FORMAT.encode("ascii") + b"\x00"     # domain separation: this key signs nothing else
ALG = "Ed25519"
MAX_BUNDLE_BYTES = 65536

# Reason codes, in the order the checks run.
TOO_LARGE = "too_large"
MALFORMED = "malformed"
UNSIGNED = "unsigned"
WRONG_KEY = "wrong_key"             # signed by a key this kiosk does not pin (unknown key id)
BAD_SIGNATURE = "bad_signature"     # a pinned key id, but the signature does not match: tampered
EXPIRED = "expired"
OTHER_TARGET = "other_target"
REPLAYED = "replayed"               # this version is the one already applied
OLDER_VERSION = "older_version"     # rollback
SCHEMA_ERROR = "schema"             # unknown key, wrong type, out of range (ConfigError's reason)
PROTECTED = "protected_key"         # a key only the site file may set
REFUSAL_CODES = (TOO_LARGE, MALFORMED, UNSIGNED, WRONG_KEY, BAD_SIGNATURE, EXPIRED, OTHER_TARGET,
                 REPLAYED, OLDER_VERSION, SCHEMA_ERROR, PROTECTED)

PUSH_PROTECTED = ("management", "kiosk.id", "kiosk.data_dir", "kiosk.demo",
                  "card.accept_test_pki", "card.test_anchors")
ADD_ONLY = ("card.trust_anchors",)

_TOP_KEYS = {"format", "payload", "signature"}
_PAYLOAD_KEYS = {"version", "issued_at", "expires_at", "target", "config"}
_SIGNATURE_KEYS = {"alg", "key_id", "value"}
MAX_VERSION = 2**53 - 1             # stays exact in every JSON implementation central IT might use


class BundleRefused(Exception):
    """Why a bundle is not applied: a stable `code` for tools and a `reason` for people."""

    def __init__(self, code: str, reason: str, version: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason
        self.version = version              # the bundle's claimed version, once it was read


@dataclass(frozen=True)
class Bundle:
    version: int
    key_id: str
    issued_at: datetime
    expires_at: datetime
    target_kiosk: str | None
    target_group: str | None
    layer: dict = field(repr=False)
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 of the bundle as received: names it in audits, ETags and status."""
        return hashlib.sha256(self.raw).hexdigest()


# -- keys -----------------------------------------------------------------------------

def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Ed25519PublicKey]:
    """The pinned keys by key id, from PEM files; ConfigError names a file that is not one."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
        except OSError as e:
            raise ConfigError(str(path), "", f"trusted key cannot be read ({e.strerror})") from None
        except ValueError:
            raise ConfigError(str(path), "", "not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(str(path), "", "not an Ed25519 public key")
        keys[key_id(key)] = key
    return keys


def keys_by_id(keys: dict[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """Pinned keys by key id, given as that table or as a list (configuration layers and releases alike)."""
    return dict(keys) if isinstance(keys, dict) else {key_id(k): k for k in keys}


# -- canonical form and signing -------------------------------------------------------

def canonical_json(value: Any) -> bytes:
    """One byte string per meaning: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def sign_bundle(layer: dict, private_key: Ed25519PrivateKey, version: int, *, issued_at: datetime,
                expires_at: datetime, target_kiosk: str | None = None, target_group: str | None = None) -> bytes:
    """A bundle for `layer`, ready to push. The caller validates the layer first (check_layer)."""
    if target_kiosk and target_group:
        raise ValueError("a bundle targets one kiosk or one group, not both")
    if issued_at.tzinfo is None or expires_at.tzinfo is None:
        raise ValueError("issued_at and expires_at need a time zone")
    target = {"kiosk": target_kiosk} if target_kiosk else {"group": target_group} if target_group else None
    payload = {"version": version, "issued_at": _iso(issued_at), "expires_at": _iso(expires_at),
               "target": target, "config": layer}
    signature = private_key.sign(SIGNED_PREFIX + canonical_json(payload))
    bundle = {"format": FORMAT, "payload": payload,
              "signature": {"alg": ALG, "key_id": key_id(private_key.public_key()),
                            "value": base64.b64encode(signature).decode("ascii")}}
    return json.dumps(bundle, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8") + b"\n"


# -- checks ---------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k[:40]!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(raw: bytes) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleRefused(MALFORMED, "not UTF-8 text") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise BundleRefused(MALFORMED, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise BundleRefused(MALFORMED, f"not valid JSON ({reason})") from None
    if not isinstance(doc, dict):
        raise BundleRefused(MALFORMED, "not a JSON object")
    return doc


def _time(payload: dict, name: str) -> datetime:
    value = payload.get(name)
    if not isinstance(value, str):
        raise BundleRefused(MALFORMED, f"payload.{name} must be an ISO 8601 date and time")
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise BundleRefused(MALFORMED, f"payload.{name} is not an ISO 8601 date and time") from None
    if t.tzinfo is None:
        raise BundleRefused(MALFORMED, f"payload.{name} needs a time zone (e.g. +09:00 or Z)")
    return t


def _target(value: Any) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    if (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("kiosk", "group")
            and isinstance(next(iter(value.values())), str) and next(iter(value.values()))):
        return (value.get("kiosk"), value.get("group"))
    raise BundleRefused(MALFORMED, 'payload.target must be null, {"kiosk": ID} or {"group": NAME}')


def _structure(doc: dict) -> tuple[dict, dict]:
    extra = set(doc) - _TOP_KEYS
    if extra:
        raise BundleRefused(MALFORMED, f"unknown field {sorted(extra)[0][:40]!r} in the bundle")
    if doc.get("format") != FORMAT:
        raise BundleRefused(MALFORMED, f"format must be {FORMAT!r}")
    payload, sig = doc.get("payload"), doc["signature"]
    if not isinstance(payload, dict):
        raise BundleRefused(MALFORMED, "payload must be an object")
    if set(payload) != _PAYLOAD_KEYS:
        raise BundleRefused(MALFORMED, f"payload must have exactly {', '.join(sorted(_PAYLOAD_KEYS))}")
    if not isinstance(sig, dict) or set(sig) != _SIGNATURE_KEYS:
        raise BundleRefused(MALFORMED, "signature must be an object with alg, key_id and value")
    if sig["alg"] != ALG:
        raise BundleRefused(MALFORMED, f"signature.alg must be {ALG!r}")
    if not isinstance(sig["key_id"], str) or not isinstance(sig["value"], str):
        raise BundleRefused(MALFORMED, "signature.key_id and signature.value must be strings")
    return payload, sig


def _check_signature(payload: dict, sig: dict, keys: dict[str, Ed25519PublicKey],
                     prefix: bytes = SIGNED_PREFIX) -> str:
    """The key id that signed `prefix` + the canonical payload, else BundleRefused. Signed
    software releases (kiosk/release/manifest.py) pass their own prefix: a signature made
    for one purpose never verifies for the other."""
    kid = sig["key_id"]
    key = keys.get(kid)
    if key is None:
        shown = kid if len(kid) <= 64 and kid.isprintable() else kid[:16].encode("unicode_escape").decode() + "..."
        trusted = ", ".join(sorted(keys)) or "none"
        raise BundleRefused(WRONG_KEY, f"signed by key {shown!r}, which this kiosk does not trust "
                                       f"(trusted: {trusted})")
    try:
        signature = base64.b64decode(sig["value"], validate=True)
    except (binascii.Error, ValueError):
        raise BundleRefused(BAD_SIGNATURE, "signature.value is not base64") from None
    try:
        message = prefix + canonical_json(payload)
    except (UnicodeEncodeError, ValueError, RecursionError):
        raise BundleRefused(MALFORMED, "payload cannot be put in canonical form (bad text or numbers)") from None
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise BundleRefused(BAD_SIGNATURE, "the signature does not match the content: "
                                           "the bundle was changed after signing") from None
    return kid


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise BundleRefused(MALFORMED, "payload.version must be a whole number from 1")
    return value


def check_layer(layer: Any, source: str) -> None:
    """The schema and the push rules for a layer that is to be pushed (also used by the
    signing tool, so central IT learns of a bad key before anything leaves the office)."""
    if not isinstance(layer, dict):
        raise BundleRefused(MALFORMED, "payload.config must be an object")
    try:
        validate_layer(layer, source)
    except ConfigError as e:
        raise BundleRefused(SCHEMA_ERROR, f"{e.key}: {e.reason}" if e.key else e.reason) from None
    for dotted in _dotted_keys(layer) + _dotted_keys(layer, tables=True):    # the leaf named first
        if any(dotted == p or dotted.startswith(p + ".") for p in PUSH_PROTECTED):
            raise BundleRefused(PROTECTED, f"{dotted}: may only be set in the site file, never pushed")
    anchors = layer.get("card", {}).get("trust_anchors")
    if anchors is not None:
        for value in anchors:
            if _anchor_name(value) is None:
                raise BundleRefused(SCHEMA_ERROR, f"card.trust_anchors: {value[:80]!r} must be the name of "
                                                  "a file in the shipped trust directory (config/trust/jpki)")
    for dotted in _dotted_keys(layer):
        spec = field_at(dotted)
        if spec is not None and spec.kind in ("path", "paths") and dotted not in ADD_ONLY:
            values = _get(layer, dotted)
            for v in values if isinstance(values, list) else [values]:
                if v and not v.startswith("/"):
                    raise BundleRefused(SCHEMA_ERROR, f"{dotted}: a pushed path must be absolute, got {v[:80]!r}")


def _anchor_name(value: str) -> str | None:
    """The file name a pushed trust anchor names, or None when it points elsewhere."""
    p = PurePosixPath(value)
    name = p.name
    if not name.endswith(".pem") or name in ("", ".pem"):
        return None
    if len(p.parts) == 1:
        return name
    return name if p.is_absolute() and str(p.parent) == str(SHIPPED_TRUST_DIR) else None


def verify_bundle(raw: bytes, pinned_keys: dict[str, Ed25519PublicKey] | Iterable[Ed25519PublicKey],
                  kiosk_id: str, group: str | None, current_version: int | None, now: datetime | None,
                  *, max_bytes: int = MAX_BUNDLE_BYTES) -> Bundle:
    """The bundle in `raw` if this kiosk may apply it, else BundleRefused(code, reason).

    Whatever `raw` holds, BundleRefused is the only exception (tests/test_fuzz_config.py):
    the endpoint answers every push with a status code, never a traceback.

    `current_version` is the highest version applied so far (None: none). `now=None`
    skips the expiry check and `group=None` the group target, for re-reading the
    stored bundle at start-up: expiry limits when a bundle may be accepted, not how
    long it stays in force, and a push may itself have moved the kiosk to the group.
    """
    if len(raw) > max_bytes:
        raise BundleRefused(TOO_LARGE, f"{len(raw)} bytes; at most {max_bytes} are accepted")
    doc = _parse(raw)
    if doc.get("signature") is None:
        raise BundleRefused(UNSIGNED, "the bundle carries no signature")
    payload, sig = _structure(doc)
    version = _version(payload["version"])
    try:
        return _verify_versioned(raw, payload, sig, version, keys_by_id(pinned_keys), kiosk_id, group,
                                 current_version, now)
    except BundleRefused as e:
        e.version = version
        raise


def _verify_versioned(raw: bytes, payload: dict, sig: dict, version: int, keys: dict[str, Ed25519PublicKey],
                      kiosk_id: str, group: str | None, current_version: int | None,
                      now: datetime | None) -> Bundle:
    issued_at, expires_at = _time(payload, "issued_at"), _time(payload, "expires_at")
    if expires_at <= issued_at:
        raise BundleRefused(MALFORMED, "payload.expires_at is not after payload.issued_at")
    target_kiosk, target_group = _target(payload["target"])
    kid = _check_signature(payload, sig, keys)
    if now is not None and now >= expires_at:
        raise BundleRefused(EXPIRED, f"expired at {_iso(expires_at)} (kiosk time {_iso(now)})")
    if target_kiosk is not None and target_kiosk != kiosk_id:
        raise BundleRefused(OTHER_TARGET, f"meant for kiosk {target_kiosk[:64]!r}, this is {kiosk_id!r}")
    if target_group is not None and group is not None and target_group != group:
        raise BundleRefused(OTHER_TARGET, f"meant for group {target_group[:64]!r}, this kiosk is in {group!r}")
    if current_version is not None and version == current_version:
        raise BundleRefused(REPLAYED, f"version {version} is already applied")
    if current_version is not None and version < current_version:
        raise BundleRefused(OLDER_VERSION, f"version {version} is older than the applied version "
                                           f"{current_version}; rollback refused")
    check_layer(payload["config"], f"bundle v{version}")
    return Bundle(version=version, key_id=kid, issued_at=issued_at, expires_at=expires_at,
                  target_kiosk=target_kiosk, target_group=target_group, layer=payload["config"], raw=raw)


check_signature, parse_json = _check_signature, _parse     # shared with kiosk.release (signed software)


# -- applying -------------------------------------------------------------------------

def effective_layer(layer: dict, base_config: dict) -> dict:
    """The layer as it is merged over `base_config`: pushed trust anchors are appended
    to the kiosk's own (resolved in the shipped trust directory), never replace them."""
    anchors = layer.get("card", {}).get("trust_anchors")
    if anchors is None:
        return layer
    have = list(base_config["card"]["trust_anchors"])
    for value in anchors:
        path = str(SHIPPED_TRUST_DIR / (_anchor_name(value) or "-"))
        if path not in have:
            have.append(path)
    return {**layer, "card": {**layer["card"], "trust_anchors": have}}


def _dotted_keys(node: dict, prefix: str = "", tables: bool = False) -> list[str]:
    """Every leaf key, dotted; with `tables`, the tables on the way too (even empty ones)."""
    out: list[str] = []
    for key, value in node.items():
        if isinstance(value, dict):
            if tables:
                out.append(prefix + key)
            out.extend(_dotted_keys(value, prefix + key + ".", tables))
        else:
            out.append(prefix + key)
    return out


def _get(node: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        node = node[part]
    return node


_MISSING = object()


def live_and_restart_keys(old_config: dict, new_config: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The dotted keys whose values differ, split into those that may change at the next
    idle moment (Field.live) and those that need the app restarted."""
    changed = set()
    old_keys, new_keys = set(_dotted_keys(old_config)), set(_dotted_keys(new_config))
    for dotted in old_keys | new_keys:
        old = _get(old_config, dotted) if dotted in old_keys else _MISSING
        new = _get(new_config, dotted) if dotted in new_keys else _MISSING
        if old is _MISSING or new is _MISSING or old != new:
            changed.add(dotted)
    live = sorted(k for k in changed if (f := field_at(k)) is not None and f.live)
    restart = sorted(k for k in changed if k not in live)
    return tuple(live), tuple(restart)


__all__ = [
    "ADD_ONLY", "BundleRefused", "Bundle", "FORMAT", "MAX_BUNDLE_BYTES", "PUSH_PROTECTED", "REFUSAL_CODES",
    "canonical_json", "check_layer", "effective_layer", "key_id", "live_and_restart_keys",
    "load_public_keys", "sign_bundle", "verify_bundle",
]
