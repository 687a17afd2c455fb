"""SIP2 codec: reference test vectors, framing, dates, field meanings, and properties."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_codec import (
    FIXED_LAYOUT,
    FrameSplitter,
    SipChecksumError,
    SipDecodeError,
    SipEncodeError,
    SipMessage,
)
from kiosk_testing.fuzz import FUZZ


# From /work/shared/reference/sip2.md section 10 (checksums verified by byte sum).
EXAMPLE_FRAMES = [
    "9300CNkiosk01|COsecret|CPMAIN|AY0AZF478",
    "9900302.00AY1AZFCA5",
    "6300120260801    103000          AOJPLIB|AA2000000012345|ACsecret|AY2AZEFA6",
    "6301420260801    103000  Y       AOJPLIB|AA2000000012345|ACsecret|AY2AZEF69",
    "2301420260801    103000AOJPLIB|AA2000000012345|AC|AD|AY1AZF26C",
    "1720260801    103000AOJPLIB|AB1230004567|ACsecret|AY3AZF1FB",
    "11NN20260801    10300020260801    103000AOJPLIB|AA2000000012345|AB1230004567|ACsecret|BON|BIN|AY4AZE7FE",
    "09N20260801    10300020260801    103000APMAIN-KIOSK1|AOJPLIB|AB1230004567|ACsecret|BIN|AY5AZE90D",
    "3520260801    103000AOJPLIB|AA2000000012345|ACsecret|AY6AZF174",
    "97AZFEF5",
    "96AZFEF6",
    "941AY0AZFDFD",
    "121NNY20260801    103000AOJPLIB|AA2000000012345|AB1230004567|AJ吾輩は猫である|AH20260815    235900|AY4AZDCF7",
]
WHEN = "20260801    103000"


# --------------------------------------------------------------------------- checksums


def test_checksum_reference_vector():
    frame = b"09N20160419    12200820160419    122008APReading Room 1|AO830|AB830$28170815|AC|AY2AZ"
    assert codec.checksum(frame) == "EB80"


def test_checksum_is_over_encoded_bytes_not_code_points():
    text = "2300020261124    035044AOMy Test Institute|AA山田|AC|AD1234|AY1AZ"
    assert codec.checksum(text.encode("utf-8")) == "EAAD"
    # what the PyPI `sip2` package computes (sum of code points) must not be what we send
    assert f"{(-sum(map(ord, text))) & 0xFFFF:04X}" == "1D7E"


def test_checksum_keeps_leading_zeros():
    data = b"AZ" + bytes([0xFF] * 243)           # byte sum 0xF2A8 -> 2's complement 0x0D58
    assert codec.checksum(data) == "0D58"


@pytest.mark.parametrize("text", EXAMPLE_FRAMES)
def test_example_frames_decode_and_reencode_byte_for_byte(text):
    wire = text.encode("utf-8") + b"\r"
    message = codec.decode(wire, charset="utf-8")
    assert message.checksum == text[-4:]
    again = codec.encode(message, charset="utf-8", sequence=message.sequence or 0)
    assert again == wire


def test_builders_produce_the_reference_frames():
    built = [
        (codec.login("kiosk01", "secret", "MAIN"), 0),
        (codec.sc_status(0, 30, "2.00"), 1),
        (codec.patron_information("JPLIB", "2000000012345", WHEN, terminal_password="secret", language="001"), 2),
        (codec.patron_information("JPLIB", "2000000012345", WHEN, terminal_password="secret",
                                  language="014", summary="  Y       "), 2),
        (codec.patron_status("JPLIB", "2000000012345", WHEN, language="014"), 1),
        (codec.item_information("JPLIB", "1230004567", WHEN, terminal_password="secret"), 3),
        (codec.checkout("JPLIB", "2000000012345", "1230004567", WHEN, WHEN, terminal_password="secret"), 4),
        (codec.end_session("JPLIB", "2000000012345", WHEN, terminal_password="secret"), 6),
        (codec.resend_request(), 7),
    ]
    expected = [f for f in EXAMPLE_FRAMES if f[:2] in {"93", "99", "63", "23", "17", "11", "35", "97"}]
    assert [codec.encode(m, sequence=s).decode() for m, s in built] == [f + "\r" for f in expected]


def test_lower_case_checksum_is_accepted():
    message = codec.decode(b"941AY0AZfdfd\r")
    assert (message.command, message.flag("ok"), message.sequence) == ("94", "1", 0)


def test_bad_checksum_raises_checksum_error():
    with pytest.raises(SipChecksumError):
        codec.decode(b"941AY0AZFDFE\r")
    # a corrupted command id is still reported as a checksum error, so the SC asks for a resend
    with pytest.raises(SipChecksumError):
        codec.decode(b"9\x351AY0AZFDFD\r")


def test_resend_request_has_az_but_no_ay():
    assert codec.encode(codec.resend_request(), sequence=5) == b"97AZFEF5\r"


def test_error_detection_off_sends_no_trailer():
    assert codec.encode(codec.sc_status(), error_detection=False) == b"9900002.00\r"


def test_sequence_must_be_one_digit():
    with pytest.raises(SipEncodeError):
        codec.encode(codec.sc_status(), sequence=10)


# --------------------------------------------------------------------------- parsing


def test_koha_style_98_without_trailer_and_with_version_2_0E():
    frame = b"98YYYYNN02000320170329    1659432.0EAOlocation|AMlogin|BXYYYYYYYYYYYNNNNN|AN|\r\n"
    message = codec.decode(frame)
    assert (message.sequence, message.checksum) == (None, None)
    status = codec.parse_acs_status(message)
    assert status.online and status.checkout_ok and not status.offline_ok
    assert status.protocol_version == "2.0E"
    assert status.timeout == 2.0 and status.retries == 3
    assert status.date_time_sync == datetime(2017, 3, 29, 16, 59, 43)
    assert status.supported["checkout"] and status.supported["item_information"]
    assert not status.supported["renew"]
    assert status.institution == "location" and status.library_name == "login"


def test_acs_status_unknown_timeout_and_short_bx():
    status = codec.parse_acs_status(codec.decode(b"98NNNNNN000999000000000000000000002.00AO|BXYY|"))
    assert not status.online
    assert status.timeout is None and status.retries is None and status.date_time_sync is None
    assert status.supported["patron_status"] and status.supported["checkout"]
    assert not status.supported["renew_all"] and len(status.supported) == 16


def test_variable_fields_any_order_repeatable_and_unknown_kept():
    frame = ("64              014" + WHEN + "0002000000010000000000000000"
             "AA2000000012345|AOJPLIB|AE山田|ASh1|PB19800101|ASh2|AFone|AFtwo|ZZextension|").encode("utf-8")
    message = codec.decode(frame, charset="utf-8")
    assert message.get("AO") == "JPLIB" and message.get("AE") == "山田"
    assert message.getall("AS") == ["h1", "h2"]
    assert message.getall("AF") == ["one", "two"]
    assert message.get("PB") == "19800101" and message.get("ZZ") == "extension"
    assert message.get("AT") is None and message.getall("AT") == []
    assert message.flag("charged_items_count") == "0001"


def test_last_field_without_bar_and_unescaped_bar_inside_a_value():
    message = codec.decode(b"36Y20260801    103000AOJPLIB|AFhello|world|AA12")
    assert message.getall("AF") == ["hello|world"]
    assert message.get("AA") == "12"


def test_sequence_without_checksum_is_read():
    assert codec.decode(b"941AY7").sequence == 7
    assert codec.decode(b"36Y20260801    103000AOJPLIB|AA1|AY3|").sequence == 3


def test_koha_pipe_escape_is_undone_and_applied():
    message = codec.decode(b"24" + b" " * 14 + b"000" + WHEN.encode() + b"AOX|AA1|AESmith&#124;Jones|")
    assert message.get("AE") == "Smith|Jones"
    wire = codec.encode(SipMessage("35", {"transaction_date": WHEN}, (("AO", "a|b\rc\x00d"),)),
                        error_detection=False)
    assert wire == b"35" + WHEN.encode() + b"AOa&#124;b c d|\r"


@pytest.mark.parametrize("frame", [
    b"", b"9", b"XX", b"12", b"121NN", b"64 short", b"|||", b"99AZ", b"\n\n\n",
    b"18030001" + WHEN.encode() + b"|x|",
])
def test_garbage_raises_only_decode_errors(frame):
    with pytest.raises(SipDecodeError):
        codec.decode(frame)


def test_unknown_command_is_a_decode_error():
    with pytest.raises(SipDecodeError):
        codec.decode(b"42whatever|")


def test_frame_splitter_handles_cr_crlf_and_chunks():
    splitter = FrameSplitter()
    frames = []
    for chunk in (b"94", b"1\r\n94", b"0\r", b"\n", b"\n36Y", b"X\r"):
        splitter.feed(chunk)
        while (frame := splitter.next_frame()) is not None:
            frames.append(frame)
    assert frames == [b"941", b"940", b"36YX"]
    assert splitter.pending == 0


def test_frame_splitter_limits_unterminated_input():
    splitter = FrameSplitter(max_frame=100)
    with pytest.raises(SipDecodeError):
        splitter.feed(b"9" * 101)
    assert splitter.pending == 0


# --------------------------------------------------------------------------- charset and length


def test_japanese_title_truncated_at_255_bytes_on_a_character_boundary():
    title = "吾輩は猫である" * 13                    # 91 characters, 273 bytes
    data = codec.truncate_encoded(title, "utf-8")
    assert len(data) == 255 and data.decode("utf-8") == title[:85]
    frame = codec.encode(SipMessage("17", {"transaction_date": WHEN}, (("AO", "X"), ("AB", title))),
                         charset="utf-8")
    assert codec.decode(frame, charset="utf-8").get("AB") == title[:85]


def test_cp850_cannot_carry_japanese():
    with pytest.raises(SipEncodeError):
        codec.encode(codec.item_information("JPLIB", "山田", WHEN))
    assert codec.encode(codec.item_information("JPLIB", "Ærø", WHEN), charset="cp850")


def test_longer_fields_are_accepted_on_receive():
    title = "長" * 200
    frame = ("18030001" + WHEN + "AB1|AJ" + title + "|").encode("utf-8")
    assert codec.decode(frame, charset="utf-8").get("AJ") == title


def test_fixed_field_width_is_checked():
    with pytest.raises(SipEncodeError):
        codec.encode(SipMessage("17", {"transaction_date": "2026"}))
    with pytest.raises(SipEncodeError):
        codec.encode(SipMessage("42"))


# --------------------------------------------------------------------------- dates


def test_format_datetime_local_and_utc():
    assert codec.format_datetime(datetime(2026, 8, 1, 10, 30)) == WHEN
    jst = timezone(timedelta(hours=9))
    aware = datetime(2026, 8, 1, 10, 30, tzinfo=jst)
    assert codec.format_datetime(aware, tz=jst) == WHEN
    assert codec.format_datetime(aware, tz=timezone.utc) == "20260801    013000"
    assert codec.format_datetime(aware, utc=True) == "20260801   Z013000"


def test_parse_datetime():
    assert codec.parse_datetime(WHEN) == datetime(2026, 8, 1, 10, 30)
    assert codec.parse_datetime("20260801   Z013000") == datetime(2026, 8, 1, 1, 30, tzinfo=timezone.utc)
    assert codec.parse_datetime("000000000000000000") is None
    assert codec.parse_datetime("20261399    000000") is None
    assert codec.parse_datetime("") is None


@pytest.mark.parametrize("raw, expected", [
    ("20260815    235900", datetime(2026, 8, 15, 23, 59)),          # Koha
    ("20260815   Z145900", datetime(2026, 8, 15, 14, 59, tzinfo=timezone.utc)),  # 18-char UTC
    ("2026-08-15", datetime(2026, 8, 15)),
    ("2026-08-15T23:59:00+09:00", datetime(2026, 8, 15, 23, 59, tzinfo=timezone(timedelta(hours=9)))),
    ("2026-08-15 23:59", datetime(2026, 8, 15, 23, 59)),
    ("2026/08/15", datetime(2026, 8, 15)),
    ("20260815", datetime(2026, 8, 15)),
])
def test_due_date_formats(raw, expected):
    due = codec.parse_due_date(raw)
    assert due.when == expected and due.raw == raw
    assert due.date == expected.date()


@pytest.mark.parametrize("raw", ["next Tuesday", "15/08/2026", "", None])
def test_unparseable_due_date_keeps_raw(raw):
    due = codec.parse_due_date(raw)
    assert due.when is None and due.date is None and due.raw == (raw or "")


# --------------------------------------------------------------------------- field meanings


def test_patron_flags_by_position():
    status = "Y" + " " * 3 + "Y" + " " * 5 + "Y" + "N" + "y" + "Y"
    assert codec.patron_flags(status) == (
        "charge_privileges_denied", "card_reported_lost", "excessive_outstanding_fines", "too_many_items_billed")
    assert codec.patron_flags(" " * 14) == ()
    assert codec.patron_flags("") == ()


def test_counts():
    assert codec.parse_count("0012") == 12
    assert codec.parse_count("²") is None and codec.parse_count("００１２") is None     # ASCII digits only
    assert codec.parse_count("    ") is None
    assert codec.parse_count(None) is None


def test_offline_due_date_is_end_of_day():
    assert codec.combine_due(date(2026, 8, 15)) == datetime(2026, 8, 15, 23, 59)


# --------------------------------------------------------------------------- properties

_FIELD_IDS = st.from_regex(r"[A-Z][A-Z0-9]", fullmatch=True).filter(lambda f: f not in ("AY", "AZ"))
_FIXED_CHARS = st.sampled_from(list("0123456789YN ") + ["U", "Z"])


def _text(charset: str, max_size: int) -> st.SearchStrategy[str]:
    def encodable(ch: str) -> bool:
        try:
            ch.encode(charset)
            return True
        except UnicodeEncodeError:
            return False
    return st.text(st.characters(blacklist_characters="\r\x00").filter(encodable), max_size=max_size)


@st.composite
def messages(draw, charset: str):
    command = draw(st.sampled_from(sorted(FIXED_LAYOUT)))
    fixed = {name: "".join(draw(st.lists(_FIXED_CHARS, min_size=w, max_size=w)))
             for name, w in FIXED_LAYOUT[command]}
    fields = () if command in ("96", "97") else tuple(
        draw(st.lists(st.tuples(_FIELD_IDS, _text(charset, 60)), max_size=6)))
    return SipMessage(command, fixed, fields)


@FUZZ
@given(data=st.data(), charset=st.sampled_from(["utf-8", "cp850", "shift_jis"]),
       error_detection=st.booleans(), sequence=st.integers(0, 9),
       terminator=st.sampled_from([b"\r", b"\r\n"]))
def test_roundtrip(data, charset, error_detection, sequence, terminator):
    message = data.draw(messages(charset))
    assume(all("&#" not in v for _, v in message.fields))
    wire = codec.encode(message, charset=charset, error_detection=error_detection,
                        sequence=sequence, terminator=terminator)
    splitter = FrameSplitter()
    splitter.feed(wire + wire)                      # two in a row: CRLF must not break the second
    decoded = [codec.decode(splitter.next_frame(), charset=charset) for _ in range(2)]
    expected_fields = tuple(
        (fid, codec.truncate_encoded(codec.clean_value(value), charset).decode(charset)
         .replace(codec.PIPE_ESCAPE, "|"))
        for fid, value in message.fields)
    for got in decoded:
        assert (got.command, dict(got.fixed), got.fields) == (message.command, dict(message.fixed), expected_fields)
        if error_detection:
            assert got.checksum is not None
            assert got.sequence == (None if message.command in ("96", "97") else sequence)
        else:
            assert got.checksum is None


@FUZZ
@given(st.binary(max_size=300))
def test_checksum_always_verifies(data):
    value = codec.checksum(data)
    assert len(value) == 4 and value == value.upper()
    assert (sum(data) + int(value, 16)) & 0xFFFF == 0
    assert codec.verify_checksum(data, value) and codec.verify_checksum(data, value.lower())


@FUZZ
@given(data=st.data(), charset=st.sampled_from(["utf-8", "cp850", "shift_jis", "euc_jp"]),
       limit=st.integers(0, 255))
def test_truncation_never_splits_a_character_nor_exceeds_the_limit(data, charset, limit):
    text = data.draw(_text(charset, 300))
    out = codec.truncate_encoded(text, charset, limit)
    assert len(out) <= limit
    kept = out.decode(charset)                      # strict: a split character would fail here
    assert out == text[: len(kept)].encode(charset)  # a whole-character prefix (Shift_JIS maps ¥ to '\\')
    if len(text.encode(charset)) <= limit:
        assert out == text.encode(charset)
    else:
        assert len(text[: len(kept) + 1].encode(charset)) > limit    # it kept as much as fits


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(["utf-8", "cp850"]))
def test_decoder_raises_only_decode_errors_on_arbitrary_bytes(data, charset):
    try:
        codec.decode(data, charset=charset)
    except SipDecodeError:
        pass


@FUZZ
@given(index=st.integers(0, 200), value=st.integers(0, 255), frame=st.sampled_from(EXAMPLE_FRAMES))
def test_decoder_raises_only_decode_errors_on_damaged_frames(index, value, frame):
    wire = bytearray(frame.encode("utf-8"))
    wire[index % len(wire)] = value
    try:
        message = codec.decode(bytes(wire), charset="utf-8")
    except SipDecodeError:
        return
    assert message.command in FIXED_LAYOUT


def test_shift_jis_trail_byte_equal_to_bar_does_not_split_the_field():
    assert "ポ".encode("shift_jis") == b"\x83|"
    message = SipMessage("18", {"circulation_status": "03", "security_marker": "00", "fee_type": "01",
                                "transaction_date": WHEN}, (("AB", "1"), ("AJ", "ポケット図鑑"), ("AQ", "MAIN")))
    decoded = codec.decode(codec.encode(message, charset="shift_jis"), charset="shift_jis")
    assert decoded.fields == message.fields
