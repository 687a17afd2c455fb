"""Hostile input against the SIP2 codec and the backend's reading of it (property-based).

The contract (kiosk/sync/sip2_codec.py docstring): on any bytes `decode` and
`FrameSplitter.feed` raise only SipDecodeError; on any values `encode` raises only
SipEncodeError; the field readers (counts, dates, flags, ACS status) raise nothing
else, and wire numbers are ASCII digits only ('²' is cp850 byte 0xFD, and
str.isdigit() says yes to it). Frames are built for every command the codec knows,
with a valid checksum half of the time so the parser gets past the AZ check and
into the fields; every decoded message then goes through every reader and through
the backend's mapping onto kiosk results. Budget: kiosk_testing.fuzz.FUZZ.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kiosk.core.catalogue import CHECKIN, LoanRequest
from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_backend import HOLD_CHECKOUT_NOT_ALLOWED, HOLD_OFFLINE, Sip2Catalogue, loan_result
from kiosk.sync.sip2_codec import FIXED_LAYOUT, FrameSplitter, SipDecodeError, SipEncodeError, SipMessage
from kiosk_testing.fuzz import FUZZ

CHARSETS = st.sampled_from(["cp850", "utf-8", "shift_jis", "euc_jp"])

#: Unicode digits that str.isdigit()/int() or a str regex's \d accept, but no wire number may hold.
UNICODE_DIGITS = "²³¹١٣۵߀०০੦૦୦௦౦೦൦๐໐༠၀០᠐０９𝟘𝟡"
WIRE_CHARS = "0123456789YNyn ZU|&#;AYZ-.:T/+"
HOSTILE_TEXT = st.text(
    st.sampled_from(list(WIRE_CHARS + UNICODE_DIGITS) + ["\x00", "\r", "\n", "\x85", "\ufffd", "が", "ｶ", "\u0301"])
    | st.characters(exclude_categories=("Cs",)),
    max_size=40)

#: Every field id the codec or the backend reads, plus unknown ones.
_KNOWN_IDS = st.sampled_from(
    "AA AB AC AD AE AF AG AH AJ AL AM AN AO AP AQ AS AT AU AV AY AZ BD BE BF BG BH BI BK BL BM BN BO BP BQ "
    "BT BU BV BX BZ CA CB CC CD CF CH CI CJ CK CL CM CN CO CP CQ PB ZZ".split())
FIELD_IDS = st.integers(0, 5).flatmap(
    lambda n: st.text(st.sampled_from("AZ09²a|"), min_size=2, max_size=2) if n == 5 else _KNOWN_IDS)


def fixed_text(width: int) -> st.SearchStrategy[str]:
    """A fixed field of the right width in characters: mostly wire-like, else Unicode digits or anything."""
    hostile = st.text(st.sampled_from(list(WIRE_CHARS + UNICODE_DIGITS)) | st.characters(exclude_categories=("Cs",)),
                      min_size=width, max_size=width)
    plain = st.text(st.sampled_from(WIRE_CHARS), min_size=width, max_size=width)
    return st.integers(0, 3).flatmap(lambda n: hostile if n == 3 else plain)


@st.composite
def hostile_frames(draw) -> tuple[str, bytes]:
    """(charset, frame) for any known command, or a near-command, with hostile contents."""
    charset = draw(CHARSETS)
    near = st.text(st.sampled_from("0123456789²١"), min_size=2, max_size=2)
    command = draw(near if draw(st.integers(0, 7)) == 7 else st.sampled_from(sorted(FIXED_LAYOUT)))
    layout = FIXED_LAYOUT.get(command, ())
    text = command + "".join(draw(fixed_text(width)) for _, width in layout)
    for fid, value in draw(st.lists(st.tuples(FIELD_IDS, HOSTILE_TEXT), max_size=8)):
        text += fid + value + draw(st.sampled_from(["|", "|", ""]))
    body = text.encode(charset, errors="replace")
    if draw(st.integers(0, 3)) == 3:                             # (hypothesis favours 0: keep it for "no cut")
        body = body[: draw(st.integers(0, len(body)))]          # cut anywhere, even inside a character
    trailer = draw(st.sampled_from(["valid", "valid", "none", "valid", "ay-only", "bad"]))
    if trailer == "valid":
        ay = draw(st.sampled_from([b"", b"AY0", b"AY7", b"|AY3", "AY²".encode(charset, "replace")]))
        prefix = body + ay + b"AZ"
        body = prefix + draw(st.sampled_from([str.upper, str.lower]))(codec.checksum(prefix)).encode()
    elif trailer == "ay-only":
        body += b"AY" + draw(st.sampled_from([b"5", b"\xfd", b"|"]))
    elif trailer == "bad":
        body += b"AZ" + draw(st.sampled_from([b"0000", b"FFFF", b"\xfd\xfd\xfd\xfd", b"12G4", b"123"]))
    return charset, body + draw(st.sampled_from([b"", b"\r", b"\r\n", b"\n"]))


class _StubClient:
    """Answers every request with one decoded message (the backend's reading is under test)."""

    def __init__(self, reply: SipMessage, charset: str) -> None:
        self.reply = reply
        self.config = SimpleNamespace(charset=charset)
        self.acs_status = None

    def request(self, message: SipMessage, *, once: bool = False) -> SipMessage:
        return self.reply

    def status(self) -> codec.AcsStatus:
        return codec.parse_acs_status(self.reply)


def read_everything(message: SipMessage, charset: str) -> None:
    """Every reader over every fixed field and field value, and the backend's mapping."""
    assert message.command in FIXED_LAYOUT
    for text in [*message.fixed.values(), *(value for _, value in message.fields)]:
        count = codec.parse_count(text)
        assert count is None or (0 <= count and text.strip().isascii())
        when = codec.parse_datetime(text)
        assert when is None or text[:8].isascii()
        codec.parse_due_date(text)
        codec.patron_flags(text)
        codec.supported_messages(text)
        amount = codec.parse_amount(text)
        assert amount is None or (amount >= 0 and text.strip().isascii())
    message.get("AF"), message.getall("AF"), message.flag("ok")
    if message.command == "98":
        status = codec.parse_acs_status(message)
        assert status.retries is None or status.retries >= 0
        assert status.timeout is None or status.timeout >= 0
    else:
        with pytest.raises(SipDecodeError):
            codec.parse_acs_status(message)
    loan_result("t1", "1230004567", message, ok=message.flag("ok") == "1")
    catalogue = Sip2Catalogue(_StubClient(message, charset), "JPLIB")   # type: ignore[arg-type]
    catalogue.patron_status("2000000012345", "1234")
    catalogue.item_info("1230004567")
    catalogue.checkout(LoanRequest("t1", "2000000012345", "1230004567", datetime(2026, 8, 1, 10, 30)))
    catalogue.renew("2000000012345", "1230004567")
    catalogue.renew_all("2000000012345")
    account = catalogue.patron_account("2000000012345")
    assert len(account.loans) <= 2 * 200            # AU + AT, each read to DETAIL_MAX at most
    back = catalogue.checkin(LoanRequest("r1", "", "1230004567", datetime(2026, 8, 1, 10, 30), kind=CHECKIN))
    assert back.kind == CHECKIN and (back.ok or back.refusal is not None)
    if message.command == "98":
        catalogue.capabilities()
        assert catalogue.checkout_hold() in (None, HOLD_OFFLINE, HOLD_CHECKOUT_NOT_ALLOWED)


@FUZZ
@given(hostile_frames())
@example(("cp850", b"98YYYYNN\xfd00003" + b"0" * 18 + b"2.00AOJPLIB|BXYYYY|"))            # '²' in timeout
@example(("cp850", b"98YYYYNN030\xfd\xfd\xfd" + b"0" * 18 + b"2.00AOJPLIB|"))               # '²' in retries
@example(("utf-8", ("64" + " " * 14 + "000" + "20260801    103000" + "²²²²" * 6 + "AOJPLIB|AA1|CB０１|")
          .encode()))
@example(("utf-8", "18030001٢٠٢٦٠٨٠١    ١٠٣٠٠٠AB1|AJx|AH٢٠٢٦٠٨١٥    ٢٣٥٩٠٠|".encode()))
def test_hostile_frames_raise_only_decode_errors_and_read_without_errors(case):
    charset, frame = case
    try:
        message = codec.decode(frame, charset=charset)
    except SipDecodeError:
        return
    read_everything(message, charset)


@FUZZ
@given(st.binary(max_size=400), CHARSETS)
def test_arbitrary_bytes_raise_only_decode_errors(data, charset):
    try:
        message = codec.decode(data, charset=charset)
    except SipDecodeError:
        return
    read_everything(message, charset)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=80) | st.sampled_from([b"\r", b"\n", b"\r\n", b"941\r"]), max_size=20),
       limit=st.integers(1, 200))
def test_frame_splitter_raises_only_decode_errors_and_never_returns_a_cr(chunks, limit):
    splitter = FrameSplitter(max_frame=limit)
    for chunk in chunks:
        try:
            splitter.feed(chunk)
        except SipDecodeError:
            assert splitter.pending == 0
            continue
        while (frame := splitter.next_frame()) is not None:
            assert b"\r" not in frame and not frame.startswith(b"\n")
    assert splitter.pending >= 0


@st.composite
def messages_to_send(draw) -> SipMessage:
    """Any message: a known command with fixed fields of the right width half the time, else anything."""
    command = draw(st.text(max_size=3) if draw(st.integers(0, 3)) == 3 else st.sampled_from(sorted(FIXED_LAYOUT)))
    if command in FIXED_LAYOUT and draw(st.integers(0, 3)):
        fixed = {name: draw(st.text(st.sampled_from(WIRE_CHARS), min_size=width, max_size=width))
                 for name, width in FIXED_LAYOUT[command]}
    else:
        names = st.sampled_from(sorted({n for lay in FIXED_LAYOUT.values() for n, _ in lay})) | st.text(max_size=5)
        fixed = draw(st.dictionaries(names, HOSTILE_TEXT, max_size=12))
    fields = draw(st.lists(st.tuples(FIELD_IDS | st.text(max_size=3), HOSTILE_TEXT), max_size=6))
    return SipMessage(command, fixed, tuple(fields))


@FUZZ
@given(message=messages_to_send(), charset=CHARSETS, error_detection=st.booleans(),
       sequence=st.integers(-3, 12), terminator=st.sampled_from([b"\r", b"\r\n"]))
def test_encode_raises_only_encode_errors_and_its_frames_decode(message, charset, error_detection, sequence,
                                                                terminator):
    command = message.command
    try:
        wire = codec.encode(message, charset=charset, error_detection=error_detection, sequence=sequence,
                            terminator=terminator)
    except SipEncodeError:
        return
    assert wire.endswith(terminator) and wire[:-len(terminator)].count(b"\r") == 0
    decoded = codec.decode(wire, charset=charset)            # what we send we can read back
    assert decoded.command == command
    if error_detection:
        assert decoded.checksum is not None


@FUZZ
@given(HOSTILE_TEXT | fixed_text(4) | fixed_text(3) | fixed_text(18))
@example("²")
@example("²²²²")
@example("０１２３")
@example("١٢")
def test_wire_numbers_are_ascii_digits_only(text):
    count = codec.parse_count(text)
    stripped = text.strip()
    if stripped and stripped.isascii() and stripped.isdigit():
        assert count == int(stripped)
    else:
        assert count is None
    when = codec.parse_datetime(text)
    if when is not None:
        assert text[:8].isascii() and text[12:18].isascii()


@FUZZ
@given(command=st.sampled_from(["98", "64"]), fixed=st.data())
def test_counts_and_status_flags_from_any_cp850_bytes(command, fixed):
    """Every byte is a cp850 character: counts, limits, timeouts and flags read as junk, never raise."""
    layout = FIXED_LAYOUT[command]
    raw = b"".join(fixed.draw(st.binary(min_size=w, max_size=w).filter(lambda b: b"\r" not in b and b"|" not in b),
                              label=name) for name, w in layout)
    message = codec.decode(command.encode() + raw + b"AOJPLIB|AA1|CB\xfd\xfd|", charset="cp850")
    read_everything(message, "cp850")


def test_unicode_digit_counts_are_junk_not_a_crash():
    """cp850 byte 0xFD is '²': isdigit() says yes, int() says ValueError."""
    frame = b"98YYYYNN\xfd\xfd\xfd\xfd\xfd\xfd" + b"0" * 18 + b"2.00AOJPLIB|BXYYYYYYYYYYYNNNNN|"
    status = codec.parse_acs_status(codec.decode(frame, charset="cp850"))
    assert status.timeout is None and status.retries is None and status.checkout_ok
    assert codec.parse_count("²²²²") is None and codec.parse_count("００１２") is None
    assert codec.parse_datetime("٢٠٢٦٠٨٠١    ١٠٣٠٠٠") is None


@FUZZ
@given(st.text(max_size=40))
@example("²")
@example("1500.00")
@example("１５００")
def test_amounts_read_as_decimal_or_none(text):
    """BV/CC amounts: ASCII digits with an optional decimal part, anything else is None."""
    amount = codec.parse_amount(text)
    assert amount is None or (amount >= 0 and text.strip().isascii() and str(amount) in text)
