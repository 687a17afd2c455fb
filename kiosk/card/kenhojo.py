"""The 券面事項入力補助AP ("kenhojo"), only as far as counter registration needs it: the birth date.

Where the library's linking needs the holder's birth date, it is in this AP's basic-
information EF 0002, behind the AP's own 4-digit PIN (EF 0011, 3 tries). The same AP
holds the individual number (EF 0001) and data derived from it (EF 0003); this module
never names those EFs, and the counter-mode allowlist refuses them anyway.

EF 0002 is a BER-TLV template (FF 20) holding DF 21 (a header), DF 22 name, DF 23
address, DF 24 birth date (8 ASCII digits, YYYYMMDD) and DF 25 sex (jpki/myna
`src/text.rs`; AokiApp/jsapdu `schemaKenhojoBasicFour`). Rather than reading the EF
and throwing most of it away, the reader walks the TLV headers with small READ BINARYs
and reads only the value of DF 24: name, address and sex never leave the card.

Plain code over a Transport, like kiosk/jpki.py: no threads, no clock, no logging.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# The AP and its two reachable EFs are written once, in the allowlist that gates them.
from kiosk.card.apdu_allowlist import EF_SUPPORT_BASIC_INFO as EF_BASIC_INFO
from kiosk.card.apdu_allowlist import EF_SUPPORT_PIN, KENHOJO_AID  # noqa: F401 - re-exported
from kiosk.card.iso7816 import CardApplication, PinResult, read_binary, select_aid

SupportPinResult = PinResult            # the kenhojo PIN answers exactly like the JPKI one

SUPPORT_PIN_MAX_TRIES = 3

TAG_BIRTH_DATE = 0xDF24

SW_OK = 0x9000
_NOT_FOUND_SWS = frozenset({0x6A82, 0x6A81, 0x6A86, 0x6A87, 0x6D00, 0x6E00})

MAX_EF_OFFSET = 0x7FFF          # READ BINARY offsets are 15 bits
MAX_ITEMS = 16                  # DF 21..DF 25 in practice; more means this is not the EF we know
MAX_BIRTH_DATE_LEN = 16


class KenhojoError(Exception):
    """The AP or its basic-information EF did not answer in a way that yields a birth date.

    The message names the step and the status word only, never card data.
    """

    def __init__(self, message: str, sw: int | None = None) -> None:
        super().__init__(f"{message} (SW {sw:04X})" if sw is not None else message)
        self.sw = sw


@dataclass(frozen=True)
class TlvHeader:
    tag: int
    length: int
    size: int                           # bytes taken by tag + length

    @property
    def constructed(self) -> bool:
        first = self.tag >> 8 * ((self.tag.bit_length() - 1) // 8)
        return bool(first & 0x20)


def parse_tlv_header(buf: bytes | bytearray) -> TlvHeader | None:
    """The BER-TLV header at the start of `buf`, or None when `buf` is too short for it.

    Tags of up to two bytes and definite lengths of up to 0x81/0x82 form: all EF 0002 uses.
    Anything else raises KenhojoError (it is not the structure this module knows).
    """
    if not buf:
        return None
    i, tag = 1, buf[0]
    if tag == 0x00:
        raise KenhojoError("no TLV here (padding)")
    if tag & 0x1F == 0x1F:
        if len(buf) < 2:
            return None
        if buf[1] & 0x80 or buf[1] < 0x1F:
            raise KenhojoError("tag form not supported")
        tag, i = (tag << 8) | buf[1], 2
    if len(buf) <= i:
        return None
    first = buf[i]
    if first < 0x80:
        return TlvHeader(tag, first, i + 1)
    n = first & 0x7F
    if n not in (1, 2):
        raise KenhojoError("length form not supported")
    if len(buf) < i + 1 + n:
        return None
    return TlvHeader(tag, int.from_bytes(buf[i + 1:i + 1 + n], "big"), i + 1 + n)


def parse_birth_date(value: bytes | bytearray) -> date:
    """DF 24's value, 8 ASCII digits YYYYMMDD (trailing spaces or NULs tolerated), as a date."""
    end = len(value)
    while end and value[end - 1] in (0x20, 0x00):
        end -= 1
    if end != 8 or not all(0x30 <= value[i] <= 0x39 for i in range(8)):
        raise KenhojoError("birth date is not 8 digits")
    digits = [value[i] - 0x30 for i in range(8)]
    year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
    try:
        return date(year, digits[4] * 10 + digits[5], digits[6] * 10 + digits[7])
    except ValueError:
        raise KenhojoError("birth date is not a calendar date") from None


class KenhojoCard(CardApplication):
    """The kenhojo AP of one inserted card, over a transport in counter mode.

    Callers re-SELECT the JPKI AP when done: that drops this AP's VERIFY status.
    """

    def _error(self, message: str, sw: int | None = None) -> Exception:
        return KenhojoError(message, sw)

    def _read(self, offset: int, length: int) -> bytearray:
        if not 0 <= offset <= MAX_EF_OFFSET or not 1 <= length <= 256:
            raise KenhojoError("basic-information EF is larger than it can be")
        data, sw = self._send(read_binary(offset, length))
        if sw != SW_OK:
            raise KenhojoError("basic-information EF unreadable", sw)
        return data

    # -- the protocol ------------------------------------------------------------------

    def select_ap(self) -> bool:
        """SELECT the kenhojo AP. False: the card has none (住基カード, smartphone JPKI)."""
        self._ef = None
        _, sw = self._send(select_aid(KENHOJO_AID))
        if sw == SW_OK:
            return True
        if sw in _NOT_FOUND_SWS:
            return False
        raise KenhojoError("unexpected answer to SELECT of the kenhojo AP", sw)

    def pin_tries_left(self) -> int | None:
        """Tries left on the kenhojo PIN (EF 0011) without spending one; None = already verified."""
        return self._pin_tries(EF_SUPPORT_PIN)

    def verify_pin(self, pin: bytearray) -> PinResult:
        """One VERIFY of the kenhojo PIN. Never retried; the caller zeroes its own `pin`."""
        return self._verify(EF_SUPPORT_PIN, pin)

    def read_birth_date(self) -> date:
        """The birth date from EF 0002 (after VERIFY), reading no byte of the other items."""
        self._select_ef(EF_BASIC_INFO)
        offset, end = 0, MAX_EF_OFFSET + 1
        outer = self._header(offset, end)
        if outer.constructed:                  # FF 20 <len> { DF 21 .. DF 25 }
            offset, end = outer.size, min(end, outer.size + outer.length)
        for _ in range(MAX_ITEMS):
            if offset >= end:
                break
            item = self._header(offset, end)
            if offset + item.size + item.length > end:
                raise KenhojoError("basic-information item runs past its template")
            if item.tag == TAG_BIRTH_DATE:
                if not 1 <= item.length <= MAX_BIRTH_DATE_LEN:
                    raise KenhojoError("birth date has an odd length")
                value = self._read(offset + item.size, item.length)
                try:
                    if len(value) != item.length:
                        raise KenhojoError("birth date read came back short")
                    return parse_birth_date(value)
                finally:
                    value[:] = bytes(len(value))
            offset += item.size + item.length      # skip the value unread
        raise KenhojoError("no birth date in the basic-information EF")

    def _header(self, offset: int, end: int) -> TlvHeader:
        """Read one TLV header at `offset`: 3 bytes (2-byte tag + short length), more only if
        the length is in long form. With a 1-byte tag the third byte is the value's first,
        which is dropped here; EF 0002 uses 2-byte tags only."""
        buf = bytearray()
        try:
            for want in (3, 1, 1):
                if offset + len(buf) >= end:
                    break
                buf += self._read(offset + len(buf), min(want, end - offset - len(buf)))
                header = parse_tlv_header(buf)
                if header is not None:
                    return header
            raise KenhojoError("basic-information EF ends inside a TLV header")
        finally:
            buf[:] = bytes(len(buf))
