"""A virtual My Number Card: the card side of the JPKI protocol, in process.

It exists so that everything above the card (allowlist, protocol, identity, card
service, PC/SC edge via vpcd, OpenSC cross-checks) runs against something that
behaves like a card, including the parts the kiosk must never touch: the
signature-side files and the 券面事項入力補助/券面事項確認 APs, whose EF 0001
holds a fake individual number. Counter registration reads the birth date from the
券面事項入力補助AP's EF 0002 (fake basic 4 items as BER-TLV) behind its own PIN,
EF 0011, whose counter is kept like the others. Behaviour follows
/work/shared/reference/jpki.md.

PIN counters persist in a JSON file (when `state_path` is given) because on a
real card they survive power cycles; tests rely on that.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

DEFAULT_ATR = bytes.fromhex("3BE000FF8131FE4514")

JPKI_AID = bytes.fromhex("D392F000260100000001")
KENHOJO_AID = bytes.fromhex("D3921000310001010408")   # 券面事項入力補助AP
KENKAKU_AID = bytes.fromhex("D3921000310001010402")   # 券面事項確認AP

TOKEN_MY_NUMBER_CARD = "JPKIAPICCTOKEN2"
TOKEN_JUKI_CARD = "JPKIAPICCTOKEN"
TOKEN_SMARTPHONE = "JPKIAPGPSETOKEN"

# Check digit of 00000000000 is 0, so this can never be anybody's individual number.
FAKE_MY_NUMBER = "000000000001"

AUTH_PIN_MAX_TRIES = 3
SIGN_PIN_MAX_TRIES = 5
SUPPORT_PIN_MAX_TRIES = 3

# DER DigestInfo prefixes the card accepts in COMPUTE DIGITAL SIGNATURE.
_DIGEST_INFO_PREFIXES: dict[bytes, hashes.HashAlgorithm] = {
    bytes.fromhex("3021300906052b0e03021a05000414"): hashes.SHA1(),
    bytes.fromhex("302d300d06096086480165030402040500041c"): hashes.SHA224(),
    bytes.fromhex("3031300d060960864801650304020105000420"): hashes.SHA256(),
    bytes.fromhex("3041300d060960864801650304020205000430"): hashes.SHA384(),
    bytes.fromhex("3051300d060960864801650304020305000440"): hashes.SHA512(),
}

SW_OK = 0x9000
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_AUTH_BLOCKED = 0x6983
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_CURRENT_EF = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FUNCTION_NOT_SUPPORTED = 0x6A81
SW_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00


@dataclass(frozen=True)
class CardProfile:
    """Everything that makes one virtual card different from another.

    Certificates are DER. `*_tries` are the tries left when no state file exists
    yet (a fresh card has 3 and 5).
    """

    name: str = "card"
    jpki: bool = True                       # False: not a JPKI card (transit IC card): every SELECT -> 6A82
    token: str = TOKEN_MY_NUMBER_CARD
    auth_cert: bytes = b""
    auth_key: rsa.RSAPrivateKey | None = None
    auth_ca_cert: bytes = b""
    sign_cert: bytes = b""
    sign_key: rsa.RSAPrivateKey | None = None
    sign_ca_cert: bytes = b""
    auth_pin: str = "1234"
    sign_pin: str = "JPKITEST1"
    auth_tries: int = AUTH_PIN_MAX_TRIES
    sign_tries: int = SIGN_PIN_MAX_TRIES
    auth_cert_needs_pin: bool = False       # smartphone JPKI: EF 000A only after auth-PIN VERIFY
    my_number_aps: bool = True              # has the 券面事項 APs (with the fake number)
    support_pin: str = "1234"               # 券面事項入力補助 PIN (EF 0011)
    support_tries: int = SUPPORT_PIN_MAX_TRIES
    # The basic 4 items in the 券面事項入力補助AP's EF 0002. Obvious fakes; birth date YYYYMMDD.
    holder_name: str = "FAKE 試験 太郎"
    holder_address: str = "FAKE 東京都千代田区試験町1-1"
    birth_date: str = "19800101"
    holder_sex: str = "1"                   # 1 male, 2 female, 3 other (9 not known)
    basic_info: bytes | None = None         # raw EF 0002 (tests of odd cards); None: built from the above
    blocked_sw: int = SW_AUTH_BLOCKED       # VERIFY on a blocked PIN: 6983 (ISO) or 6984 (seen on JPKI)
    cert_ef_size: int = 2048                # the EF is larger than the certificate; padded with 00
    strict_le: bool = False                 # READ asking for more than is left -> 6Cxx (resend with Le)
    t0_get_response: bool = False           # every reply with data comes as 61xx + GET RESPONSE
    mute: bool = False                      # never answers (returns no bytes at all)


@dataclass(frozen=True)
class LinkModel:
    """A slow card link: per-APDU latency plus bytes at a given bit rate (10 bits per byte)."""

    bits_per_second: float = 10_752.0       # 4 MHz, no TA1 (reference §10)
    per_apdu_s: float = 0.0
    sign_s: float = 0.0                     # extra on-card RSA time for COMPUTE DIGITAL SIGNATURE
    sleep: Callable[[float], None] = time.sleep

    def delay(self, command: bytes, response: bytes, signing: bool) -> float:
        wire = (len(command) + len(response)) * 10 / self.bits_per_second if self.bits_per_second else 0.0
        return self.per_apdu_s + wire + (self.sign_s if signing else 0.0)


@dataclass
class CardStats:
    """What crossed the link, for the benchmark. Time is what the card itself spent."""

    apdus: int = 0
    bytes_in: int = 0          # command APDU bytes received by the card
    bytes_out: int = 0         # response bytes (data + SW)
    cpu_seconds: float = 0.0   # process CPU time spent inside process()
    wall_seconds: float = 0.0  # wall time inside process(), including link sleeps
    by_ins: Counter = field(default_factory=Counter)

    @property
    def bytes_total(self) -> int:
        return self.bytes_in + self.bytes_out

    def reset(self) -> None:
        self.apdus = self.bytes_in = self.bytes_out = 0
        self.cpu_seconds = self.wall_seconds = 0.0
        self.by_ins = Counter()


@dataclass
class _Pin:
    key: str                            # name in the state file, e.g. "jpki/0018"
    value: bytes
    max_tries: int
    initial_tries: int


@dataclass
class _Ef:
    data: bytes | None = None           # transparent EF contents
    pin: int | None = None              # PIN EF that must be verified before READ / signing
    pin_obj: _Pin | None = None         # set when this EF *is* a PIN
    key: rsa.RSAPrivateKey | None = None


@dataclass
class _Ap:
    name: str
    efs: dict[int, _Ef]


def _token_ef(token: str) -> bytes:
    return token.encode("ascii").ljust(20, b" ")


def _padded(der: bytes, size: int) -> bytes:
    return der + b"\x00" * max(0, size - len(der))


def _tlv(tag: int, value: bytes) -> bytes:
    """BER-TLV with a 2-byte tag, as the 券面事項入力補助AP's EFs use."""
    n = len(value)
    length = bytes([n]) if n < 0x80 else b"\x81" + bytes([n]) if n < 0x100 else b"\x82" + n.to_bytes(2, "big")
    return tag.to_bytes(2, "big") + length + value


def basic_info_ef(p: CardProfile) -> bytes:
    """EF 0002 of the 券面事項入力補助AP: FF 20 { DF 21 header, DF 22 name, DF 23 address,
    DF 24 birth date, DF 25 sex } (jpki/myna text.rs; jsapdu schemaKenhojoBasicFour).

    What DF 21 holds on a real card is not documented; here it is the offsets of the four
    items, 2 bytes each, which is what jsapdu decodes it as.
    """
    items = [_tlv(tag, value.encode("utf-8")) for tag, value in (
        (0xDF22, p.holder_name), (0xDF23, p.holder_address), (0xDF24, p.birth_date), (0xDF25, p.holder_sex))]
    sizes = [len(i) for i in items]
    body_len = len(_tlv(0xDF21, bytes(8))) + sum(sizes)
    start = len(_tlv(0xFF20, bytes(body_len))) - body_len + len(_tlv(0xDF21, bytes(8)))
    offsets = b"".join((start + sum(sizes[:k])).to_bytes(2, "big") for k in range(4))
    return _tlv(0xFF20, _tlv(0xDF21, offsets) + b"".join(items))


def _build_aps(p: CardProfile) -> dict[bytes, _Ap]:
    if not p.jpki:
        return {}
    auth_pin = _Pin("jpki/0018", p.auth_pin.encode("ascii"), AUTH_PIN_MAX_TRIES, p.auth_tries)
    sign_pin = _Pin("jpki/001B", p.sign_pin.encode("ascii"), SIGN_PIN_MAX_TRIES, p.sign_tries)
    jpki = _Ap("jpki", {
        0x0006: _Ef(data=_token_ef(p.token)),
        0x000A: _Ef(data=_padded(p.auth_cert, p.cert_ef_size), pin=0x0018 if p.auth_cert_needs_pin else None),
        0x000B: _Ef(data=_padded(p.auth_ca_cert, p.cert_ef_size)),
        0x0017: _Ef(key=p.auth_key, pin=0x0018),
        0x0018: _Ef(pin_obj=auth_pin),
        0x0001: _Ef(data=_padded(p.sign_cert, p.cert_ef_size), pin=0x001B),
        0x0002: _Ef(data=_padded(p.sign_ca_cert, p.cert_ef_size)),
        0x001A: _Ef(key=p.sign_key, pin=0x001B),
        0x001B: _Ef(pin_obj=sign_pin),
    })
    aps = {JPKI_AID: jpki}
    if p.my_number_aps:
        number = FAKE_MY_NUMBER.encode("ascii")
        support_pin = _Pin("kenhojo/0011", p.support_pin.encode("ascii"), SUPPORT_PIN_MAX_TRIES,
                           p.support_tries)
        aps[KENHOJO_AID] = _Ap("kenhojo", {
            0x0001: _Ef(data=_tlv(0xFF40, number) + b"\xff\xff", pin=0x0011),
            0x0002: _Ef(data=p.basic_info if p.basic_info is not None else _padded(basic_info_ef(p), 0x200),
                        pin=0x0011),
            # EF 0003: hashes of the number and of the 4 items, and a signature (zeros here).
            0x0003: _Ef(data=_padded(_tlv(0xFF30, _tlv(0xDF31, bytes(32)) + _tlv(0xDF32, bytes(32))
                                          + _tlv(0xDF33, bytes(256))), 0x200), pin=0x0011),
            0x0011: _Ef(pin_obj=support_pin),
        })
        # Deliberately unprotected: tests must show the allowlist, not the card, keeps it away.
        aps[KENKAKU_AID] = _Ap("kenkaku", {0x0001: _Ef(data=b"\xff\x40\x0c" + number + b"\xff\xff")})
    return aps


class VirtualJpkiCard:
    """A My Number Card in memory. `process()` takes a C-APDU and returns data || SW1 SW2.

    Thread-safe: the vpcd bridge calls it from a socket thread.
    """

    def __init__(self, profile: CardProfile, state_path: Path | None = None,
                 atr: bytes = DEFAULT_ATR, latency: LinkModel | None = None) -> None:
        self.profile = profile
        self.atr = atr
        self.latency = latency
        self.state_path = Path(state_path) if state_path is not None else None
        self.stats = CardStats()
        self._lock = threading.RLock()
        self._aps = _build_aps(profile)
        self._tries = self._load_tries()
        self._powered = True
        self._clear_security()

    # -- power -------------------------------------------------------------------------

    def power_on(self) -> None:
        with self._lock:
            self._powered = True
            self._clear_security()

    def power_off(self) -> None:
        with self._lock:
            self._powered = False
            self._clear_security()

    def reset(self) -> None:
        """Warm reset: forgets VERIFY status, selected AP/EF and pending responses."""
        with self._lock:
            self._powered = True
            self._clear_security()

    @property
    def powered(self) -> bool:
        return self._powered

    # -- inspection (tests) ------------------------------------------------------------

    def tries_left(self, pin: str = "jpki/0018") -> int:
        with self._lock:
            return self._tries[pin]

    @property
    def verified(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._verified)

    # -- the card ----------------------------------------------------------------------

    def process(self, apdu: bytes | bytearray) -> bytes:
        """One C-APDU in, one R-APDU out. A card without power (or a mute card) answers nothing."""
        with self._lock:
            if not self._powered or self.profile.mute:
                return b""
            wall0, cpu0 = time.perf_counter(), time.process_time()
            command = bytes(apdu)
            response = self._dispatch(command)
            signing = len(command) >= 2 and command[1] == 0x2A
            self.stats.cpu_seconds += time.process_time() - cpu0
            if self.latency is not None:
                self.latency.sleep(self.latency.delay(command, response, signing))
            self.stats.apdus += 1
            self.stats.bytes_in += len(command)
            self.stats.bytes_out += len(response)
            if len(command) >= 2:
                self.stats.by_ins[command[1]] += 1
            self.stats.wall_seconds += time.perf_counter() - wall0
            return response

    def _clear_security(self) -> None:
        self._ap: _Ap | None = None
        self._ef: int | None = None
        self._verified: set[str] = set()
        self._pending = b""

    # -- state file --------------------------------------------------------------------

    def _pins(self) -> dict[str, _Pin]:
        return {ef.pin_obj.key: ef.pin_obj for ap in self._aps.values() for ef in ap.efs.values() if ef.pin_obj}

    def _load_tries(self) -> dict[str, int]:
        tries = {key: pin.initial_tries for key, pin in self._pins().items()}
        if self.state_path is not None and self.state_path.exists():
            stored = json.loads(self.state_path.read_text(encoding="utf-8")).get("tries", {})
            tries.update({k: int(v) for k, v in stored.items() if k in tries})
        return tries

    def _save_tries(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(json.dumps({"tries": self._tries}, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_path)

    # -- APDU parsing ------------------------------------------------------------------

    def _dispatch(self, c: bytes) -> bytes:
        if len(c) < 4:
            return _sw(SW_WRONG_LENGTH)
        cla, ins, p1, p2 = c[0], c[1], c[2], c[3]
        parsed = _parse_body(c[4:])
        if parsed is None:
            return _sw(SW_WRONG_LENGTH)
        data, le = parsed
        if ins != 0xC0:
            self._pending = b""
        if cla == 0x80:
            if ins == 0x2A:
                return self._respond(*self._compute_signature(p1, p2, data), le)
            return _sw(SW_INS_NOT_SUPPORTED)
        if cla != 0x00:
            return _sw(SW_CLA_NOT_SUPPORTED)
        if ins == 0xA4:
            return _sw(self._select(p1, p2, data))
        if ins == 0xB0:
            return self._read_binary(p1, p2, data, le)
        if ins == 0x20:
            return _sw(self._verify(p1, p2, data))
        if ins == 0xC0:
            return self._get_response(le)
        if ins == 0x2A:
            return _sw(SW_CLA_NOT_SUPPORTED)   # JPKI signs with CLA 80 only
        return _sw(SW_INS_NOT_SUPPORTED)       # no writes, no PIN change, no reset retry counter

    def _respond(self, data: bytes, sw: int, le: int | None) -> bytes:
        if sw != SW_OK or not data:
            return _sw(sw)
        if le is None or self.profile.t0_get_response:
            self._pending = data
            return _sw(0x6100 | (len(data) & 0xFF))
        if le < len(data):
            self._pending = data[le:]
            return data[:le] + _sw(0x6100 | (len(self._pending) & 0xFF))
        return data + _sw(SW_OK)

    def _get_response(self, le: int | None) -> bytes:
        if not self._pending:
            return _sw(SW_CONDITIONS_NOT_SATISFIED)
        n = 256 if le is None else le
        out, self._pending = self._pending[:n], self._pending[n:]
        if self._pending:
            return out + _sw(0x6100 | (len(self._pending) & 0xFF))
        return out + _sw(SW_OK)

    # -- commands ----------------------------------------------------------------------

    def _select(self, p1: int, p2: int, data: bytes) -> int:
        if p1 == 0x04:                          # by DF name (AID)
            ap = self._aps.get(data)
            if ap is None:
                return SW_NOT_FOUND
            self._ap, self._ef = ap, None
            self._verified = set()              # re-SELECT of the AP clears VERIFY status
            return SW_OK
        if p1 == 0x02:                          # EF under the current DF
            if len(data) != 2:
                return SW_WRONG_LENGTH
            fid = int.from_bytes(data, "big")
            if self._ap is None or fid not in self._ap.efs:
                return SW_NOT_FOUND
            self._ef = fid
            return SW_OK
        return SW_WRONG_P1P2

    def _current_ef(self) -> _Ef | None:
        if self._ap is None or self._ef is None:
            return None
        return self._ap.efs[self._ef]

    def _pin_ok(self, pin_fid: int | None) -> bool:
        if pin_fid is None:
            return True
        assert self._ap is not None, "asked only for the current EF, which lives under the selected AP"
        return f"{self._ap.name}/{pin_fid:04X}" in self._verified

    def _read_binary(self, p1: int, p2: int, data: bytes, le: int | None) -> bytes:
        if p1 & 0x80:
            return _sw(SW_FUNCTION_NOT_SUPPORTED)      # no short-EF-identifier reads
        if data:
            return _sw(SW_WRONG_LENGTH)
        ef = self._current_ef()
        if ef is None:
            return _sw(SW_NO_CURRENT_EF)
        if ef.data is None:
            return _sw(SW_INCOMPATIBLE_FILE)
        if not self._pin_ok(ef.pin):
            return _sw(SW_SECURITY_NOT_SATISFIED)
        offset = (p1 << 8) | p2
        if offset >= len(ef.data):
            return _sw(SW_WRONG_OFFSET)
        want = 256 if le is None else le
        chunk = ef.data[offset:offset + want]
        if self.profile.strict_le and len(chunk) < want:
            return _sw(0x6C00 | (len(chunk) & 0xFF))
        return self._respond(chunk, SW_OK, want)

    def _verify(self, p1: int, p2: int, data: bytes) -> int:
        if p1 != 0x00 or p2 != 0x80:
            return SW_WRONG_P1P2
        ef = self._current_ef()
        if ef is None or ef.pin_obj is None:
            return SW_NO_CURRENT_EF
        pin = ef.pin_obj
        assert self._ap is not None, "a current EF lives under the selected AP"
        status = f"{self._ap.name}/{self._ef:04X}"
        tries = self._tries[pin.key]
        if tries <= 0:
            return self.profile.blocked_sw
        if not data:                            # tries query: spends nothing
            return SW_OK if status in self._verified else 0x63C0 | tries
        self._verified.discard(status)
        if hmac.compare_digest(data, pin.value):
            self._tries[pin.key] = pin.max_tries
            self._save_tries()
            self._verified.add(status)
            return SW_OK
        self._tries[pin.key] = tries - 1
        self._save_tries()
        return 0x63C0 | (tries - 1)

    def _compute_signature(self, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        if p1 != 0x00 or p2 != 0x80:
            return b"", SW_WRONG_P1P2
        ef = self._current_ef()
        if ef is None or ef.key is None:
            return b"", SW_NO_CURRENT_EF
        if not self._pin_ok(ef.pin):
            return b"", SW_SECURITY_NOT_SATISFIED
        for prefix, algorithm in _DIGEST_INFO_PREFIXES.items():
            if data.startswith(prefix) and len(data) == len(prefix) + algorithm.digest_size:
                digest = data[len(prefix):]
                return ef.key.sign(digest, padding.PKCS1v15(), Prehashed(algorithm)), SW_OK
        return b"", SW_WRONG_DATA


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


def _parse_body(body: bytes) -> tuple[bytes, int | None] | None:
    """Short APDU cases 1-4 -> (data, Le); Le 0 means 256. Extended APDUs are not supported."""
    if not body:
        return b"", None
    if len(body) == 1:
        return b"", body[0] or 256
    lc = body[0]
    if lc == 0:
        return None
    if len(body) == 1 + lc:
        return body[1:], None
    if len(body) == 2 + lc:
        return body[1:1 + lc], body[-1] or 256
    return None
