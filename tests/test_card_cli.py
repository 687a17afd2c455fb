"""`kiosk card info` / `kiosk card verify`, end to end through real pcscd + vpcd."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk.cli.card import (
    EXIT_CARD,
    EXIT_NO_CARD,
    EXIT_OK,
    EXIT_USAGE,
    add_card_commands,
    cmd_info,
    cmd_verify,
    read_pin,
)

REPO = Path(__file__).resolve().parent.parent
PIN = "8642"        # not the demo default, so finding it in output would mean a leak


class Recording:
    """Wraps a virtual card; keeps the INS and length of each APDU (not its data)."""

    def __init__(self, card: VirtualJpkiCard) -> None:
        self.card = card
        self.atr = card.atr
        self.shapes: list[tuple[int, int]] = []

    def power_on(self) -> None:
        self.card.power_on()

    def power_off(self) -> None:
        self.card.power_off()

    def reset(self) -> None:
        self.card.reset()

    def process(self, apdu: bytes) -> bytes:
        self.shapes.append((apdu[1], len(apdu)))
        return self.card.process(apdu)

    @property
    def verifies_with_pin(self) -> int:
        return sum(1 for ins, n in self.shapes if ins == 0x20 and n > 4)


@pytest.fixture
def insert(pcsc_readers, pcsc_demo_pki, tmp_path):
    def put(name: str = "registered-1", pin: str = PIN) -> Recording:
        profile = pcsc_demo_pki.profile(name)
        if profile.jpki:
            profile = replace(profile, auth_pin=pin)
        card = Recording(VirtualJpkiCard(profile, state_path=tmp_path / f"{name}.json"))
        pcsc_readers.insert(card)
        return card
    return put


@pytest.fixture
def trust_args(pcsc_demo_pki):
    return ["--accept-test-pki", "--test-anchor", str(pcsc_demo_pki.ca_pem_path)]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_card_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["card", *argv])


def _run(cmd, *argv: str, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cmd(_args(*argv), out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


def _cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiosk.cli.card", *argv], input=stdin, text=True,
                          capture_output=True, cwd=REPO, timeout=60, env=dict(os.environ))


pcsc = pytest.mark.pcsc


def _no_serial(text: str, der: bytes) -> None:
    serial = x509.load_der_x509_certificate(der).serial_number
    assert format(serial, "x") not in text.lower() and str(serial) not in text
    assert format(serial, "X") not in text.replace(format(serial, "x"), "")


# -- card info ---------------------------------------------------------------------------------

@pcsc
def test_info_as_a_command_spends_no_try_and_shows_no_serial(insert, trust_args, pcsc_demo_pki, pcsc_readers):
    card = insert()
    run = _cli("info", "--json", "--reader", pcsc_readers.reader, *trust_args)
    assert run.returncode == EXIT_OK, run.stderr
    info = json.loads(run.stdout)
    assert info["kind"] == "my_number_card" and info["tries_left"] == 3 and info["error"] is None
    cert = info["certificate"]
    assert cert["sha256"] == pcsc_demo_pki.cards["registered-1"].cert_hash
    assert (cert["verdict"], cert["issuer"], cert["test_pki"]) == ("ok", "auth_ca_test", True)
    assert card.verifies_with_pin == 0 and card.card.tries_left() == 3
    _no_serial(run.stdout + run.stderr, card.card.profile.auth_cert)


@pcsc
def test_info_text_without_test_pki_says_unknown_ca(insert):
    insert()
    code, out, _ = _run(cmd_info, "info", "--timeout", "10")
    assert code == EXIT_CARD
    assert "chain:      unknown_ca" in out and "verdict:      unknown_ca" in out


@pcsc
@pytest.mark.parametrize("name, kind, error, tries", [
    ("expired", "my_number_card", "cert_expired", 3),
    ("pin-locked", "my_number_card", "pin_locked", 0),
    ("transit-card", "not_jpki", "not_jpki", None),
    ("juki-card", "juki_card", "juki_card", 3),
])
def test_info_tells_what_is_wrong_with_a_card(insert, trust_args, name, kind, error, tries):
    card = insert(name)
    code, out, _ = _run(cmd_info, "info", "--json", *trust_args)
    info = json.loads(out)
    assert code == EXIT_CARD
    assert (info["kind"], info["error"], info["tries_left"]) == (kind, error, tries)
    assert card.verifies_with_pin == 0


@pcsc
def test_info_names_the_trusted_issuer_of_an_expired_certificate(insert, trust_args):
    """Expired is not untrusted: the issuer is still the test CA (issue item 3)."""
    insert("expired")
    code, out, _ = _run(cmd_info, "info", "--json", *trust_args)
    cert = json.loads(out)["certificate"]
    assert code == EXIT_CARD
    assert (cert["verdict"], cert["issuer"], cert["test_pki"]) == ("cert_expired", "auth_ca_test", True)
    code, out, _ = _run(cmd_info, "info", *trust_args)
    assert "issuer:     auth_ca_test (TEST PKI)" in out and "not a trusted CA" not in out


@pcsc
def test_info_shows_the_last_try_rule(insert, trust_args):
    insert("pin-1-try")
    code, out, _ = _run(cmd_info, "info", "--json", *trust_args)
    info = json.loads(out)
    assert code == EXIT_OK and (info["tries_left"], info["pin_prompt"]) == (1, "confirm_last_try")


# -- the site configuration, as the kiosk reads it (issue item 2) ------------------------------

def site_config(tmp_path: Path, pki, **card) -> Path:
    """A kiosk.toml with a [card] table; test PKI on (the demo CA) unless overridden."""
    values = {"accept_test_pki": True, "test_anchors": [str(pki.ca_pem_path)], **card}
    lines = ["[kiosk]", f'data_dir = "{tmp_path / "data"}"', "", "[card]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / "kiosk.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pcsc
def test_verify_uses_the_site_configuration(insert, pcsc_demo_pki, tmp_path, pcsc_readers):
    card = insert()
    config = site_config(tmp_path, pcsc_demo_pki, reader=pcsc_readers.reader)
    code, out, err = _run(cmd_verify, "verify", "--json", "--config", str(config),
                          pin_source=lambda: bytearray(PIN.encode()))
    result = json.loads(out)
    assert code == EXIT_OK, err
    assert result["authenticated"] and result["certificate"]["issuer"] == "auth_ca_test"
    assert card.verifies_with_pin == 1


@pcsc
def test_info_reads_kiosk_config_from_the_environment(insert, pcsc_demo_pki, tmp_path):
    insert()
    config = site_config(tmp_path, pcsc_demo_pki)
    run = subprocess.run([sys.executable, "-m", "kiosk.cli.card", "info", "--json", "--timeout", "10"],
                         text=True, capture_output=True, cwd=REPO, timeout=60,
                         env={**os.environ, "KIOSK_CONFIG": str(config)})
    assert run.returncode == EXIT_OK, run.stderr
    cert = json.loads(run.stdout)["certificate"]
    assert (cert["verdict"], cert["issuer"], cert["test_pki"]) == ("ok", "auth_ca_test", True)


@pcsc
def test_the_configured_reader_name_is_used(insert, pcsc_demo_pki, tmp_path):
    insert()
    config = site_config(tmp_path, pcsc_demo_pki, reader="No Such Reader")
    code, _, err = _run(cmd_info, "info", "--config", str(config), "--timeout", "2")
    assert code == EXIT_NO_CARD and "no card reader found" in err


@pcsc
@pytest.mark.parametrize("allowed", [False, True])
def test_the_configured_smartphone_rule_is_used(insert, pcsc_demo_pki, tmp_path, allowed):
    card = insert("smartphone")
    config = site_config(tmp_path, pcsc_demo_pki, allow_smartphone=allowed)
    code, out, _ = _run(cmd_info, "info", "--json", "--config", str(config))
    assert json.loads(out)["error"] == (None if allowed else "smartphone_unsupported")
    code, out, _ = _run(cmd_verify, "verify", "--json", "--config", str(config),
                        pin_source=lambda: bytearray(PIN.encode()))
    result = json.loads(out)
    assert result["authenticated"] is allowed
    assert result["error"] == (None if allowed else "smartphone_unsupported")
    assert card.verifies_with_pin == (1 if allowed else 0)


def test_a_broken_configuration_is_a_usage_error(tmp_path):
    bad = tmp_path / "kiosk.toml"
    bad.write_text("[card]\naccept_test_pki = \"yes please\"\n")
    code, _, err = _run(cmd_info, "info", "--config", str(bad))
    assert code == EXIT_USAGE and "card.accept_test_pki" in err


@pcsc
def test_info_without_a_card_times_out(pcsc_readers):
    code, _, err = _run(cmd_info, "info", "--timeout", "1")
    assert code == EXIT_NO_CARD and "no card was inserted" in err


@pcsc
def test_info_without_pcscd_says_so(pcsc_readers):
    pcsc_readers.stop()
    code, _, err = _run(cmd_info, "info", "--timeout", "1")
    assert code == EXIT_NO_CARD and "pcscd is not running" in err


# -- card verify -------------------------------------------------------------------------------

@pcsc
def test_verify_as_a_command_with_the_pin_on_stdin(insert, trust_args, pcsc_demo_pki):
    card = insert()
    run = _cli("verify", "--json", *trust_args, stdin=PIN + "\n")
    assert run.returncode == EXIT_OK, run.stderr
    result = json.loads(run.stdout)
    assert result["authenticated"] is True and result["error"] is None
    assert result["tries_left"] == 3                # a right PIN resets the counter (issue item 3)
    assert result["certificate"]["sha256"] == pcsc_demo_pki.cards["registered-1"].cert_hash
    assert card.verifies_with_pin == 1 and card.card.tries_left() == 3
    assert "3 PIN tries left" in run.stderr
    text = (run.stdout + run.stderr).replace(result["certificate"]["sha256"], "")
    assert PIN not in text
    _no_serial(run.stdout + run.stderr, card.card.profile.auth_cert)


@pcsc
def test_verify_wrong_pin_is_sent_once_and_reported(insert, trust_args):
    card = insert()
    code, out, _ = _run(cmd_verify, "verify", *trust_args, pin_source=lambda: bytearray(b"1111"))
    assert code == EXIT_CARD
    assert "result:       pin_wrong" in out and "PIN tries:    2 left" in out
    assert card.verifies_with_pin == 1 and card.card.tries_left() == 2


@pcsc
def test_verify_spends_the_last_try_only_when_confirmed(insert, trust_args):
    """The kiosk's rule (kiosk.core.card.pin_prompt): at one try left, only after confirmation."""
    card = insert("pin-1-try")
    asked = []
    code, out, err = _run(cmd_verify, "verify", "--json", *trust_args,
                          pin_source=lambda: asked.append(1) or bytearray(PIN.encode()))
    assert code == EXIT_CARD and json.loads(out)["error"] == "last_try"
    assert "--confirm-last-try" in err
    assert asked == [] and card.verifies_with_pin == 0 and card.card.tries_left() == 1
    code, out, _ = _run(cmd_verify, "verify", "--json", "--confirm-last-try", *trust_args,
                        pin_source=lambda: asked.append(1) or bytearray(PIN.encode()))
    result = json.loads(out)
    assert code == EXIT_OK and result["authenticated"] and result["tries_left"] == 3
    assert asked == [1] and card.verifies_with_pin == 1 and card.card.tries_left() == 3


@pcsc
def test_verify_malformed_pin_never_reaches_the_card(insert, trust_args):
    card = insert()
    given = bytearray(b"12a4")
    code, _, err = _run(cmd_verify, "verify", *trust_args, pin_source=lambda: given)
    assert code == EXIT_USAGE and "nothing was sent" in err
    assert card.verifies_with_pin == 0 and given == bytearray(4)     # zeroed anyway


@pcsc
def test_verify_untrusted_card_spends_no_try(insert):
    card = insert()
    code, out, _ = _run(cmd_verify, "verify", "--json", pin_source=lambda: bytearray(PIN.encode()))
    assert code == EXIT_CARD and json.loads(out)["error"] == "unknown_ca"
    assert card.verifies_with_pin == 0 and card.card.tries_left() == 3


def test_trust_problems_are_usage_errors(tmp_path):
    code, _, err = _run(cmd_info, "info", "--trust-dir", str(tmp_path))
    assert code == EXIT_USAGE and "no CA certificates" in err
    code, _, err = _run(cmd_verify, "verify", "--accept-test-pki")
    assert code == EXIT_USAGE and "--test-anchor" in err


# -- reading the PIN ---------------------------------------------------------------------------

def test_read_pin_from_a_pipe_is_a_bytearray():
    r, w = os.pipe()
    os.write(w, b"4321\nrest")
    os.close(w)
    with os.fdopen(r) as stream:
        pin = read_pin(stream, io.StringIO())
    assert pin == bytearray(b"4321") and isinstance(pin, bytearray)


def test_read_pin_on_a_terminal_does_not_echo():
    import termios
    import threading
    import time

    try:
        master, slave = os.openpty()
    except OSError:
        pytest.skip("no pseudo-terminals here")
    prompt = io.StringIO()
    got: list[bytearray] = []
    stream = os.fdopen(slave, closefd=False)
    reader = threading.Thread(target=lambda: got.append(read_pin(stream, prompt)), daemon=True)
    try:
        reader.start()
        deadline = time.monotonic() + 5
        while termios.tcgetattr(slave)[3] & termios.ECHO:    # wait until echo is off
            assert time.monotonic() < deadline, "echo never turned off"
            time.sleep(0.01)
        os.write(master, b"5678\n")
        reader.join(5)
        os.set_blocking(master, False)
        try:
            echoed = os.read(master, 1024)
        except BlockingIOError:
            echoed = b""
        echo_restored = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        stream.close()
        os.close(master)
        os.close(slave)
    assert got == [bytearray(b"5678")]
    assert b"5678" not in echoed
    assert echo_restored
    assert "PIN" in prompt.getvalue()
