"""How the kiosk ends, with the real `kiosk run` process (SDL offscreen) and systemd's notify
socket: SIGTERM stops it cleanly within 2 s; SIGINT does nothing in kiosk mode; staff's shut
down reaches systemd through the units' root helper (systemd/kiosk-power-request)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kiosk.config.load import load_config
from kiosk.shell.launcher import after_exit, open_services
from kiosk.shell.lifecycle import POWER_REQUEST, clear_power_request, request_power
from kiosk.store.database import open_store

KIOSK = Path(sys.executable).parent / "kiosk"
HELPER = Path(__file__).resolve().parents[1] / "systemd" / "kiosk-power-request"


class Notifications:
    """systemd's side of sd_notify: a datagram socket the kiosk sends READY/STOPPING to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[str] = []

    def wait_for(self, message: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while message not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return False
            self.seen.extend(data.decode().splitlines())
        return True

    def close(self) -> None:
        self.sock.close()


def start_kiosk(tmp_path: Path, kiosk_mode: bool = True) -> tuple[subprocess.Popen, Notifications]:
    site = tmp_path / "kiosk.toml"
    site.write_text(f"[kiosk]\nid = 'lifecycle'\ndata_dir = '{tmp_path / 'data'}'\n[card]\nbackend = 'none'\n"
                    f"[ui]\nkiosk_mode = {'true' if kiosk_mode else 'false'}\nfullscreen = false\n"
                    "[logging]\nformat = 'text'\n", encoding="utf-8")
    notify = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "30000000",
           "SDL_VIDEODRIVER": "offscreen", "DISPLAY": "", "KIVY_HOME": str(tmp_path / "kivy")}
    proc = subprocess.Popen([str(KIOSK), "run", "--config", str(site)], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not notify.wait_for("READY=1", 60):
        proc.kill()
        out = proc.communicate()[0]
        notify.close()
        pytest.fail(f"the kiosk never said READY=1:\n{out[-3000:]}")
    return proc, notify


def stop_within(proc: subprocess.Popen, seconds: float) -> tuple[float, str]:
    start = time.monotonic()
    try:
        out = proc.communicate(timeout=seconds + 10)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = proc.communicate()[0]
        pytest.fail(f"still running {seconds + 10:.0f} s after the signal:\n{out[-3000:]}")
    return time.monotonic() - start, out


@pytest.mark.slow
def test_sigterm_stops_the_kiosk_cleanly_within_two_seconds(tmp_path):
    proc, notify = start_kiosk(tmp_path)
    try:
        time.sleep(0.5)                     # serving: the UI loop and the workers are running
        proc.send_signal(signal.SIGTERM)
        took, out = stop_within(proc, 2.0)
        assert proc.returncode == 0, out[-3000:]
        assert took <= 2.0, f"{took:.2f} s"
        assert notify.wait_for("STOPPING=1", 1)
        assert "kiosk.signal" in out and "SIGTERM" in out and "kiosk.stopped" in out
        assert "Traceback" not in out
    finally:
        notify.close()
    # The store was closed, not just abandoned: it opens again at once (no lock left behind).
    open_store(tmp_path / "data" / "kiosk.db").close()
    assert not (tmp_path / "data" / POWER_REQUEST).exists()     # a stop never asks to power off


@pytest.mark.slow
def test_sigint_is_ignored_in_kiosk_mode(tmp_path):
    proc, notify = start_kiosk(tmp_path, kiosk_mode=True)
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None, "a Ctrl+C on the kiosk's tty must not end it"
        proc.send_signal(signal.SIGTERM)
        took, out = stop_within(proc, 2.0)
        assert proc.returncode == 0 and took <= 2.0
    finally:
        notify.close()


@pytest.mark.slow
def test_sigint_stops_it_outside_kiosk_mode(tmp_path):
    proc, notify = start_kiosk(tmp_path, kiosk_mode=False)
    try:
        proc.send_signal(signal.SIGINT)
        took, out = stop_within(proc, 2.0)
        assert proc.returncode == 0 and took <= 2.0, out[-3000:]
        assert "SIGINT" in out and "kiosk.stopped" in out
    finally:
        notify.close()


# -- staff shut down: the app's request, the root helper's action -------------------------------

def fake_systemctl(tmp_path: Path) -> tuple[dict, Path]:
    """A `systemctl` first on PATH that records its arguments (the helper must not power this
    machine off)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    record = tmp_path / "systemctl.args"
    tool = bin_dir / "systemctl"
    tool.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


def run_helper(state: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(HELPER), str(state)], env=env, capture_output=True, text=True, timeout=30)


def test_staff_shutdown_leaves_a_request_the_root_helper_carries_out_once(tmp_path):
    config = load_config(None, [("test", {"kiosk": {"data_dir": str(tmp_path / "data")}, "card": {"backend": "none"}})])
    services = open_services(config)
    services.request_exit("shutdown")
    services.request_exit("stop")                    # a SIGTERM on the way out changes nothing
    services.close()
    after_exit(services)
    request = tmp_path / "data" / POWER_REQUEST
    assert request.read_text() == "poweroff\n" and request.stat().st_mode & 0o777 == 0o600
    env, record = fake_systemctl(tmp_path)
    out = run_helper(tmp_path / "data", env)
    assert out.returncode == 0, out.stderr
    assert record.read_text().split("\n")[0] == "--no-block poweroff"
    assert not request.exists()
    assert run_helper(tmp_path / "data", env).returncode == 0      # consumed: not done twice
    assert record.read_text().count("poweroff") == 1


@pytest.mark.parametrize("how", ["restart", "stop", None])
def test_restart_and_stop_ask_systemd_for_nothing(tmp_path, how):
    config = load_config(None, [("test", {"kiosk": {"data_dir": str(tmp_path / "data")}, "card": {"backend": "none"}})])
    services = open_services(config)
    if how is not None:
        services.request_exit(how)
    services.close()
    after_exit(services)
    assert not (tmp_path / "data" / POWER_REQUEST).exists()
    env, record = fake_systemctl(tmp_path)
    assert run_helper(tmp_path / "data", env).returncode == 0
    assert not record.exists()


def test_the_helper_ignores_what_the_app_did_not_write(tmp_path):
    env, record = fake_systemctl(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    (state / POWER_REQUEST).write_text("rm -rf /\n")
    assert run_helper(state, env).returncode == 0 and not (state / POWER_REQUEST).exists()
    target = tmp_path / "elsewhere"
    target.write_text("poweroff\n")
    (state / POWER_REQUEST).symlink_to(target)
    out = run_helper(state, env)
    assert out.returncode == 0 and "not a plain file" in out.stderr
    assert not (state / POWER_REQUEST).is_symlink() and target.exists()
    assert not record.exists()


def test_a_request_left_by_an_earlier_run_is_void(tmp_path):
    assert request_power(tmp_path, "shutdown")
    clear_power_request(tmp_path)
    clear_power_request(tmp_path)                    # nothing there: fine
    assert not (tmp_path / POWER_REQUEST).exists()
    assert request_power(tmp_path, "restart") is False
