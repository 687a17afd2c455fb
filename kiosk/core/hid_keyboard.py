"""Text as USB boot-keyboard reports, the way a keyboard-wedge barcode scanner types it.

The counter terminal, plugged into the staff PC's USB port as a HID gadget, types the
patron's library card number and Enter into whatever field has the focus in the
library's circulation client: any library system accepts a scanner, so nothing needs
integrating. Pure: text in, 8-byte reports out (kiosk/hardware/hid_gadget.py writes
them to /dev/hidg0).

A report is [modifiers, 0, key1..key6]: one key pressed, then all released, so the
same digit twice in a row is two presses. HID reports key *positions*; the characters
depend on the layout the staff PC uses (`counter.keyboard_layout`): digits and letters
are the same on US and JIS (jp106) keyboards, symbols are not (NW-7 numbers may carry
`- $ : / . +`).
"""

from __future__ import annotations

REPORT_LEN = 8
LEFT_SHIFT = 0x02
ENTER = 0x28
RELEASE = bytes(REPORT_LEN)

# HID usage -> (unshifted, shifted); None: no printable character there.
_DIGITS = {0x1E + i: str((i + 1) % 10) for i in range(10)}
_LETTERS = {0x04 + i: chr(ord("a") + i) for i in range(26)}
_COMMON = {0x2C: (" ", " "), 0x36: (",", "<"), 0x37: (".", ">"), 0x38: ("/", "?")}
US: dict[int, tuple[str | None, str | None]] = {
    **{u: (c, s) for (u, c), s in zip(_DIGITS.items(), "!@#$%^&*()")}, **_COMMON,
    0x2D: ("-", "_"), 0x2E: ("=", "+"), 0x2F: ("[", "{"), 0x30: ("]", "}"), 0x31: ("\\", "|"),
    0x33: (";", ":"), 0x34: ("'", '"'), 0x35: ("`", "~"),
}
JIS: dict[int, tuple[str | None, str | None]] = {
    **{u: (c, s) for (u, c), s in zip(_DIGITS.items(), ["!", '"', "#", "$", "%", "&", "'", "(", ")", None])},
    **_COMMON,
    0x2D: ("-", "="), 0x2E: ("^", "~"), 0x2F: ("@", "`"), 0x30: ("[", "{"), 0x32: ("]", "}"),
    0x33: (";", "+"), 0x34: (":", "*"), 0x87: ("\\", "_"), 0x89: ("\\", "|"),
}
LAYOUTS = {"us": US, "jis": JIS}


def _keys(layout: str) -> dict[str, tuple[int, bool]]:
    table = LAYOUTS.get(layout)
    if table is None:
        raise ValueError(f"unknown keyboard layout {layout!r}; known: {', '.join(LAYOUTS)}")
    keys: dict[str, tuple[int, bool]] = {}
    for usage, (plain, shifted) in table.items():
        if plain is not None:
            keys.setdefault(plain, (usage, False))
        if shifted is not None:
            keys.setdefault(shifted, (usage, True))
    for usage, ch in _LETTERS.items():
        keys[ch], keys[ch.upper()] = (usage, False), (usage, True)
    for usage, ch in _DIGITS.items():
        keys[ch] = (usage, False)
    return keys


def can_type(text: str, layout: str) -> bool:
    keys = _keys(layout)
    return all(c in keys for c in text)


def reports(text: str, layout: str = "us", enter: bool = True) -> list[bytes]:
    """Press-and-release reports that type `text` (then Enter). ValueError for a character
    the layout cannot type: nothing is typed rather than a wrong number."""
    keys = _keys(layout)
    out: list[bytes] = []
    for c in text:
        if c not in keys:
            raise ValueError("a character that cannot be typed on a %s keyboard" % layout)
        usage, shift = keys[c]
        out += [bytes([LEFT_SHIFT if shift else 0, 0, usage, 0, 0, 0, 0, 0]), RELEASE]
    if enter:
        out += [bytes([0, 0, ENTER, 0, 0, 0, 0, 0]), RELEASE]
    return out
