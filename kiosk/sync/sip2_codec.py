"""SIP2 wire format and field meanings, as pure functions over bytes and plain data.

Kept free of sockets and clocks so every framing, checksum and date rule can be
tested exhaustively (see /work/shared/reference/sip2.md for the sources).

Error contract, for any input from the wire (enforced by tests/test_fuzz_sip2.py):
- `decode` and `FrameSplitter.feed` raise only SipDecodeError (SipChecksumError is
  one: ask for a resend);
- `encode` raises only SipEncodeError, whatever the message holds;
- the field readers (`parse_count`, `parse_amount`, `parse_datetime`, `parse_due_date`,
  `patron_flags`, `supported_messages`) never raise: junk reads as None / no flag;
  `parse_acs_status` raises SipDecodeError only for a message that is not a 98.
Wire numbers (counts, limits, timeouts, dates, AY) are ASCII digits only: str.isdigit()
also accepts '²' (cp850 byte 0xFD) and other Unicode digits, which int() then refuses.
A charset the codec machinery does not know is a configuration error (LookupError,
checked up front by `charset_ok`), not a wire error.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone, tzinfo
from decimal import Decimal
from typing import Iterable, Mapping

from kiosk.core.catalogue import catalogue_text

__all__ = [
    "MAX_FIELD_BYTES",
    "MAX_FRAME_BYTES",
    "PIPE_ESCAPE",
    "SipMessage",
    "SipDecodeError",
    "SipChecksumError",
    "SipEncodeError",
    "FrameSplitter",
    "AcsStatus",
    "DueDate",
    "FIXED_LAYOUT",
    "RESPONSE_FOR",
    "PATRON_STATUS_FLAGS",
    "SUPPORTED_MESSAGE_NAMES",
    "CIRCULATION_STATUS",
    "MEDIA_TYPES",
    "checksum",
    "verify_checksum",
    "encode",
    "decode",
    "truncate_encoded",
    "clean_value",
    "format_datetime",
    "parse_datetime",
    "parse_due_date",
    "parse_count",
    "patron_flags",
    "supported_messages",
    "parse_acs_status",
    "login",
    "sc_status",
    "patron_information",
    "patron_status",
    "item_information",
    "checkout",
    "checkin",
    "renew",
    "renew_all",
    "SUMMARY_DETAIL",
    "summary",
    "parse_amount",
    "end_session",
    "resend_request",
    "combine_due",
    "charset_ok",
]

MAX_FIELD_BYTES = 255
MAX_FRAME_BYTES = 64 * 1024
PIPE_ESCAPE = "&#124;"          # what Koha writes for a '|' inside a value (C4/SIP/Sip.pm)

_DATE18 = (("transaction_date", 18),)
_RESULT_12 = (("ok", 1), ("renewal_ok", 1), ("magnetic_media", 1), ("desensitize", 1), *_DATE18)

#: Fixed fields (name, width) per command, in spec order. Widths are in bytes.
FIXED_LAYOUT: dict[str, tuple[tuple[str, int], ...]] = {
    "93": (("uid_algorithm", 1), ("pwd_algorithm", 1)),
    "94": (("ok", 1),),
    "99": (("status", 1), ("max_print_width", 3), ("protocol_version", 4)),
    "98": (
        ("online", 1), ("checkin_ok", 1), ("checkout_ok", 1), ("renewal_policy", 1),
        ("status_update_ok", 1), ("offline_ok", 1), ("timeout", 3), ("retries", 3),
        ("date_time_sync", 18), ("protocol_version", 4),
    ),
    "63": (("language", 3), *_DATE18, ("summary", 10)),
    "64": (
        ("patron_status", 14), ("language", 3), *_DATE18,
        ("hold_items_count", 4), ("overdue_items_count", 4), ("charged_items_count", 4),
        ("fine_items_count", 4), ("recall_items_count", 4), ("unavailable_holds_count", 4),
    ),
    "23": (("language", 3), *_DATE18),
    "24": (("patron_status", 14), ("language", 3), *_DATE18),
    "17": _DATE18,
    "18": (("circulation_status", 2), ("security_marker", 2), ("fee_type", 2), *_DATE18),
    "11": (("renewal_policy", 1), ("no_block", 1), *_DATE18, ("nb_due_date", 18)),
    "12": _RESULT_12,
    "09": (("no_block", 1), *_DATE18, ("return_date", 18)),
    "10": (("ok", 1), ("resensitize", 1), ("magnetic_media", 1), ("alert", 1), *_DATE18),
    "29": (("third_party", 1), ("no_block", 1), *_DATE18, ("nb_due_date", 18)),
    "30": _RESULT_12,
    "65": _DATE18,
    "66": (("ok", 1), ("renewed_count", 4), ("unrenewed_count", 4), *_DATE18),
    "35": _DATE18,
    "36": (("end_session", 1), *_DATE18),
    "97": (),
    "96": (),
}

#: The response command each request expects.
RESPONSE_FOR = {
    "93": "94", "99": "98", "63": "64", "23": "24", "17": "18",
    "11": "12", "09": "10", "29": "30", "65": "66", "35": "36",
}

_CONTROL = {"96", "97"}          # resend requests carry AZ but never AY
_COMMAND = re.compile(r"[0-9]{2}")
_WIRE_NUMBER = re.compile(r"[0-9]+")       # never str.isdigit() or a str \d: both take Unicode digits


class SipDecodeError(ValueError):
    """Incoming bytes are not a SIP2 message we can read; the only error `decode` raises."""


class SipChecksumError(SipDecodeError):
    """The frame carries AZ but its byte sum does not verify: ask for a resend (97)."""


class SipEncodeError(ValueError):
    """A value cannot be written in the configured charset (e.g. Japanese in cp850)."""


@dataclass(frozen=True)
class SipMessage:
    """One SIP2 message: fixed fields by name, id'd fields in wire order (unknown ids kept)."""

    command: str
    fixed: Mapping[str, str] = field(default_factory=dict)
    fields: tuple[tuple[str, str], ...] = ()
    sequence: int | None = None        # AY as received (None when absent)
    checksum: str | None = None        # AZ as received (None when absent)

    def get(self, field_id: str, default: str | None = None) -> str | None:
        """First value of a field id, the usual case for non-repeatable fields."""
        for fid, value in self.fields:
            if fid == field_id:
                return value
        return default

    def getall(self, field_id: str) -> list[str]:
        """All values of a (repeatable) field id, in wire order."""
        return [value for fid, value in self.fields if fid == field_id]

    def flag(self, name: str) -> str:
        return self.fixed.get(name, "")


# --------------------------------------------------------------------------- checksum


def checksum(data: bytes) -> str:
    """AZ value for the encoded bytes from the command id through 'AZ' (spec: 2's complement)."""
    return f"{(-sum(data)) & 0xFFFF:04X}"


def verify_checksum(data_through_az: bytes, value: str) -> bool:
    try:
        number = int(value, 16)
    except ValueError:
        return False
    return len(value) == 4 and (sum(data_through_az) + number) & 0xFFFF == 0


# --------------------------------------------------------------------------- encoding


def clean_value(value: str) -> str:
    """Make a value legal inside a field: '|' escaped the way Koha does, CR/NUL blanked."""
    return value.replace("|", PIPE_ESCAPE).replace("\r", " ").replace("\x00", " ")


def _encode_strict(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset)
    except UnicodeEncodeError as exc:
        raise SipEncodeError(f"value not encodable in {charset} at position {exc.start}") from None


def truncate_encoded(value: str, charset: str, limit: int = MAX_FIELD_BYTES) -> bytes:
    """Encode, cutting at the longest whole-character prefix that fits in `limit` bytes.

    Binary search over character prefixes works for every codec, stateful ones included,
    and can never cut a multi-byte character in half.
    """
    data = _encode_strict(value, charset)
    if len(data) <= limit:
        return data
    lo, hi = 0, len(value)          # invariant: value[:lo] fits, value[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if len(value[:mid].encode(charset)) <= limit:
            lo = mid
        else:
            hi = mid
    return value[:lo].encode(charset)


def encode(
    message: SipMessage,
    *,
    charset: str = "cp850",
    error_detection: bool = True,
    sequence: int = 0,
    terminator: bytes = b"\r",
) -> bytes:
    """One frame on the wire. The checksum is computed over the encoded bytes, never code points."""
    layout = FIXED_LAYOUT.get(message.command)
    if layout is None or not _COMMAND.fullmatch(message.command):
        raise SipEncodeError(f"unknown command {message.command!r}")
    out = bytearray(message.command.encode("ascii"))
    for name, width in layout:
        value = message.fixed.get(name, "")
        if "\r" in value or "\x00" in value:
            raise SipEncodeError(f"fixed field {name} contains CR or NUL")
        raw = _encode_strict(value, charset)
        if len(raw) != width:
            raise SipEncodeError(f"fixed field {name} must be {width} bytes, got {len(raw)}")
        out += raw
    for fid, value in message.fields:
        if not re.fullmatch(r"[A-Z0-9]{2}", fid):
            raise SipEncodeError(f"bad field id {fid!r}")
        out += fid.encode("ascii") + truncate_encoded(clean_value(value), charset) + b"|"
    if error_detection:
        if message.command not in _CONTROL:
            if not 0 <= sequence <= 9:
                raise SipEncodeError("sequence number must be 0-9")
            out += b"AY" + str(sequence).encode("ascii")
        out += b"AZ"
        out += checksum(bytes(out)).encode("ascii")
    return bytes(out) + terminator


# --------------------------------------------------------------------------- decoding

_TRAILER = re.compile(rb"AZ([0-9A-Fa-f]{4})\Z")
_SEQ_TAIL = re.compile(rb"AY([0-9])\|?\Z")
_FIELD_ID = re.compile(r"[A-Z0-9]{2}")


def decode(frame: bytes, *, charset: str = "cp850") -> SipMessage:
    """Parse one frame (terminator optional). Lenient on content, strict on checksums.

    Fixed fields are cut by width and kept as raw text (so '2.0E' survives); unknown
    field ids are kept; a final field without '|' is accepted; an AZ that does not
    verify raises SipChecksumError (checked before anything else, so a corrupted
    command id still leads to a resend request rather than silence).
    """
    if not isinstance(frame, (bytes, bytearray)):
        raise SipDecodeError("frame must be bytes")
    body = bytes(frame).lstrip(b"\n").rstrip(b"\r\n")
    command = body[:2].decode("ascii", errors="replace")
    layout = FIXED_LAYOUT.get(command) if _COMMAND.fullmatch(command) else None
    fixed_end = 2 + sum(width for _, width in layout or ())

    sequence: int | None = None
    received_checksum: str | None = None
    trailer = _TRAILER.search(body)
    if trailer and (layout is None or trailer.start() >= fixed_end):
        through_az = body[: trailer.start() + 2]
        received_checksum = trailer.group(1).decode("ascii")
        if not verify_checksum(through_az, received_checksum):
            raise SipChecksumError("checksum does not verify")
        body = body[: trailer.start()]
    seq = _SEQ_TAIL.search(body)
    lenient_ok = seq is not None and (not seq.group(0).endswith(b"|") or _at_field_start(body, seq.start()))
    if seq and seq.start() >= fixed_end and lenient_ok:
        sequence = int(seq.group(1))
        body = body[: seq.start()]

    if layout is None:
        raise SipDecodeError("unknown command")
    if len(body) < fixed_end:
        raise SipDecodeError("fixed fields truncated")
    cursor = 2
    fixed: dict[str, str] = {}
    for name, width in layout:
        fixed[name] = _text(body[cursor: cursor + width], charset)
        cursor += width

    # Split after decoding: in Shift_JIS a second byte may be 0x7C, the same byte as '|'.
    fields: list[tuple[str, str]] = []
    pending: list[str] = []                 # the last field, may grow
    for segment in _text(body[cursor:], charset).split("|"):
        if not segment:
            continue
        if _FIELD_ID.fullmatch(segment[:2]):
            if pending:
                fields.append(_field(pending))
            pending = [segment]
        elif pending:
            pending.append(segment)          # an unescaped '|' inside the previous value
        else:
            raise SipDecodeError("malformed field")
    if pending:
        fields.append(_field(pending))
    return SipMessage(command, fixed, tuple(fields), sequence, received_checksum)


def _at_field_start(body: bytes, pos: int) -> bool:
    return pos > 0 and body[pos - 1: pos] == b"|"


def _field(parts: list[str]) -> tuple[str, str]:
    text = "|".join(parts)
    return text[:2], text[2:].replace(PIPE_ESCAPE, "|")


def _text(raw: bytes, charset: str) -> str:
    return raw.decode(charset, errors="replace")


class FrameSplitter:
    """Cuts a byte stream into frames on CR; a LF right after CR (CRLF peers) is dropped."""

    def __init__(self, max_frame: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if b"\r" not in self._buffer and len(self._buffer) > self._max:
            self._buffer.clear()
            raise SipDecodeError("frame too long")

    def next_frame(self) -> bytes | None:
        while self._buffer[:1] == b"\n":
            del self._buffer[:1]
        end = self._buffer.find(b"\r")
        if end < 0:
            return None
        frame = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return frame

    def clear(self) -> None:
        self._buffer.clear()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame (a lone LF left over from CRLF does not count)."""
        return len(self._buffer.lstrip(b"\n"))


# --------------------------------------------------------------------------- dates


def format_datetime(when: datetime, *, tz: tzinfo | None = None, utc: bool = False) -> str:
    """18-char fixed date. Local time with 4 blanks (preferred by the spec) unless utc=True.

    A naive datetime is taken as local already; an aware one is converted to `tz`
    (None: the system's zone) or, with utc=True, written with '   Z'.
    """
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc if utc else tz)
    zone = "   Z" if utc else "    "
    # f-string, not strftime: %Y is not zero-padded on every platform
    return (f"{when.year:04d}{when.month:02d}{when.day:02d}{zone}"
            f"{when.hour:02d}{when.minute:02d}{when.second:02d}")


_D18 = re.compile(r"([0-9]{8})(.{4})([0-9]{6})\Z")      # ASCII digits: a str \d also takes '٢'...


def parse_datetime(text: str) -> datetime | None:
    """A fixed 18-char date: naive for local time, UTC-aware for '   Z'; None if unusable."""
    m = _D18.match(text or "")
    if not m or m.group(1) == "00000000":
        return None
    try:
        value = datetime.strptime(m.group(1) + m.group(3), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if m.group(2).strip() == "Z":
        value = value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class DueDate:
    """An AH due date; `raw` is always kept because ACSs may send any format."""

    raw: str
    when: datetime | None = None

    @property
    def date(self) -> date | None:
        return self.when.date() if self.when else None


_DUE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
    "%Y-%m-%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%Y%m%d%H%M%S", "%Y%m%d",
)


def parse_due_date(text: str | None) -> DueDate:
    """Koha 'YYYYMMDD    HHMMSS', the 18-char format, ISO 8601 and a few more; else raw only."""
    raw = text or ""
    candidate = raw.strip()
    if not candidate or not candidate.isascii():      # strptime would take Unicode digits
        return DueDate(raw)
    fixed = parse_datetime(raw) or parse_datetime(candidate)
    if fixed:
        return DueDate(raw, fixed)
    try:
        return DueDate(raw, datetime.fromisoformat(candidate.replace("Z", "+00:00")))
    except ValueError:
        pass
    for fmt in _DUE_FORMATS:
        try:
            return DueDate(raw, datetime.strptime(candidate, fmt))
        except ValueError:
            continue
    return DueDate(raw)


# --------------------------------------------------------------------------- field meanings

#: The 14 positions of the patron-status field ('Y' = condition true).
PATRON_STATUS_FLAGS = (
    "charge_privileges_denied", "renewal_privileges_denied", "recall_privileges_denied",
    "hold_privileges_denied", "card_reported_lost", "too_many_items_charged",
    "too_many_items_overdue", "too_many_renewals", "too_many_claims_of_items_returned",
    "too_many_items_lost", "excessive_outstanding_fines", "excessive_outstanding_fees",
    "recall_overdue", "too_many_items_billed",
)

#: The 16 positions of BX in the ACS status (98).
SUPPORTED_MESSAGE_NAMES = (
    "patron_status", "checkout", "checkin", "block_patron", "sc_acs_status", "resend",
    "login", "patron_information", "end_patron_session", "fee_paid", "item_information",
    "item_status_update", "patron_enable", "hold", "renew", "renew_all",
)

CIRCULATION_STATUS = {
    "01": "other", "02": "on_order", "03": "available", "04": "charged",
    "05": "charged_not_recallable", "06": "in_process", "07": "recalled",
    "08": "waiting_on_hold_shelf", "09": "waiting_to_be_reshelved", "10": "in_transit",
    "11": "claimed_returned", "12": "lost", "13": "missing",
}

MEDIA_TYPES = {
    "000": "other", "001": "book", "002": "magazine", "003": "bound_journal",
    "004": "audio_tape", "005": "video_tape", "006": "cd", "007": "diskette",
    "008": "book_with_diskette", "009": "book_with_cd", "010": "book_with_audio_tape",
}


def patron_flags(status: str) -> tuple[str, ...]:
    """Names of the patron-status positions set to 'Y'; anything else counts as false."""
    return tuple(name for name, ch in zip(PATRON_STATUS_FLAGS, status or "") if ch == "Y")


def supported_messages(bx: str | None) -> dict[str, bool]:
    """BX positions by name; missing positions are N and extra ones are ignored."""
    bx = bx or ""
    return {name: bx[i: i + 1] == "Y" for i, name in enumerate(SUPPORTED_MESSAGE_NAMES)}


def parse_count(text: str | None) -> int | None:
    """A 4-digit count or limit; blanks (unsupported) or junk give None.

    ASCII digits only: '²'.isdigit() is True and int('²') raises ValueError.
    """
    text = (text or "").strip()
    return int(text) if _WIRE_NUMBER.fullmatch(text) else None


_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,4})?")


def parse_amount(text: str | None) -> Decimal | None:
    """A fee amount (BV, CC): ASCII digits with an optional decimal part; junk gives None.

    ACSs differ ('1500', '1500.00', ' 200 '); a currency sign or words are not guessed at.
    """
    text = (text or "").strip()
    return Decimal(text) if _AMOUNT.fullmatch(text) else None


@dataclass(frozen=True)
class AcsStatus:
    """What the ACS said about itself in 98."""

    online: bool
    checkin_ok: bool
    checkout_ok: bool
    renewal_policy: bool
    status_update_ok: bool
    offline_ok: bool
    timeout: float | None             # seconds; None when '000' (offline) or '999' (unknown)
    retries: int | None               # None when '999' (unknown)
    date_time_sync: datetime | None
    protocol_version: str
    institution: str = ""
    library_name: str = ""
    terminal_location: str = ""
    supported: Mapping[str, bool] = field(default_factory=dict)
    messages: tuple[str, ...] = ()


def parse_acs_status(message: SipMessage) -> AcsStatus:
    if message.command != "98":
        raise SipDecodeError("not an ACS status message")
    f = message.flag
    timeout = parse_count(f("timeout"))
    retries = parse_count(f("retries"))
    return AcsStatus(
        online=f("online") == "Y",
        checkin_ok=f("checkin_ok") == "Y",
        checkout_ok=f("checkout_ok") == "Y",
        renewal_policy=f("renewal_policy") == "Y",
        status_update_ok=f("status_update_ok") == "Y",
        offline_ok=f("offline_ok") == "Y",
        timeout=None if timeout in (None, 0, 999) else timeout / 10,
        retries=None if retries in (None, 999) else retries,
        date_time_sync=parse_datetime(f("date_time_sync")),
        protocol_version=f("protocol_version"),
        institution=message.get("AO", "") or "",
        library_name=catalogue_text(message.get("AM", "") or ""),          # shown to staff: NFC
        terminal_location=catalogue_text(message.get("AN", "") or ""),
        supported=supported_messages(message.get("BX")),
        messages=tuple(catalogue_text(m) for m in message.getall("AF")),
    )


# --------------------------------------------------------------------------- request builders


def _yn(value: bool) -> str:
    return "Y" if value else "N"


def _fields(pairs: Iterable[tuple[str, str | None]]) -> tuple[tuple[str, str], ...]:
    return tuple((fid, value) for fid, value in pairs if value is not None)


def login(user: str, password: str, location: str | None = None) -> SipMessage:
    return SipMessage(
        "93", {"uid_algorithm": "0", "pwd_algorithm": "0"},
        _fields((("CN", user), ("CO", password), ("CP", location))),
    )


def sc_status(status: int = 0, max_print_width: int = 0, version: str = "2.00") -> SipMessage:
    return SipMessage(
        "99",
        {"status": str(status), "max_print_width": f"{max_print_width:03d}", "protocol_version": version},
    )


#: Summary positions (63) and the 64 field each one asks for: one list per request.
SUMMARY_DETAIL = {"AS": 0, "AT": 1, "AU": 2, "AV": 3, "BU": 4, "CD": 5}


def summary(detail: str | None = None) -> str:
    """The 10-char summary field asking for one detail list ('AU' charged, 'AT' overdue,
    'AS' holds available, 'CD' unavailable holds, 'AV' fines, 'BU' recalls), or none."""
    if detail is None:
        return " " * 10
    pos = SUMMARY_DETAIL[detail]
    return " " * pos + "Y" + " " * (9 - pos)


def patron_information(
    institution: str, patron_id: str, when: str, *, terminal_password: str = "",
    patron_password: str | None = None, language: str = "000", summary: str = " " * 10,
    start: int | None = None, end: int | None = None,
) -> SipMessage:
    """63; `start`/`end` (BP/BQ, 1-based, inclusive) page the detail list the summary asks for."""
    return SipMessage(
        "63", {"language": language, "transaction_date": when, "summary": summary},
        _fields((("AO", institution), ("AA", patron_id), ("AC", terminal_password), ("AD", patron_password),
                 ("BP", None if start is None else str(start)), ("BQ", None if end is None else str(end)))),
    )


def patron_status(
    institution: str, patron_id: str, when: str, *, terminal_password: str = "",
    patron_password: str | None = None, language: str = "000",
) -> SipMessage:
    return SipMessage(
        "23", {"language": language, "transaction_date": when},
        _fields((
            ("AO", institution), ("AA", patron_id), ("AC", terminal_password), ("AD", patron_password or ""),
        )),
    )


def item_information(institution: str, item_id: str, when: str, *, terminal_password: str = "") -> SipMessage:
    return SipMessage(
        "17", {"transaction_date": when},
        _fields((("AO", institution), ("AB", item_id), ("AC", terminal_password))),
    )


def checkout(
    institution: str, patron_id: str, item_id: str, when: str, nb_due_date: str, *,
    terminal_password: str = "", no_block: bool = False, renewal_policy: bool = False,
    fee_acknowledged: bool = False, patron_password: str | None = None,
) -> SipMessage:
    """11. `nb_due_date` must be a real date: strict ACSs reject 18 blanks."""
    return SipMessage(
        "11",
        {"renewal_policy": _yn(renewal_policy), "no_block": _yn(no_block),
         "transaction_date": when, "nb_due_date": nb_due_date},
        _fields((
            ("AO", institution), ("AA", patron_id), ("AB", item_id), ("AC", terminal_password),
            ("AD", patron_password), ("BO", _yn(fee_acknowledged)), ("BI", "N"),
        )),
    )


def renew(
    institution: str, patron_id: str, item_id: str, when: str, nb_due_date: str, *,
    terminal_password: str = "", no_block: bool = False, fee_acknowledged: bool = False,
    patron_password: str | None = None,
) -> SipMessage:
    return SipMessage(
        "29",
        {"third_party": "N", "no_block": _yn(no_block), "transaction_date": when, "nb_due_date": nb_due_date},
        _fields((
            ("AO", institution), ("AA", patron_id), ("AD", patron_password), ("AB", item_id),
            ("AC", terminal_password), ("BO", _yn(fee_acknowledged)),
        )),
    )


def renew_all(
    institution: str, patron_id: str, when: str, *, terminal_password: str = "",
    patron_password: str | None = None, fee_acknowledged: bool = False,
) -> SipMessage:
    """65: renew every item on the patron's card; 66 lists renewed (BM) and unrenewed (BN)."""
    return SipMessage(
        "65", {"transaction_date": when},
        _fields((("AO", institution), ("AA", patron_id), ("AD", patron_password), ("AC", terminal_password),
                 ("BO", _yn(fee_acknowledged)))),
    )


def checkin(
    institution: str, item_id: str, when: str, return_date: str, *, location: str = "",
    terminal_password: str = "", no_block: bool = False,
) -> SipMessage:
    """09. `return_date` is when the book was handed back (the scan, also for an offline
    return replayed later with no-block Y); `location` is the kiosk (AP, required)."""
    return SipMessage(
        "09", {"no_block": _yn(no_block), "transaction_date": when, "return_date": return_date},
        _fields((("AP", location), ("AO", institution), ("AB", item_id), ("AC", terminal_password),
                 ("BI", "N"))),
    )


def end_session(
    institution: str, patron_id: str, when: str, *, terminal_password: str = "",
    patron_password: str | None = None,
) -> SipMessage:
    return SipMessage(
        "35", {"transaction_date": when},
        _fields((("AO", institution), ("AA", patron_id), ("AC", terminal_password), ("AD", patron_password))),
    )


def resend_request() -> SipMessage:
    """97: sent after a response whose checksum failed; carries AZ but never AY."""
    return SipMessage("97")


def charset_ok(charset: str) -> str:
    """Canonical codec name; raises LookupError early for a misconfigured charset."""
    return codecs.lookup(charset).name


def combine_due(day: date, at: time = time(23, 59, 0)) -> datetime:
    """An offline due date as a moment: end of the day, as Koha does for date-only loans."""
    return datetime.combine(day, at)
