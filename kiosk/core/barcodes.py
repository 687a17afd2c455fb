"""Telling an item barcode from a library card barcode from a bad scan, per library.

Pure: the patterns and checks come from config, time comes in as an argument. Every
input path (HID scanner, serial scanner, the in-app keyboard wedge) ends here, so a
scan is judged the same way whichever cable it came through.

NW-7 (Codabar) labels, common in Japanese libraries, may arrive with their A-D
start/stop characters; they are stripped first. A rejected scan carries a reason the
screen can explain ("scan again", "that is the book's ISBN", ...) instead of a bare
"invalid"; the rejected text itself is never echoed for garbage. `BarcodeRules.check`
never raises: any text at all gets a verdict (tests/test_fuzz_input.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from kiosk.core.patterns import fullmatch

PARTIAL_MARK = "\x18"   # ASCII CAN, appended by a scanner backend when a scan stopped mid-code


def mark_partial(text: str) -> str:
    """What a scanner backend delivers when the keystrokes stopped without a terminator."""
    return text + PARTIAL_MARK


class BarcodeKind(str, enum.Enum):
    ITEM = "item"
    PATRON = "patron"
    INVALID = "invalid"


class Rejection(str, enum.Enum):
    GARBAGE = "garbage"                  # control characters, non-ASCII, too long: not a label
    PARTIAL = "partial"                  # the scanner stopped mid-code
    DOUBLED = "doubled"                  # every character twice, or the code twice over
    BAD_CHECK_DIGIT = "bad_check_digit"  # a misread, or a label from another system
    SYMBOLOGY = "symbology"              # a barcode type this library does not use
    ISBN = "isbn"                        # the book's own ISBN/JAN, not the library's label
    UNKNOWN = "unknown"                  # well-formed, but neither an item nor a library card


class Symbology(str, enum.Enum):
    NW7 = "nw7"
    CODE39 = "code39"
    CODE128 = "code128"
    EAN13 = "ean13"
    OTHER = "other"                      # QR, DataMatrix, ... (known only from an AIM identifier)


ALL_SYMBOLOGIES = ("nw7", "code39", "code128", "ean13")

# -- check digits: pure functions of the data digits --------------------------------------

_NW7_VALUES = {**{str(d): d for d in range(10)}, "-": 10, "$": 11, ":": 12, "/": 13, ".": 14, "+": 15,
               "A": 16, "B": 17, "C": 18, "D": 19}
_NW7_CHARS = {v: k for k, v in _NW7_VALUES.items()}
_CODE39_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"


def _digits(data: str) -> list[int]:
    if not data or not data.isascii() or not data.isdigit():
        raise ValueError("check digit data must be ASCII digits")
    return [int(c) for c in data]


def _weighted(data: str, weights: tuple[int, ...]) -> int:
    """Sum of digit x weight, weights applied from the rightmost data digit leftwards."""
    return sum(d * weights[i % len(weights)] for i, d in enumerate(reversed(_digits(data))))


def mod10_w31(data: str) -> str:
    """Modulus 10 weight 3-1: EAN-13/JAN, ISBN-13, UPC."""
    return str(-_weighted(data, (3, 1)) % 10)


def mod10_w21(data: str) -> str:
    """Modulus 10 weight 2-1, products added whole (モジュラス10 ウェイト2・1)."""
    return str(-_weighted(data, (2, 1)) % 10)


def luhn(data: str) -> str:
    """Modulus 10 weight 2-1 with the digits of each product added (Luhn; 1桁分割)."""
    total = 0
    for i, d in enumerate(reversed(_digits(data))):
        p = d * (2 if i % 2 == 0 else 1)
        total += p // 10 + p % 10
    return str(-total % 10)


def mod11_w27(data: str) -> str:
    """Modulus 11 weight 2-7 (IBM). A remainder of 0 or 1 gives 0, the usual Japanese rule."""
    r = _weighted(data, (2, 3, 4, 5, 6, 7)) % 11
    return "0" if r in (0, 1) else str(11 - r)


def mod11(data: str) -> str:
    """Modulus 11 with weights 2, 3, 4, ... from the right; 10 is written X (ISBN-10, ISSN)."""
    digits = _digits(data)
    s = sum(d * (i + 2) for i, d in enumerate(reversed(digits)))
    c = -s % 11
    return "X" if c == 10 else str(c)


def mod7_dr(data: str) -> str:
    """7DR: the remainder of the number divided by 7 (common on NW-7 labels)."""
    return str(int("".join(map(str, _digits(data)))) % 7)


def mod7_dsr(data: str) -> str:
    """7DSR: 7 minus that remainder (1-7)."""
    return str(7 - int("".join(map(str, _digits(data)))) % 7)


def mod43(data: str) -> str:
    """Code 39's optional modulus 43 check character."""
    try:
        s = sum(_CODE39_CHARS.index(c) for c in data)
    except ValueError:
        raise ValueError("not Code 39 data") from None
    if not data:
        raise ValueError("empty")
    return _CODE39_CHARS[s % 43]


def mod16_nw7(framed: str) -> str:
    """NW-7's modulus 16 check character, over the data *and* its start/stop characters.

    `framed` is the whole label without the check character, e.g. "A37859B" -> "+".
    """
    up = framed.upper()
    if len(up) < 2 or up[0] not in "ABCD" or up[-1] not in "ABCD":
        raise ValueError("mod16 needs the NW-7 start and stop characters")
    try:
        s = sum(_NW7_VALUES[c] for c in up)
    except KeyError:
        raise ValueError("not NW-7 data") from None
    return _NW7_CHARS[-s % 16]


CHECKS = {
    "mod10w31": mod10_w31, "mod10w21": mod10_w21, "luhn": luhn, "mod11w27": mod11_w27,
    "mod11": mod11, "7dr": mod7_dr, "7dsr": mod7_dsr, "mod43": mod43, "mod16": mod16_nw7,
}
CHECK_NAMES = ("none",) + tuple(CHECKS)


def check_digit_ok(scheme: str, code: str, framed: str | None = None) -> bool:
    """True when the last character of `code` is its check character under `scheme`.

    mod16 is computed over the NW-7 start/stop characters too, so it needs `framed`
    (the label as scanned, check character before the stop character).
    """
    if scheme == "none":
        return True
    try:
        if scheme == "mod16":
            if framed is None or len(framed) < 4:
                return False
            return mod16_nw7(framed[:-2] + framed[-1]).upper() == framed[-2].upper()
        if len(code) < 2:
            return False
        return CHECKS[scheme](code[:-1]) == code[-1].upper()
    except (ValueError, KeyError):
        return False


# -- symbology from the text a scanner sends ----------------------------------------------

_AIM = re.compile(r"^\](.)(\d)")
_AIM_SYMBOLOGY = {"F": Symbology.NW7, "A": Symbology.CODE39, "C": Symbology.CODE128, "E": Symbology.EAN13}
_CODABAR = re.compile(r"^([A-Da-d])([0-9\-$:/.+]+)([A-Da-d])$")
_CODABAR_ENDS = re.compile(r"^[A-Da-d](.*)[A-Da-d]$")
_CODE39_FRAMED = re.compile(r"^\*([0-9A-Z\-. $/+%]+)\*$")
_CODE39_SET = re.compile(r"^[0-9A-Z\-. $/+%]+$")
# Book-trade EAN-13 prefixes: ISBN (978/979) and the second "book JAN" row (191/192).
_BOOK_PREFIXES = ("978", "979", "191", "192")


def is_book_ean(code: str) -> bool:
    """An ISBN-13 or Japanese book JAN with a valid check digit: the publisher's barcode."""
    return (len(code) == 13 and code.isascii() and code.isdigit() and code.startswith(_BOOK_PREFIXES)
            and mod10_w31(code[:-1]) == code[-1])


def undoubled(text: str) -> str | None:
    """The scan as it was meant, if `text` is it twice over: "1100..." or "codecode".

    Doubling comes from a keyboard read twice (hidinput + SDL) or a terminator lost
    between two reads; only ever used to explain a rejection, never to accept.
    """
    n = len(text)
    if n >= 4 and n % 2 == 0:
        if text[0::2] == text[1::2]:
            return text[0::2]
        if text[: n // 2] == text[n // 2:]:
            return text[: n // 2]
    return None


@dataclass(frozen=True)
class Scan:
    """The verdict on one scan. `code` is what the catalogue sees ("" for garbage)."""

    kind: BarcodeKind
    code: str
    rejection: Rejection | None = None
    symbology: Symbology | None = None      # None: the text alone does not say

    @property
    def ok(self) -> bool:
        return self.kind != BarcodeKind.INVALID


@dataclass(frozen=True)
class BarcodeRules:
    item_pattern: str = r"^1\d{7,13}$"
    patron_pattern: str = r"^2\d{7,13}$"
    strip_codabar: bool = True
    max_length: int = 32
    symbologies: tuple[str, ...] = ALL_SYMBOLOGIES   # barcode types this library's labels use
    item_check: str = "none"                         # one of CHECK_NAMES
    patron_check: str = "none"
    aim_ids: bool = False                            # the scanner prefixes AIM ids (]F0, ]C0, ...)

    @classmethod
    def from_config(cls, config: dict) -> BarcodeRules:
        """[loans] patterns (the launcher's keys since the start) plus the [barcodes] section."""
        loans = config["loans"]
        b = config.get("barcodes", {})
        return cls(item_pattern=loans["item_pattern"], patron_pattern=loans["patron_pattern"],
                   strip_codabar=loans["strip_codabar"], max_length=b.get("max_length", 32),
                   symbologies=tuple(b.get("symbologies", ALL_SYMBOLOGIES)),
                   item_check=b.get("item_check", "none"), patron_check=b.get("patron_check", "none"),
                   aim_ids=b.get("aim_ids", False))

    def _strip_aim(self, code: str) -> tuple[str, Symbology | None]:
        if self.aim_ids:
            m = _AIM.match(code)
            if m:
                return code[3:], _AIM_SYMBOLOGY.get(m.group(1), Symbology.OTHER)
        return code, None

    def normalise(self, raw: str) -> str:
        code, _ = self._strip_aim(raw.strip())
        if self.strip_codabar:
            m = _CODABAR_ENDS.match(code)
            if m:
                return m.group(1)
        m = _CODE39_FRAMED.match(code)
        return m.group(1) if m else code

    def symbology_of(self, raw: str) -> Symbology | None:
        """The barcode type when the text proves it; None when digits alone leave it open."""
        code, aim = self._strip_aim(raw.strip())
        if aim is not None:
            return aim
        if _CODABAR.match(code):
            return Symbology.NW7
        if _CODE39_FRAMED.match(code):
            return Symbology.CODE39
        if code.isascii() and code.isprintable() and not _CODE39_SET.match(code):
            return Symbology.CODE128       # lower case or symbols only Code 128 (of these) encodes
        return None

    def check(self, raw: str) -> Scan:
        """Judge one scan: item, library card, or rejected with a reason."""
        if raw.endswith(PARTIAL_MARK):
            return Scan(BarcodeKind.INVALID, "", Rejection.PARTIAL)
        if not raw or len(raw) > self.max_length or not raw.isprintable():
            return Scan(BarcodeKind.INVALID, "", Rejection.GARBAGE)
        scan = self._judge(raw)
        if scan.ok or scan.rejection in (Rejection.GARBAGE, Rejection.BAD_CHECK_DIGIT, Rejection.SYMBOLOGY):
            return scan
        half = undoubled(raw.strip())
        if half is not None and self._judge(half).ok:
            return Scan(BarcodeKind.INVALID, scan.code, Rejection.DOUBLED, scan.symbology)
        return scan

    def _judge(self, raw: str) -> Scan:
        code = self.normalise(raw)
        symbology = self.symbology_of(raw)
        if not code.isascii():
            # Full-width or Arabic-Indic digits: a wedge typing through an IME, not a label.
            return Scan(BarcodeKind.INVALID, "", Rejection.GARBAGE)
        # RE2 (kiosk.core.patterns): linear time, and \d takes ASCII digits only.
        for kind, pattern, scheme in ((BarcodeKind.ITEM, self.item_pattern, self.item_check),
                                      (BarcodeKind.PATRON, self.patron_pattern, self.patron_check)):
            if fullmatch(pattern, code):
                if symbology is not None and symbology.value not in self.symbologies:
                    return Scan(BarcodeKind.INVALID, code, Rejection.SYMBOLOGY, symbology)
                framed = self._strip_aim(raw.strip())[0]
                if not check_digit_ok(scheme, code, framed):
                    return Scan(BarcodeKind.INVALID, code, Rejection.BAD_CHECK_DIGIT, symbology)
                return Scan(kind, code, None, symbology)
        if is_book_ean(code):
            return Scan(BarcodeKind.INVALID, code, Rejection.ISBN, Symbology.EAN13)
        if symbology is not None and symbology.value not in self.symbologies:
            return Scan(BarcodeKind.INVALID, code, Rejection.SYMBOLOGY, symbology)
        return Scan(BarcodeKind.INVALID, code, Rejection.UNKNOWN, symbology)

    def classify(self, raw: str) -> tuple[BarcodeKind, str]:
        """Return the kind and the normalised code; garbage is INVALID, never guessed."""
        scan = self.check(raw)
        return scan.kind, scan.code


@dataclass
class Debouncer:
    """One label under the beam is one scan, however often the scanner re-reads it.

    A repeat of the same text within `window` seconds of the previous read is dropped;
    the window slides, so a book held under a continuous-mode scanner counts once.
    The same code scanned again after a pause is a new scan (the session decides what
    a second loan of the same item means).
    """

    window: float
    _last: str | None = field(default=None, repr=False)
    _at: float = field(default=0.0, repr=False)

    def accept(self, text: str, now: float) -> bool:
        repeat = text == self._last and now - self._at < self.window
        self._last, self._at = text, now
        return not repeat
