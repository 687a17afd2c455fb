"""An optional ESC/POS thermal receipt: the date, each title with its due date, the footer.

No patron name, no patron number, no item barcode: a receipt left on the counter must
not tell anyone who borrowed what. Japanese printers with Kanji fonts get Shift_JIS
text in Kanji mode; any other printer gets the text drawn with the CJK font (Pillow)
and sent as a raster image, so titles print correctly either way.

The whole receipt is composed first (on python-escpos's Dummy), the printer is asked
whether it is there and has paper, and only then is everything sent at once. Any
failure (printer missing, offline, paper out, cable pulled) returns False, and the
caller shows the on-screen summary instead; nothing here raises into the kiosk.

The words on it come from the message catalogues, in the patron's language, and dates read
as on the screen (kiosk.i18n.format_due: 2025年1月15日(水)): elderly patrons need the weekday.
"""

from __future__ import annotations

import copy
import logging
import os
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from kiosk.i18n import DEFAULT_LANGUAGE, format_due, translator
from kiosk.logs import log_event

if TYPE_CHECKING:
    from kiosk.config.settings import PrinterSettings

log = logging.getLogger("kiosk.hardware.receipt_printer")

ESC, FS = b"\x1b", b"\x1c"
INIT = ESC + b"@"
KANJI_SHIFT_JIS = FS + b"C\x01"      # Kanji code system: Shift_JIS (Japanese models)
KANJI_ON, KANJI_OFF = FS + b"&", FS + b"."

CJK_FONTS = (
    "/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/fonts-japanese-gothic.ttf",
)


def find_cjk_font(preferred: str = "", lang: str = DEFAULT_LANGUAGE) -> str | None:
    """The configured font, else an installed CJK one; IPAex first for Japanese, Noto CJK first
    for the other languages (IPAex has no Hangul, few simplified Chinese and Vietnamese letters)."""
    fonts = CJK_FONTS if lang == "ja" else tuple(sorted(CJK_FONTS, key=lambda f: "Noto" not in f))
    for path in ((preferred,) if preferred else ()) + fonts:
        if path and os.path.isfile(path):
            return path
    return None


def receipt_text(lines: Sequence[tuple[str, str]], library_name: str, day: date, footer: str,
                 lang: str = DEFAULT_LANGUAGE, rule: str = "-" * 24, returns: bool = False) -> list[str]:
    """Pure: the receipt as text lines in `lang`. `lines` are (title, due) pairs, nothing else;
    with `returns`, (title, outcome) pairs: returned, hold_shelf or counter."""
    t = translator(lang)
    heading = t("receipt.heading_returns") if returns else t("receipt.heading")
    out = [library_name, heading, t("receipt.date", date=format_due(day.isoformat(), lang)), rule]
    for i, (title, due) in enumerate(lines, 1):
        out.append(f"{i}. {title}")
        if returns:
            out.append("   " + t("returns." + due if due in ("returned", "hold_shelf", "counter") else "returns.counter"))
        else:
            out.append("   " + t("receipt.due", date=format_due(due, lang)))
    if returns:
        out += [rule, t.plural("returns.count", sum(due != "counter" for _, due in lines))]
    else:
        out += [rule, t.plural("receipt.count", len(lines))]
    if footer:
        out += [""] + footer.splitlines()
    return out


def _wrap(text: str, font: Any, width: int) -> list[str]:
    """Greedy wrap by pixel width; breaks anywhere (CJK has no spaces), at a space when it can."""
    if not text:
        return [""]
    out: list[str] = []
    line = ""
    for ch in text:
        if font.getlength(line + ch) <= width or not line:
            line += ch
            continue
        cut = line.rfind(" ")
        if cut > 0 and not line[cut + 1:].isspace():
            out.append(line[:cut])
            line = line[cut + 1:] + ch
        else:
            out.append(line)
            line = ch
    out.append(line)
    return out


def render_image(text_lines: Iterable[str], font_path: str, width: int, size: int = 26) -> Any:
    """The lines drawn black on white, 1 bit, `width` dots wide."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path, size, index=0)
    margin = 4
    rows: list[str] = []
    for line in text_lines:
        rows += _wrap(line, font, width - 2 * margin)
    step = int(size * 1.35)
    image = Image.new("1", (width, step * len(rows) + margin * 2), 1)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"                       # crisp dots: no grey for a thermal head to dither
    for i, row in enumerate(rows):
        draw.text((margin, margin + i * step), row, font=font, fill=0)
    return image


def compose(text_lines: Sequence[str], *, kanji: bool, font_path: str | None, width: int) -> bytes:
    """The whole receipt as ESC/POS bytes, ready to send in one write."""
    from escpos.printer import Dummy

    p = Dummy()
    p.profile.profile_data = copy.deepcopy(p.profile.profile_data)
    p.profile.profile_data["media"]["width"]["pixels"] = width
    p._raw(INIT)
    if kanji:
        p._raw(KANJI_SHIFT_JIS)
        for line in text_lines:
            try:
                encoded = line.encode("cp932")
            except UnicodeEncodeError:        # a character the printer's Kanji ROM lacks: draw it
                if font_path is None:
                    raise
                p._raw(KANJI_OFF)
                p.image(render_image([line], font_path, width), impl="bitImageRaster")
                continue
            p._raw(KANJI_ON + encoded + KANJI_OFF + b"\n")
    else:
        if font_path is None:
            raise FileNotFoundError("no CJK font for an image receipt")
        p.image(render_image(text_lines, font_path, width), impl="bitImageRaster")
    p.ln(4)
    p.cut()
    return p.output


class ReceiptPrinter:
    """Prints a receipt, or says it could not (False) so the caller can fall back."""

    def __init__(self, connect: Callable[[], Any], *, kanji: bool = False, width: int = 512,
                 font_path: str = "", footer: str = "", library_name: str = "",
                 today: Callable[[], date] = date.today) -> None:
        self.connect = connect
        self.kanji = kanji
        self.width = width
        self.preferred_font = font_path
        self.font_path = find_cjk_font(font_path)
        self.footer = footer
        self.library_name = library_name
        self.today = today

    def print_receipt(self, lines: Sequence[tuple[str, str]], library_name: str | None = None,
                      date: date | None = None, lang: str = DEFAULT_LANGUAGE, returns: bool = False) -> bool:
        """`lines`: (title, ISO due) for every item lent, once every item is done; the words
        and dates in `lang`, the session's language."""
        if not lines:
            return False
        try:
            text = receipt_text(lines, library_name or self.library_name, date or self.today(), self.footer, lang,
                                returns=returns)
            font = self.font_path if lang == DEFAULT_LANGUAGE else find_cjk_font(self.preferred_font, lang)
            data = compose(text, kanji=self.kanji, font_path=font, width=self.width)
        except Exception as e:
            log_event(log, "receipt.compose_failed", level=logging.ERROR, error=type(e).__name__)
            return False
        printer = None
        try:
            printer = self.connect()
            printer.open()
            problem = self._status(printer)
            if problem:
                log_event(log, "receipt.not_printed", level=logging.WARNING, reason=problem)
                return False
            printer._raw(data)
            log_event(log, "receipt.printed", count=len(lines))
            return True
        except Exception as e:              # DeviceNotFoundError, SerialException, OSError, USBError ...
            log_event(log, "receipt.not_printed", level=logging.WARNING, reason="printer_unavailable",
                      error=type(e).__name__)
            return False
        finally:
            if printer is not None:
                try:
                    printer.close()
                except Exception:
                    pass

    @staticmethod
    def _status(printer: Any) -> str | None:
        """Why not to print now, asking the printer where the connection can answer."""
        from escpos.escpos import Escpos

        if type(printer)._read is Escpos._read:
            return None                     # a write-only connection (e.g. /dev/usb/lp0): just print
        if not printer.is_online():
            return "printer_offline"
        paper = printer.paper_status()
        if paper == 0:
            return "paper_out"
        if paper == 1:
            log_event(log, "receipt.paper_low", level=logging.WARNING)
        return None


def connector(settings: PrinterSettings | None) -> Callable[[], Any] | None:
    """How to reach the configured printer, or None when there is none.

    printer_device: usb "04b8:0e28" (vendor:product), serial "/dev/ttyUSB0" or
    "/dev/ttyUSB0,38400", network "10.0.0.5" or "10.0.0.5:9100", file "/dev/usb/lp0".
    """
    if settings is None:
        return None
    kind, device = settings.kind, settings.device
    if kind == "usb":
        vendor, product = (int(x, 16) for x in device.split(":"))

        def usb() -> Any:
            from escpos.printer import Usb

            return Usb(vendor, product, timeout=2000)
        return usb
    if kind == "serial":
        path, _, baud = device.partition(",")

        def serial_printer() -> Any:
            return _serial_with_write_timeout(devfile=path, baudrate=int(baud or 9600), timeout=0.3)
        return serial_printer
    if kind == "network":
        host, _, port = device.partition(":")

        def network() -> Any:
            from escpos.printer import Network

            return Network(host, port=int(port or 9100), timeout=5)
        return network
    if kind == "file":
        def file_printer() -> Any:
            from escpos.printer import File

            return File(devfile=device)
        return file_printer
    raise ValueError(f"unknown printer kind {kind!r}")


def _serial_with_write_timeout(**kwargs: Any) -> Any:
    """python-escpos's Serial, but a printer that stops taking data (paper out with DSR/DTR
    flow control) raises after 5 s instead of hanging the thread forever."""
    from escpos.printer import Serial

    class _Serial(Serial):
        def open(self, raise_not_found: bool = True) -> None:
            super().open(raise_not_found)
            if self.device is not None:
                self.device.write_timeout = 5

    return _Serial(**kwargs)


def build_receipt_printer(settings: PrinterSettings | None) -> ReceiptPrinter | None:
    """The receipt printer from its settings, or None (`hardware.printer` = "none")."""
    connect = connector(settings)
    if settings is None or connect is None:
        return None
    return ReceiptPrinter(connect, kanji=settings.kanji, width=settings.width, font_path=settings.font_path,
                          footer=settings.footer, library_name=settings.library_name)
