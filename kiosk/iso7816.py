"""ISO 7816-4 plumbing shared by the card's applications (JPKI AP, 券面事項入力補助AP).

One place follows 61xx (GET RESPONSE) and 6Cxx (resend with the Le the card asked
for), rejects answers that carry no valid status word, and remembers which EF is
selected so a repeated SELECT is skipped. Each application says how its errors look.
"""

from __future__ import annotations

from kiosk.interfaces import Transport

SW_OK = 0x9000


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
