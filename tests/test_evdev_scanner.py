"""The HID scanner reader: kernel input_event streams in, scans out, grab held, hot-plug.

This machine's kernel has no uinput, so the device is a FIFO under a stand-in
/dev/input/by-id carrying the kernel's own 24-byte `struct input_event` records,
as a recording of a real scanner would (EV_MSC scan codes and EV_SYN included).
Unplugging is the writer going away; replugging is a new node under the same name.
Where /dev/uinput is usable, a virtual keyboard exercises python-evdev and the real
EVIOCGRAB too.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from pathlib import Path

import pytest
from evdev import ecodes

from kiosk.config.load import load_config
from kiosk.config.settings import EvdevScannerSettings
from kiosk.core.barcodes import BarcodeRules, Rejection, mark_partial
from kiosk.hardware.evdev_scanner import EvdevScanner, build_evdev_scanner, find_device
from kiosk.hardware.keymaps import keystrokes
from kiosk_testing.scanner import Scans

INPUT_EVENT = struct.Struct("llHHi")     # struct input_event on 64-bit Linux: timeval, type, code, value
NAME = "usb-Honeywell_Imaging___Mobility_1900g-event-kbd"


def record(text: str, layout: str = "us", terminator: int = ecodes.KEY_ENTER) -> bytes:
    """What the kernel hands a reader for a scanner typing `text`."""
    out = b""
    t = time.time()
    for code, value in keystrokes(text, layout, terminator):
        sec, usec = int(t), int((t % 1) * 1e6)
        out += INPUT_EVENT.pack(sec, usec, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code)
        out += INPUT_EVENT.pack(sec, usec, ecodes.EV_KEY, code, value)
        out += INPUT_EVENT.pack(sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
        t += 0.0005
    return out


class RecordedSource:
    """EventSource reading input_event records from a FIFO, as EvdevSource reads /dev/input/eventN."""

    opened: list["RecordedSource"] = []

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.grabbed = False
        self.closed = False
        self._rest = b""
        RecordedSource.opened.append(self)

    def fileno(self) -> int:
        return self.fd

    def read_keys(self) -> list[tuple[int, int]]:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not data:
            raise OSError(errno.ENODEV, "No such device")
        data = self._rest + data
        whole = len(data) // INPUT_EVENT.size * INPUT_EVENT.size
        self._rest = data[whole:]
        return [(code, value) for _s, _u, kind, code, value in INPUT_EVENT.iter_unpack(data[:whole])
                if kind == ecodes.EV_KEY]

    def grab(self) -> None:
        self.grabbed = True

    def close(self) -> None:
        self.grabbed = False
        self.closed = True
        os.close(self.fd)


class Plug:
    """A scanner 'plugged in' under by-id: a FIFO whose writer is the scanner."""

    live: list["Plug"] = []

    def __init__(self, by_id: Path, name: str = NAME) -> None:
        self.path = by_id / name
        os.mkfifo(self.path)
        self.fd: int | None = os.open(self.path, os.O_RDWR)
        Plug.live.append(self)

    def send(self, data: bytes) -> None:
        assert self.fd is not None
        os.write(self.fd, data)

    def unplug(self) -> None:
        self.path.unlink(missing_ok=True)   # the node goes, then the device dies, as on a real unplug
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@pytest.fixture
def by_id(tmp_path):
    d = tmp_path / "by-id"
    d.mkdir()
    return d


@pytest.fixture
def scanner_for(by_id):
    made: list[EvdevScanner] = []

    def make(**kw) -> EvdevScanner:
        kw.setdefault("rescan_interval", 0.05)
        kw.setdefault("flush_after", 0.15)
        kw.setdefault("debounce", 0.5)
        s = EvdevScanner(kw.pop("device", ""), by_id=by_id, open_source=RecordedSource, **kw)
        made.append(s)
        return s

    RecordedSource.opened.clear()
    yield make
    for s in made:
        s.stop()
    while Plug.live:
        Plug.live.pop().unplug()


def test_a_scan_arrives_decoded_and_the_device_is_grabbed(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()
    scanner = scanner_for()
    scanner.start(scans)
    assert scanner.connected.wait(2)
    assert RecordedSource.opened[-1].grabbed
    plug.send(record("A10000001B"))
    assert scans.wait(1) == ["A10000001B"]
    assert BarcodeRules().classify(scans.items[0])[1] == "10000001"


def test_jis_scanner_with_jis_layout(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()
    scanner_for(layout="jis").start(scans)
    plug.send(record("A1-2:3+4B", "jis"))
    assert scans.wait(1) == ["A1-2:3+4B"]


def test_rereads_of_one_label_are_one_scan(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()
    scanner_for(debounce=0.5).start(scans)
    plug.send(record("10000001") + record("10000001") + record("10000002"))
    assert scans.wait(2) == ["10000001", "10000002"]
    time.sleep(0.6)
    plug.send(record("10000002"))                       # the same book again after a pause
    assert scans.wait(3)[-1] == "10000002"


def test_a_scan_without_enter_is_delivered_as_partial(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()
    scanner_for(flush_after=0.1).start(scans)
    plug.send(record("100000", terminator=0))
    got = scans.wait(1)
    assert got == [mark_partial("100000")]
    assert BarcodeRules().check(got[0]).rejection == Rejection.PARTIAL
    plug.send(record("10000001"))                       # the next scan is clean
    assert scans.wait(2)[-1] == "10000001"


def test_unplug_and_replug(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()
    scanner = scanner_for()
    scanner.start(scans)
    assert scanner.connected.wait(2)
    plug.send(record("10000001"))
    scans.wait(1)
    first = RecordedSource.opened[-1]
    plug.unplug()
    deadline = time.monotonic() + 2
    while scanner.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not scanner.connected.is_set()
    assert first.closed
    plug = Plug(by_id)                                   # back in, same by-id name
    assert scanner.connected.wait(2)
    plug.send(record("10000002"))
    assert scans.wait(2) == ["10000001", "10000002"]


def test_started_before_the_scanner_is_plugged_in(by_id, scanner_for):
    scans = Scans()
    scanner = scanner_for()
    scanner.start(scans)
    time.sleep(0.1)
    assert not scanner.connected.is_set()
    plug = Plug(by_id)
    assert scanner.connected.wait(2)
    plug.send(record("20000001"))
    assert scans.wait(1) == ["20000001"]


def test_the_configured_device_is_chosen_over_a_keyboard(by_id, scanner_for):
    keyboard = Plug(by_id, "usb-Logitech_USB_Keyboard-event-kbd")
    scanner_dev = Plug(by_id, "usb-DENSO_WAVE_GT10B-event-kbd")
    scans = Scans()
    scanner = scanner_for(device="denso")
    scanner.start(scans)
    assert scanner.connected.wait(2)
    keyboard.send(record("99999999"))
    scanner_dev.send(record("10000001"))
    assert scans.wait(1) == ["10000001"]
    time.sleep(0.1)
    assert scans.items == ["10000001"]


def test_stop_releases_the_grab_and_the_device(by_id, scanner_for):
    Plug(by_id)
    scanner = scanner_for()
    scanner.start(Scans())
    assert scanner.connected.wait(2)
    source = RecordedSource.opened[-1]
    scanner.stop()
    scanner.stop()
    assert source.closed and not source.grabbed
    assert not scanner.connected.is_set()


def test_a_busy_device_is_retried(by_id, scanner_for):
    class Busy(RecordedSource):
        refusals = 2

        def grab(self) -> None:
            if Busy.refusals:
                Busy.refusals -= 1
                raise OSError(errno.EBUSY, "Device or resource busy")
            super().grab()

    plug = Plug(by_id)
    scans = Scans()
    scanner = scanner_for()
    scanner.open_source = Busy
    scanner.start(scans)
    assert scanner.connected.wait(2)
    assert Busy.refusals == 0
    assert [s.closed for s in RecordedSource.opened] == [True, True, False]   # refused opens not leaked
    plug.send(record("10000001"))
    assert scans.wait(1) == ["10000001"]


def test_a_failing_listener_does_not_stop_the_reader(by_id, scanner_for):
    plug = Plug(by_id)
    scans = Scans()

    def listener(text: str) -> None:
        scans(text)
        if text == "10000001":
            raise RuntimeError("ui busy")

    scanner_for().start(listener)
    plug.send(record("10000001") + record("10000002"))
    assert scans.wait(2) == ["10000001", "10000002"]


def test_find_device(by_id, tmp_path):
    for name in ("usb-Vendor_Mouse-event-mouse", "usb-B_Scanner-if01-event-kbd", "usb-A_Keyboard-event-kbd",
                 "platform-gpio-keys-event"):
        (by_id / name).touch()
    assert find_device("", by_id) == str(by_id / "usb-A_Keyboard-event-kbd")
    assert find_device("scanner", by_id) == str(by_id / "usb-B_Scanner-if01-event-kbd")
    assert find_device("mouse", by_id) is None                     # not a keyboard interface
    assert find_device("", tmp_path / "absent") is None
    node = tmp_path / "event7"
    node.touch()
    assert find_device(str(node)) == str(node)
    assert find_device(str(tmp_path / "event8")) is None


def test_built_from_config(tmp_path):
    site = tmp_path / "kiosk.toml"
    site.write_text("[hardware]\nscanner = 'evdev'\nscanner_device = 'Honeywell'\nscanner_layout = 'jis'\n"
                    "scan_flush_ms = 200\nscan_debounce_ms = 700\n", encoding="utf-8")
    s = build_evdev_scanner(EvdevScannerSettings.from_config(load_config(site)))
    assert (s.device, s.decoder.layout, s.decoder.flush_after, s.debouncer.window) == ("Honeywell", "jis", 0.2, 0.7)


def _uinput_refused() -> str | None:
    if not os.path.exists("/dev/uinput"):
        return "no /dev/uinput on this kernel: the FIFO recordings above stand in"
    try:
        os.close(os.open("/dev/uinput", os.O_WRONLY))
    except OSError as e:
        return f"/dev/uinput: {e.strerror}"
    return None


@pytest.mark.skipif(_uinput_refused() is not None, reason=str(_uinput_refused()))
def test_real_evdev_device_through_uinput(by_id):
    from evdev import InputDevice, UInput

    from kiosk.hardware.evdev_scanner import EvdevSource

    keys = [c for c in range(1, 120)]
    with UInput({ecodes.EV_KEY: keys}, name="Kiosk Test Scanner") as ui:
        time.sleep(0.2)                                           # let the node appear
        (by_id / "usb-Kiosk_Test_Scanner-event-kbd").symlink_to(ui.device.path)
        scans = Scans()
        scanner = EvdevScanner("", by_id=by_id, open_source=EvdevSource, rescan_interval=0.05)
        scanner.start(scans)
        try:
            assert scanner.connected.wait(2)
            other = InputDevice(ui.device.path)
            with pytest.raises(OSError):                          # exclusively ours
                other.grab()
            for code, value in keystrokes("A10000001B"):
                ui.write(ecodes.EV_KEY, code, value)
                ui.syn()
            assert scans.wait(1) == ["A10000001B"]
            scanner.stop()
            other.grab()                                          # released on stop
            other.ungrab()
            other.close()
        finally:
            scanner.stop()
