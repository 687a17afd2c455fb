"""`kiosk doctor`: each check against real things (a private pcscd, ptys, sockets, a full tmpfs)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import tty
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kiosk.cli import doctor
from kiosk.cli.doctor import FAIL, OK, WARN, Env, add_doctor_command, load_for_doctor, report, run_checks
from kiosk.config.load import load_config


def config_with(tmp_path, text: str = "") -> dict:
    p = tmp_path / "kiosk.toml"
    p.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n" + text, encoding="utf-8")
    return load_config(p)


def env(tmp_path, **kw) -> Env:
    base = dict(dev=tmp_path / "dev", by_id=tmp_path / "by-id", model_path=tmp_path / "model",
                timesync_flag=tmp_path / "synchronized", udev_rule=tmp_path / "99-kiosk-scanner.rules",
                vpcd_files=(str(tmp_path / "libifdvpcd.so"),), environ={}, now=lambda: datetime.now().timestamp(),
                ntp_synchronized=lambda: None)
    base.update(kw)
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "by-id").mkdir(exist_ok=True)
    return Env(**base)


# -- pcscd and the reader, against a private pcscd with vpcd readers ----------------------------

def test_pcscd_and_reader(pcsc_readers, tmp_path):
    config = config_with(tmp_path)
    assert doctor.check_pcscd(config, env(tmp_path)).status == OK
    reader = doctor.check_reader(config, env(tmp_path))
    assert reader.status == WARN and "Kiosk Test VPCD" in reader.detail     # a virtual reader is no kiosk
    assert "apt purge vsmartcard-vpcd" in reader.fix
    picky = config_with(tmp_path, "[card]\nreader = 'SONY RC-S380'\n")
    missing = doctor.check_reader(picky, env(tmp_path))
    assert missing.status == FAIL and "'SONY RC-S380'" in missing.detail and "Kiosk Test VPCD" in missing.detail


def test_pcscd_down(pcsc_readers, tmp_path):
    pcsc_readers.stop()
    config = config_with(tmp_path)
    down = doctor.check_pcscd(config, env(tmp_path))
    assert down.status == FAIL and "pcscd.socket" in down.fix
    assert doctor.check_reader(config, env(tmp_path)).status == FAIL


def test_card_backend_not_pcsc(tmp_path):
    none = config_with(tmp_path, "[card]\nbackend = 'none'\n")
    assert doctor.check_pcscd(none, env(tmp_path)).status == OK
    assert doctor.check_reader(none, env(tmp_path)).status == WARN


def test_vpcd_driver_installed(tmp_path):
    e = env(tmp_path)
    assert doctor.check_vpcd(config_with(tmp_path), e).status == OK
    Path(e.vpcd_files[0]).touch()
    assert doctor.check_vpcd(config_with(tmp_path), e).status == FAIL
    assert doctor.check_vpcd(config_with(tmp_path, "demo = true\n"), e).status == WARN


# -- scanner ------------------------------------------------------------------------------

def test_evdev_scanner(tmp_path):
    e = env(tmp_path)
    config = config_with(tmp_path, "[hardware]\nscanner = 'evdev'\nscanner_device = 'Honeywell'\n")
    absent = doctor.check_scanner(config, e)
    assert absent.status == FAIL and "scanner_device" in absent.fix
    (e.by_id / "usb-Honeywell_1900g-event-kbd").touch()
    present = doctor.check_scanner(config, e)
    assert present.status == OK and "Honeywell" in present.detail


def test_serial_scanner(tmp_path):
    e = env(tmp_path)
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        link = tmp_path / "kiosk-scanner"
        config = config_with(tmp_path, f"[hardware]\nscanner = 'serial'\nscanner_device = '{link}'\n")
        missing = doctor.check_scanner(config, e)
        assert missing.status == FAIL and "99-kiosk-scanner.rules" in missing.fix
        link.symlink_to(os.ttyname(slave))
        no_rule = doctor.check_scanner(config, e)
        assert no_rule.status == WARN and "ModemManager" in no_rule.detail
        e.udev_rule.write_text("# installed\n")
        assert doctor.check_scanner(config, e).status == OK
    finally:
        os.close(slave)
        os.close(master)


@pytest.mark.parametrize("kind", ["wedge", "none"])
def test_no_dedicated_scanner_is_a_warning(tmp_path, kind):
    assert doctor.check_scanner(config_with(tmp_path, f"[hardware]\nscanner = '{kind}'\n"), env(tmp_path)).status == WARN


# -- GPIO -----------------------------------------------------------------------------------

def test_gpio_unused(tmp_path):
    assert doctor.check_gpio(config_with(tmp_path), env(tmp_path)).status == OK


def test_gpio_off_the_pi_is_simulated(tmp_path):
    check = doctor.check_gpio(config_with(tmp_path, "[hardware]\nleds = 'gpio'\n"), env(tmp_path))
    assert check.status == WARN and "simulated" in check.detail


def test_gpio_on_a_pi5(tmp_path):
    e = env(tmp_path)
    e.model_path.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    config = config_with(tmp_path, "[hardware]\nleds = 'gpio'\n")
    no_chip = doctor.check_gpio(config, e)
    assert no_chip.status == FAIL and "gpiochip" in no_chip.detail
    (e.dev / "gpiochip0").touch()
    (e.dev / "gpiochip4").touch()
    check = doctor.check_gpio(config, e)
    import importlib.util

    if importlib.util.find_spec("lgpio") is None:
        assert check.status == FAIL and "pip install lgpio" in check.fix
    else:
        assert check.status == OK and "lgpio" in check.detail


# -- fonts, display, clock ----------------------------------------------------------------------

def test_fonts(tmp_path):
    font = tmp_path / "ipaexg.ttf"
    assert doctor.check_fonts(config_with(tmp_path), env(tmp_path, fonts=(str(font),))).status == FAIL
    font.write_bytes(b"\0")
    assert doctor.check_fonts(config_with(tmp_path), env(tmp_path, fonts=(str(font),))).detail == str(font)
    own = config_with(tmp_path, f"[ui]\nfont = '{font}'\n")
    assert doctor.check_fonts(own, env(tmp_path, fonts=())).status == OK


def test_display(tmp_path):
    e = env(tmp_path)
    config = config_with(tmp_path)
    assert doctor.check_display(config, e).status == FAIL
    (e.dev / "dri").mkdir()
    (e.dev / "dri" / "card1").touch()
    no_gpu = doctor.check_display(config, e)
    assert no_gpu.status == WARN and "llvmpipe" in no_gpu.detail
    (e.dev / "dri" / "renderD128").touch()
    assert doctor.check_display(config, e).status == OK
    assert doctor.check_display(config, env(tmp_path, environ={"WAYLAND_DISPLAY": "wayland-0"})).status == OK


def test_display_declared_headless(tmp_path):
    """SDL_VIDEODRIVER=offscreen: no /dev/dri needed, but a warning, never ok; kmsdrm is still checked."""
    config = config_with(tmp_path)
    for driver in ("offscreen", "dummy"):
        check = doctor.check_display(config, env(tmp_path, environ={"SDL_VIDEODRIVER": driver}))
        assert check.status == WARN and "headless" in check.detail and "unset SDL_VIDEODRIVER" in check.fix
    assert doctor.check_display(config, env(tmp_path, environ={"SDL_VIDEODRIVER": "kmsdrm"})).status == FAIL


def test_clock(tmp_path):
    config = config_with(tmp_path)
    lost = doctor.check_clock(config, env(tmp_path, now=lambda: datetime(1970, 1, 1, 0, 5, tzinfo=timezone.utc).timestamp()))
    assert lost.status == FAIL and "1970-01-01" in lost.detail
    assert doctor.check_clock(config, env(tmp_path)).status == WARN
    assert doctor.check_clock(config, env(tmp_path, ntp_synchronized=lambda: "no")).status == WARN
    assert doctor.check_clock(config, env(tmp_path, ntp_synchronized=lambda: "yes")).status == OK
    e = env(tmp_path)
    e.timesync_flag.touch()
    assert doctor.check_clock(config, e).status == OK


# -- printer --------------------------------------------------------------------------------

def test_printer(tmp_path):
    e = env(tmp_path)
    assert doctor.check_printer(config_with(tmp_path), e).status == OK
    lp = tmp_path / "lp0"
    file_cfg = config_with(tmp_path, f"[hardware]\nprinter = 'file'\nprinter_device = '{lp}'\n")
    assert doctor.check_printer(file_cfg, e).status == FAIL
    lp.touch()
    assert doctor.check_printer(file_cfg, e).status == OK
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        net = config_with(tmp_path, f"[hardware]\nprinter = 'network'\nprinter_device = '127.0.0.1:{port}'\n")
        assert doctor.check_printer(net, e).status == OK
    assert doctor.check_printer(net, e).status == FAIL                  # switched off
    usb = doctor.check_printer(config_with(tmp_path, "[hardware]\nprinter = 'usb'\nprinter_device = '04b8:0e28'\n"), e)
    assert usb.status in (WARN, FAIL) and "04b8:0e28" in usb.detail    # no such printer on this machine


# -- permissions, as an unprivileged user -----------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_missing_group_is_named_in_the_fix():
    root = Path(tempfile.mkdtemp(prefix="kiosk-doctor-"))
    try:
        root.chmod(0o755)
        dev = root / "dev"
        (dev / "dri").mkdir(parents=True)
        for node in (dev / "dri" / "card0", dev / "gpiochip0"):
            node.touch()
            node.chmod(0o660)                               # root-owned, like a device without the group
        code = (
            "import json, sys; from pathlib import Path; from kiosk.cli import doctor; from kiosk.config.load import load_config\n"
            f"e = doctor.Env(dev=Path('{dev}'), model_path=Path('{root}/model'), environ={{}})\n"
            "c = load_config(None); c['hardware']['leds'] = 'gpio'; c['hardware']['pin_factory'] = 'lgpio'\n"
            "print(json.dumps([doctor.check_display(c, e).fix, doctor.check_gpio(c, e).fix]))\n"
        )
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                             capture_output=True, text=True, cwd=root, timeout=60)
        assert out.returncode == 0, out.stderr
        display_fix, gpio_fix = json.loads(out.stdout)
        assert "group video" in display_fix
        assert "group gpio" in gpio_fix
    finally:
        shutil.rmtree(root)


# -- disk, on a really small filesystem ---------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_full_disk_fails_and_the_command_says_so(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{data}'\n", encoding="utf-8")
    script = (f"mount -t tmpfs -o size=8m tmpfs '{data}' && "
              f"{sys.executable} -m kiosk.cli.doctor doctor --config '{site}' --json")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    if "mount" in out.stderr and out.returncode != 1:
        pytest.skip(f"tmpfs refused: {out.stderr.strip()}")
    result = json.loads(out.stdout)
    disk = next(c for c in result["checks"] if c["name"] == "disk")
    assert disk["status"] == FAIL and "8 MB free" in disk["detail"] and "journalctl" in disk["fix"]
    assert result["ok"] is False and out.returncode == 1


def test_disk_with_room(tmp_path):
    check = doctor.check_disk(config_with(tmp_path), env(tmp_path))   # data_dir does not exist yet
    assert check.status in (OK, WARN) and "MB free" in check.detail


# -- the command ---------------------------------------------------------------------------------

def test_a_broken_check_is_reported_not_raised(tmp_path):
    config = config_with(tmp_path)
    del config["hardware"]
    checks = {c.name: c for c in run_checks(config, env(tmp_path))}
    assert checks["scanner"].status == FAIL and "check failed: KeyError" in checks["scanner"].detail
    assert checks["fonts"].status in (OK, FAIL)                         # the others still ran


def test_config_problems_are_the_first_finding(tmp_path):
    bad = tmp_path / "kiosk.toml"
    bad.write_text("[timeouts]\npin = 1\n", encoding="utf-8")
    config, check = load_for_doctor(str(bad))
    assert check.status == FAIL and "timeouts.pin" in check.detail and "kiosk config check" in check.fix
    assert config["timeouts"]["pin"] == 60                              # defaults, so the rest can run
    _, absent = load_for_doctor(str(tmp_path / "nope.toml"))
    assert absent.status == FAIL and "file not found" in absent.detail


def test_report_text():
    text = report([doctor.Check("fonts", OK, "/x.ttf"), doctor.Check("gpio", FAIL, "no chip", "sudo fix it"),
                   doctor.Check("clock", WARN, "unsure", "check")])
    assert "OK    fonts  /x.ttf" in text
    assert "FAIL  gpio   no chip\n             fix: sudo fix it" in text
    assert text.endswith("1 to fix, 1 to look at")


def test_command_json_and_exit_code(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="kiosk")
    add_doctor_command(parser.add_subparsers(dest="command", required=True))
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{tmp_path}'\n[card]\nbackend = 'none'\n[hardware]\nscanner = 'evdev'\n"
                    f"scanner_device = '/nonexistent/scanner'\n", encoding="utf-8")
    args = parser.parse_args(["doctor", "--config", str(site), "--json"])
    code = args.func(args)
    result = json.loads(capsys.readouterr().out)
    names = [c["name"] for c in result["checks"]]
    assert names == ["config", "identity", "pcscd", "reader", "vpcd", "scanner", "gpio", "fonts", "display", "clock",
                     "disk", "store", "printer", "counter"]
    scanner = next(c for c in result["checks"] if c["name"] == "scanner")
    assert scanner["status"] == FAIL and code == 1 and result["ok"] is False
