"""Keyboard-wedge input: a barcode scanner that types, and the odd real keyboard.

Pure: keystrokes and their times in, scans and key presses out. A scanner types a
whole code in a burst (keys ~1 ms apart) and ends with Enter; a person types
slower than `burst_gap`. On the PIN screen that difference matters: a book scanned
by mistake must never be typed into the PIN and sent to the card (that would spend
one of three tries). So on the PIN screen a digit is held back until it is clearly
a lone human keystroke, and a burst is never turned into PIN digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENTER = "enter"
TAB = "tab"
BACKSPACE = "backspace"


@dataclass(frozen=True)
class Scan:
    code: str


@dataclass(frozen=True)
class Key:
    action: str                 # digit, delete, ok (the session's Press actions)
    value: str | None = None


Output = Scan | Key


@dataclass
class WedgeDecoder:
    burst_gap: float = 0.03     # faster than this between keys: a scanner
    hold: float = 0.08          # PIN screen: wait this long for a burst to show itself
    flush_after: float = 2.0    # a partial code with no terminator is dropped after this
    max_length: int = 64
    pin_mode: bool = False
    _buf: list[tuple[str, float]] = field(default_factory=list)
    _burst: bool = False
    _junk: bool = False         # too long: ignore everything up to the next terminator

    def reset(self, pin_mode: bool) -> None:
        """A new screen: nothing typed before it counts."""
        self.pin_mode = pin_mode
        self._buf.clear()
        self._burst = False
        self._junk = False

    def char(self, text: str, now: float) -> list[Output]:
        out = self.poll(now)
        for c in text:
            if not c.isprintable() or self._junk:
                continue
            if self._buf and now - self._buf[-1][1] < self.burst_gap:
                self._burst = True
            self._buf.append((c, now))
        if len(self._buf) > self.max_length:     # a stuck key or garbage: drop it all
            self._buf.clear()
            self._junk = True
        return out

    def key(self, name: str, now: float) -> list[Output]:
        if name in (ENTER, TAB):
            return self._terminate(name, now)
        if name == BACKSPACE:
            out = self.poll(now)
            if self._buf:
                self._buf.pop()             # still held back: just forget it
            elif self.pin_mode:
                out.append(Key("delete"))
            return out
        return []

    def _terminate(self, name: str, now: float) -> list[Output]:
        if self._junk:
            self.reset(self.pin_mode)
            return []
        buf = self._buf
        # Enter hard on the heels of the last key is a scanner's terminator.
        burst = self._burst or bool(buf and now - buf[-1][1] < self.burst_gap)
        if not buf:
            self._buf, self._burst = [], False
            return [Key("ok")] if self.pin_mode and name == ENTER else []
        code = "".join(c for c, _ in buf)
        self._buf, self._burst = [], False
        if self.pin_mode and not burst:
            # A person typed a digit and Enter quickly: the digit, then OK.
            return [Key("digit", c) for c in code if c.isdigit()] + ([Key("ok")] if name == ENTER else [])
        return [Scan(code)]

    def poll(self, now: float) -> list[Output]:
        """Time passed: release a lone PIN digit, or drop a stale partial code."""
        if not self._buf:
            return []
        last = self._buf[-1][1]
        if self.pin_mode and not self._burst and now - last >= self.hold:
            digits = [Key("digit", c) for c, _ in self._buf if c.isdigit()]
            self._buf.clear()
            return digits
        if now - last >= self.flush_after:
            self.reset(self.pin_mode)
        return []
