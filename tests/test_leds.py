"""Status LEDs and buzzer on gpiozero's MockFactory: every pattern, pin by pin."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.config.load import load_config
from kiosk.config.settings import HardwareSettings
from kiosk.hardware.leds import (
    CUES,
    PATTERNS,
    Beep,
    Blink,
    GpioLeds,
    GpioSounds,
    board_model,
    build_leds,
    build_sounds,
    choose_pin_factory,
    make_pin_factory,
    scaled,
)

PINS = {"green": 17, "yellow": 27, "red": 22}
FAST = scaled(PATTERNS, 0.2)


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def leds(factory):
    lights = GpioLeds(PINS, factory, patterns=FAST)
    yield lights
    lights.close()


def states(factory) -> tuple[bool, bool, bool]:
    return tuple(bool(factory.pin(PINS[c]).state) for c in ("green", "yellow", "red"))


def changes(factory, colour: str) -> int:
    return len(factory.pin(PINS[colour]).states) - 1


def wait_for(predicate, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


@pytest.mark.parametrize("pattern, lit", [
    ("off", (False, False, False)),
    ("ready", (True, False, False)),
    ("error", (False, False, True)),
])
def test_steady_patterns(factory, leds, pattern, lit):
    leds.show(pattern)
    assert states(factory) == lit


@pytest.mark.parametrize("pattern, blinking", [
    ("busy", {"yellow"}),
    ("card_left", {"yellow", "red"}),
    ("out_of_service", {"red"}),
])
def test_blinking_patterns_keep_blinking(factory, leds, pattern, blinking):
    leds.show(pattern)
    for colour in blinking:
        wait_for(lambda c=colour: changes(factory, c) >= 4)      # two on/off cycles: not a single flash
    for colour in {"green", "yellow", "red"} - blinking:
        assert changes(factory, colour) == 0


def test_every_pattern_the_session_uses_is_defined():
    from kiosk.core import session

    assert set(session._LIGHTS.values()) | {"card_left", "success", "refused", "ready"} <= set(PATTERNS)
    assert {"accepted", "refused", "card_reminder", "attention"} == set(CUES)


@pytest.mark.parametrize("flash, colour", [("success", "green"), ("refused", "red")])
def test_a_flash_returns_to_the_steady_pattern(factory, leds, flash, colour):
    leds.show("ready")
    for c in ("green", "yellow", "red"):
        factory.pin(PINS[c]).clear_states()
    leds.show(flash)
    wait_for(lambda: leds._timer is None)
    assert states(factory) == (True, False, False)             # ready again
    flashed = [s.state for s in factory.pin(PINS[colour]).states]
    assert flashed.count(True) >= 3 and flashed.count(False) >= 3   # three blinks
    assert changes(factory, "yellow") == 0


def test_a_steady_pattern_waits_for_the_flash(factory, leds):
    leds.show("ready")
    leds.show("success")
    leds.show("error")                       # arrives mid-flash
    assert factory.pin(PINS["red"]).state is False
    wait_for(lambda: leds._timer is None)
    assert states(factory) == (False, False, True)


def test_a_second_flash_restarts_and_the_first_timer_is_dropped(factory, leds):
    leds.show("ready")
    leds.show("success")
    first = leds._timer
    leds.show("refused")
    assert not first.is_alive() or first.finished.is_set()
    wait_for(lambda: leds._timer is None)
    assert states(factory) == (True, False, False)


def test_the_same_pattern_again_does_not_restart_the_blink(factory, leds):
    leds.show("busy")
    wait_for(lambda: changes(factory, "yellow") >= 2)
    before = list(factory.pin(PINS["yellow"]).states)
    leds.show("busy")
    time.sleep(0.01)
    after = factory.pin(PINS["yellow"]).states
    assert after[: len(before)] == before                    # history continued, nothing reset


def test_unknown_pattern_changes_nothing(factory, leds):
    leds.show("ready")
    leds.show("disco")
    assert states(factory) == (True, False, False)


def test_close_turns_everything_off_and_is_idempotent(factory):
    lights = GpioLeds(PINS, factory, patterns=FAST)
    lights.show("card_left")
    lights.close()
    lights.close()
    lights.show("ready")
    assert states(factory) == (False, False, False)
    assert factory.pin(PINS["green"]).function == "input"    # released


def test_a_missing_led_is_simply_not_driven(factory):
    lights = GpioLeds({"green": 17, "yellow": -1, "red": 22}, factory, patterns=FAST)
    try:
        assert set(lights.leds) == {"green", "red"}
        lights.show("busy")                                  # a yellow-only pattern: nothing to light
        lights.show("error")
        assert factory.pin(22).state is True
    finally:
        lights.close()


def test_works_on_a_pi5_board_model():
    f = MockFactory(revision="d04170")                       # Raspberry Pi 5 Model B
    lights = GpioLeds(PINS, f, patterns=FAST)
    try:
        lights.show("ready")
        assert f.pin(17).state is True
    finally:
        lights.close()


@pytest.mark.parametrize("cue, beeps", [("accepted", 1), ("refused", 2), ("card_reminder", 3), ("attention", 2)])
def test_buzzer_cues(factory, cue, beeps):
    quick = {k: Beep(b.on * 0.2, b.off * 0.2, b.n) for k, b in CUES.items()}
    sounds = GpioSounds(18, factory, cues=quick)
    try:
        pin = factory.pin(18)
        pin.clear_states()
        sounds.play(cue)
        wait_for(lambda: len(pin.states) >= 1 + 2 * beeps)
        time.sleep((quick[cue].on + quick[cue].off) * 2)     # time for a beep too many
        assert [s.state for s in pin.states].count(True) == beeps
        assert pin.state is False
    finally:
        sounds.close()


def test_unknown_cue_is_silent(factory):
    sounds = GpioSounds(18, factory)
    pin = factory.pin(18)
    pin.clear_states()
    sounds.play("fanfare")
    time.sleep(0.05)
    assert len(pin.states) == 1
    sounds.close()
    sounds.close()


# -- choosing the pin factory --------------------------------------------------------------

@pytest.mark.parametrize("setting, model, rpigpio, expected", [
    ("auto", "Raspberry Pi 5 Model B Rev 1.0", True, "lgpio"),     # RPi.GPIO cannot drive the RP1
    ("auto", "Raspberry Pi Compute Module 5 Rev 1.0", False, "lgpio"),
    ("auto", "Raspberry Pi 4 Model B Rev 1.5", True, "rpigpio"),
    ("auto", "Raspberry Pi 4 Model B Rev 1.5", False, "lgpio"),
    ("auto", "Raspberry Pi 3 Model B Plus Rev 1.3", True, "rpigpio"),
    ("auto", "", True, "mock"),                                     # a laptop, CI
    ("auto", "Pine64 RockPro64", False, "mock"),
    ("lgpio", "", False, "lgpio"),                                  # explicit wins
    ("mock", "Raspberry Pi 5 Model B Rev 1.0", False, "mock"),
])
def test_choose_pin_factory(setting, model, rpigpio, expected):
    assert choose_pin_factory(setting, model, rpigpio) == expected


def test_board_model_reads_the_device_tree(tmp_path):
    p = tmp_path / "model"
    p.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_model(p) == "Raspberry Pi 5 Model B Rev 1.0"
    assert board_model(tmp_path / "absent") == ""


def test_make_pin_factory():
    assert isinstance(make_pin_factory("mock"), MockFactory)
    with pytest.raises(ValueError):
        make_pin_factory("wiringpi")


def test_builders_follow_config(tmp_path, factory):
    site = tmp_path / "kiosk.toml"
    site.write_text("[hardware]\nleds = 'gpio'\npin_factory = 'mock'\nled_yellow = -1\nbuzzer = 12\n", encoding="utf-8")
    config = load_config(site)
    lights = build_leds(HardwareSettings.from_config(config), factory)
    sounds = build_sounds(HardwareSettings.from_config(config), factory)
    try:
        assert set(lights.leds) == {"green", "red"}
        lights.show("ready")
        assert factory.pin(17).state is True
        sounds.play("accepted")
        wait_for(lambda: len(factory.pin(12).states) >= 2)
    finally:
        lights.close()
        sounds.close()
    defaults = load_config(None)
    assert build_leds(HardwareSettings.from_config(defaults)) is None                      # leds = "none"
    assert build_sounds(HardwareSettings.from_config(defaults)) is None                    # buzzer = -1


def test_builder_shares_one_pin_factory(tmp_path):
    from kiosk.hardware.leds import build_pin_factory

    site = tmp_path / "kiosk.toml"
    site.write_text("[hardware]\nleds = 'gpio'\npin_factory = 'mock'\nbuzzer = 12\n", encoding="utf-8")
    config = load_config(site)
    lights, sounds = build_leds(HardwareSettings.from_config(config)), build_sounds(HardwareSettings.from_config(config))
    try:
        shared = build_pin_factory(config["hardware"]["pin_factory"])
        assert isinstance(shared, MockFactory)
        assert lights.leds["green"].pin_factory is shared and sounds.buzzer.pin_factory is shared
    finally:
        lights.close()
        sounds.close()


def test_scaled_keeps_shapes():
    fast = scaled(PATTERNS, 0.5)
    assert fast["busy"].yellow == Blink(0.125, 0.125)
    assert fast["success"].hold == PATTERNS["success"].hold * 0.5
    assert fast["ready"] == PATTERNS["ready"]
