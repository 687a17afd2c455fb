"""`kiosk doctor`: is this machine ready to lend books, and if not, what to fix.

Each check looks at one thing (reader, pcscd, scanner, GPIO, fonts, display, clock,
disk, loan journal, printer) and returns ok, warn or fail with the fix in words a technician can
follow on site. The checks only look: they never open the card, never grab the
scanner from a running kiosk, never print, never drive a pin. Where to look is an
`Env` so the tests point the checks at their own directories.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

OK, WARN, FAIL = "ok", "warn", "fail"
EARLIEST_SANE = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()   # before this release: RTC lost


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


def _timedatectl() -> str | None:
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass
class Env:
    """Where the checks look; the defaults are the real machine."""

    dev: Path = Path("/dev")
    by_id: Path = Path("/dev/input/by-id")
    model_path: Path = Path("/proc/device-tree/model")
    timesync_flag: Path = Path("/run/systemd/timesync/synchronized")
    udev_rule: Path = Path("/etc/udev/rules.d/99-kiosk-scanner.rules")
    vpcd_files: tuple[str, ...] = ("/usr/lib/pcsc/drivers/serial/libifdvpcd.so", "/etc/reader.conf.d/vpcd")
    fonts: tuple[str, ...] | None = None            # None: kiosk.hardware.receipt_printer.CJK_FONTS
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    now: Callable[[], float] = time.time
    ntp_synchronized: Callable[[], str | None] = _timedatectl


# -- the checks ---------------------------------------------------------------------------------

def check_pcscd(config: dict, env: Env) -> Check:
    if config["card"]["backend"] != "pcsc":
        return Check("pcscd", OK, f"not used (card.backend = {config['card']['backend']})")
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return Check("pcscd", FAIL, f"not reachable ({scard.SCardGetErrorMessage(hr).strip()})",
                     "sudo apt install pcscd libccid && sudo systemctl enable --now pcscd.socket")
    scard.SCardReleaseContext(ctx)
    return Check("pcscd", OK, "running")


def check_reader(config: dict, env: Env) -> Check:
    card = config["card"]
    if card["backend"] != "pcsc":
        return Check("reader", WARN if card["backend"] == "none" else OK,
                     f"card.backend = {card['backend']}: no My Number Card sign-in" if card["backend"] == "none"
                     else "virtual reader (demo)")
    from smartcard import scard

    from kiosk.card.pcsc_reader import reader_matches

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != scard.SCARD_S_SUCCESS:
        return Check("reader", FAIL, "cannot look: pcscd is not running", "fix pcscd first")
    try:
        hr, names = scard.SCardListReaders(ctx, [])
    finally:
        scard.SCardReleaseContext(ctx)
    names = names if hr == scard.SCARD_S_SUCCESS else []
    wanted = [card["reader"]] if card["reader"] else []
    mine = [n for n in names if reader_matches(n, wanted)]
    if not mine:
        seen = f" (pcscd sees: {', '.join(names)})" if names else ""
        return Check("reader", FAIL, f"no card reader{' matching ' + repr(card['reader']) if wanted else ''}{seen}",
                     "plug the USB IC card reader in (lsusb shows it); it needs libccid; "
                     "or correct card.reader in /etc/kiosk/kiosk.toml")
    virtual = [n for n in mine if "virtual" in n.lower() or "vpcd" in n.lower()]
    if virtual:
        return Check("reader", WARN, f"virtual reader present: {', '.join(virtual)}",
                     "a production kiosk must not have vsmartcard-vpcd: sudo apt purge vsmartcard-vpcd")
    return Check("reader", OK, ", ".join(mine))


def check_vpcd(config: dict, env: Env) -> Check:
    present = [p for p in env.vpcd_files if os.path.exists(p)]
    if present:
        return Check("vpcd", WARN if config["kiosk"]["demo"] else FAIL,
                     "vsmartcard-vpcd is installed: it accepts virtual cards from the network on port 35963",
                     "sudo apt purge vsmartcard-vpcd (test machines only)")
    return Check("vpcd", OK, "no virtual reader driver")


def check_scanner(config: dict, env: Env) -> Check:
    hw = config["hardware"]
    kind, device = hw["scanner"], hw["scanner_device"]
    if kind == "none":
        return Check("scanner", WARN, "no scanner configured (hardware.scanner = none)",
                     "set hardware.scanner = evdev or serial")
    if kind == "wedge":
        return Check("scanner", WARN, "keyboard wedge: scans go through the window's focus and the OS keymap",
                     "set the scanner to USB-COM and hardware.scanner = serial, or use hardware.scanner = evdev")
    if kind == "evdev":
        from kiosk.hardware.evdev_scanner import find_device

        path = find_device(device, env.by_id)
        if path is None:
            return Check("scanner", FAIL, f"no keyboard-mode scanner under {env.by_id}"
                         + (f" matching {device!r}" if device else ""),
                         f"plug the scanner in; ls {env.by_id}; put part of its name in hardware.scanner_device")
        if not os.access(path, os.R_OK):
            return Check("scanner", FAIL, f"{os.path.basename(path)}: no permission to read",
                         "the kiosk user needs group input: sudo usermod -aG input kiosk")
        return Check("scanner", OK, f"{os.path.basename(path)} (layout {hw['scanner_layout']})")
    from kiosk.hardware.serial_scanner import resolve_port

    port = resolve_port(device or "/dev/kiosk-scanner")
    if port is None:
        fix = "plug the scanner in (USB-COM mode); " + (
            "the udev rule makes /dev/kiosk-scanner: install systemd/99-kiosk-scanner.rules"
            if not env.udev_rule.exists() else "check the vendor/product ids in " + str(env.udev_rule))
        return Check("scanner", FAIL, f"serial scanner {device or '/dev/kiosk-scanner'} not found", fix)
    if "://" not in port and not os.access(port, os.R_OK | os.W_OK):
        return Check("scanner", FAIL, f"{port}: no permission",
                     "the kiosk user needs group dialout: sudo usermod -aG dialout kiosk")
    if not env.udev_rule.exists():
        return Check("scanner", WARN, f"{port} found, but ModemManager may probe it",
                     f"install systemd/99-kiosk-scanner.rules to {env.udev_rule}")
    return Check("scanner", OK, port)


def check_gpio(config: dict, env: Env) -> Check:
    hw = config["hardware"]
    if hw["leds"] != "gpio" and hw["buzzer"] < 0 and hw["reset_button"] < 0:
        return Check("gpio", OK, "not used")
    from kiosk.hardware.leds import _rpigpio_installed, board_model, choose_pin_factory

    model = board_model(env.model_path)
    factory = choose_pin_factory(hw["pin_factory"], model, _rpigpio_installed())
    if factory == "mock":
        return Check("gpio", WARN, f"simulated pins ({model or 'not a Raspberry Pi'}): LEDs, buzzer and button do nothing",
                     "set hardware.pin_factory = auto on the Pi")
    chips = sorted(glob.glob(str(env.dev / "gpiochip*")))
    if not chips:
        return Check("gpio", FAIL, "no /dev/gpiochip*", "is this a Raspberry Pi? the gpio driver is missing")
    if not all(os.access(c, os.R_OK | os.W_OK) for c in chips):
        return Check("gpio", FAIL, "no permission on /dev/gpiochip*",
                     "the kiosk user needs group gpio: sudo usermod -aG gpio kiosk")
    module = "lgpio" if factory == "lgpio" else "RPi.GPIO"
    try:
        import importlib.util

        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        package = "lgpio" if factory == "lgpio" else "RPi.GPIO"
        return Check("gpio", FAIL, f"{module} is not installed ({factory} pins for {model})",
                     f"/opt/kiosk/current/venv/bin/pip install {package}")
    return Check("gpio", OK, f"{factory} on {model}")


def check_fonts(config: dict, env: Env) -> Check:
    from kiosk.hardware.receipt_printer import CJK_FONTS

    candidates = ([config["ui"]["font"]] if config["ui"]["font"] else []) + list(env.fonts or CJK_FONTS)
    for path in candidates:
        if os.path.isfile(path):
            return Check("fonts", OK, path)
    return Check("fonts", FAIL, "no Japanese (CJK) font: titles and messages would show as boxes",
                 "sudo apt install fonts-ipaexfont-gothic fonts-noto-cjk")


def check_display(config: dict, env: Env) -> Check:
    # Declared headless (smoke tests, a root without a screen): no display to look for, and
    # never an ok, since with it nothing reaches the screen.
    driver = env.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("offscreen", "dummy"):
        return Check("display", WARN, f"SDL_VIDEODRIVER={driver}: headless, drawn off screen, no patron sees it",
                     "unset SDL_VIDEODRIVER to check the screen (kiosk.service draws with kmsdrm)")
    if env.environ.get("WAYLAND_DISPLAY") or env.environ.get("DISPLAY"):
        return Check("display", OK, "inside a desktop/compositor session")
    cards = sorted(glob.glob(str(env.dev / "dri" / "card*")))
    if not cards:
        return Check("display", FAIL, "no /dev/dri/card*: no KMS display driver",
                     "enable dtoverlay=vc4-kms-v3d in /boot/firmware/config.txt and reboot")
    if not any(os.access(c, os.R_OK | os.W_OK) for c in cards):
        return Check("display", FAIL, "no permission on /dev/dri/card*",
                     "the kiosk user needs group video: sudo usermod -aG video kiosk")
    render = sorted(glob.glob(str(env.dev / "dri" / "renderD*")))
    if not render or not any(os.access(r, os.R_OK | os.W_OK) for r in render):
        return Check("display", WARN, "no usable /dev/dri/renderD*: drawing falls back to the CPU (llvmpipe)",
                     "the kiosk user needs group render: sudo usermod -aG render kiosk")
    return Check("display", OK, f"{len(cards)} DRM card(s), GPU rendering available")


def check_clock(config: dict, env: Env) -> Check:
    now = env.now()
    if now < EARLIEST_SANE:
        return Check("clock", FAIL, f"the clock says {datetime.fromtimestamp(now, timezone.utc):%Y-%m-%d}: "
                     "certificates and due dates would be wrong",
                     "connect the network so NTP can set it (timedatectl), or fit an RTC battery (Pi 5)")
    if env.timesync_flag.exists():
        return Check("clock", OK, "synchronised (systemd-timesyncd)")
    state = env.ntp_synchronized()
    if state == "yes":
        return Check("clock", OK, "synchronised (NTP)")
    if state == "no":
        return Check("clock", WARN, "not synchronised with NTP",
                     "check the network and sudo timedatectl set-ntp true")
    return Check("clock", WARN, "cannot tell whether the clock is synchronised",
                 "sudo apt install systemd-timesyncd && sudo timedatectl set-ntp true")


def check_disk(config: dict, env: Env) -> Check:
    data_dir = Path(config["kiosk"]["data_dir"]).expanduser()
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    mb = free // (1024 * 1024)
    if free < 50 * 1024 * 1024:
        return Check("disk", FAIL, f"{mb} MB free for {data_dir}: loans could not be saved",
                     "free space (sudo journalctl --vacuum-size=50M) or use a larger SD card")
    if data_dir.exists() and not os.access(data_dir, os.W_OK):
        return Check("disk", WARN, f"{data_dir}: not writable by {_user()} ({mb} MB free)",
                     "run kiosk doctor as the kiosk user (sudo -u kiosk kiosk doctor), or fix the owner")
    if free < 500 * 1024 * 1024:
        return Check("disk", WARN, f"only {mb} MB free for {data_dir}", "free some space")
    return Check("disk", OK, f"{mb} MB free for {data_dir}")


def check_store(config: dict, env: Env) -> Check:
    """The loan journal: it opens, its device key is the one that sealed it, nothing damaged."""
    from kiosk.store.inspect import inspect_store

    data_dir = Path(config["kiosk"]["data_dir"]).expanduser()
    report = inspect_store(data_dir)
    if report.problem in ("", "no_store"):
        return Check("store", OK, report.detail if report.problem == "" else f"no loans yet in {data_dir}")
    if report.problem == "damaged_rows":
        return Check("store", WARN, report.detail, report.fix)
    return Check("store", FAIL, report.detail, report.fix)


def check_printer(config: dict, env: Env) -> Check:
    hw = config["hardware"]
    kind, device = hw["printer"], hw["printer_device"]
    if kind == "none":
        return Check("printer", OK, "no receipt printer (receipts on screen only)")
    if kind in ("serial", "file"):
        path = device.partition(",")[0]
        if not os.path.exists(path):
            return Check("printer", FAIL, f"{path} not found", "switch the printer on and check its cable")
        if not os.access(path, os.W_OK):
            return Check("printer", FAIL, f"{path}: no permission",
                         "the kiosk user needs group dialout (serial) or lp (/dev/usb/lp*)")
        return Check("printer", OK, path)
    if kind == "network":
        host, _, port = device.partition(":")
        try:
            socket.create_connection((host, int(port or 9100)), timeout=2).close()
        except OSError as e:
            return Check("printer", FAIL, f"{device}: {e.strerror or e}", "switch the printer on; check its address")
        return Check("printer", OK, device)
    try:
        import usb.core

        vendor, product = (int(x, 16) for x in device.split(":"))
        found = usb.core.find(idVendor=vendor, idProduct=product) is not None
    except Exception as e:                  # no libusb, bad id
        return Check("printer", WARN, f"cannot look for USB printer {device}: {type(e).__name__}",
                     "sudo apt install libusb-1.0-0; printer_device is vendor:product in hex (lsusb)")
    if not found:
        return Check("printer", FAIL, f"USB printer {device} not found", "switch the printer on; lsusb")
    return Check("printer", OK, f"USB {device}")


def check_identity(config: dict, env: Env) -> Check:
    """A kiosk needs its own id before central IT may manage it (targeted bundles)."""
    from kiosk.config.load import identity_problem

    problem = identity_problem(config)
    if problem:
        return Check("identity", FAIL, problem, "set [kiosk] id = \"<branch>-<number>\" in the site file")
    if not config["kiosk"]["id"]:
        return Check("identity", WARN, "kiosk.id is not set (management is off)",
                     "set [kiosk] id in the site file before enabling [management]")
    return Check("identity", OK, config["kiosk"]["id"])


def check_counter(config: dict, env: Env) -> Check:
    """A counter terminal's USB keyboard hand-over: the HID gadget device the kiosk writes to."""
    if config["kiosk"]["mode"] != "counter":
        return Check("counter", OK, "not a counter terminal")
    c = config["counter"]
    routes = [r for r, on in (("barcode", c["barcode"]), ("keyboard", c["keyboard"])) if on]
    if not c["keyboard"]:
        return Check("counter", OK, "hand-over: " + ", ".join(routes))
    device = str(c["keyboard_device"])
    if not os.path.exists(device):
        return Check("counter", FAIL, f"USB keyboard gadget {device} not found",
                     "dtoverlay=dwc2,dr_mode=peripheral in /boot/firmware/config.txt, reboot, then "
                     "systemctl enable --now kiosk-hid-gadget.service (README: Counter terminals)")
    if not os.access(device, os.W_OK):
        return Check("counter", FAIL, f"{device}: no permission to write",
                     f"the gadget unit gives the kiosk group write access; check: ls -l {device}")
    return Check("counter", OK, f"hand-over: {', '.join(routes)} ({device}, layout {c['keyboard_layout']})")


CHECKS: tuple[Callable[[dict, Env], Check], ...] = (
    check_identity, check_pcscd, check_reader, check_vpcd, check_scanner, check_gpio, check_fonts, check_display,
    check_clock, check_disk, check_store, check_printer, check_counter,
)


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def run_checks(config: dict, env: Env | None = None) -> list[Check]:
    env = env or Env()
    out: list[Check] = []
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            out.append(check(config, env))
        except Exception as e:              # a broken check is a finding, not a crash
            out.append(Check(name, FAIL, f"check failed: {type(e).__name__}: {e}", "report this"))
    return out


def load_for_doctor(path: str | None) -> tuple[dict, Check]:
    """The site config, or the defaults with a failed `config` check saying why."""
    from kiosk.config.load import ConfigError, load_config, site_path

    site = site_path(path)
    try:
        if path is None and not site.exists():
            return load_config(None), Check("config", WARN, f"{site} not found: shipped defaults only",
                                            f"copy config/kiosk.example.toml to {site} and edit it")
        return load_config(site), Check("config", OK, f"{site} is valid")
    except ConfigError as e:
        return load_config(None), Check("config", FAIL, str(e), f"fix it, then: kiosk config check {site}")


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():4}  {c.name:{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    lines.append(f"\n{fails} to fix, {warns} to look at" if fails or warns else "\nready")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    config, config_check = load_for_doctor(args.config)
    checks = [config_check] + run_checks(config)
    if args.json:
        print(json.dumps({"ok": not any(c.status == FAIL for c in checks),
                          "checks": [asdict(c) for c in checks]}, ensure_ascii=False, indent=2))
    else:
        print(report(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def add_doctor_command(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check reader, pcscd, scanner, GPIO, fonts, display, clock, disk, printer")
    p.add_argument("--config", metavar="FILE",
                   help="site configuration (default: $KIOSK_CONFIG or /etc/kiosk/kiosk.toml)")
    p.add_argument("--json", action="store_true", help="machine-readable output for central IT")
    p.set_defaults(func=cmd_doctor)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiosk")
    add_doctor_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
