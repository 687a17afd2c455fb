"""The staff button on a GPIO pin: a long press opens staff mode, a tap does nothing.

Only a long press counts, so a patron leaning on the cabinet cannot open staff mode;
what staff mode then asks for (a staff PIN or card) is the screens' business. The
callback runs on gpiozero's thread: the launcher hops it onto the UI thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from kiosk.logs import log_event

if TYPE_CHECKING:
    from kiosk.config.settings import HardwareSettings

log = logging.getLogger("kiosk.hardware.reset_button")


class ResetButton:
    def __init__(self, pin: int, on_long_press: Callable[[], None], factory: Any,
                 hold_seconds: float = 3.0) -> None:
        from gpiozero import Button

        self._callback = on_long_press
        # Wired to ground with the internal pull-up: pressed = low. bounce_time None:
        # gpiozero's hold timer already ignores contact bounce shorter than the hold.
        self.button = Button(pin, pull_up=True, hold_time=hold_seconds, hold_repeat=False, pin_factory=factory)
        self.button.when_held = self._held
        self._closed = False

    def _held(self) -> None:
        log_event(log, "staff_button.long_press")
        try:
            self._callback()
        except Exception:                   # never let gpiozero's thread die on our account
            log.exception("staff_button.callback_failed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.button.when_held = None
            self.button.close()


def build_reset_button(settings: HardwareSettings, on_long_press: Callable[[], None],
                       factory: Any = None) -> ResetButton | None:
    """The staff button from its settings, or None when `hardware.reset_button` is -1."""
    button = settings.reset_button
    if button is None:
        return None
    if factory is None:
        from kiosk.hardware.leds import build_pin_factory

        factory = build_pin_factory(settings.pin_factory)
    return ResetButton(button.pin, on_long_press, factory, hold_seconds=button.hold_seconds)
