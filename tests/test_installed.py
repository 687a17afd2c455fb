"""The suite tests what users install: the built wheel, installed non-editable into the venv.

These are the smoke tests of that installed package, run from a directory outside the
checkout exactly as an installer or a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kiosk
import kiosk_testing
from kiosk.card.identity import SHIPPED_TRUST_DIR
from kiosk.config.load import DEFAULTS
from kiosk.sync.rest_backend import API_SPEC

CHECKOUT = Path(__file__).resolve().parents[1]
KIOSK = Path(sys.executable).parent / "kiosk"          # the console script pip installed


def run_kiosk(*args: str, cwd: Path, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(KIOSK), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def test_the_package_under_test_is_the_installed_wheel_not_the_checkout():
    package = Path(kiosk.__file__).resolve()
    assert package.is_relative_to(Path(sys.prefix).resolve()), package
    assert not package.is_relative_to(CHECKOUT) or package.is_relative_to(Path(sys.prefix).resolve())
    assert "site-packages" in package.parts
    assert Path(kiosk_testing.__file__).resolve().is_relative_to(Path(sys.prefix).resolve())
    assert not (package.parent / "locale" / "ja" / "LC_MESSAGES" / "kiosk.po").exists()


def test_everything_read_at_run_time_ships_inside_the_package():
    root = Path(kiosk.__file__).resolve().parent
    for path in (DEFAULTS, SHIPPED_TRUST_DIR / "auth_ca_2015.pem", SHIPPED_TRUST_DIR / "auth_ca_2023.pem", API_SPEC):
        assert path.resolve().is_relative_to(root) and path.is_file(), path
    assert sorted(p.parent.parent.name for p in root.glob("locale/*/LC_MESSAGES/kiosk.mo")) == \
        ["en", "ja", "ko", "pt_BR", "vi", "zh_Hans"]


def test_version(tmp_path):
    out = run_kiosk("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"kiosk {kiosk.__version__}"


def test_config_check_accepts_the_example_site_file(tmp_path):
    out = run_kiosk("config", "check", str(CHECKOUT / "config" / "kiosk.example.toml"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(": OK")


def test_demo_starts_headless_to_idle_and_exits(tmp_path):
    env = {"SDL_VIDEODRIVER": "offscreen", "XDG_DATA_HOME": str(tmp_path / "xdg"), "DISPLAY": ""}
    out = run_kiosk("demo", "--data-dir", str(tmp_path / "demo"), "--exit-when-ready", cwd=tmp_path,
                    timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr + out.stdout
    log = out.stdout
    assert "screen=idle" in log and "kiosk.ready_exit" in log, log[-3000:]
    assert log.index("screen=idle") < log.index("kiosk.ready_exit") < log.index("kiosk.stopped")


def test_doctor_json_reports_every_check(tmp_path):
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\ndata_dir = '{tmp_path / 'data'}'\n", encoding="utf-8")
    out = run_kiosk("doctor", "--config", str(site), "--json", cwd=tmp_path)
    assert out.returncode in (0, 1), out.stderr
    assert "Traceback" not in out.stderr
    report = json.loads(out.stdout)
    names = {c["name"] for c in report["checks"]}
    assert {"config", "reader", "disk", "clock"} <= names, names
