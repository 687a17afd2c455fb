"""Keystrokes of a HID barcode scanner back into text: US and JIS layouts, Shift, terminators."""

from __future__ import annotations

import pytest
from evdev import ecodes
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.barcodes import BarcodeRules, Rejection, mark_partial
from kiosk.hardware import keymaps
from kiosk.hardware.keymaps import KeyDecoder, Typed, keystrokes

E = ecodes


def typed(decoder: KeyDecoder, events, t0: float = 0.0, step: float = 0.001) -> list[Typed]:
    out: list[Typed] = []
    for i, (code, value) in enumerate(events):
        out += decoder.feed(code, value, t0 + i * step)
    return out


def press(code):
    return [(code, 1), (code, 0)]


def shifted(code):
    return [(E.KEY_LEFTSHIFT, 1), (code, 1), (code, 0), (E.KEY_LEFTSHIFT, 0)]


# The reference's example: one keystroke stream, two readings.
NW7_STREAM = (shifted(E.KEY_A) + press(E.KEY_1) + press(E.KEY_2) + shifted(E.KEY_SEMICOLON)
              + press(E.KEY_3) + press(E.KEY_4) + shifted(E.KEY_EQUAL) + press(E.KEY_5)
              + shifted(E.KEY_A) + press(E.KEY_ENTER))


def test_key_codes_are_the_kernels():
    names = {"KEY_ESC": keymaps.KEY_ESC, "KEY_TAB": keymaps.KEY_TAB, "KEY_ENTER": keymaps.KEY_ENTER,
             "KEY_KPENTER": keymaps.KEY_KPENTER, "KEY_LEFTSHIFT": keymaps.KEY_LEFTSHIFT,
             "KEY_RIGHTSHIFT": keymaps.KEY_RIGHTSHIFT, "KEY_CAPSLOCK": keymaps.KEY_CAPSLOCK,
             "KEY_LEFTCTRL": keymaps.KEY_LEFTCTRL, "KEY_RIGHTALT": keymaps.KEY_RIGHTALT,
             "KEY_NUMLOCK": keymaps.KEY_NUMLOCK, "KEY_LEFTMETA": keymaps.KEY_LEFTMETA}
    for name, code in names.items():
        assert getattr(E, name) == code, name
    for code, ch in keymaps._LETTERS.items():
        assert E.KEY[code] == "KEY_" + ch.upper()
    for code, ch in keymaps._DIGITS.items():
        assert E.KEY[code] == "KEY_" + ch
    kp = {"0": "KP0", "5": "KP5", "9": "KP9", ".": "KPDOT", "-": "KPMINUS", "+": "KPPLUS", "*": "KPASTERISK",
          "/": "KPSLASH", "=": "KPEQUAL"}
    for code, ch in keymaps.KEYPAD.items():
        if ch in kp:
            assert E.KEY[code] == "KEY_" + kp[ch]
    assert (E.KEY_YEN, E.KEY_RO, E.KEY_102ND, E.KEY_GRAVE) == (124, 89, 86, 41)


def test_the_same_keys_read_differently_as_us_and_jis():
    assert typed(KeyDecoder("us"), NW7_STREAM) == [Typed("A12:34+5A", True)]
    assert typed(KeyDecoder("jis"), NW7_STREAM) == [Typed("A12+34~5A", True)]


def test_a_layout_mismatch_is_rejected_not_lent():
    # A JIS scanner types the NW-7 label A1-2:3B; a US decoder reads something else, and the
    # library's pattern (digits and NW-7 symbols) refuses it instead of lending a wrong number.
    events = keystrokes("A1-2:3B", "jis")
    assert typed(KeyDecoder("jis"), events)[0].text == "A1-2:3B"
    wrong = typed(KeyDecoder("us"), events)[0].text
    assert wrong != "A1-2:3B"
    rules = BarcodeRules(item_pattern=r"^[0-9\-$:/.+]+$")
    assert rules.classify(typed(KeyDecoder("jis"), events)[0].text)[1] == "1-2:3"
    assert not rules.check(wrong).ok


NW7_TEXT = st.builds(lambda start, body, stop: start + body + stop,
                     st.sampled_from("ABCD"), st.text("0123456789-$:/.+", min_size=1, max_size=20),
                     st.sampled_from("ABCD"))


@pytest.mark.parametrize("layout", ["us", "jis"])
@given(text=NW7_TEXT)
def test_every_nw7_label_round_trips_in_its_own_layout(layout, text):
    assert typed(KeyDecoder(layout), keystrokes(text, layout)) == [Typed(text, True)]


@given(text=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30))
def test_printable_ascii_round_trips_on_us(text):
    assert typed(KeyDecoder("us"), keystrokes(text, "us")) == [Typed(text, True)]


def test_jis_symbols():
    events = (shifted(E.KEY_2) + shifted(E.KEY_7) + press(E.KEY_LEFTBRACE) + shifted(E.KEY_APOSTROPHE)
              + press(E.KEY_BACKSLASH) + shifted(E.KEY_RO) + press(E.KEY_YEN) + shifted(E.KEY_MINUS)
              + press(E.KEY_ENTER))
    assert typed(KeyDecoder("jis"), events) == [Typed("\"'@*]_\\=", True)]


def test_key_up_and_auto_repeat_add_nothing():
    events = [(E.KEY_1, 1), (E.KEY_1, 2), (E.KEY_1, 2), (E.KEY_1, 0), (E.KEY_2, 1), (E.KEY_2, 0),
              (E.KEY_ENTER, 1), (E.KEY_ENTER, 2), (E.KEY_ENTER, 0)]
    assert typed(KeyDecoder(), events) == [Typed("12", True)]


def test_shift_is_tracked_per_key_and_released():
    events = ([(E.KEY_RIGHTSHIFT, 1), (E.KEY_A, 1), (E.KEY_A, 0), (E.KEY_LEFTSHIFT, 1), (E.KEY_RIGHTSHIFT, 0),
               (E.KEY_B, 1), (E.KEY_B, 0), (E.KEY_LEFTSHIFT, 0)] + press(E.KEY_C) + press(E.KEY_ENTER))
    assert typed(KeyDecoder(), events) == [Typed("ABc", True)]


def test_caps_lock_inverts_letters_only():
    events = press(E.KEY_CAPSLOCK) + press(E.KEY_A) + shifted(E.KEY_B) + press(E.KEY_1) + press(E.KEY_ENTER)
    assert typed(KeyDecoder(), events) == [Typed("Ab1", True)]


@pytest.mark.parametrize("end", [E.KEY_ENTER, E.KEY_KPENTER, E.KEY_TAB])
def test_terminators(end):
    assert typed(KeyDecoder(), press(E.KEY_7) + press(end)) == [Typed("7", True)]


def test_tab_can_be_part_of_nothing():
    # Without Tab as a terminator, a Tab is not label text: the scan becomes garbage.
    out = typed(KeyDecoder(terminators=("enter",)), press(E.KEY_7) + press(E.KEY_TAB) + press(E.KEY_ENTER))
    assert out == [Typed("7" + keymaps.GARBAGE, True)]
    assert BarcodeRules().check(out[0].text).rejection == Rejection.GARBAGE


def test_lone_terminators_are_not_scans():
    assert typed(KeyDecoder(), press(E.KEY_ENTER) + press(E.KEY_TAB) + press(E.KEY_ENTER)) == []


def test_cr_lf_suffix_gives_one_scan():
    assert typed(KeyDecoder(), press(E.KEY_1) + press(E.KEY_ENTER) + press(E.KEY_ENTER)) == [Typed("1", True)]


def test_keypad_digits_and_symbols():
    events = [(c, v) for c in (E.KEY_KP1, E.KEY_KP0, E.KEY_KPDOT, E.KEY_KPMINUS, E.KEY_KPPLUS) for v in (1, 0)]
    assert typed(KeyDecoder("jis"), events + press(E.KEY_KPENTER)) == [Typed("10.-+", True)]


@pytest.mark.parametrize("events", [
    [(E.KEY_LEFTCTRL, 1)] + press(E.KEY_RIGHTBRACE) + [(E.KEY_LEFTCTRL, 0)],   # Ctrl+] (GS)
    press(E.KEY_F1),
    press(E.KEY_BACKSPACE),
])
def test_keys_without_label_text_make_the_scan_garbage(events):
    out = typed(KeyDecoder(), press(E.KEY_1) + events + press(E.KEY_2) + press(E.KEY_ENTER))
    assert out == [Typed("1" + keymaps.GARBAGE + "2", True)]


def test_jis_shift_zero_types_nothing():
    assert typed(KeyDecoder("jis"), shifted(E.KEY_0) + press(E.KEY_ENTER)) == [Typed(keymaps.GARBAGE, True)]


def test_a_scan_that_stops_without_enter_is_flushed_as_partial():
    d = KeyDecoder(flush_after=0.3)
    assert typed(d, press(E.KEY_1) + press(E.KEY_2), t0=10.0) == []
    assert d.poll(10.2) == []                               # still within the gap
    assert d.poll(10.4) == [Typed("12", False)]
    assert d.poll(20.0) == []                               # flushed once
    partial = Typed("12", False)
    assert BarcodeRules().check(mark_partial(partial.text)).rejection == Rejection.PARTIAL


def test_the_next_scan_after_a_gap_starts_clean():
    d = KeyDecoder(flush_after=0.3)
    typed(d, press(E.KEY_1), t0=0.0)
    out = typed(d, press(E.KEY_3) + press(E.KEY_ENTER), t0=5.0)
    assert out == [Typed("1", False), Typed("3", True)]


def test_slow_but_steady_keys_are_one_scan():
    # Bluetooth HID scanners can be ~20 ms per key: well under the flush gap.
    events = press(E.KEY_1) + press(E.KEY_2) + press(E.KEY_3) + press(E.KEY_ENTER)
    assert typed(KeyDecoder(flush_after=0.3), events, step=0.02) == [Typed("123", True)]


def test_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown keyboard layout"):
        KeyDecoder("dvorak")


def test_reset_forgets_a_half_scan_and_held_shift():
    d = KeyDecoder()
    typed(d, [(E.KEY_LEFTSHIFT, 1), (E.KEY_A, 1)])
    d.reset()
    assert typed(d, press(E.KEY_B) + press(E.KEY_ENTER)) == [Typed("b", True)]
