"""How an identified patron's library card number reaches staff at the counter, decoded back
by independent means: the barcode by zbar (Debian zbar-tools) from an image of the very widths
the screen draws, the USB keyboard reports through the kernel's HID-to-key mapping into the
kiosk's own keyboard-wedge decoder for the same layout, and the gadget set-up script by
shellcheck and a run against a scratch configfs tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.core.barcode_symbols import QUIET_MODULES, SymbolError, encode, module_mm
from kiosk.core.hid_keyboard import RELEASE, REPORT_LEN, can_type, reports
from kiosk.hardware.hid_gadget import HidKeyboard, KeyboardUnavailable
from kiosk.hardware.keymaps import KeyDecoder
from kiosk_testing.fuzz import FUZZ

REPO = Path(__file__).resolve().parents[1]
ZBAR = shutil.which("zbarimg")
needs_zbar = pytest.mark.skipif(ZBAR is None and not os.environ.get("CI"), reason="zbarimg (zbar-tools) not installed")


def pgm(widths: tuple[int, ...], path: Path, module: int = 2, height: int = 60) -> Path:
    row = [255] * (QUIET_MODULES * module)
    for i, w in enumerate(widths):
        row += [0 if i % 2 == 0 else 255] * (w * module)
    row += [255] * (QUIET_MODULES * module)
    path.write_bytes(b"P5 %d %d 255\n" % (len(row), height) + bytes(row) * height)
    return path


def zbar(path: Path) -> list[str]:
    assert ZBAR is not None, "zbarimg is needed ($CI set)"
    out = subprocess.run([ZBAR, "--quiet", "--raw", "-Scodabar.enable", str(path)], capture_output=True, text=True,
                         timeout=30)
    return out.stdout.splitlines()


# -- barcode symbols ------------------------------------------------------------------------------

@needs_zbar
@pytest.mark.parametrize("symbology, text, scanned", [
    ("nw7", "20000003", "A20000003A"),
    ("nw7", "1-2$3:4/5.6+7", "A1-2$3:4/5.6+7A"),
    ("code39", "20000003", "20000003"),
    ("code39", "AB-12 $/+%.", "AB-12 $/+%."),
    ("code128", "20000003", "20000003"),
    ("code128", "2000003", "2000003"),          # odd digits: subset C, then B for the last
    ("code128", "Lib-2024/x", "Lib-2024/x"),
])
def test_zbar_reads_back_exactly_what_was_encoded(tmp_path, symbology, text, scanned):
    symbol = encode(text, symbology)
    assert symbol.widths[0] and len(symbol.widths) % 2 == 1          # bars first and last
    assert zbar(pgm(symbol.widths, tmp_path / "s.pgm")) == [scanned]


@needs_zbar
def test_nw7_start_and_stop_follow_the_configuration(tmp_path):
    assert zbar(pgm(encode("20000003", "nw7", "CD").widths, tmp_path / "s.pgm")) == ["C20000003D"]


def test_text_a_symbology_cannot_carry_is_refused_not_mangled():
    for symbology, text in (("nw7", "2000A003"), ("nw7", ""), ("code39", "abc"), ("code39", "1*2"),
                            ("code128", "二千"), ("code128", "")):
        with pytest.raises(SymbolError):
            encode(text, symbology)
    with pytest.raises(SymbolError):
        encode("1", "nw7", "AX")
    with pytest.raises(SymbolError):
        encode("1", "qr")


def test_module_width_is_physical_and_bounded():
    assert module_mm(100, 60.0) == 0.5                   # room to spare: the comfortable maximum
    assert module_mm(200, 60.0) == pytest.approx(0.3)
    assert module_mm(300, 60.0) is None                 # below 0.25 mm: not drawn at all


@FUZZ
@given(st.text(alphabet="0123456789-$:/.+", min_size=1, max_size=20))
def test_nw7_widths_are_well_formed(text):
    w = encode(text, "nw7").widths
    assert set(w) <= {1, 3} and len(w) == 8 * (len(text) + 2) - 1


@FUZZ
@given(st.text(max_size=40), st.sampled_from(["nw7", "code39", "code128", "qr", ""]), st.text(max_size=3))
def test_encode_only_ever_refuses_with_symbol_error(text, symbology, guards):
    try:
        symbol = encode(text, symbology, guards)
    except SymbolError:
        return
    w = symbol.widths
    assert w and len(w) % 2 == 1 and min(w) >= 1 and max(w) <= 4 and symbol.modules == sum(w)


@FUZZ
@given(st.text(max_size=40), st.sampled_from(["us", "jis", "dvorak"]))
def test_reports_only_ever_refuse_with_value_error_and_always_release(text, layout):
    try:
        out = reports(text, layout)
    except ValueError:
        return
    assert all(len(r) == REPORT_LEN for r in out) and out[-1] == RELEASE and len(out) == 2 * (len(text) + 1)


# -- USB keyboard ---------------------------------------------------------------------------------

# Linux drivers/hid/hid-input.c hid_keyboard[]: HID usage -> evdev key code, for the usages typed.
_HID_TO_EVDEV = {
    **dict(zip(range(0x04, 0x1E), (30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31,
                                     20, 22, 47, 17, 45, 21, 44))),
    **{0x1E + i: 2 + i for i in range(10)},
    0x28: 28, 0x2C: 57, 0x2D: 12, 0x2E: 13, 0x2F: 26, 0x30: 27, 0x31: 43, 0x32: 43, 0x33: 39, 0x34: 40,
    0x35: 41, 0x36: 51, 0x37: 52, 0x38: 53, 0x87: 89, 0x89: 124,
}
_MODIFIER_BITS = {0x01: 29, 0x02: 42, 0x04: 56, 0x08: 125, 0x10: 97, 0x20: 54, 0x40: 100, 0x80: 126}


def decode_reports(data: bytes, layout: str) -> list[str]:
    """What a PC's kernel makes of the reports: key events from report differences, through the
    kernel's usage table, into the kiosk's keyboard-wedge decoder set to the PC's layout."""
    assert len(data) % REPORT_LEN == 0
    decoder = KeyDecoder(layout=layout)
    mods, keys, typed, t = 0, set(), [], 0.0
    for i in range(0, len(data), REPORT_LEN):
        report = data[i:i + REPORT_LEN]
        assert report[1] == 0
        new_mods, new_keys = report[0], {k for k in report[2:] if k}
        for bit, code in _MODIFIER_BITS.items():
            if (mods ^ new_mods) & bit:
                typed += decoder.feed(code, 1 if new_mods & bit else 0, t)
        for k in sorted(keys - new_keys):
            typed += decoder.feed(_HID_TO_EVDEV[k], 0, t)
        for k in sorted(new_keys - keys):
            typed += decoder.feed(_HID_TO_EVDEV[k], 1, t)
        mods, keys, t = new_mods, new_keys, t + 0.004
    assert mods == 0 and not keys, "every key released at the end"
    return [x.text for x in typed if x.complete]


@pytest.mark.parametrize("layout", ["us", "jis"])
@pytest.mark.parametrize("number", ["20000003", "2000-0003", "A1:2+3$4/5.6A", "Lib@2024_x*(y)"])
def test_reports_written_to_a_file_decode_back_to_the_number(tmp_path, layout, number):
    out = tmp_path / "hidg0"
    out.touch()
    HidKeyboard(str(out), layout, pace=0).type_line(number)
    data = out.read_bytes()
    assert data[-REPORT_LEN:] == RELEASE and len(data) == REPORT_LEN * 2 * (len(number) + 1)
    assert decode_reports(data, layout) == [number]


def test_the_layout_matters_for_symbols_and_not_for_digits():
    assert reports("20000003", "us") == reports("20000003", "jis")
    us, jis = b"".join(reports(":", "us")), b"".join(reports(":", "jis"))
    assert us != jis and decode_reports(us, "jis") != [":"]
    assert not can_type("¥", "us") and can_type("12:3", "jis")
    with pytest.raises(ValueError):
        reports("二", "jis")
    with pytest.raises(ValueError):
        reports("1", "dvorak")


def test_a_missing_gadget_is_reported_and_nothing_half_typed(tmp_path):
    with pytest.raises(KeyboardUnavailable):
        HidKeyboard(str(tmp_path / "no-hidg0")).type_line("20000003")
    out = tmp_path / "hidg0"
    out.touch()
    with pytest.raises(ValueError):
        HidKeyboard(str(out), "us").type_line("2000二")
    assert out.read_bytes() == b""


def test_a_pc_that_does_not_read_times_out(tmp_path):
    fifo = tmp_path / "hidg0"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)          # a host that never reads
    try:
        with pytest.raises(KeyboardUnavailable):
            HidKeyboard(str(fifo), timeout=0.2, pace=0).type_line("2" * 20000)
    finally:
        os.close(reader)


# -- the gadget set-up script ---------------------------------------------------------------------

SCRIPT = REPO / "scripts" / "hid-gadget.sh"


def test_gadget_script_passes_shellcheck():
    checker = shutil.which("shellcheck")
    if checker is None and not os.environ.get("CI"):
        pytest.skip("shellcheck not installed")
    assert checker is not None
    out = subprocess.run([checker, str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


BOOT_KEYBOARD = bytes.fromhex(
    "05010906a101050719e029e71500250175019508810295017508810395057501050819012905910295017503910395067508"
    "150025650507190029658100c0")


def test_gadget_script_builds_a_boot_keyboard_and_says_what_is_missing(tmp_path):
    configfs = tmp_path / "config"
    (configfs / "usb_gadget").mkdir(parents=True)
    env = {**os.environ, "KIOSK_CONFIGFS": str(configfs), "KIOSK_UDC_DIR": str(tmp_path / "no-udc")}
    out = subprocess.run(["sh", str(SCRIPT), "up"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 1 and "dtoverlay=dwc2" in out.stderr
    hid = configfs / "usb_gadget" / "kiosk" / "functions" / "hid.usb0"
    assert (hid / "report_desc").read_bytes() == BOOT_KEYBOARD
    assert (hid / "protocol").read_text().strip() == "1" and (hid / "report_length").read_text().strip() == "8"
    assert (configfs / "usb_gadget" / "kiosk" / "configs" / "c.1" / "hid.usb0").is_symlink()


# -- configuration --------------------------------------------------------------------------------

def test_counter_settings_are_typed_and_a_counter_needs_a_route():
    from kiosk.config.load import ConfigError, load_config
    from kiosk.config.settings import CounterSettings

    def settings(**counter):
        return CounterSettings.from_config(load_config(None, [("site", {"kiosk": {"mode": "counter"},
                                                                          "counter": counter})]))

    s = settings()
    assert (s.enabled, s.barcode, s.symbology, s.codabar_guards, s.keyboard_device) == (True, True, "nw7", "AA", None)
    s = settings(keyboard=True, keyboard_layout="jis", barcode_symbology="code128")
    assert s.keyboard_device == "/dev/hidg0" and s.keyboard_layout == "jis" and s.symbology == "code128"
    with pytest.raises(ConfigError, match="counter.barcode"):
        settings(barcode=False)
    with pytest.raises(ConfigError, match="codabar_guards"):
        settings(codabar_guards="AZ")
    with pytest.raises(ConfigError, match="barcode_symbology"):
        settings(barcode_symbology="qr")
    off = CounterSettings.from_config(load_config(None, [("site", {"counter": {"barcode": False}})]))
    assert not off.enabled                      # a self-checkout kiosk need not hand anything over


def test_gadget_unit_verifies_and_runs_before_the_kiosk(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (REPO / "systemd" / "kiosk-hid-gadget.service").read_text(encoding="utf-8")
    assert "Before=kiosk.service kiosk-cage.service" in text and "Type=oneshot" in text
    unit = tmp_path / "kiosk-hid-gadget.service"
    unit.write_text(text.replace("/usr/local/libexec/kiosk-hid-gadget", str(stub)).replace("/sbin/modprobe",
                                                                                          str(stub)))
    out = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    problems = [line for line in out.stderr.splitlines() if str(unit) in line or "kiosk-hid-gadget" in line]
    assert out.returncode == 0 and not problems, out.stderr
    install = (REPO / "scripts" / "install-pi.sh").read_text()
    assert "scripts/hid-gadget.sh\" \"$root/usr/local/libexec/kiosk-hid-gadget\"" in install


def test_doctor_checks_the_counter_keyboard_gadget(tmp_path):
    from kiosk.cli.doctor import FAIL, OK, Env, check_counter
    from kiosk.config.load import load_config

    def check(**counter):
        config = load_config(None, [("site", {"kiosk": {"mode": "counter"}, "counter": counter})])
        return check_counter(config, Env())

    assert check_counter(load_config(None), Env()).status == OK
    assert check().status == OK and "barcode" in check().detail
    missing = check(keyboard=True, keyboard_device=str(tmp_path / "hidg0"))
    assert missing.status == FAIL and "dtoverlay=dwc2" in missing.fix
    (tmp_path / "hidg0").touch()
    found = check(keyboard=True, keyboard_device=str(tmp_path / "hidg0"), keyboard_layout="jis")
    assert found.status == OK and "layout jis" in found.detail
