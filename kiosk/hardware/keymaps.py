"""Keystrokes from a HID ("keyboard wedge") barcode scanner back into the text it read.

Pure: (evdev keycode, value, time) in, finished scans out; no evdev import, so it is
tested with plain numbers. evdev reports key *positions*, so the characters depend on
the keyboard country the scanner is set to: digits and letters match between US and
JIS (jp106), symbols do not, and NW-7 uses `: + $ / . -`. One stream reads `A12:34+5A`
as US and `A12+34~5A` as JIS; `layout` must match the scanner's setting.

We track Shift ourselves (the OS keymap and IME never see a grabbed device), ignore
key-up and auto-repeat, end a scan at Enter / keypad Enter / Tab, and hand back what
was typed without a terminator as a partial scan once the keys stop for `flush_after`
seconds. A key we have no character for becomes U+FFFD, so the scan is rejected as
garbage instead of silently losing a character.

Nothing here raises on what a device sends, and a scan is cut at MAX_SCAN_CHARS (longer
than any label, so it is then rejected as garbage): a stuck key or a hostile wedge
cannot grow the buffer without end. `keystrokes` (tests, `kiosk doctor`) raises
ValueError for a layout or character it cannot type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# evdev key codes (linux/input-event-codes.h); tests cross-check them against evdev.ecodes.
KEY_ESC, KEY_BACKSPACE, KEY_TAB, KEY_ENTER = 1, 14, 15, 28
KEY_LEFTCTRL, KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTALT, KEY_CAPSLOCK = 29, 42, 54, 56, 58
KEY_NUMLOCK, KEY_KPENTER, KEY_RIGHTCTRL, KEY_RIGHTALT = 69, 96, 97, 100
KEY_LEFTMETA, KEY_RIGHTMETA = 125, 126

SHIFTS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
OTHER_MODIFIERS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT, KEY_RIGHTALT, KEY_LEFTMETA, KEY_RIGHTMETA})
IGNORED = frozenset({KEY_NUMLOCK, KEY_CAPSLOCK})   # Caps Lock handled separately
TERMINATORS = {"enter": KEY_ENTER, "kpenter": KEY_KPENTER, "tab": KEY_TAB}
GARBAGE = "\ufffd"
MAX_SCAN_CHARS = 256                # config allows barcodes.max_length up to 128

_LETTERS = {16: "q", 17: "w", 18: "e", 19: "r", 20: "t", 21: "y", 22: "u", 23: "i", 24: "o", 25: "p",
            30: "a", 31: "s", 32: "d", 33: "f", 34: "g", 35: "h", 36: "j", 37: "k", 38: "l",
            44: "z", 45: "x", 46: "c", 47: "v", 48: "b", 49: "n", 50: "m"}
_DIGITS = {2: "1", 3: "2", 4: "3", 5: "4", 6: "5", 7: "6", 8: "7", 9: "8", 10: "9", 11: "0"}
# The numeric keypad types the same in every layout (scanners assume Num Lock on); Shift is ignored.
KEYPAD = {82: "0", 79: "1", 80: "2", 81: "3", 75: "4", 76: "5", 77: "6", 71: "7", 72: "8", 73: "9",
          83: ".", 74: "-", 78: "+", 55: "*", 98: "/", 117: "="}

# key code -> (unshifted, shifted); None: the key types nothing printable in that layout.
US: dict[int, tuple[str | None, str | None]] = {
    **{k: (c, s) for (k, c), s in zip(_DIGITS.items(), "!@#$%^&*()")},
    12: ("-", "_"), 13: ("=", "+"), 26: ("[", "{"), 27: ("]", "}"), 39: (";", ":"), 40: ("'", '"'),
    41: ("`", "~"), 43: ("\\", "|"), 51: (",", "<"), 52: (".", ">"), 53: ("/", "?"), 57: (" ", " "),
    86: ("\\", "|"),                          # the extra ISO key
}
JIS: dict[int, tuple[str | None, str | None]] = {
    **{k: (c, s) for (k, c), s in zip(_DIGITS.items(), ["!", '"', "#", "$", "%", "&", "'", "(", ")", None])},
    12: ("-", "="), 13: ("^", "~"), 124: ("\\", "|"),        # the ¥ key types a backslash code
    26: ("@", "`"), 27: ("[", "{"), 39: (";", "+"), 40: (":", "*"), 43: ("]", "}"),
    41: (None, None),                         # 半角/全角: an IME switch, no character
    51: (",", "<"), 52: (".", ">"), 53: ("/", "?"), 89: ("\\", "_"), 57: (" ", " "),
}
LAYOUTS = {"us": US, "jis": JIS}


@dataclass(frozen=True)
class Typed:
    """One scan as typed: `complete` False when it ended without a terminator."""

    text: str
    complete: bool


@dataclass
class KeyDecoder:
    layout: str = "us"
    terminators: tuple[str, ...] = ("enter", "kpenter", "tab")
    flush_after: float = 0.3
    _buf: list[str] = field(default_factory=list, repr=False)
    _shift: set[int] = field(default_factory=set, repr=False)
    _mods: set[int] = field(default_factory=set, repr=False)
    _caps: bool = field(default=False, repr=False)
    _last: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown keyboard layout {self.layout!r}; known: {', '.join(LAYOUTS)}")
        self._table = LAYOUTS[self.layout]
        self._ends = frozenset(TERMINATORS[t] for t in self.terminators)

    def poll(self, now: float) -> list[Typed]:
        """A partial scan, once the keys have stopped for `flush_after` seconds."""
        if self._buf and now - self._last >= self.flush_after:
            return [self._take(False)]
        return []

    def feed(self, code: int, value: int, now: float) -> list[Typed]:
        """One EV_KEY event: value 1 press, 0 release, 2 auto-repeat."""
        out = self.poll(now)
        if code in SHIFTS or code in OTHER_MODIFIERS:
            held = self._shift if code in SHIFTS else self._mods
            if value == 1:
                held.add(code)
            elif value == 0:
                held.discard(code)
            return out
        if value != 1:
            return out
        self._last = now
        if code in self._ends:
            if self._buf:
                out.append(self._take(True))
            return out
        if code == KEY_CAPSLOCK:
            self._caps = not self._caps
            return out
        if code in IGNORED:
            return out
        if len(self._buf) < MAX_SCAN_CHARS:
            self._buf.append(self._char(code))
        return out

    def _char(self, code: int) -> str:
        if self._mods:                       # Ctrl/Alt/Meta + key: a control code, not label text
            return GARBAGE
        if code in KEYPAD:
            return KEYPAD[code]
        shift = bool(self._shift)
        if code in _LETTERS:
            upper = shift != self._caps
            return _LETTERS[code].upper() if upper else _LETTERS[code]
        pair = self._table.get(code)
        if pair is None:
            return GARBAGE
        return pair[1 if shift else 0] or GARBAGE

    def _take(self, complete: bool) -> Typed:
        text = "".join(self._buf)
        self._buf.clear()
        return Typed(text, complete)

    def reset(self) -> None:
        """Forget everything (the device went away mid-scan)."""
        self._buf.clear()
        self._shift.clear()
        self._mods.clear()
        self._caps = False


def keystrokes(text: str, layout: str = "us", terminator: int = KEY_ENTER) -> list[tuple[int, int]]:
    """The (code, value) events a scanner set to `layout` sends for `text`: for tests and
    for `kiosk doctor`'s layout hint. Raises ValueError for a character the layout lacks."""
    table = LAYOUTS.get(layout)
    if table is None:
        raise ValueError(f"unknown keyboard layout {layout!r}; known: {', '.join(LAYOUTS)}")
    reverse: dict[str, tuple[int, bool]] = {}
    for code, (plain, shifted) in table.items():
        if shifted and shifted not in reverse:
            reverse[shifted] = (code, True)
        if plain and plain not in reverse:
            reverse[plain] = (code, False)
    for code, ch in _LETTERS.items():
        reverse[ch] = (code, False)
        reverse[ch.upper()] = (code, True)
    for code, ch in _DIGITS.items():
        reverse[ch] = (code, False)
    events: list[tuple[int, int]] = []
    for ch in text:
        if ch not in reverse:
            raise ValueError(f"{ch!r} cannot be typed on a {layout} keyboard")
        code, shift = reverse[ch]
        if shift:
            events.append((KEY_LEFTSHIFT, 1))
        events += [(code, 1), (code, 0)]
        if shift:
            events.append((KEY_LEFTSHIFT, 0))
    if terminator:
        events += [(terminator, 1), (terminator, 0)]
    return events
