"""Central IT's tools: keys new, config sign, config push (against real kiosk endpoints)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kiosk import __version__
from kiosk.cli.fleet import _url, add_fleet_commands
from kiosk.cli.main import build_parser
from kiosk.config.signed import load_public_keys, verify_bundle
from kiosk_testing.fleet import free_port, https, make_bundle


def kiosk_cli():
    """The real `kiosk` parser with the fleet commands added, as kiosk/cli/main.py does."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "keys" not in sub.choices:
        add_fleet_commands(sub)
    return parser


def run(*argv: str) -> int:
    args = kiosk_cli().parse_args([str(a) for a in argv])
    return int(args.func(args) or 0)


# -- keys new ---------------------------------------------------------------------------

def test_keys_new_makes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert run("keys", "new", "--out", tmp_path / "keys") == 0
    priv, pub = tmp_path / "keys" / "config-signing.key", tmp_path / "keys" / "config-signing.pub"
    assert os.stat(priv).st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(priv.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    [kid] = load_public_keys([pub])
    assert f"key id:      {kid}" in capsys.readouterr().out
    assert run("keys", "new", "--out", tmp_path / "keys") == 1          # never overwrites a key
    assert "not overwriting" in capsys.readouterr().err
    assert serialization.load_pem_private_key(priv.read_bytes(), None).public_key() == key.public_key()


# -- config sign --------------------------------------------------------------------------

def write_layer(tmp_path, text: str):
    path = tmp_path / "push.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sign_makes_a_bundle_the_kiosk_accepts(tmp_path, fleet_keys, capsys):
    layer = write_layer(tmp_path, '[timeouts]\nscanning = 90\n[ui]\nhelp_text = "窓口へ"\n')
    out = tmp_path / "bundle.json"
    assert run("config", "sign", layer, "--key", fleet_keys.private_pem, "--version", 12,
               "--target-group", "chuo", "--valid-days", 2, "-o", out) == 0
    assert "version 12 for group chuo" in capsys.readouterr().out
    now = datetime.now().astimezone()
    bundle = verify_bundle(out.read_bytes(), load_public_keys([fleet_keys.public_pem]), "kiosk-01", "chuo", 11, now)
    assert bundle.layer == {"timeouts": {"scanning": 90}, "ui": {"help_text": "窓口へ"}}
    assert timedelta(days=1.9) < bundle.expires_at - now <= timedelta(days=2)
    assert bundle.target_group == "chuo"


def test_sign_with_an_explicit_expiry_and_kiosk_target(tmp_path, fleet_keys):
    layer = write_layer(tmp_path, "[loans]\noffline_lending = true\n")
    out = tmp_path / "b.json"
    assert run("config", "sign", layer, "--key", fleet_keys.private_pem, "--version", 3,
               "--target-kiosk", "chuo-02", "--expires", "2099-01-01T00:00:00+09:00", "-o", out) == 0
    payload = json.loads(out.read_bytes())["payload"]
    assert payload["target"] == {"kiosk": "chuo-02"} and payload["expires_at"] == "2099-01-01T00:00:00+09:00"


@pytest.mark.parametrize("text, words", [
    ("[ui]\ncolour = 'red'\n", "ui.colour: unknown key"),
    ("[timeouts]\nscanning = 9999\n", "timeouts.scanning: must be at most 900"),
    ("[management]\ntrusted_keys = ['/tmp/mine.pub']\n", "may only be set in the site file"),
    ("[kiosk]\ndata_dir = '/tmp/x'\n", "kiosk.data_dir: may only be set in the site file"),
    ("[ui\n", "not valid TOML"),
])
def test_sign_refuses_a_layer_the_kiosks_would_refuse(tmp_path, fleet_keys, capsys, text, words):
    out = tmp_path / "b.json"
    assert run("config", "sign", write_layer(tmp_path, text), "--key", fleet_keys.private_pem,
               "--version", 3, "-o", out) == 1
    assert words in capsys.readouterr().err and not out.exists()


def test_sign_refuses_a_bad_key_and_a_past_expiry(tmp_path, fleet_keys, fleet_pki, capsys):
    layer = write_layer(tmp_path, "[timeouts]\npin = 30\n")
    out = tmp_path / "b.json"
    assert run("config", "sign", layer, "--key", fleet_pki.client_key, "--version", 3, "-o", out) == 1
    assert "not an Ed25519 private key" in capsys.readouterr().err
    assert run("config", "sign", layer, "--key", fleet_keys.private_pem, "--version", 3,
               "--expires", "2001-01-01T00:00:00+00:00", "-o", out) == 1
    assert "already be expired" in capsys.readouterr().err and not out.exists()


def test_config_check_still_works_beside_the_new_actions(tmp_path, capsys):
    site = write_layer(tmp_path, "[timeouts]\npin = 30\n")
    assert run("config", "check", site) == 0 and "OK" in capsys.readouterr().out


# -- config push ------------------------------------------------------------------------------

def test_push_reports_every_kiosk(tmp_path, fleet_kiosk, fleet_keys, fleet_pki, capsys):
    chuo = fleet_kiosk(name="chuo", kiosk_id="chuo-01", group="chuo")
    kita = fleet_kiosk(name="kita", kiosk_id="kita-01", group="kita")
    dead = f"127.0.0.1:{free_port()}"
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(make_bundle(fleet_keys.private, {"timeouts": {"scanning": 90}}, 4, target_group="chuo",
                                   now=datetime.now().astimezone()))
    code = run("config", "push", "--to", chuo.address, kita.address, dead, "--ca", fleet_pki.ca,
               "--cert", fleet_pki.client_cert, "--key", fleet_pki.client_key, bundle)
    out, err = capsys.readouterr()
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert code == 1
    assert lines[chuo.address] == "applied (version 4; 1 live, 0 restart-only settings changed)"
    assert lines[kita.address] == ("refused: other_target: meant for group 'chuo', this kiosk is in 'kita'")
    assert lines[dead].startswith("unreachable: ConnectionError") and "Connection refused" in lines[dead]
    assert "1 of 3 kiosks applied the bundle" in err
    assert chuo.applier.version == 4 and kita.applier.version is None
    # again: chuo has it already, so it is refused as a replay
    assert run("config", "push", bundle, "--to", chuo.address, "--ca", fleet_pki.ca,
               "--cert", fleet_pki.client_cert, "--key", fleet_pki.client_key) == 1
    assert "refused: replayed: version 4 is already applied" in capsys.readouterr().out


def test_push_exits_zero_when_every_kiosk_applied(tmp_path, fleet_kiosk, fleet_keys, fleet_pki, capsys):
    kiosks = [fleet_kiosk(name=f"k{i}", kiosk_id=f"chuo-0{i}") for i in range(2)]
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(make_bundle(fleet_keys.private, {"ui": {"fullscreen": False}}, 1,
                                   now=datetime.now().astimezone()))
    assert run("config", "push", "--to", *[k.address for k in kiosks], "--ca", fleet_pki.ca,
               "--cert", fleet_pki.client_cert, "--key", fleet_pki.client_key, bundle) == 0
    out = capsys.readouterr().out
    assert out.count("applied (version 1; 0 live, 1 restart-only settings changed; the app restarts") == 2


def test_push_without_the_client_certificate_is_turned_away_by_tls(tmp_path, fleet_kiosk, fleet_keys, fleet_pki,
                                                                   capsys):
    kiosk = fleet_kiosk()
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(make_bundle(fleet_keys.private, {}, 1, now=datetime.now().astimezone()))
    assert run("config", "push", "--to", kiosk.address, "--ca", fleet_pki.ca, bundle) == 1
    out = capsys.readouterr().out       # TLS 1.3: the refusal may come after the client's handshake
    assert "unreachable: TLS failed" in out or "client certificate refused?" in out
    assert kiosk.applier.version is None


def test_push_refuses_bad_arguments(tmp_path, capsys):
    bundle = tmp_path / "b.json"
    bundle.write_text("not json")
    assert run("config", "push", "--to", "a", bundle) == 2
    assert "not JSON" in capsys.readouterr().err
    assert run("config", "push", "--to", "a", "--cert", "c.pem", bundle) == 2
    assert run("config", "push", "--to", "a", tmp_path / "missing.json") == 2


@pytest.mark.parametrize("host, url", [
    ("kiosk-01.library.test", "https://kiosk-01.library.test:8443/config"),
    ("10.1.2.3:9443", "https://10.1.2.3:9443/config"),
    ("[fd00::5]", "https://[fd00::5]:8443/config"),
    ("[fd00::5]:9000", "https://[fd00::5]:9000/config"),
])
def test_push_addresses(host, url):
    assert _url(host) == url


# -- fleet status ---------------------------------------------------------------------------

def _status(*argv, pki=None) -> int:
    tls = ["--ca", pki.ca, "--cert", pki.client_cert, "--key", pki.client_key] if pki else []
    return run("fleet", "status", *argv, *tls)


def test_fleet_status_prints_one_table_for_many_kiosks(fleet_kiosk, fleet_keys, fleet_pki, capsys):
    from datetime import timezone

    from kiosk.core.events import ReaderChanged
    from kiosk.store.outbox import OutboxStats

    now = datetime.now(timezone.utc)
    chuo = fleet_kiosk(name="chuo", kiosk_id="chuo-01", group="chuo")
    kita = fleet_kiosk(name="kita", kiosk_id="kita-01", group="kita")
    dead = f"127.0.0.1:{free_port()}"
    chuo.outbox = OutboxStats(pending=3, in_flight=1, oldest_created=now - timedelta(minutes=42),
                              last_success=now - timedelta(minutes=7), conflicts=0)
    chuo.metrics.observe(ReaderChanged(True))
    chuo.metrics.layer_rollbacks = lambda: (1, (now - timedelta(hours=3)).timestamp())
    assert https(fleet_pki).put(chuo.url + "/config", data=make_bundle(
        fleet_keys.private, {"timeouts": {"scanning": 90}}, 6, now=now.astimezone())).ok
    kita.metrics.observe(ReaderChanged(False, "pcscd_gone"))
    kita.health = {"checks": {"reader": False, "catalogue": True}}

    assert _status(chuo.address, kita.address, dead, pki=fleet_pki) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["HOST", "KIOSK", "REACHABLE", "HEALTH", "APP", "CONFIG", "OUTBOX", "OLDEST",
                                "READER", "CATALOGUE", "OK", "LAST", "ROLLBACK"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[chuo.address] == [chuo.address, "chuo-01", "yes", "ok", __version__, "6", "3", "42m", "ok",
                                  "7m", "ago", "3h", "ago", "(1)"]
    assert rows[kita.address][:5] == [kita.address, "kita-01", "yes", "reader", __version__]
    assert rows[kita.address][5:] == ["site", "0", "-", "pcscd", "gone", "never", "never"]
    assert rows[dead][:3] == [dead, "-", "no"] and "Connection refused" in lines[-1] + out
    assert "1 of 3 kiosks reachable and healthy; 1 unreachable" in err


def test_fleet_status_exits_zero_when_all_are_well_and_speaks_json(fleet_kiosk, fleet_pki, capsys):
    kiosks = [fleet_kiosk(name=f"k{i}", kiosk_id=f"chuo-0{i}") for i in range(3)]
    assert _status(*[k.address for k in kiosks], "--json", pki=fleet_pki) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["kiosk_id"] for d in doc] == ["chuo-00", "chuo-01", "chuo-02"]
    assert all(d["reachable"] and d["healthy"] and d["problem"] == "" and d["outbox_pending"] == 0 for d in doc)


def test_fleet_status_without_a_client_certificate_is_unreachable(fleet_kiosk, fleet_pki, capsys):
    kiosk = fleet_kiosk()
    assert run("fleet", "status", kiosk.address, "--ca", fleet_pki.ca) == 1
    out = capsys.readouterr().out
    # TLS 1.3: the refusal may come as an alert after the client's handshake is done
    assert " no " in out and ("TLS failed" in out or "client certificate refused?" in out)


def test_fleet_status_asks_every_kiosk_at_once(fleet_kiosk, fleet_pki, capsys):
    """A kiosk that accepts the connection and never answers costs the timeout once, not
    once per kiosk: the others are asked meanwhile."""
    import socket
    import time

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        kiosks = [fleet_kiosk(name=f"k{i}", kiosk_id=f"chuo-0{i}") for i in range(3)]
        hosts = [f"127.0.0.1:{silent.getsockname()[1]}"] * 1 + [k.address for k in kiosks]
        started = time.monotonic()
        assert _status(*hosts, "--timeout", "1.5", pki=fleet_pki) == 1
        assert time.monotonic() - started < 6
    finally:
        silent.close()
    out = capsys.readouterr().out
    assert out.count(" yes ") == 3 and ("timed out" in out or "ReadTimeout" in out), out
