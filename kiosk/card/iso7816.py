"""ISO 7816-4 plumbing shared by the card's applications (JPKI AP, 券面事項入力補助AP).

One place follows 61xx (GET RESPONSE) and 6Cxx (resend with the Le the card asked
for), rejects answers that carry no valid status word, and remembers which EF is
selected so a repeated SELECT is skipped. Each application says how its errors look.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiosk.core.interfaces import Transport

SW_OK = 0x9000
SW_BLOCKED = frozenset({0x6983, 0x6984})   # VERIFY on a blocked PIN (jpki.md §5)
VERIFY = b"\x00\x20\x00\x80"


@dataclass(frozen=True)
class PinResult:
    ok: bool
    tries_left: int | None = None       # after a failure: what the card reported (0 = locked)

    @property
    def locked(self) -> bool:
        return self.tries_left == 0


def has_le(apdu: bytes | bytearray) -> bool:
    """Short case 2 or case 4: the last byte is Le, so a 6Cxx reply can be answered by resending."""
    return len(apdu) == 5 or (len(apdu) > 5 and len(apdu) == 6 + apdu[4])


def select_aid(aid: bytes) -> bytes:
    return bytes([0x00, 0xA4, 0x04, 0x0C, len(aid)]) + aid


def select_ef(fid: int) -> bytes:
    return bytes([0x00, 0xA4, 0x02, 0x0C, 0x02]) + fid.to_bytes(2, "big")


def read_binary(offset: int, length: int) -> bytes:
    return bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, length & 0xFF])


class CardApplication:
    """One application on one inserted card, over an (allowlisted) transport."""

    max_get_responses = 8

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._ef: int | None = None

    def _error(self, message: str, sw: int | None = None) -> Exception:
        """The application's own exception for a card that did not answer usefully."""
        raise NotImplementedError

    def _send(self, apdu: bytes | bytearray) -> tuple[bytearray, int]:
        """The answer is a bytearray so that a caller reading personal data can zero it."""
        try:
            data, sw = self.transport.transmit(apdu)
            if sw >> 8 == 0x6C and has_le(apdu):
                data, sw = self.transport.transmit(bytes(apdu[:-1]) + bytes([sw & 0xFF]))
            collected = bytearray(data)
            for _ in range(self.max_get_responses):
                if sw >> 8 != 0x61:
                    break
                more, sw = self.transport.transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw & 0xFF]))
                collected += more
        except BaseException:
            self._ef = None                     # we no longer know what the card has selected
            raise
        if sw >> 8 == 0x61:
            self._ef = None
            raise self._error("card keeps answering 61xx", sw)
        if not (0x62 <= sw >> 8 <= 0x6F or 0x90 <= sw >> 8 <= 0x9F):
            self._ef = None
            raise self._error("no valid status word from the card", sw)
        return collected, sw

    def _select_ef(self, fid: int) -> None:
        if self._ef == fid:
            return
        _, sw = self._send(select_ef(fid))
        if sw != SW_OK:
            self._ef = None
            raise self._error(f"SELECT EF {fid:04X} failed", sw)
        self._ef = fid

    def _pin_tries(self, pin_ef: int) -> int | None:
        """Tries left on the PIN in `pin_ef`, spending none (VERIFY with no data).
        None: already verified in this session (the card does not say how many then)."""
        self._select_ef(pin_ef)
        _, sw = self._send(VERIFY)
        if sw >> 4 == 0x63C:
            return sw & 0x0F
        if sw in SW_BLOCKED:
            return 0
        if sw == SW_OK:
            return None
        raise self._error("unexpected answer to the PIN tries query", sw)

    def _verify(self, pin_ef: int, pin: bytearray) -> PinResult:
        """One VERIFY of a 4-digit PIN, never retried. The APDU is built in place so the PIN
        is copied exactly once, and zeroed after; the caller zeroes its own `pin`."""
        if len(pin) != 4 or not all(0x30 <= b <= 0x39 for b in pin):
            raise ValueError("the PIN is 4 digits")
        self._select_ef(pin_ef)
        apdu = bytearray(9)
        apdu[:4] = VERIFY
        apdu[4] = 4
        apdu[5:] = pin
        try:
            _, sw = self._send(apdu)
        finally:
            apdu[:] = bytes(len(apdu))
        if sw == SW_OK:
            return PinResult(ok=True)
        if sw >> 4 == 0x63C:
            return PinResult(ok=False, tries_left=sw & 0x0F)
        if sw in SW_BLOCKED:
            return PinResult(ok=False, tries_left=0)
        raise self._error("unexpected answer to VERIFY", sw)
