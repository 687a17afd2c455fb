"""The staff button: only a long press opens staff mode."""

from __future__ import annotations

import threading
import time

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk.config.load import load_config
from kiosk.config.settings import HardwareSettings
from kiosk.hardware.reset_button import ResetButton, build_reset_button

PIN = 26


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def test_long_press_calls_back_once(factory):
    pressed = threading.Event()
    calls = []
    button = ResetButton(PIN, lambda: (calls.append(time.monotonic()), pressed.set()), factory, hold_seconds=0.2)
    try:
        pin = factory.pin(PIN)
        assert pin.state is True                           # pulled up: not pressed
        start = time.monotonic()
        pin.drive_low()
        assert pressed.wait(2)
        assert calls[0] - start >= 0.18                    # not before the hold time
        time.sleep(0.5)                                    # still held: no repeat
        pin.drive_high()
        assert len(calls) == 1
    finally:
        button.close()


def test_a_tap_does_nothing(factory):
    calls = []
    button = ResetButton(PIN, lambda: calls.append(1), factory, hold_seconds=0.3)
    try:
        pin = factory.pin(PIN)
        for _ in range(3):                                 # taps and bounces shorter than the hold
            pin.drive_low()
            time.sleep(0.05)
            pin.drive_high()
            time.sleep(0.02)
        time.sleep(0.4)
        assert calls == []
    finally:
        button.close()


def press_twice(pin, calls: list) -> None:
    """Two long presses, each held until the button has called back (or 2 s passed)."""
    for expected in (1, 2):
        pin.drive_low()
        deadline = time.monotonic() + 2
        while len(calls) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        pin.drive_high()
        time.sleep(0.02)


def test_each_long_press_counts(factory):
    calls = []
    button = ResetButton(PIN, lambda: calls.append(1), factory, hold_seconds=0.1)
    try:
        press_twice(factory.pin(PIN), calls)
        assert len(calls) == 2
    finally:
        button.close()


def test_a_failing_callback_does_not_kill_the_button(factory):
    calls = []

    def boom():
        calls.append(1)
        raise RuntimeError("staff screen not ready")

    button = ResetButton(PIN, boom, factory, hold_seconds=0.1)
    try:
        press_twice(factory.pin(PIN), calls)
        assert len(calls) == 2
    finally:
        button.close()


def test_close_releases_the_pin(factory):
    button = ResetButton(PIN, lambda: None, factory)
    button.close()
    button.close()
    again = ResetButton(PIN, lambda: None, factory)         # the pin is free again
    again.close()


def test_builder_follows_config(tmp_path, factory):
    assert build_reset_button(HardwareSettings.from_config(load_config(None)), lambda: None, factory) is None
    site = tmp_path / "kiosk.toml"
    site.write_text("[hardware]\nreset_button = 26\nreset_hold_seconds = 5\n", encoding="utf-8")
    button = build_reset_button(HardwareSettings.from_config(load_config(site)), lambda: None, factory)
    try:
        assert button.button.hold_time == 5
    finally:
        button.close()
