"""Staff PINs are stored only as scrypt hashes (hashlib's, from OpenSSL).

Format: scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>. A 4-8 digit PIN has little
entropy, so the cost is set high enough to make offline guessing slow and the
sign-in screen locks after a few failures (kiosk/core/staff.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

LOG2_N, R, P = 14, 8, 1


def hash_pin(pin: bytes | bytearray, salt: bytes | None = None, log2_n: int = LOG2_N) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(bytes(pin), salt=salt, n=1 << log2_n, r=R, p=P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${log2_n}${R}${P}${b64(salt)}${b64(digest)}"


def check_pin(pin: bytes | bytearray, stored: str) -> bool:
    try:
        tag, log2_n, r, p, salt, digest = stored.split("$")
        if tag != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(bytes(pin), salt=base64.b64decode(salt), n=1 << int(log2_n), r=int(r),
                             p=int(p), dklen=len(want), maxmem=256 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)
