"""A signed push can never brick a kiosk (issue 14), shown on the real `kiosk run` process.

The test plays systemd: it starts `kiosk run` (SDL offscreen), starts it again whenever it
exits (Restart=always), and talks to it only as central IT does, over the management
endpoint (TLS with a client certificate on 127.0.0.1). Each layer that bricked a kiosk
before is either refused before it is stored, or, when it is on disk anyway (stored by
an older release, or a file it names went bad afterwards, or the start crashed before
READY), set aside at the next start for the last good layer, with the kiosk serving
again within 60 s, the rollback on /health and in the audit, and the version
high-water mark kept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from kiosk.store.audit import Audit
from kiosk.store.database import AtomicJSONStorage, open_store
from kiosk_testing.fleet import free_port, https, make_bundle, site_text

KIOSK = Path(sys.executable).parent / "kiosk"
SERVE_BUDGET = 60.0
# Markers inside the secret files: none may ever reach a log, a reply or the audit.
SECRET_MARK = "SECRET-7f3a91"


def _now() -> datetime:
    return datetime.now().astimezone()


class Supervisor:
    """systemd's part: start `kiosk run`, start it again when it exits, stop it at the end."""

    def __init__(self, tmp_path: Path, site: Path, url: str, pki) -> None:
        self.tmp_path, self.site, self.url, self.pki = tmp_path, site, url, pki
        self.log = tmp_path / "kiosk.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "DISPLAY": "",
               "KIVY_HOME": str(self.tmp_path / "kivy")}
        env.pop("NOTIFY_SOCKET", None)
        out = self.log.open("ab")
        self.proc = subprocess.Popen([str(KIOSK), "run", "--config", str(self.site)], cwd=self.tmp_path, env=env,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        self.starts += 1

    def keep_running(self) -> None:
        """Restart=always: a process that has exited is started again."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def health(self) -> tuple[int, dict] | None:
        try:
            with https(self.pki) as s:
                reply = s.get(self.url + "/health", timeout=3)
        except OSError:
            return None
        return reply.status_code, reply.json()

    def wait_serving(self, budget: float = SERVE_BUDGET) -> dict:
        """/health answers 200 with the app READY, restarting the process as systemd would."""
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            self.keep_running()
            got = self.health()
            if got is not None and got[0] == 200 and got[1].get("ready"):
                return got[1]
            time.sleep(0.2)
        pytest.fail(f"not serving within {budget:.0f} s:\n{self.log_text()[-4000:]}")

    def push(self, body: bytes):
        with https(self.pki) as s:
            return s.put(self.url + "/config", data=body, timeout=15)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


@pytest.fixture
def kiosk(tmp_path: Path, fleet_keys, fleet_pki):
    port = free_port()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    extra = (f"port = {port}\nsecrets_dir = '{secrets}'\n\n"
             "[ui]\nkiosk_mode = false\nfullscreen = false\n\n[card]\nbackend = 'none'\n\n"
             f"[catalogue.local]\npath = '{tmp_path / 'ils.json'}'\nseed_demo = true\n\n"
             "[logging]\nformat = 'text'\n")
    site = tmp_path / "kiosk.toml"
    site.write_text(site_text(tmp_path / "data", fleet_keys, fleet_pki, kiosk_id="lkg-01", extra=extra),
                    encoding="utf-8")
    sup = Supervisor(tmp_path, site, f"https://127.0.0.1:{port}", fleet_pki)
    yield sup
    sup.stop()


def _breaking_layers(tmp_path: Path, pki) -> dict[str, dict]:
    """The layers of issue 14 that passed signature, schema and file checks and then
    crashed the app on every start."""
    s = tmp_path / "secrets"
    (s / "token-binary").write_bytes(b"\xff\xfe" + SECRET_MARK.encode() + b"\x00\x9c")
    (s / "token-lines").write_text(f"{SECRET_MARK}\nsecond line\n", encoding="utf-8")
    (s / "sip2-binary").write_bytes(b"\x80" + SECRET_MARK.encode() + b"\xc3\x28")
    (s / "sip2-lines").write_text(f"{SECRET_MARK}\r\nmore\n", encoding="utf-8")
    (s / "client.key").write_bytes(Path(pki.client_key).read_bytes())
    (tmp_path / "not-a-ca.pem").write_text("this is not a certificate\n", encoding="utf-8")
    return {
        "font": {"ui": {"font": "/etc/passwd"}},
        "token-binary": {"catalogue": {"rest": {"token_file": str(s / "token-binary")}}},
        "token-lines": {"catalogue": {"rest": {"token_file": str(s / "token-lines")}}},
        "sip2-binary": {"catalogue": {"sip2": {"password_file": str(s / "sip2-binary")}}},
        "sip2-lines": {"catalogue": {"sip2": {"password_file": str(s / "sip2-lines")}}},
        "key-without-cert": {"catalogue": {"rest": {"client_key": str(s / "client.key")}}},
        "ca-not-a-cert": {"catalogue": {"sip2": {"ca_file": str(tmp_path / "not-a-ca.pem")}}},
    }


def _layer_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "signed_config.json"


def _store_as_an_older_release_did(tmp_path: Path, body: bytes, version: int) -> None:
    """The layer file exactly as a release without these checks wrote it when it accepted `body`."""
    import hashlib

    _layer_file(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    storage = AtomicJSONStorage(_layer_file(tmp_path), ensure_ascii=False)
    try:
        storage.write({"version": version, "digest": hashlib.sha256(body).hexdigest(),
                       "accepted_at": _now().isoformat(timespec="seconds"), "bundle": body.decode("utf-8")})
    finally:
        storage.close()


def _audit(tmp_path: Path) -> list[tuple[str, dict]]:
    store = open_store(tmp_path / "data" / "kiosk.db")
    try:
        return [(e["action"], e["fields"]) for e in Audit(store, _now).timeline()]
    finally:
        store.close()


@pytest.mark.slow
def test_every_breaking_layer_is_refused_before_it_is_stored(kiosk, tmp_path, fleet_keys, fleet_pki):
    layers = _breaking_layers(tmp_path, fleet_pki)
    kiosk.wait_serving()
    log = kiosk.log_text()
    # Central IT's endpoint listens before the window, fonts and backends a layer could break are built.
    assert log.index("management.listening") < log.index("kivy:") < log.index("screen=idle"), log[-3000:]
    for version, (name, layer) in enumerate(layers.items(), start=1):
        reply = kiosk.push(make_bundle(fleet_keys.private, layer, version, now=_now()))
        assert reply.status_code == 422, (name, reply.text)
        assert reply.json()["code"] == "unusable", (name, reply.text)
        assert SECRET_MARK not in reply.text
        assert not _layer_file(tmp_path).exists(), name           # nothing stored
        status, health = kiosk.health() or (0, {})
        assert status == 200 and health["ready"] and health["config_version"] is None, name
    assert kiosk.proc is not None and kiosk.proc.poll() is None and kiosk.starts == 1   # never crashed

    # A catastrophic-backtracking pattern runs under RE2 in linear time: it is harmless, so it applies.
    reply = kiosk.push(make_bundle(fleet_keys.private, {"loans": {"item_pattern": r"^(\d+)+X$"}}, 50, now=_now()))
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 10
    while kiosk.health()[1]["config_version"] != 50:       # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.2)
    kiosk.stop()
    assert SECRET_MARK not in kiosk.log_text()
    assert all(SECRET_MARK not in json.dumps(fields) for _, fields in _audit(tmp_path))


@pytest.mark.slow
def test_a_stored_breaking_layer_is_rolled_back_and_the_kiosk_serves_within_60_s(kiosk, tmp_path, fleet_keys,
                                                                                fleet_pki):
    layers = _breaking_layers(tmp_path, fleet_pki)
    for version, (name, layer) in enumerate(layers.items(), start=1):
        body = make_bundle(fleet_keys.private, layer, version, now=_now())
        _store_as_an_older_release_did(tmp_path, body, version)
        started = time.monotonic()
        health = kiosk.wait_serving()
        took = time.monotonic() - started
        assert took < SERVE_BUDGET, (name, took)
        assert health["config_version"] is None, name                       # the site file alone
        assert health["config_high_water"] == version, name                 # never lowered
        rollback = health["last_rollback"]
        assert rollback["from_version"] == version and rollback["to_version"] is None, (name, rollback)
        assert health["rolled_back_at_start"] is True
        kiosk.stop()
        # The rolled-back version is not new to this kiosk: the same bundle is refused as a replay.
        kiosk.wait_serving()
        assert kiosk.push(body).json()["code"] == "replayed", name
        kiosk.stop()
    actions = _audit(tmp_path)
    rolled = [f for a, f in actions if a == "config.rolled_back"]
    assert [f["from_version"] for f in rolled] == list(range(1, len(layers) + 1))
    assert SECRET_MARK not in kiosk.log_text()
    assert all(SECRET_MARK not in json.dumps(fields) for _, fields in actions)


@pytest.mark.slow
def test_rollback_goes_to_the_last_good_layer_and_a_later_version_is_accepted(kiosk, tmp_path, fleet_keys):
    secrets = tmp_path / "secrets"
    token = secrets / "rest-token"
    token.write_text("good-token-value\n", encoding="utf-8")
    kiosk.wait_serving()

    # v1, a live key: applied at the next idle moment and, once running, the last good layer.
    good = make_bundle(fleet_keys.private, {"timeouts": {"scanning": 200}}, 1, now=_now())
    assert kiosk.push(good).status_code == 200
    deadline = time.monotonic() + 20
    while json.loads(_layer_file(tmp_path).read_text()).get("good_version") != 1:
        assert time.monotonic() < deadline, kiosk.log_text()[-3000:]
        time.sleep(0.2)

    # v2 names a secret file that builds today (a restart key: the app restarts itself) ...
    reply = kiosk.push(make_bundle(fleet_keys.private, {"catalogue": {"rest": {"token_file": str(token)}}}, 2,
                                   now=_now()))
    assert reply.status_code == 200, reply.text
    assert kiosk.wait_exit() == 0                                           # restart for a restart key
    # ... and the file goes bad before the next start.
    token.write_bytes(b"\xff" + SECRET_MARK.encode() + b"\n\x00")
    health = kiosk.wait_serving()
    assert health["config_version"] == 1 and health["config_high_water"] == 2
    assert health["last_rollback"]["from_version"] == 2 and health["last_rollback"]["to_version"] == 1
    assert "token_file" in health["last_rollback"]["reason"]

    # v3 builds, but the start with it crashes before READY (killed, as a crash would end it).
    reply = kiosk.push(make_bundle(fleet_keys.private, {"hardware": {"scan_debounce_ms": 700}}, 3, now=_now()))
    assert reply.status_code == 200, reply.text
    assert kiosk.wait_exit() == 0
    kiosk.start()
    deadline = time.monotonic() + 30
    while "trial" not in json.loads(_layer_file(tmp_path).read_text()):
        assert time.monotonic() < deadline and kiosk.proc.poll() is None, kiosk.log_text()[-3000:]
        time.sleep(0.01)
    kiosk.proc.send_signal(signal.SIGKILL)
    kiosk.proc.wait()
    started = time.monotonic()
    health = kiosk.wait_serving()                                           # systemd starts it again
    assert time.monotonic() - started < SERVE_BUDGET
    assert health["config_version"] == 1 and health["config_high_water"] == 3
    assert health["last_rollback"]["from_version"] == 3 and "READY" in health["last_rollback"]["reason"]

    # The high-water mark holds: v3 again is a replay, v2 is older; v4 is accepted.
    assert kiosk.push(make_bundle(fleet_keys.private, {"hardware": {"scan_debounce_ms": 700}}, 3,
                                  now=_now())).json()["code"] == "replayed"
    assert kiosk.push(good).json()["code"] == "older_version"
    reply = kiosk.push(make_bundle(fleet_keys.private, {"timeouts": {"scanning": 180}}, 4, now=_now()))
    assert reply.status_code == 200, reply.text
    kiosk.stop()
    rolled = [f for a, f in _audit(tmp_path) if a == "config.rolled_back"]
    assert [(f["from_version"], f["to_version"]) for f in rolled] == [(2, 1), (3, 1)]
    assert SECRET_MARK not in kiosk.log_text()
