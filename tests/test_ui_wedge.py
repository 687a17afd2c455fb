"""The keyboard-wedge decoder: scans from bursts, PIN keys only from a person's typing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kiosk.screens.wedge import BACKSPACE, ENTER, TAB, Key, Scan, WedgeDecoder


def feed(d: WedgeDecoder, text: str, t: float, gap: float) -> tuple[list, float]:
    out = []
    for c in text:
        out += d.char(c, t)
        t += gap
    return out, t


def test_a_scanner_burst_ending_in_enter_is_one_scan():
    d = WedgeDecoder()
    out, t = feed(d, "A10000001B", 10.0, 0.001)
    assert out == []
    assert d.key(ENTER, t) == [Scan("A10000001B")]
    assert d.key(ENTER, t + 1) == []                      # nothing left over


def test_tab_also_ends_a_scan_and_a_stale_partial_code_is_dropped():
    d = WedgeDecoder()
    feed(d, "1000", 0.0, 0.001)
    assert d.key(TAB, 0.01) == [Scan("1000")]
    feed(d, "12", 1.0, 0.001)
    assert d.poll(1.0 + d.flush_after + 0.1) == []
    assert d.key(ENTER, 5.0) == []


def test_on_the_pin_screen_a_scan_never_becomes_pin_digits():
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    out, t = feed(d, "10000001", 0.0, 0.002)
    out += d.poll(t + 0.5)
    out += d.key(ENTER, t + 0.6)
    assert not any(isinstance(o, Key) for o in out)


def test_on_the_pin_screen_a_scan_with_enter_is_a_scan_not_ok():
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    _, t = feed(d, "10000001", 0.0, 0.002)
    assert d.key(ENTER, t) == [Scan("10000001")]


def test_on_the_pin_screen_a_persons_keys_are_digits_delete_and_ok():
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    out = []
    t = 0.0
    for c in "12":
        out += d.char(c, t)
        t += 0.25
        out += d.poll(t)
    out += d.key(BACKSPACE, t)
    out += d.char("x", t + 0.3)                            # not a digit: ignored
    out += d.poll(t + 0.6)
    out += d.key(ENTER, t + 1.0)
    assert out == [Key("digit", "1"), Key("digit", "2"), Key("delete"), Key("ok")]


def test_a_digit_still_held_back_is_taken_back_by_backspace():
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    d.char("7", 0.0)
    assert d.key(BACKSPACE, 0.05) == []
    assert d.poll(1.0) == []


def test_a_digit_then_a_quick_enter_from_a_person():
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    d.char("5", 0.0)
    assert d.key(ENTER, 0.05) == [Key("digit", "5"), Key("ok")]


def test_reset_forgets_what_was_typed_on_the_previous_screen():
    d = WedgeDecoder()
    feed(d, "100", 0.0, 0.001)
    d.reset(pin_mode=False)
    assert d.key(ENTER, 0.1) == []


def test_garbage_longer_than_any_barcode_is_dropped():
    d = WedgeDecoder()
    feed(d, "9" * 100, 0.0, 0.001)
    assert d.key(ENTER, 1.0) == []
    feed(d, "10000001", 2.0, 0.001)                       # the next scan is read again
    assert d.key(ENTER, 2.1) == [Scan("10000001")]


@given(st.text(alphabet="0123456789ABCD:+-$/.", min_size=1, max_size=30),
       st.floats(min_value=0.0, max_value=0.02))
def test_any_fast_burst_on_the_pin_screen_yields_no_pin_keys(code, gap):
    d = WedgeDecoder()
    d.reset(pin_mode=True)
    out, t = feed(d, code, 100.0, gap)
    out += d.key(ENTER, t)
    out += d.poll(t + 5)
    assert [o for o in out if isinstance(o, Key)] == []
