"""The JPKI user-authentication protocol, spoken over any Transport.

Plain code over plain bytes: no PC/SC, no threads, no clock. It sends only what
the allowlist permits (the transport underneath enforces that) and turns status
words into typed results, so the card service never looks at raw SWs.
Reference: /work/shared/reference/jpki.md §3-§7.
"""

from __future__ import annotations

# The AP, its EFs and the DigestInfo are written once, in the allowlist that gates them.
from kiosk.card.apdu_allowlist import (  # noqa: F401 - re-exported for the card layer and tests
    EF_AUTH_CA,
    EF_AUTH_CERT,
    EF_AUTH_KEY,
    EF_AUTH_PIN,
    EF_TOKEN,
    JPKI_AID,
    SHA256_DIGEST_INFO_PREFIX,
)
from kiosk.card.iso7816 import CardApplication, PinResult, read_binary, select_aid
from kiosk.core.card import CardError, CardKind

SW_OK = 0x9000
SW_NOT_FOUND = 0x6A82
SW_WRONG_OFFSET = 0x6B00

# Replies to SELECT by AID that mean "no such application here" rather than "card broken".
_NOT_JPKI_SWS = frozenset({0x6A82, 0x6A81, 0x6A86, 0x6A87, 0x6D00, 0x6E00, 0x6999})

# The largest short READ BINARY (Le=00). A certificate is read in as few reads as this allows:
# the first one already holds the DER header, so no separate read is needed to size it.
READ_MAX = 256
MAX_CERT_LEN = 0x7FFF           # READ BINARY offsets are 15 bits

TOKENS = {
    "JPKIAPICCTOKEN2": CardKind.MY_NUMBER_CARD,
    "JPKIAPICCTOKEN": CardKind.JUKI_CARD,
    "JPKIAPGPSETOKEN": CardKind.SMARTPHONE,
}


class JpkiError(Exception):
    """The card answered, but not in a way that lets authentication go on."""

    def __init__(self, kind: CardError, message: str, sw: int | None = None) -> None:
        super().__init__(f"{message} (SW {sw:04X})" if sw is not None else message)
        self.kind = kind
        self.sw = sw


def der_length(head: bytes) -> int:
    """Total size of the DER SEQUENCE starting `head` (tag + length octets + content)."""
    if len(head) < 2 or head[0] != 0x30:
        raise JpkiError(CardError.BAD_CERTIFICATE, "certificate EF does not start with a DER SEQUENCE")
    first = head[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    if n == 0 or n > 3 or len(head) < 2 + n:
        raise JpkiError(CardError.BAD_CERTIFICATE, "unsupported DER length form")
    return 2 + n + int.from_bytes(head[2:2 + n], "big")


def digest_info_sha256(digest: bytes) -> bytes:
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return SHA256_DIGEST_INFO_PREFIX + digest


class JpkiCard(CardApplication):
    """The JPKI AP of one inserted card. Remembers the selected EF to skip repeated SELECTs."""

    max_get_responses = 64

    # True while the last APDU this object sent was a SELECT of the AP that left no JPKI AP
    # with a VERIFY status behind (selected again, or not there): release needs no SELECT then.
    verify_clear = False

    def _send(self, apdu: bytes | bytearray) -> tuple[bytearray, int]:
        self.verify_clear = False
        return super()._send(apdu)

    def _error(self, message: str, sw: int | None = None) -> Exception:
        return JpkiError(CardError.MUTE_CARD, message, sw)

    def _read(self, offset: int, length: int) -> tuple[bytes, int]:
        """READ BINARY; JPKI data is public (token, certificate), so it leaves as bytes."""
        if not 0 <= offset <= MAX_CERT_LEN or not 1 <= length <= 256:
            raise ValueError("READ BINARY offset or length out of range")
        data, sw = self._send(read_binary(offset, length))
        return bytes(data), sw

    # -- the protocol ------------------------------------------------------------------

    def select_ap(self) -> bool:
        """SELECT the JPKI AP. False: this card has no JPKI AP. Also clears VERIFY status."""
        self._ef = None
        _, sw = self._send(select_aid(JPKI_AID))
        if sw == SW_OK:
            self.verify_clear = True
            return True
        if sw in _NOT_JPKI_SWS:
            self.verify_clear = True
            return False
        raise JpkiError(CardError.MUTE_CARD, "unexpected answer to SELECT of the JPKI AP", sw)

    def read_token(self) -> CardKind:
        """Which kind of JPKI token this is (EF 0006). An unknown token is not usable here."""
        self._select_ef(EF_TOKEN)
        data, sw = self._read(0, 20)
        if sw != SW_OK:
            raise JpkiError(CardError.MUTE_CARD, "token EF unreadable", sw)
        token = data.rstrip(b" \x00").decode("ascii", errors="replace")
        return TOKENS.get(token, CardKind.NOT_JPKI)

    def read_auth_cert(self) -> bytes:
        """The user-authentication certificate (EF 000A) as DER, every byte read from the card.

        Nothing is taken from earlier sessions: the kiosk decides only on what this card
        returned now (an earlier certificate with the same key and serial may since have
        expired, or a look-alike may come from a CA with the same name).
        """
        return self._read_der(EF_AUTH_CERT)

    def read_auth_ca_cert(self) -> bytes:
        return self._read_der(EF_AUTH_CA)

    def _read_der(self, fid: int) -> bytes:
        self._select_ef(fid)
        head, sw = self._read(0, READ_MAX)
        if sw != SW_OK:
            raise JpkiError(CardError.MUTE_CARD, f"EF {fid:04X} unreadable", sw)
        total = der_length(head)
        if total > MAX_CERT_LEN:
            raise JpkiError(CardError.BAD_CERTIFICATE, "certificate too large")
        der = bytearray(head[:total])
        while len(der) < total:
            chunk, sw = self._read(len(der), min(READ_MAX, total - len(der)))
            if sw != SW_OK or not chunk:
                raise JpkiError(CardError.BAD_CERTIFICATE, "certificate read ended early", sw)
            der += chunk[:total - len(der)]
        return bytes(der)

    def pin_tries_left(self) -> int | None:
        """Tries left on the user-authentication PIN without spending one; None = already verified."""
        return self._pin_tries(EF_AUTH_PIN)

    def verify_pin(self, pin: bytearray) -> PinResult:
        """One VERIFY of the user-authentication PIN. Never retried here or anywhere."""
        return self._verify(EF_AUTH_PIN, pin)

    def sign(self, digest: bytes) -> bytes:
        """Sign a SHA-256 digest with the user-authentication key (EF 0017), after VERIFY."""
        self._select_ef(EF_AUTH_KEY)
        apdu = bytes([0x80, 0x2A, 0x00, 0x80, 0x33]) + digest_info_sha256(digest) + b"\x00"
        signature, sw = self._send(apdu)
        if sw == 0x6982:
            raise JpkiError(CardError.BAD_SIGNATURE, "card refused to sign: PIN not verified", sw)
        if sw != SW_OK or not signature:
            raise JpkiError(CardError.BAD_SIGNATURE, "card did not sign", sw)
        return bytes(signature)
