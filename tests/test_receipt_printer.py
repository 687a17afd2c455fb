"""Receipts: composed with python-escpos, sent to printers that answer over a pty and TCP."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from datetime import date

import pytest
from escpos.printer import Dummy

from kiosk.config.load import load_config
from kiosk.config.settings import PrinterSettings
from kiosk.hardware.receipt_printer import (
    INIT,
    KANJI_ON,
    KANJI_SHIFT_JIS,
    ReceiptPrinter,
    _wrap,
    build_receipt_printer,
    compose,
    connector,
    find_cjk_font,
    receipt_text,
    render_image,
)

FONT = find_cjk_font()
needs_font = pytest.mark.skipif(FONT is None, reason="no CJK font installed (apt install fonts-ipaexfont-gothic)")
LOANS = (("吾輩は猫である", "2025-02-01"), ("Python入門 第3版", "2025-02-01"))
DAY = date(2025, 1, 18)
RASTER = b"\x1dv0"                     # GS v 0: a raster image
ONLINE, PAPER_OK, PAPER_LOW, PAPER_OUT = 0x12, 0x12, 0x1E, 0x72


def site(tmp_path, text: str) -> dict:
    p = tmp_path / "kiosk.toml"
    p.write_text(text, encoding="utf-8")
    return load_config(p)


# -- what is on it ------------------------------------------------------------------------------

def test_receipt_text_has_date_titles_dues_and_footer_only():
    """Words from the catalogue, dates as the screen shows them (with the weekday), not ISO."""
    text = receipt_text(LOANS, "市立図書館", DAY, "返却は返却ポストへ\nTel 000-0000")
    assert text[:3] == ["市立図書館", "貸出レシート", "貸出日：2025年1月18日(土)"]
    assert "1. 吾輩は猫である" in text and "2. Python入門 第3版" in text
    assert text.count("   返却期限：2025年2月1日(土)") == 2
    assert not any("2025-" in line for line in text)
    assert text[-2:] == ["返却は返却ポストへ", "Tel 000-0000"]
    assert "合計2冊" in text


def test_receipt_text_in_the_patrons_language_with_plural_forms():
    text = receipt_text(LOANS, "City Library", DAY, "", lang="en")
    assert text[1:3] == ["Loan receipt", "Borrowed on Sat, Jan 18, 2025"]
    assert text.count("   Due Sat, Feb 1, 2025") == 2
    assert text[-1] == "Total: 2 books"
    assert receipt_text(LOANS[:1], "City Library", DAY, "", lang="en")[-1] == "Total: 1 book"
    assert receipt_text(LOANS[:1], "市立図書館", DAY, "", lang="ja")[-1] == "合計1冊"


def test_a_printer_prints_in_the_language_it_is_given():
    dummy = Dummy()
    printer = ReceiptPrinter(lambda: dummy, kanji=True, library_name="City Library", today=lambda: DAY)
    assert printer.print_receipt(LOANS, lang="en") is True
    assert b"Loan receipt" in dummy.output and b"Total: 2 books" in dummy.output


def test_kanji_printer_gets_shift_jis_text():
    data = compose(receipt_text(LOANS, "市立図書館", DAY, ""), kanji=True, font_path=FONT, width=512)
    assert data.startswith(INIT + KANJI_SHIFT_JIS)
    assert KANJI_ON + "1. 吾輩は猫である".encode("cp932") in data
    assert "市立図書館".encode("cp932") in data
    assert RASTER not in data                                  # all of it was text
    assert data.endswith(b"\x1dV\x00") or b"\x1dV" in data[-8:]  # cut


@needs_font
def test_a_character_outside_shift_jis_is_drawn_instead():
    data = compose(["𠮷野家"], kanji=True, font_path=FONT, width=512)   # 𠮷 (U+20BB7) is not in cp932
    assert RASTER in data


@needs_font
def test_image_receipt_for_printers_without_kanji():
    data = compose(receipt_text(LOANS, "市立図書館", DAY, "ありがとう"), kanji=False, font_path=FONT, width=512)
    assert KANJI_ON not in data
    i = data.index(RASTER)
    width_bytes = data[i + 4] + 256 * data[i + 5]
    height = data[i + 6] + 256 * data[i + 7]
    assert width_bytes == 512 // 8 and height > 100


@needs_font
def test_the_cjk_font_really_draws_japanese():
    # With a font lacking the glyphs every character would be the same empty box (tofu).
    a, b = (render_image([c], FONT, 200).tobytes() for c in ("図", "書"))
    assert a != b
    assert render_image(["図"], FONT, 200).getbbox() is not None


@needs_font
def test_long_titles_wrap_within_the_paper():
    from PIL import ImageFont

    font = ImageFont.truetype(FONT, 26)
    rows = _wrap("日本の図書館の自由に関する宣言とその解説 Library Freedom Declaration " * 2, font, 380)
    assert len(rows) > 2
    assert all(font.getlength(r) <= 380 for r in rows)


def test_without_a_font_an_image_receipt_cannot_be_made():
    with pytest.raises(FileNotFoundError):
        compose(["x"], kanji=False, font_path=None, width=512)


def test_print_to_a_write_only_printer():
    dummy = Dummy()
    printer = ReceiptPrinter(lambda: dummy, kanji=True, library_name="市立図書館", today=lambda: DAY)
    assert printer.print_receipt(LOANS) is True
    assert dummy.output == compose(receipt_text(LOANS, "市立図書館", DAY, ""), kanji=True,
                                   font_path=printer.font_path, width=512)


def test_nothing_to_print():
    assert ReceiptPrinter(lambda: Dummy()).print_receipt(()) is False


# -- printers that answer: a pseudo-terminal (serial) and a TCP port ------------------------------

class FakePrinter:
    """Answers the two status queries (DLE EOT 1, DLE EOT 4), then takes the receipt."""

    def __init__(self, paper: int | None = PAPER_OK, online: int | None = ONLINE) -> None:
        self.paper, self.online = paper, online
        self.received = bytearray()
        self.done = threading.Event()

    def serve(self, recv, send) -> None:
        try:
            for answer in (self.online, self.paper):
                query = b""
                while len(query) < 3:
                    chunk = recv(3 - len(query))
                    if not chunk:
                        return
                    query += chunk
                assert query[:2] == b"\x10\x04"
                if answer is None:                   # a dead printer says nothing
                    return
                send(bytes([answer]))
            while True:
                chunk = recv(65536)
                if not chunk:
                    return
                self.received += chunk
        except OSError:
            return
        finally:
            self.done.set()


class pty_printer:
    """A serial printer at the far end of a pseudo-terminal. The test keeps the slave open
    too: with no slave open, reads on the master fail with EIO before the kiosk connects."""

    def __init__(self, fake: FakePrinter) -> None:
        self.fake = fake
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def __enter__(self) -> str:
        master = self.master

        def recv(n: int) -> bytes:
            r, _, _ = select.select([master], [], [], 5)
            return os.read(master, n) if r else b""

        threading.Thread(target=self.fake.serve, args=(recv, lambda b: os.write(master, b)), daemon=True).start()
        return self.path

    def __exit__(self, *exc) -> None:
        os.close(self.slave)
        os.close(self.master)


def test_serial_printer_with_paper(tmp_path):
    fake = FakePrinter()
    with pty_printer(fake) as path:
        config = site(tmp_path, f"[hardware]\nprinter = 'serial'\nprinter_device = '{path},38400'\nprinter_kanji = true\n")
        printer = build_receipt_printer(PrinterSettings.from_config(config))
        printer.today = lambda: DAY
        assert printer.print_receipt(LOANS) is True
        expected = compose(receipt_text(LOANS, config["kiosk"]["library_name"], DAY, ""), kanji=True,
                           font_path=printer.font_path, width=512)
        deadline = time.monotonic() + 3
        while len(fake.received) < len(expected) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bytes(fake.received) == expected


@pytest.mark.parametrize("paper, online", [(PAPER_OUT, ONLINE), (PAPER_OK, 0x1A), (None, None)])
def test_serial_printer_paper_out_offline_or_silent_prints_nothing(tmp_path, paper, online):
    fake = FakePrinter(paper=paper, online=online)
    with pty_printer(fake) as path:
        config = site(tmp_path, f"[hardware]\nprinter = 'serial'\nprinter_device = '{path}'\nprinter_kanji = true\n")
        assert build_receipt_printer(PrinterSettings.from_config(config)).print_receipt(LOANS) is False
        assert bytes(fake.received) == b""


def test_paper_low_still_prints(tmp_path):
    fake = FakePrinter(paper=PAPER_LOW)
    with pty_printer(fake) as path:
        config = site(tmp_path, f"[hardware]\nprinter = 'serial'\nprinter_device = '{path}'\nprinter_kanji = true\n")
        assert build_receipt_printer(PrinterSettings.from_config(config)).print_receipt(LOANS) is True


def test_missing_serial_printer(tmp_path):
    config = site(tmp_path, f"[hardware]\nprinter = 'serial'\nprinter_device = '{tmp_path}/ttyUSB9'\n")
    assert build_receipt_printer(PrinterSettings.from_config(config)).print_receipt(LOANS) is False


@needs_font
def test_network_printer_on_loopback(tmp_path):
    fake = FakePrinter()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]

    def accept_one() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        conn.settimeout(5)
        with conn:
            fake.serve(conn.recv, conn.sendall)
        server.close()

    threading.Thread(target=accept_one, daemon=True).start()
    config = site(tmp_path, f"[hardware]\nprinter = 'network'\nprinter_device = '127.0.0.1:{port}'\n"
                            "printer_footer = '返却期限を守ってください'\n")
    printer = build_receipt_printer(PrinterSettings.from_config(config))
    assert printer.print_receipt(LOANS, library_name="中央図書館", date=DAY) is True
    assert fake.done.wait(5)
    assert bytes(fake.received) == compose(
        receipt_text(LOANS, "中央図書館", DAY, "返却期限を守ってください"), kanji=False, font_path=FONT, width=512)


def test_network_printer_switched_off(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    config = site(tmp_path, f"[hardware]\nprinter = 'network'\nprinter_device = '127.0.0.1:{port}'\n")
    assert build_receipt_printer(PrinterSettings.from_config(config)).print_receipt(LOANS) is False


def test_connector_from_config(tmp_path):
    assert build_receipt_printer(PrinterSettings.from_config(load_config(None))) is None
    usb = connector(PrinterSettings.from_config(site(tmp_path, "[hardware]\nprinter = 'usb'\nprinter_device = '04b8:0e28'\n")))
    assert callable(usb)
    lp = connector(PrinterSettings.from_config(site(tmp_path, f"[hardware]\nprinter = 'file'\nprinter_device = '{tmp_path}/lp0'\n")))
    assert lp().devfile == f"{tmp_path}/lp0"


def test_file_printer_missing(tmp_path):
    config = site(tmp_path, f"[hardware]\nprinter = 'file'\nprinter_device = '{tmp_path}/nodir/lp0'\nprinter_kanji = true\n")
    assert build_receipt_printer(PrinterSettings.from_config(config)).print_receipt(LOANS) is False
