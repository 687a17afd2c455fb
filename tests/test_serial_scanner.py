"""The serial (CDC-ACM) scanner: pyserial's loop:// and real pseudo-terminals for hot-plug."""

from __future__ import annotations

import os
import time
import tty

import pytest
import serial

from kiosk.config.load import load_config
from kiosk.config.settings import SerialScannerSettings
from kiosk.core.barcodes import BarcodeRules, Rejection, mark_partial
from kiosk.hardware.keymaps import Typed
from kiosk.hardware.serial_scanner import LineSplitter, SerialScanner, build_serial_scanner, resolve_port
from kiosk_testing.scanner import Scans


@pytest.fixture
def scanners():
    made: list[SerialScanner] = []

    def make(device: str, **kw) -> SerialScanner:
        kw.setdefault("rescan_interval", 0.05)
        kw.setdefault("flush_after", 0.15)
        kw.setdefault("debounce", 0.5)
        s = SerialScanner(device, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


class Pty:
    """A scanner at the end of a pseudo-terminal: the kiosk opens the slave by a stable symlink."""

    def __init__(self, link) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave_path = os.ttyname(slave)
        os.close(slave)
        self.link = link
        link.symlink_to(self.slave_path)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def unplug(self) -> None:
        self.link.unlink()
        os.close(self.master)


# -- framing --------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (b"A10000001B\r", ["A10000001B"]),
    (b"10000001\r\n", ["10000001"]),
    (b"10000001\n20000001\n", ["10000001", "20000001"]),
    (b"10000001\t", ["10000001"]),
    (b"\r\n\r\n", []),
])
def test_line_splitter_terminators(data, expected):
    out = LineSplitter().feed(data, 0.0)
    assert out == [Typed(t, True) for t in expected]


def test_line_splitter_across_reads_and_partial():
    s = LineSplitter(flush_after=0.2)
    assert s.feed(b"1000", 0.0) == []
    assert s.feed(b"0001\r", 0.01) == [Typed("10000001", True)]
    assert s.feed(b"123", 1.0) == []
    assert s.poll(1.1) == []
    assert s.poll(1.25) == [Typed("123", False)]
    assert s.feed(b"9\r", 5.0) == [Typed("9", True)]


def test_non_ascii_bytes_are_garbage():
    out = LineSplitter().feed(b"1000\x930001\r", 0.0)
    assert BarcodeRules().check(out[0].text).rejection == Rejection.GARBAGE


# -- the reader over pyserial ----------------------------------------------------------------

def test_scans_over_loop_url(scanners):
    port = serial.serial_for_url("loop://", timeout=0.05)
    scans = Scans()
    scanner = scanners("loop://", open_port=lambda url, baud: port)
    scanner.start(scans)
    assert scanner.connected.wait(2)
    port.write(b"A10000001B\r\n")
    port.write(b"20000001\r")
    assert scans.wait(2) == ["A10000001B", "20000001"]


def test_partial_and_doubled_reads_over_loop_url(scanners):
    port = serial.serial_for_url("loop://", timeout=0.05)
    scans = Scans()
    scanners("loop://", open_port=lambda url, baud: port, flush_after=0.1, debounce=0.5).start(scans)
    port.write(b"10000001\r10000001\r")                 # the same label read twice at once
    port.write(b"1000")                                 # and a read cut short
    got = scans.wait(2)
    assert got == ["10000001", mark_partial("1000")]
    time.sleep(0.2)
    assert scans.items == got


def test_a_real_port_hot_plugged(tmp_path, scanners):
    link = tmp_path / "kiosk-scanner"
    scans = Scans()
    scanner = scanners(str(link))
    scanner.start(scans)
    time.sleep(0.1)
    assert not scanner.connected.is_set()               # not plugged in yet
    pty = Pty(link)
    assert scanner.connected.wait(2)
    pty.send(b"10000001\r\n")
    assert scans.wait(1) == ["10000001"]
    pty.unplug()                                        # the cable comes out
    deadline = time.monotonic() + 3
    while scanner.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not scanner.connected.is_set()
    pty = Pty(link)                                     # and goes back in (a new tty behind the symlink)
    assert scanner.connected.wait(2)
    pty.send(b"10000002\r\n")
    assert scans.wait(2) == ["10000001", "10000002"]
    pty.unplug()


def test_the_port_is_opened_exclusively(tmp_path, scanners):
    link = tmp_path / "kiosk-scanner"
    pty = Pty(link)
    first = scanners(str(link))
    first.start(Scans())
    assert first.connected.wait(2)
    scans = Scans()
    second = scanners(str(link))
    second.start(scans)
    time.sleep(0.2)
    assert not second.connected.is_set()                # flock held by the first
    first.stop()
    assert second.connected.wait(2)
    pty.send(b"10000003\r")
    assert scans.wait(1) == ["10000003"]
    pty.unplug()


def test_resolve_port(tmp_path):
    assert resolve_port("loop://") == "loop://"
    (tmp_path / "usb-Datalogic_Scanner-if00").touch()
    (tmp_path / "usb-Zebra-if00").touch()
    assert resolve_port(str(tmp_path / "usb-*")) == str(tmp_path / "usb-Datalogic_Scanner-if00")
    assert resolve_port(str(tmp_path / "usb-Nothing*")) is None
    assert resolve_port(str(tmp_path / "usb-Zebra-if00")) == str(tmp_path / "usb-Zebra-if00")
    assert resolve_port(str(tmp_path / "absent")) is None
    assert resolve_port("") is None


def test_built_from_config(tmp_path):
    s = build_serial_scanner(SerialScannerSettings.from_config(load_config(None)))
    assert (s.device, s.baudrate) == ("/dev/kiosk-scanner", 9600)
    site = tmp_path / "kiosk.toml"
    site.write_text("[hardware]\nscanner = 'serial'\nscanner_device = '/dev/serial/by-id/usb-*'\n"
                    "scanner_baud = 115200\nscan_debounce_ms = 0\n", encoding="utf-8")
    s = build_serial_scanner(SerialScannerSettings.from_config(load_config(site)))
    assert (s.device, s.baudrate, s.debouncer.window) == ("/dev/serial/by-id/usb-*", 115200, 0)
