"""Encryption at rest: AES-256-GCM under one device key kept in a 0600 key file.

Loans and patron links are reading records; a stolen SD card must not reveal who
borrowed what. Every sealed value is bound to its place in the store by the AAD,
so a blob copied onto another record (or edited) fails to open instead of lying.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kiosk.store.json_file import fsync_dir

KEY_BYTES = 32          # AES-256
NONCE_BYTES = 12        # 96-bit GCM nonce, fresh and random for every seal


class KeyFileError(Exception):
    """The key file cannot be trusted or read; the kiosk must not seal or unseal with it."""


class SealBroken(ValueError):
    """A sealed value was altered, belongs to another record (AAD), or another key sealed it."""


class DeviceKey:
    """The kiosk's secret. Build with `load_or_create`; the raw key never leaves this object."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"device key must be {KEY_BYTES} bytes")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeviceKey:
        """Load the key file; FileNotFoundError when there is none (nothing is created)."""
        return cls(_read_key_file(Path(path)))

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> DeviceKey:
        """Load the key file, or create it (0600, fsynced, never overwriting one that exists)."""
        path = Path(path)
        try:
            return cls(_read_key_file(path))
        except FileNotFoundError:
            pass
        _create_key_file(path, os.urandom(KEY_BYTES))
        return cls(_read_key_file(path))

    def seal(self, obj: Any, aad: bytes) -> str:
        """base64(nonce || ciphertext+tag) of the JSON of `obj`."""
        plain = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        nonce = os.urandom(NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plain, aad)).decode("ascii")

    def unseal(self, token: str, aad: bytes) -> Any:
        try:
            blob = base64.b64decode(token.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
            raise SealBroken("sealed value is not base64") from exc
        if len(blob) < NONCE_BYTES + 16:
            raise SealBroken("sealed value is too short")
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag as exc:
            raise SealBroken("sealed value failed authentication (tampered, wrong key or wrong record)") from exc
        return json.loads(plain.decode("utf-8"))

    def subkey(self, purpose: bytes) -> bytes:
        """An independent 256-bit key for `purpose` (HKDF-SHA256), e.g. the link-cache HMAC key."""
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(self._key)

    def __repr__(self) -> str:
        return "DeviceKey(<secret>)"


def _read_key_file(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise KeyFileError(
                f"refusing key file {path}: owned by uid {st.st_uid}, not by this process "
                f"(uid {os.geteuid()}); its owner could read every sealed loan"
            )
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"refusing key file {path}: mode {stat.S_IMODE(st.st_mode):04o} lets group/others "
                "read it, and whoever reads it can decrypt every stored loan and patron link; "
                "run `chmod 600` on it (and check who may already have copied it)"
            )
        data = b""
        while len(data) <= KEY_BYTES:
            chunk = os.read(fd, KEY_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise KeyFileError(
            f"key file {path} holds {len(data)} bytes, not {KEY_BYTES}; not replacing it, "
            "because data sealed under the old key would become unreadable"
        )
    return data


def _create_key_file(path: Path, key: bytes) -> None:
    """Write to a private temp file, fsync, then hard-link into place: all or nothing, no overwrite."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=directory)  # 0600
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileExistsError):   # another process won the race: use its key
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    fsync_dir(directory)
