"""Deployment files: systemd units (systemd-analyze verify), journald, udev, Kivy touch config, install-pi.sh."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config.settings import SerialScannerSettings

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
INSTALL = REPO / "scripts" / "install-pi.sh"
UNITS = ("kiosk.service", "kiosk-cage.service")
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)")


def unit_entries(name: str) -> dict[str, list[str]]:
    """Section.Key -> values in order (systemd allows a key more than once)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def words(entries: dict[str, list[str]], key: str) -> list[str]:
    return [w for v in entries.get(key, []) for w in v.split()]


def verify(tmp_path: Path, name: str, edit=lambda text: text) -> list[str]:
    """systemd-analyze verify on a copy whose binaries point at a stub (CI has no /opt/kiosk or cage).
    Returns the problems: a non-zero exit, or any warning about the unit itself."""
    stub = tmp_path / "bin" / "stub"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (SYSTEMD / name).read_text(encoding="utf-8")
    text = text.replace("/opt/kiosk/current/venv/bin/kiosk", str(stub)).replace("/usr/bin/cage", str(stub))
    text = text.replace("/usr/local/libexec/kiosk-power-request", str(stub))
    text = text.replace("/usr/bin/python3 -I /usr/local/libexec/kiosk-release-guard", str(stub))
    unit = tmp_path / name
    unit.write_text(edit(text), encoding="utf-8")
    out = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    problems = [line for line in out.stderr.splitlines()
                if line.strip() and not line.startswith(("/usr/lib/systemd/", "/lib/systemd/", "/etc/systemd/",
                                                         "/run/systemd/"))]
    if out.returncode != 0:
        problems.append(f"exit {out.returncode}")
    return problems


# -- systemd-analyze verify ------------------------------------------------------------------------

@needs_analyze
@pytest.mark.parametrize("name", UNITS)
def test_units_verify_clean(tmp_path, name):
    assert verify(tmp_path, name) == []


@needs_analyze
@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("Restart=always", "Restart=sometimes"), "restart specifier"),
    (lambda t: t.replace("WatchdogSec=30", "WatchdogSecs=30"), "Unknown key"),
])
def test_verify_catches_mistakes(tmp_path, edit, expected):
    problems = verify(tmp_path, "kiosk.service", edit)
    assert any(expected in p for p in problems), problems


# -- what the units promise ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", UNITS)
def test_unit_contract(name):
    u = unit_entries(name)
    assert u["Service.Type"] == ["notify"]
    assert u["Service.Restart"] == ["always"]
    assert u["Unit.StartLimitIntervalSec"] == ["0"]                 # never stops trying
    watchdog = int(u["Service.WatchdogSec"][0])
    assert 10 <= watchdog <= 60
    assert u["Service.User"] == ["kiosk"]
    assert sorted(words(u, "Service.SupplementaryGroups")) == sorted(["video", "render", "input", "gpio", "dialout"])
    assert "pcscd.socket" in words(u, "Unit.Wants") and "pcscd.socket" in words(u, "Unit.After")
    assert "getty@tty1.service" in words(u, "Unit.Conflicts")
    other = ({"kiosk.service", "kiosk-cage.service"} - {name}).pop()
    assert other in words(u, "Unit.Conflicts")                        # never both on tty1
    assert u["Service.TTYPath"] == ["/dev/tty1"]
    env = words(u, "Service.Environment")
    for setting in ("KIVY_NO_ARGS=1", "KIVY_HOME=/var/lib/kiosk/kivy", "KCFG_KIVY_EXIT_ON_ESCAPE=0",
                    "KCFG_GRAPHICS_FULLSCREEN=auto", "KCFG_GRAPHICS_SHOW_CURSOR=0"):
        assert setting in env
    assert u["Service.StateDirectory"] == ["kiosk"]
    assert u["Service.NoNewPrivileges"] == ["yes"] and u["Service.ProtectSystem"] == ["strict"]
    assert u["Service.CapabilityBoundingSet"] == [""]
    # Hardening that would break Kivy, GPIO or the card reader must stay out.
    for breaker in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProcSubset", "MemoryDenyWriteExecute",
                    "ProtectClock", "PrivateNetwork", "SystemCallFilter"):
        assert f"Service.{breaker}" not in u, breaker
    assert u["Install.WantedBy"] == ["multi-user.target"]


def test_console_unit_specifics():
    u = unit_entries("kiosk.service")
    assert u["Service.NotifyAccess"] == ["main"]
    assert "SDL_VIDEODRIVER=kmsdrm" in words(u, "Service.Environment")
    assert u["Service.ExecStart"] == ["/opt/kiosk/current/venv/bin/kiosk run --config /etc/kiosk/kiosk.toml"]


def test_cage_unit_specifics():
    u = unit_entries("kiosk-cage.service")
    assert u["Service.NotifyAccess"] == ["all"]                      # the kiosk is cage's child
    exec_start = u["Service.ExecStart"][0].split()
    assert exec_start[0] == "/usr/bin/cage" and "-s" not in exec_start  # no VT switching for patrons
    assert exec_start[exec_start.index("--") + 1] == "/opt/kiosk/current/venv/bin/kiosk"
    assert u["Service.PAMName"] == ["login"]
    assert "SDL_VIDEODRIVER=x11" in words(u, "Service.Environment")    # Kivy's SDL has no Wayland driver


def test_watchdog_is_pinged_well_within_its_period():
    from kiosk.shell.sd_notify import SystemdNotifier

    seconds = int(unit_entries("kiosk.service")["Service.WatchdogSec"][0])
    n = SystemdNotifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": str(seconds * 1_000_000)})
    assert n.ping_interval() <= seconds / 2


def test_install_prefix_matches_the_units():
    script = INSTALL.read_text(encoding="utf-8")
    assert re.search(r"^PREFIX=/opt/kiosk$", script, re.M)
    assert 'rel="$PREFIX/releases/$version"' in script and '"$PREFIX/current"' in script
    for name in UNITS:
        assert unit_entries(name)["Service.ExecStartPre"] == [
            "+/usr/bin/python3 -I /usr/local/libexec/kiosk-release-guard"]


# -- journald ----------------------------------------------------------------------------------

def test_journald_keys_are_journalds():
    text = (SYSTEMD / "journald-kiosk.conf").read_text(encoding="utf-8")
    keys = [line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")]
    assert text.count("[Journal]") == 1 and "SystemMaxUse" in keys and "ForwardToSyslog" in keys
    binary = next((p for p in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald")
                   if os.path.exists(p)), None)
    if binary is None:
        pytest.skip("systemd-journald not installed")
    table = Path(binary).read_bytes()
    for key in keys:
        assert f"Journal.{key}".encode() in table, f"journald does not know {key}"


# -- udev ------------------------------------------------------------------------------------------

_UDEV_TOKEN = re.compile(r'\s*([A-Z_]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)')
_UDEV_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ATTRS", "ENV", "SYMLINK", "GROUP", "MODE", "TAG"}


def test_udev_rule_syntax_and_purpose():
    from kiosk.config.load import load_config
    from kiosk.hardware.serial_scanner import build_serial_scanner

    rules = [line for line in (SYSTEMD / "99-kiosk-scanner.rules").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(rules) == 2
    parsed = []
    for rule in rules:
        pos, tokens = 0, []
        while pos < len(rule):
            m = _UDEV_TOKEN.match(rule, pos)
            assert m, f"cannot parse udev rule at: {rule[pos:]!r}"
            tokens.append(m.groups())
            pos = m.end()
        for key, op, _ in tokens:
            assert key.split("{")[0] in _UDEV_KEYS, key
            assert (op in ("==", "!=")) == (key.split("{")[0] in ("SUBSYSTEM", "KERNEL", "ATTRS", "ACTION")
                                             or (key.startswith("ENV") and op in ("==", "!="))), (key, op)
        parsed.append({(k, op): v for k, op, v in tokens})
    serial, hid = parsed
    assert serial[("ENV{ID_MM_DEVICE_IGNORE}", "=")] == "1"
    assert serial[("SYMLINK", "+=")] == "kiosk-scanner"
    assert "/dev/" + serial[("SYMLINK", "+=")] == build_serial_scanner(SerialScannerSettings.from_config(load_config(None))).device
    assert hid[("ENV{LIBINPUT_IGNORE_DEVICE}", "=")] == "1"


# -- Kivy touch config -------------------------------------------------------------------------------

def kivy_config(variant: str) -> str:
    out = subprocess.run(["bash", "-c", f'source "{INSTALL}"; kivy_config {variant} < "{REPO}/config/kivy-touch.ini"'],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


def kivy_input_section(tmp_path: Path, config_text: str) -> dict[str, str]:
    """What Kivy itself makes of the file on its first start (including its config upgrade)."""
    home = tmp_path / "kivy"
    home.mkdir()
    (home / "config.ini").write_text(config_text, encoding="utf-8")
    code = "import json; from kivy.config import Config; print(json.dumps(dict(Config.items('input'))))"
    env = {**os.environ, "KIVY_HOME": str(home), "KIVY_NO_ARGS": "1", "KIVY_NO_CONSOLELOG": "1",
           "KIVY_NO_FILELOG": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant, expected", [
    ("kmsdrm", {"mouse": "", "%(name)s": "probesysfs,provider=hidinput"}),
    ("cage", {"mouse": "mouse", "%(name)s": ""}),
])
def test_one_reader_per_touch_device(tmp_path, variant, expected):
    assert kivy_input_section(tmp_path, kivy_config(variant)) == expected


def test_without_the_template_kivy_would_read_touch_twice(tmp_path):
    # The trap the template avoids: Kivy's own first-start config adds the SDL mouse *and* probesysfs.
    got = kivy_input_section(tmp_path, "")
    assert got.get("mouse") == "mouse" and got.get("%(name)s", "").startswith("probesysfs")


# -- install-pi.sh ------------------------------------------------------------------------------------

def run_install(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


ROOT_TEST = REPO / "scripts" / "test-install-root.sh"


@pytest.mark.parametrize("script", [INSTALL, ROOT_TEST], ids=lambda p: p.name)
def test_install_script_syntax(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    if shutil.which("shellcheck"):
        out = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout


def test_ci_runs_the_installer_in_a_debian_root():
    """After the README's test command, .ci/run installs into a fresh Debian root (the stage is not optional)."""
    lines = [line.split("#")[0].strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in lines if line]
    assert commands.index("scripts/setup.sh test </dev/null") < commands.index("scripts/test-install-root.sh </dev/null")


def test_install_files_into_a_root(tmp_path):
    root = tmp_path / "root"
    cmdline = root / "boot" / "firmware" / "cmdline.txt"
    cmdline.parent.mkdir(parents=True)
    cmdline.write_text("console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n")
    out = run_install("--files-only", "--root", str(root))
    assert out.returncode == 0, out.stderr
    for path, mode in (("etc/systemd/system/kiosk.service", 0o644), ("etc/systemd/system/kiosk-cage.service", 0o644),
                       ("etc/systemd/journald.conf.d/kiosk.conf", 0o644),
                       ("etc/udev/rules.d/99-kiosk-scanner.rules", 0o644), ("etc/kiosk/kiosk.toml", 0o640),
                       ("etc/systemd/logind.conf.d/kiosk.conf", None), ("etc/kiosk/environment", None),
                       ("var/lib/kiosk/kivy/config.ini", None), ("usr/local/libexec/kiosk-power-request", 0o755)):
        f = root / path
        assert f.is_file(), path
        if mode is not None:
            assert f.stat().st_mode & 0o777 == mode, path
    assert (root / "var/lib/kiosk").stat().st_mode & 0o777 == 0o700
    assert (root / "etc/systemd/system/kiosk.service").read_bytes() == (SYSTEMD / "kiosk.service").read_bytes()
    assert "NAutoVTs=0" in (root / "etc/systemd/logind.conf.d/kiosk.conf").read_text()
    line = cmdline.read_text()
    assert line.count("\n") == 1 and line.startswith("console=serial0")
    for opt in ("consoleblank=0", "vt.global_cursor_default=0", "logo.nologo"):
        assert line.split().count(opt) == 1

    # Again, after the site edited its config: nothing duplicated, the site file kept.
    (root / "etc/kiosk/kiosk.toml").write_text("[kiosk]\nid = 'edited'\n")
    assert run_install("--files-only", "--root", str(root), "--cage").returncode == 0
    assert (root / "etc/kiosk/kiosk.toml").read_text() == "[kiosk]\nid = 'edited'\n"
    assert cmdline.read_text() == line
    assert "mouse = mouse" in (root / "var/lib/kiosk/kivy/config.ini").read_text()


def test_install_needs_root_or_files_only(tmp_path):
    assert run_install("--files-only").returncode == 2
    assert run_install("--bogus").returncode == 2
    if os.geteuid() != 0:
        assert run_install().returncode == 1


def test_example_config_is_what_gets_installed():
    from kiosk.config.load import load_config

    load_config(REPO / "config" / "kiosk.example.toml")
