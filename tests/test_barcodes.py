"""Item vs library card vs garbage, per the library's configured patterns."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.barcodes import BarcodeKind, BarcodeRules

ITEM, PATRON, INVALID = BarcodeKind.ITEM, BarcodeKind.PATRON, BarcodeKind.INVALID
rules = BarcodeRules()


@pytest.mark.parametrize("raw, kind, code", [
    ("10000001", ITEM, "10000001"),                     # shortest item: 1 + 7 digits
    ("1" + "2" * 13, ITEM, "1" + "2" * 13),             # longest item: 1 + 13 digits
    ("1000000", INVALID, "1000000"),                    # one digit short
    ("1" + "2" * 14, INVALID, "1" + "2" * 14),          # one digit long
    ("20000001", PATRON, "20000001"),
    ("2" + "0" * 13, PATRON, "2" + "0" * 13),
    ("30000001", INVALID, "30000001"),
    ("1000000x", INVALID, "1000000x"),
    ("  10000001 ", ITEM, "10000001"),                  # surrounding spaces are not part of it
])
def test_default_patterns(raw, kind, code):
    assert rules.classify(raw) == (kind, code)


@pytest.mark.parametrize("raw, kind, code", [
    ("A10000001B", ITEM, "10000001"),
    ("C20000001D", PATRON, "20000001"),
    ("a10000001d", ITEM, "10000001"),                   # some scanners send lower case
    ("D20000001A", PATRON, "20000001"),
    ("A10000001", INVALID, "A10000001"),                # start without stop: not NW-7 framing
    ("10000001B", INVALID, "10000001B"),
    ("E10000001E", INVALID, "E10000001E"),              # E is not a Codabar start/stop
    ("AB", INVALID, ""),
])
def test_nw7_start_stop_characters_are_stripped(raw, kind, code):
    assert rules.classify(raw) == (kind, code)


def test_nw7_stripping_can_be_turned_off():
    r = BarcodeRules(strip_codabar=False)
    assert r.classify("A10000001B") == (INVALID, "A10000001B")
    assert r.classify("10000001") == (ITEM, "10000001")


def test_only_one_pair_of_start_stop_is_stripped():
    assert rules.normalise("AA10000001BB") == "A10000001B"
    assert rules.classify("AA10000001BB")[0] == INVALID


@pytest.mark.parametrize("raw", ["", "1" * 33, "10000001\n", "10000001\r", "1000\x000001", "\x1b[A10000001"])
def test_garbage_is_invalid_and_never_echoed(raw):
    assert rules.classify(raw) == (INVALID, "")


def test_max_length_is_inclusive_and_configurable():
    r = BarcodeRules(item_pattern=r"^1\d+$", max_length=32)
    assert r.classify("1" * 32)[0] == ITEM
    assert r.classify("1" * 33) == (INVALID, "")
    assert BarcodeRules(max_length=8).classify("100000001") == (INVALID, "")


@pytest.mark.parametrize("raw", ["１０００００００１", "1٠٠٠٠٠٠١", "1０000001", "２0000001"])
def test_non_ascii_digits_are_not_barcodes(raw):
    # A keyboard-wedge scanner typing through a full-width IME must not pass as an item.
    kind, _ = rules.classify(raw)
    assert kind == INVALID


def test_library_patterns_from_config():
    r = BarcodeRules(item_pattern=r"^T\d{6}$", patron_pattern=r"^P\d{6}$", strip_codabar=False)
    assert r.classify("T123456") == (ITEM, "T123456")
    assert r.classify("P123456") == (PATRON, "P123456")
    assert r.classify("T12345") == (INVALID, "T12345")


def test_item_wins_when_both_patterns_match():
    r = BarcodeRules(item_pattern=r"\d{8}", patron_pattern=r"\d{8}")
    assert r.classify("12345678")[0] == ITEM


def test_patterns_must_match_the_whole_code():
    r = BarcodeRules(item_pattern=r"1\d{3}", patron_pattern=r"2\d{3}")
    assert r.classify("1234")[0] == ITEM
    assert r.classify("12345")[0] == INVALID
    assert r.classify("01234")[0] == INVALID


@given(st.text(max_size=40))
def test_classify_never_raises_and_normalises(raw):
    kind, code = rules.classify(raw)
    assert kind in BarcodeKind
    if kind != INVALID:
        assert code.isascii() and code.isdigit()
        assert code == rules.normalise(raw)
