"""Fuzz what the scanners deliver: barcode verdicts, HID key maps, the serial line splitter.

A scanner is outside input like any other: a label can be damaged, a scanner set to
the wrong keyboard country, a serial line noisy or stuck. Nothing here may raise, and
nothing may grow without bound: every scan ends as a verdict (item, library card, or
rejected with a reason).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kiosk_testing.fuzz import FUZZ

from kiosk.core.barcodes import (
    ALL_SYMBOLOGIES,
    CHECK_NAMES,
    CHECKS,
    BarcodeKind,
    BarcodeRules,
    Rejection,
    check_digit_ok,
    undoubled,
)
from kiosk.hardware.keymaps import (
    GARBAGE,
    KEY_ENTER,
    KEY_LEFTSHIFT,
    LAYOUTS,
    MAX_SCAN_CHARS,
    KeyDecoder,
    Typed,
    keystrokes,
)
from kiosk.hardware.serial_scanner import TERMINATOR_BYTES, LineSplitter

# -- barcodes ---------------------------------------------------------------------------------

rules = st.builds(
    BarcodeRules,
    item_pattern=st.sampled_from([r"^1\d{7,13}$", r"^\d+$", r"^[A-Z0-9]{4,20}$", r".*"]),
    patron_pattern=st.sampled_from([r"^2\d{7,13}$", r"^P\d{6}$", r"^\d{13}$"]),
    strip_codabar=st.booleans(),
    max_length=st.integers(4, 128),
    symbologies=st.lists(st.sampled_from(ALL_SYMBOLOGIES), min_size=1, unique=True).map(tuple),
    item_check=st.sampled_from(CHECK_NAMES),
    patron_check=st.sampled_from(CHECK_NAMES),
    aim_ids=st.booleans(),
)
label_chars = st.sampled_from("0123456789ABCDabcd-$:/.+*%] \x18\ufffd\uff11\u0661")
scans = st.text(max_size=140) | st.text(label_chars, max_size=140) | st.from_regex(
    r"\A(\][A-Z]\d)?[A-D]?[0-9]{6,130}[A-D]?\Z")


@FUZZ
@given(rules=rules, raw=scans)
@example(rules=BarcodeRules(item_pattern=r"^\d+$", item_check="7dr", max_length=128), raw="1" * 128)
def test_every_scan_gets_a_verdict(rules, raw):
    scan = rules.check(raw)
    assert scan.kind in BarcodeKind
    assert (scan.rejection is None) == scan.ok
    if scan.ok:
        assert scan.code.isascii() and len(scan.code) <= rules.max_length
    if scan.rejection is Rejection.GARBAGE:
        assert scan.code == ""                  # garbage is never echoed
    assert rules.classify(raw) == (scan.kind, scan.code)


@FUZZ
@given(scheme=st.sampled_from(CHECK_NAMES) | st.text(max_size=6), code=scans, framed=st.none() | scans)
def test_check_digits_never_raise(scheme, code, framed):
    assert check_digit_ok(scheme, code, framed) in (True, False)


@FUZZ
@given(data=st.text(st.sampled_from("0123456789"), min_size=1, max_size=40))
def test_each_check_digit_scheme_accepts_its_own_check_digit(data):
    for name, fn in CHECKS.items():
        if name in ("mod43", "mod16"):
            continue
        assert check_digit_ok(name, data + fn(data))


@FUZZ
@given(text=st.text(max_size=40))
def test_undoubled_only_ever_halves(text):
    half = undoubled(text)
    assert half is None or (len(half) * 2 == len(text) and (half * 2 == text or "".join(
        c * 2 for c in half) == text))


# -- HID key maps -----------------------------------------------------------------------------

def _typeable(layout: str) -> str:
    table = LAYOUTS[layout]
    chars = {c for pair in table.values() for c in pair if c}
    return "".join(sorted(chars | set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")))


@FUZZ
@given(layout=st.sampled_from(sorted(LAYOUTS)), data=st.data())
def test_what_a_scanner_types_reads_back_as_it_was(layout, data):
    text = data.draw(st.text(st.sampled_from(_typeable(layout)), min_size=1, max_size=40))
    decoder = KeyDecoder(layout=layout)
    out: list[Typed] = []
    for i, (code, value) in enumerate(keystrokes(text, layout)):
        out += decoder.feed(code, value, i * 0.001)
    assert out == [Typed(text, True)]


events = st.lists(st.tuples(st.integers(-5, 300) | st.integers(), st.integers(-1, 3) | st.integers(),
                            st.floats(0, 10, allow_nan=False)), max_size=200)


@FUZZ
@given(layout=st.sampled_from(sorted(LAYOUTS)), events=events)
@example(layout="us", events=[(2, 1, 0.0)] * (MAX_SCAN_CHARS + 10) + [(KEY_ENTER, 1, 0.0)])
def test_any_key_events_give_bounded_scans(layout, events):
    decoder = KeyDecoder(layout=layout)
    out: list[Typed] = []
    now = 0.0
    for code, value, dt in events:
        now += dt
        out += decoder.feed(code, value, now)
    out += decoder.poll(now + 10)
    for typed in out:
        assert typed.text and len(typed.text) <= MAX_SCAN_CHARS
        assert all(c.isprintable() for c in typed.text)


def test_an_overlong_key_stream_is_cut_not_kept():
    """A stuck or hostile wedge must not grow the buffer without end: the scan is cut at
    MAX_SCAN_CHARS (and then rejected as garbage, being longer than any label)."""
    decoder = KeyDecoder()
    for i in range(100_000):
        decoder.feed(2, 1, i * 1e-6)
    (typed,) = decoder.feed(KEY_ENTER, 1, 0.2)
    assert typed == Typed("1" * MAX_SCAN_CHARS, True)
    assert BarcodeRules(item_pattern=r"^\d+$", max_length=128).check(typed.text).rejection is Rejection.GARBAGE


def test_keystrokes_refuses_an_unknown_layout_with_value_error():
    with pytest.raises(ValueError):             # was KeyError
        keystrokes("123", "dvorak")
    with pytest.raises(ValueError):
        keystrokes("\u00e9", "us")
    assert keystrokes("A", "us")[0] == (KEY_LEFTSHIFT, 1)
    assert GARBAGE not in "".join(_typeable("jis"))


# -- the serial line splitter -----------------------------------------------------------------

chunks = st.lists(st.tuples(st.binary(max_size=64) | st.sampled_from([b"\r\n", b"\t", b"\r", b"\n", b"\xff\x00"]),
                            st.floats(0, 1, allow_nan=False)), max_size=60)


@FUZZ
@given(chunks=chunks)
@example(chunks=[(b"7" * 5000, 0.0), (b"\r", 0.0)])
def test_serial_bytes_split_into_bounded_scans(chunks):
    splitter = LineSplitter(flush_after=0.3)
    out: list[Typed] = []
    now = 0.0
    sent = b""
    for data, dt in chunks:
        now += dt
        out += splitter.feed(data, now)
        sent += data
    out += splitter.poll(now + 10)
    for typed in out:
        assert typed.text and len(typed.text) <= MAX_SCAN_CHARS
        assert all(c.isascii() or c == "\ufffd" for c in typed.text)
        assert not any(chr(t) in typed.text for t in TERMINATOR_BYTES)
    if len(sent) < MAX_SCAN_CHARS:              # nothing cut: every byte that is not a terminator arrives
        kept = bytes(b for b in sent if b not in TERMINATOR_BYTES).decode("ascii", "replace")
        assert "".join(t.text for t in out) == kept


def test_an_overlong_serial_line_is_cut_not_kept():
    splitter = LineSplitter()
    for i in range(100):
        assert splitter.feed(b"1" * 1000, i * 0.01) == []
    (typed,) = splitter.feed(b"\r\n", 1.0)
    assert typed == Typed("1" * MAX_SCAN_CHARS, True)
