"""Signed software releases: the manifest, its own signing purpose, replay/downgrade
refusal, staging over real HTTP, and the start guard's trial, confirm and rollback on
real directories and symlinks. The pip install itself runs in the Debian-root test
(scripts/test-install-root.sh)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kiosk_testing.fuzz import FUZZ
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk.cli.main import main as kiosk_main
from kiosk.config.load import load_config
from kiosk.config.signed import BundleRefused, sign_bundle, verify_bundle
from kiosk.release import guard as guard_mod
from kiosk.release.fetch import ReleaseFetcher
from kiosk.release.guard import ReleaseState, guard, load_state, parse_version, save_state
from kiosk.release.install import verify_staged
from kiosk.release.manifest import REFUSAL_CODES, ReleaseRefused, check_files, sign_manifest, verify_manifest
from kiosk.release.status import mark_ready, release_status

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
WHEEL = "library_kiosk-{v}-py3-none-any.whl"


def write_key(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def write_pub(path: Path, key: Ed25519PrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    release, config = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    return {"release": release, "config": config,
            "release_pub": write_pub(tmp_path / "release.pub", release),
            "config_pub": write_pub(tmp_path / "config.pub", config),
            "release_key": write_key(tmp_path / "release.key", release)}


def build(tmp_path: Path, keys: dict, version: str, *, name: str = "", **kw) -> Path:
    """A release directory made by `kiosk release build` from a real (tiny) wheel file and lock."""
    src = tmp_path / f"src-{version}"
    src.mkdir()
    wheel = src / WHEEL.format(v=version)
    wheel.write_bytes(b"PK\x03\x04 pretend wheel " + version.encode())
    lock = src / "kiosk.lock"
    lock.write_text("requests==2.34.2 --hash=sha256:" + "0" * 64 + "\n")
    out = tmp_path / (name or f"release-{version}")
    argv = ["release", "build", "--key", str(keys["release_key"]), "--wheel", str(wheel), "--lock", str(lock),
            "--out", str(out)]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", v]
    assert kiosk_main(argv) == 0
    return out


def site(tmp_path: Path, keys: dict, url: str = "", *, kiosk_id: str = "kiosk-01") -> dict:
    p = tmp_path / "kiosk.toml"
    p.write_text(f"""
[kiosk]
id = "{kiosk_id}"
group = "chuo"
data_dir = "{tmp_path / 'data'}"

[management]
trusted_keys = ["{keys['config_pub']}"]
release_keys = ["{keys['release_pub']}"]
release_url = "{url}"
""")
    return load_config(p)


def verify(raw: bytes, keys_list, state: ReleaseState | None = None, running: str | None = "0.1.0",
           now: datetime | None = None, kiosk_id: str = "kiosk-01"):
    return verify_manifest(raw, keys_list, kiosk_id, "chuo", state or ReleaseState(), running, now)


# -- the manifest -------------------------------------------------------------------------------

def test_a_built_release_verifies_and_its_files_match(tmp_path, keys):
    d = build(tmp_path, keys, "0.2.0")
    m = verify((d / "manifest.json").read_bytes(), [keys["release"].public_key()], now=datetime.now(timezone.utc))
    assert m.version == "0.2.0" and m.one("wheel").name == WHEEL.format(v="0.2.0")
    assert {f.role for f in m.files} == {"wheel", "lock"}
    check_files(m, d)
    (d / "kiosk.lock").write_text("requests==2.0\n")            # changed after signing
    with pytest.raises(ReleaseRefused) as e:
        check_files(m, d)
    assert e.value.code == "hash_mismatch"


def test_a_config_key_cannot_sign_a_release(tmp_path, keys):
    """The kiosk pins release keys apart from config keys: a manifest signed with the config
    key is from an unknown key."""
    files = {WHEEL.format(v="0.2.0"): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    raw = sign_manifest("0.2.0", files, keys["config"], created_at=NOW, expires_at=NOW + timedelta(days=1))
    with pytest.raises(ReleaseRefused) as e:
        verify(raw, [keys["release"].public_key()], now=NOW)
    assert e.value.code == "wrong_key"


def test_a_release_signature_never_passes_as_a_config_bundle_and_back(keys):
    """Even with one key trusted for both, each signature covers its own purpose's prefix."""
    key = keys["release"]
    both = [key.public_key()]
    files = {WHEEL.format(v="0.2.0"): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    release = json.loads(sign_manifest("0.2.0", files, key, created_at=NOW, expires_at=NOW + timedelta(days=1)))
    bundle = json.loads(sign_bundle({"timeouts": {"scanning": 90}}, key, 5, issued_at=NOW,
                                    expires_at=NOW + timedelta(days=1)))
    # The release's signature under a config bundle's format and the other way round:
    swapped_into_bundle = dict(bundle, signature=release["signature"])
    swapped_into_release = dict(release, signature=bundle["signature"])
    with pytest.raises(BundleRefused) as e:
        verify_bundle(json.dumps(swapped_into_bundle).encode(), both, "kiosk-01", "chuo", None, NOW)
    assert e.value.code == "bad_signature"
    with pytest.raises(ReleaseRefused) as e2:
        verify(json.dumps(swapped_into_release).encode(), both, now=NOW)
    assert e2.value.code == "bad_signature"
    # A whole document of one kind is never taken as the other.
    with pytest.raises(BundleRefused) as e:
        verify_bundle(json.dumps(release).encode(), both, "kiosk-01", "chuo", None, NOW)
    assert e.value.code == "malformed"
    with pytest.raises(ReleaseRefused) as e2:
        verify(json.dumps(bundle).encode(), both, now=NOW)
    assert e2.value.code == "malformed"
    # Re-signing the release payload with the config prefix (what a config signer would make):
    from kiosk.config.signed import SIGNED_PREFIX, canonical_json

    forged = dict(release)
    forged["signature"] = dict(release["signature"])
    import base64
    forged["signature"]["value"] = base64.b64encode(
        key.sign(SIGNED_PREFIX + canonical_json(release["payload"]))).decode()
    with pytest.raises(ReleaseRefused) as e2:
        verify(json.dumps(forged).encode(), both, now=NOW)
    assert e2.value.code == "bad_signature"


@pytest.mark.parametrize("version,state,running,code", [
    ("0.2.0", ReleaseState(high_water="0.2.0"), "0.1.0", "replayed"),
    ("0.1.9", ReleaseState(high_water="0.2.0"), "0.1.0", "older_version"),
    ("0.1.0", ReleaseState(), "0.1.0", "replayed"),             # the running one, before any state exists
    ("0.0.9", ReleaseState(), "0.1.0", "older_version"),
    ("0.3.0", ReleaseState(high_water="0.2.0", rolled_back=["0.3.0"]), "0.2.0", "rolled_back"),
])
def test_downgrades_replays_and_rolled_back_versions_are_refused(keys, version, state, running, code):
    files = {WHEEL.format(v=version): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    raw = sign_manifest(version, files, keys["release"], created_at=NOW, expires_at=NOW + timedelta(days=1))
    with pytest.raises(ReleaseRefused) as e:
        verify(raw, [keys["release"].public_key()], state, running, NOW)
    assert e.value.code == code


def test_versions_compare_as_numbers_not_text(keys):
    files = {WHEEL.format(v="0.10.0"): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    raw = sign_manifest("0.10.0", files, keys["release"], created_at=NOW, expires_at=NOW + timedelta(days=1))
    assert verify(raw, [keys["release"].public_key()], ReleaseState(high_water="0.9.0"), "0.9.0", NOW).version
    for bad in ("1.0rc1", "01.2", "1", "v1.2", "1.2.3.4.5"):
        with pytest.raises(ValueError):
            parse_version(bad)


def test_expired_other_target_tampered_and_wheel_version_mismatch_are_refused(keys):
    key, pins = keys["release"], [keys["release"].public_key()]
    files = {WHEEL.format(v="0.2.0"): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    raw = sign_manifest("0.2.0", files, key, created_at=NOW, expires_at=NOW + timedelta(days=1))
    assert _code(raw, pins, now=NOW + timedelta(days=2)) == "expired"
    assert _code(sign_manifest("0.2.0", files, key, created_at=NOW, expires_at=NOW + timedelta(days=1),
                               target_kiosk="kiosk-99"), pins, now=NOW) == "other_target"
    assert _code(raw.replace(b'"0.2.0"', b'"0.2.1"', 1), pins, now=NOW) == "bad_signature"
    doc = json.loads(raw)
    doc["payload"]["files"]["kiosk.lock"]["sha256"] = "c" * 64
    assert _code(json.dumps(doc).encode(), pins, now=NOW) == "bad_signature"
    other = {WHEEL.format(v="0.2.1"): ("a" * 64, 10, "wheel"), "kiosk.lock": ("b" * 64, 5, "lock")}
    assert _code(sign_manifest("0.2.0", other, key, created_at=NOW, expires_at=NOW + timedelta(days=1)),
                 pins, now=NOW) == "malformed"
    assert _code(b"\xff" * 10, pins, now=NOW) == "malformed"
    assert _code(b"x" * 70000, pins, now=NOW) == "too_large"
    with pytest.raises(ReleaseRefused):
        sign_manifest("0.2.0", {"../x.whl": ("a" * 64, 1, "wheel"), "l": ("b" * 64, 1, "lock")}, key,
                      created_at=NOW, expires_at=NOW + timedelta(days=1))


def _code(raw, pins, **kw) -> str:
    with pytest.raises(ReleaseRefused) as e:
        verify(raw, pins, **kw)
    return e.value.code


# -- staging over HTTP, then the root installer's own checks ---------------------------------------

class _Server:
    def __init__(self, root: Path) -> None:
        handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None  # type: ignore[method-assign]
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def web(tmp_path):
    root = tmp_path / "web"
    root.mkdir()
    s = _Server(root)
    s.root = root
    yield s
    s.close()


def publish(release: Path, web) -> str:
    dest = web.root / release.name
    shutil.copytree(release, dest)
    return f"{web.url}/{release.name}/manifest.json"


def test_a_polled_release_is_downloaded_checked_and_staged_once(tmp_path, keys, web):
    url = publish(build(tmp_path, keys, "0.2.0"), web)
    config = site(tmp_path, keys, url)
    staged: list[str] = []
    f = ReleaseFetcher(config, state_dir=tmp_path / "state", running="0.1.0", on_staged=staged.append)
    body = (web.root / "release-0.2.0" / "manifest.json").read_bytes()
    out = f.apply(body)
    assert out.applied and out.version == "0.2.0" and staged == ["0.2.0"]
    stage = tmp_path / "data" / "release-staged" / "0.2.0"
    assert sorted(p.name for p in stage.iterdir()) == sorted(["manifest.json", "kiosk.lock", WHEEL.format(v="0.2.0")])
    # The root installer's checks, on its own copy of what the kiosk user staged:
    work = tmp_path / "work"
    work.mkdir()
    assert verify_staged(stage, work, config, tmp_path / "state", "0.1.0", datetime.now(timezone.utc)).version == "0.2.0"
    # A staged file changed by the kiosk user after the download is refused by the installer.
    (stage / "kiosk.lock").write_text("evil==1\n")
    work2 = tmp_path / "work2"
    work2.mkdir()
    with pytest.raises(ReleaseRefused) as e:
        verify_staged(stage, work2, config, tmp_path / "state", "0.1.0", datetime.now(timezone.utc))
    assert e.value.code == "hash_mismatch"


def test_a_file_changed_on_the_server_is_not_staged(tmp_path, keys, web):
    url = publish(build(tmp_path, keys, "0.2.0"), web)
    (web.root / "release-0.2.0" / WHEEL.format(v="0.2.0")).write_bytes(b"PK\x03\x04 other wheel 0.2.0")
    f = ReleaseFetcher(site(tmp_path, keys, url), state_dir=tmp_path / "state", running="0.1.0")
    out = f.apply((web.root / "release-0.2.0" / "manifest.json").read_bytes())
    assert not out.applied and out.code == "hash_mismatch"
    assert not any((tmp_path / "data" / "release-staged").iterdir())


def test_kiosk_release_fetch_refuses_a_replay_of_the_installed_release(tmp_path, keys, web, capsys):
    url = publish(build(tmp_path, keys, "0.2.0"), web)
    (tmp_path / "kiosk.toml").write_text("")
    site(tmp_path, keys, url)
    state = tmp_path / "state"
    save_state(state, ReleaseState(known_good="0.2.0", high_water="0.2.0"))
    rc = kiosk_main(["release", "fetch", "--config", str(tmp_path / "kiosk.toml"), "--state-dir", str(state)])
    assert rc == 1 and "replayed" in capsys.readouterr().err
    assert not (tmp_path / "data" / "release-staged" / "0.2.0").exists()


# -- the guard -------------------------------------------------------------------------------------

def fake_release(prefix: Path, version: str) -> None:
    bin_ = prefix / "releases" / version / "venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text("#!/bin/sh\n")


class Installer:
    """Stands in for the child `python -m kiosk.release.install` (run for real in the Debian root):
    applies the same version rules from the durable state, then lays the release out."""

    def __init__(self, prefix: Path, state_dir: Path) -> None:
        self.prefix, self.state_dir, self.calls = prefix, state_dir, []

    def __call__(self, staged: Path, known_good: str):
        version = staged.name
        self.calls.append((version, known_good))
        refused = load_state(self.state_dir).refuses(version)
        if refused:
            return None, f"refused: {refused[0]}"
        fake_release(self.prefix, version)
        return version, ""


def stage(data: Path, version: str) -> None:
    (data / "release-staged" / version).mkdir(parents=True)


@pytest.fixture
def box(tmp_path):
    prefix, state, data = tmp_path / "opt", tmp_path / "state", tmp_path / "data"
    data.mkdir()
    fake_release(prefix, "0.1.0")
    os.symlink("releases/0.1.0", prefix / "current")
    return prefix, state, data, Installer(prefix, state)


def run(box, now=NOW, **kw):
    prefix, state, data, installer = box
    return guard(prefix, state, data, installer, now, **kw)


def test_an_upgrade_goes_on_trial_and_is_kept_once_it_reaches_ready(box):
    prefix, state, data, installer = box
    assert run(box) == []
    assert load_state(state).known_good == "0.1.0" and load_state(state).high_water == "0.1.0"
    stage(data, "0.2.0")
    assert run(box) == ["release 0.2.0 installed and switched to: on trial"]
    assert os.readlink(prefix / "current") == "releases/0.2.0"
    assert load_state(state).trial.previous == "0.1.0"
    assert not (data / "release-staged" / "0.2.0").exists()
    mark_ready(data, "0.2.0")
    assert run(box) == ["release 0.2.0 reached READY: kept"]
    s = load_state(state)
    assert s.known_good == "0.2.0" and s.trial is None and s.high_water == "0.2.0"
    assert release_status(state, running="0.2.0").known_good == "0.2.0"


def test_a_release_that_never_reaches_ready_is_rolled_back_after_three_starts_and_never_again(box):
    prefix, state, data, installer = box
    stage(data, "0.2.0")
    run(box)                                                    # start 1 of 0.2.0
    assert run(box) == ["release 0.2.0 on trial: start 2 of 3"]
    assert run(box) == ["release 0.2.0 on trial: start 3 of 3"]
    assert run(box) == ["release 0.2.0 rolled back to 0.1.0: not READY after 3 starts"]
    assert os.readlink(prefix / "current") == "releases/0.1.0"
    assert not (prefix / "releases" / "0.2.0").exists()
    s = load_state(state)
    assert s.rolled_back == ["0.2.0"] and s.last_rollback["to"] == "0.1.0" and s.high_water == "0.2.0"
    status = release_status(state, running="0.1.0")
    assert status.last_rollback["version"] == "0.2.0" and status.trial is None
    # The same release staged again (a replay) is refused; a later one is installed.
    stage(data, "0.2.0")
    assert run(box) == ["staged release 0.2.0 not installed: refused: rolled_back"]
    assert os.readlink(prefix / "current") == "releases/0.1.0"
    stage(data, "0.1.5")
    assert run(box) == ["staged release 0.1.5 not installed: refused: older_version"]
    stage(data, "0.2.1")
    assert run(box)[-1] == "release 0.2.1 installed and switched to: on trial"


def test_a_deadline_rolls_back_a_release_that_keeps_the_unit_starting(box):
    prefix, state, data, installer = box
    stage(data, "0.2.0")
    run(box)
    assert run(box, now=NOW + timedelta(hours=1))[0].startswith("release 0.2.0 rolled back to 0.1.0: not READY by")


def test_the_high_water_mark_survives_a_damaged_state_file(box):
    prefix, state, data, installer = box
    stage(data, "0.2.0")
    run(box)
    mark_ready(data, "0.2.0")
    run(box)
    (state / "state.json").write_text("{not json")
    run(box)                                                    # rebuilt from the releases on disk
    assert load_state(state).high_water == "0.2.0"
    stage(data, "0.2.0")
    assert run(box) == ["staged release 0.2.0 not installed: refused: replayed"]


def test_a_current_link_to_nothing_goes_back_to_the_known_good_release(box):
    prefix, state, data, installer = box
    run(box)
    os.replace(prefix / "current", prefix / "old")
    os.symlink("releases/9.9.9", prefix / "current")
    assert run(box) == ["current pointed at nothing usable: back to 0.1.0"]
    assert os.readlink(prefix / "current") == "releases/0.1.0"


def test_the_guard_runs_with_the_system_python_alone(tmp_path, box):
    """It is copied to /usr/local/libexec and run with python3 -I: no kiosk, no venv."""
    prefix, state, data, _ = box
    script = tmp_path / "kiosk-release-guard"
    shutil.copyfile(guard_mod.__file__, script)
    out = subprocess.run(["/usr/bin/python3", "-I", str(script), "--prefix", str(prefix), "--state-dir", str(state),
                          "--data-dir", str(data)], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert load_state(state).known_good == "0.1.0"


# -- fuzzing: ReleaseRefused is the only way out ---------------------------------------------------

FUZZ_KEY = Ed25519PrivateKey.generate()
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=4), max_leaves=12)


def _signed_payload(payload) -> bytes:
    import base64

    from kiosk.config.signed import canonical_json, key_id
    from kiosk.release.manifest import SIGNED_PREFIX

    sig = base64.b64encode(FUZZ_KEY.sign(SIGNED_PREFIX + canonical_json(payload))).decode()
    return json.dumps({"format": "kiosk-release/1", "payload": payload,
                       "signature": {"alg": "Ed25519", "key_id": key_id(FUZZ_KEY.public_key()), "value": sig}}).encode()


def _verdict(raw: bytes) -> None:
    try:
        verify_manifest(raw, [FUZZ_KEY.public_key()], "kiosk-01", "chuo", ReleaseState(high_water="0.1.0"),
                        "0.1.0", NOW)
    except ReleaseRefused as e:
        assert e.code in REFUSAL_CODES


_GOOD = {"version": "0.2.0", "created_at": "2026-12-01T08:00:00+00:00", "expires_at": "2026-12-08T08:00:00+00:00",
         "target": None, "files": {WHEEL.format(v="0.2.0"): {"sha256": "a" * 64, "size": 10, "role": "wheel"},
                                   "kiosk.lock": {"sha256": "b" * 64, "size": 5, "role": "lock"}}}


@FUZZ
@given(raw=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()))
@example(raw=b"[" * 100_000)
@example(raw=b'{"a": 1, "a": 2}')
def test_any_bytes_are_a_manifest_or_a_refusal(raw):
    _verdict(raw)


@FUZZ
@given(field=st.sampled_from(sorted(_GOOD)), value=_json)
@example(field="version", value="99999999999.0")
@example(field="files", value={"x.whl": {"sha256": "a" * 64, "size": True, "role": "wheel"}})
@example(field="created_at", value="2026-12-01T08:00:00")
@example(field="files", value={"x.whl": {"sha256": "a" * 64, "size": 1, "role": "wheel"},
                               "l": {"sha256": "b" * 64, "size": 1, "role": "lock"}})
def test_any_signed_payload_is_taken_or_refused_with_a_code(field, value):
    """Signed with the pinned key, so every check after the signature runs too."""
    _verdict(_signed_payload(dict(_GOOD, **{field: value})))


def test_the_fuzzed_good_payload_is_taken():
    assert verify_manifest(_signed_payload(_GOOD), [FUZZ_KEY.public_key()], "kiosk-01", "chuo", ReleaseState(),
                           "0.1.0", NOW).version == "0.2.0"


# -- the running kiosk: poll, stage, restart at the next idle moment -------------------------------

def running(tmp_path, fleet_keys, fleet_pki, release_key, url):
    from kiosk_testing.fleet import running_kiosk_with_management

    return running_kiosk_with_management(tmp_path, fleet_keys, fleet_pki,
                                         f"release_keys = ['{release_key}']\nrelease_url = '{url}'\n")


def test_an_unreadable_release_key_leaves_the_kiosk_serving_without_releases(tmp_path, web, fleet_keys, fleet_pki,
                                                                            caplog):
    from kiosk.sync.config_poll import ConfigPoller

    url = f"{web.url}/r/manifest.json"
    with running(tmp_path, fleet_keys, fleet_pki, tmp_path / "missing.pub", url) as (services, controller, view, loop, _):
        assert view.screen == "idle" and services.staff_backend is not None
        assert not any(isinstance(x, ConfigPoller) and x.url == url for x in services.extras)
        assert any(r.getMessage() == "release.poll_off" for r in caplog.records)


def test_a_running_kiosk_stages_a_polled_release_and_restarts_only_at_idle(tmp_path, keys, web, fleet_keys,
                                                                          fleet_pki):
    from kiosk.core.events import Barcode, Press
    from kiosk.sync.config_poll import ConfigPoller

    url = publish(build(tmp_path, keys, "99.0.0"), web)
    with running(tmp_path, fleet_keys, fleet_pki, keys["release_pub"], url) as (services, controller, view, loop, _):
        poller = next(x for x in services.extras if isinstance(x, ConfigPoller) and x.url == url)
        controller.post(Barcode("20000001"))                    # a patron is signed in
        loop.pump_until(lambda: view.screen == "scanning")
        assert poller.poll_once().state == "applied"
        assert (tmp_path / "data" / "release-staged" / "99.0.0" / "manifest.json").exists()
        for _ in range(3):
            loop.tick()
            loop.run_pending()
        assert services.exit_how is None                        # not in the middle of a session
        controller.post(Press("finish"))
        loop.pump_until(lambda: view.screen == "thank_you")
        controller.post(Press("ok"))
        loop.run_pending()
        for _ in range(3):
            loop.tick()
            loop.run_pending()
        assert view.screen == "idle" and services.exit_how == "restart"
