"""Status LEDs and the buzzer on GPIO, through gpiozero with an injected pin factory.

The pin factory is chosen once from config (`hardware.pin_factory`): lgpio on a Pi 5
(RPi.GPIO cannot drive its RP1 chip), RPi.GPIO on a Pi 4 or older when it is
installed (else lgpio, which works there too), gpiozero's MockFactory anywhere else
and in tests, so the same code runs on a laptop and the LEDs can be asserted pin by pin.

Patterns are plain data. Transient ones (success, refused) flash and then fall back
to the last steady pattern, so a scanned book blinks green and the kiosk goes back to
"ready" without the session having to ask. A failing GPIO never takes the kiosk down:
errors are logged and the call returns.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from kiosk.logs import log_event

if TYPE_CHECKING:
    from kiosk.config.settings import HardwareSettings

log = logging.getLogger("kiosk.hardware.leds")

MODEL_PATH = Path("/proc/device-tree/model")


@dataclass(frozen=True)
class Blink:
    on: float
    off: float
    n: int | None = None            # None: until the next pattern


Light = Union[bool, Blink]


@dataclass(frozen=True)
class Pattern:
    green: Light = False
    yellow: Light = False
    red: Light = False
    hold: float | None = None       # transient: seconds until the last steady pattern returns


PATTERNS: dict[str, Pattern] = {
    "off": Pattern(),
    "ready": Pattern(green=True),
    "busy": Pattern(yellow=Blink(0.25, 0.25)),
    "success": Pattern(green=Blink(0.12, 0.12, n=3), hold=0.8),
    "refused": Pattern(red=Blink(0.12, 0.12, n=3), hold=0.8),
    "error": Pattern(red=True),
    "card_left": Pattern(yellow=Blink(0.5, 0.5), red=Blink(0.5, 0.5)),   # with a beep until it is taken
    "out_of_service": Pattern(red=Blink(1.0, 1.0)),
}


@dataclass(frozen=True)
class Beep:
    on: float
    off: float
    n: int


CUES: dict[str, Beep] = {
    "accepted": Beep(0.08, 0.0, 1),
    "refused": Beep(0.3, 0.15, 2),
    "card_reminder": Beep(0.1, 0.1, 3),
    "attention": Beep(0.15, 0.1, 2),
}


def scaled(patterns: dict[str, Pattern], factor: float) -> dict[str, Pattern]:
    """The same patterns `factor` times as fast (tests, and a quick look with `kiosk doctor`)."""
    def light(x: Light) -> Light:
        return Blink(x.on * factor, x.off * factor, x.n) if isinstance(x, Blink) else x

    return {k: Pattern(light(p.green), light(p.yellow), light(p.red), p.hold * factor if p.hold else None)
            for k, p in patterns.items()}


# -- pin factory ------------------------------------------------------------------------------

def board_model(path: Path = MODEL_PATH) -> str:
    """The device tree's model string, e.g. "Raspberry Pi 5 Model B Rev 1.0"; "" off the Pi."""
    try:
        return path.read_bytes().rstrip(b"\0").decode("ascii", "replace")
    except OSError:
        return ""


def choose_pin_factory(setting: str, model: str, rpigpio_installed: bool) -> str:
    """Pure: which gpiozero pin factory to use for this board."""
    if setting != "auto":
        return setting
    if "Raspberry Pi" not in model:
        return "mock"
    if "Raspberry Pi 5" in model or "Compute Module 5" in model or "Raspberry Pi 500" in model:
        return "lgpio"
    return "rpigpio" if rpigpio_installed else "lgpio"


def make_pin_factory(name: str) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()           # picks gpiochip4 on a Pi 5 with an older kernel
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    raise ValueError(f"unknown pin factory {name!r}")


def _rpigpio_installed() -> bool:
    try:
        return importlib.util.find_spec("RPi.GPIO") is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=None)
def _shared_factory(name: str) -> Any:
    return make_pin_factory(name)


def build_pin_factory(setting: str) -> Any:
    """One factory per process for LEDs, buzzer and button (lgpio opens the chip once).
    `setting` is hardware.pin_factory: auto | lgpio | rpigpio | mock."""
    name = choose_pin_factory(setting, board_model(), _rpigpio_installed())
    if name == "mock" and setting == "auto":
        log_event(log, "gpio.mock_pins", level=logging.WARNING, reason="not a Raspberry Pi")
    return _shared_factory(name)


# -- LEDs ---------------------------------------------------------------------------------

class GpioLeds:
    """kiosk.core.interfaces.Leds on up to three gpiozero LEDs (a pin of -1 means none)."""

    def __init__(self, pins: dict[str, int], factory: Any, patterns: dict[str, Pattern] | None = None) -> None:
        from gpiozero import LED

        self.patterns = patterns or PATTERNS
        self.leds = {colour: LED(pin, pin_factory=factory) for colour, pin in pins.items() if pin >= 0}
        self._lock = threading.Lock()
        self._steady = "off"
        self._shown: str | None = None
        self._timer: threading.Timer | None = None
        self._generation = 0
        self._closed = False

    def show(self, pattern: str) -> None:
        spec = self.patterns.get(pattern)
        if spec is None:
            log_event(log, "leds.unknown_pattern", level=logging.WARNING, pattern=pattern)
            return
        with self._lock:
            if self._closed:
                return
            if spec.hold is None:
                self._steady = pattern
                if self._timer is not None:
                    return                          # a flash is playing: this follows it
                if pattern == self._shown:
                    return                          # no restart: a blink keeps its rhythm
            self._generation += 1
            self._cancel_timer()
            self._apply(pattern, spec)
            if spec.hold is not None:
                self._timer = threading.Timer(spec.hold, self._revert, args=(self._generation,))
                self._timer.daemon = True
                self._timer.start()

    def _revert(self, generation: int) -> None:
        with self._lock:
            if self._closed or generation != self._generation:
                return
            self._timer = None
            self._apply(self._steady, self.patterns[self._steady])

    def _apply(self, name: str, spec: Pattern) -> None:
        self._shown = name
        for colour, led in self.leds.items():
            light: Light = getattr(spec, colour)
            try:
                if isinstance(light, Blink):
                    led.blink(on_time=light.on, off_time=light.off, n=light.n, background=True)
                elif light:
                    led.on()
                else:
                    led.off()
            except Exception:                   # a GPIO fault must not stop a loan
                log.exception("leds.failed")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Idempotent: all off and pins released (Kivy may stop twice)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_timer()
            for led in self.leds.values():
                try:
                    led.off()
                    led.close()
                except Exception:
                    log.exception("leds.close_failed")


class GpioSounds:
    """kiosk.core.interfaces.Sounds on an active buzzer."""

    def __init__(self, pin: int, factory: Any, cues: dict[str, Beep] | None = None) -> None:
        from gpiozero import Buzzer

        self.cues = cues or CUES
        self.buzzer = Buzzer(pin, pin_factory=factory)
        self._closed = False

    def play(self, cue: str) -> None:
        beep = self.cues.get(cue)
        if beep is None or self._closed:
            return
        try:
            self.buzzer.beep(on_time=beep.on, off_time=beep.off, n=beep.n, background=True)
        except Exception:
            log.exception("sounds.failed")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.buzzer.off()
                self.buzzer.close()
            except Exception:
                log.exception("sounds.close_failed")


def build_leds(settings: HardwareSettings, factory: Any = None) -> GpioLeds | None:
    """LEDs from their settings, or None when `hardware.leds` is "none" (the controller then has none)."""
    if settings.leds is None:
        return None
    return GpioLeds(dict(settings.leds.pins), factory if factory is not None else build_pin_factory(settings.pin_factory))


def build_sounds(settings: HardwareSettings, factory: Any = None) -> GpioSounds | None:
    """The buzzer from its settings, or None when `hardware.buzzer` is -1."""
    if settings.buzzer_pin is None:
        return None
    return GpioSounds(settings.buzzer_pin,
                      factory if factory is not None else build_pin_factory(settings.pin_factory))
