"""The patron app and `kiosk card info|verify` reach the same verdict on the same card with the
same site configuration, over real pcscd + vpcd.

The app side is what the kiosk runs: the card service built from the site file by
kiosk.shell.launcher (trust anchors, test PKI, reader name, smartphone rule), driven by the
session core (its last-try screen included). The CLI side is `kiosk card info` (no PIN) and
`kiosk card verify` (the PIN once), given only `--config`. Each run gets a fresh card, so no
run's PIN counter leaks into another's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kiosk.card.virtual_card import CardProfile, VirtualJpkiCard
from kiosk.cli.card import add_card_commands, cmd_info, cmd_verify
from kiosk.config.settings import CardSettings
from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import PinPrompt, pin_prompt
from kiosk.shell.launcher import build_card_service, build_reader, build_trust, load_site
from kiosk_testing.session_driver import SessionDriver

pcsc = pytest.mark.pcsc

RIGHT_PIN = "8642"
WRONG_PIN = "1357"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_config(tmp_path: Path, name: str, pki, *, test_pki: bool, smartphone: bool, reader: str) -> Path:
    path = tmp_path / f"{name}.toml"
    card = {"reader": reader, "allow_smartphone": smartphone}
    if test_pki:
        card.update(accept_test_pki=True, test_anchors=[str(pki.ca_pem_path)])
    lines = ["[kiosk]", f'data_dir = "{tmp_path / "data"}"', "", "[card]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in card.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def twin_profile(pki, *, foreign_ca: bool = False, expired: bool = False) -> CardProfile:
    """registered-1 (same key, serial, names and length, so the same first 64 bytes of the
    certificate) but with a certificate from an unknown CA bearing the test CA's name, or expired."""
    profile = pki.profile("registered-1")
    original = x509.load_der_x509_certificate(profile.auth_cert)
    not_before, not_after = original.not_valid_before_utc, original.not_valid_after_utc
    if expired:
        not_before, not_after = not_before - dt.timedelta(days=800), not_before - dt.timedelta(days=2)
    builder = (x509.CertificateBuilder().subject_name(original.subject).issuer_name(original.issuer)
               .public_key(original.public_key()).serial_number(original.serial_number)
               .not_valid_before(not_before).not_valid_after(not_after))
    for ext in original.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    signer = rsa.generate_private_key(65537, 2048) if foreign_ca else pki.ca_key
    der = builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    assert der[:64] == profile.auth_cert[:64] and len(der) == len(profile.auth_cert)
    return replace(profile, name="twin", auth_cert=der)


class Bench:
    """Puts a fresh copy of a card in the pcscd reader for each run."""

    def __init__(self, readers, pki, tmp_path: Path) -> None:
        self.readers, self.pki, self.tmp_path = readers, pki, tmp_path
        self.runs = 0
        self.foreign: CardProfile | None = None

    def profile(self, name: str | CardProfile) -> CardProfile:
        if isinstance(name, CardProfile):
            profile = name
        elif name == "foreign-ca":
            self.foreign = self.foreign or twin_profile(self.pki, foreign_ca=True)
            profile = self.foreign
        else:
            profile = self.pki.profile(name)
        return replace(profile, auth_pin=RIGHT_PIN) if profile.jpki else profile

    def insert(self, name: str | CardProfile) -> VirtualJpkiCard:
        self.runs += 1
        card = VirtualJpkiCard(self.profile(name), state_path=self.tmp_path / f"card-{self.runs}.json")
        self.readers.insert(card)
        return card


def app_verdict(config: Path, pin: str, confirm: bool) -> str:
    """What the patron app decides: the kiosk's card service, driven by the session core."""
    settings = CardSettings.from_config(load_site(str(config)).config)
    service = build_card_service(settings, build_reader(settings), build_trust(settings), utcnow)
    d = SessionDriver()
    try:
        (probe_fx,) = d.of_type(fx.ProbeCard, d.insert_card())
        d.send(ev.CardProbed(service.probe(), serial=probe_fx.serial))
        if d.screen == "last_try":
            if not confirm:
                return "last_try"
            d.press("confirm_last_try")
        if d.screen == "error":
            return d.model["code"]
        assert d.screen == "pin", d.screen
        (auth,) = d.of_type(fx.Authenticate, d.enter_pin(pin))
        outcome = service.authenticate(auth.pin)
        d.send(ev.AuthDone(outcome, serial=auth.serial))
        if d.screen == "error":
            return d.model["code"]
        if d.session.p.identity is not None:
            return "ok"
        assert d.screen in ("pin", "last_try") and d.model["notice"] == "pin_wrong"
        return "pin_wrong"
    finally:
        service.release()


def _cli(cmd, *argv: str, **kw) -> dict:
    parser = argparse.ArgumentParser()
    add_card_commands(parser.add_subparsers(dest="command"))
    out, err = io.StringIO(), io.StringIO()
    cmd(parser.parse_args(["card", *argv]), out=out, err=err, **kw)
    assert out.getvalue(), err.getvalue()
    return json.loads(out.getvalue())


def verify_verdict(config: Path, pin: str, confirm: bool) -> str:
    argv = ["verify", "--json", "--timeout", "10", "--config", str(config)]
    result = _cli(cmd_verify, *argv, *(["--confirm-last-try"] if confirm else []),
                  pin_source=lambda: bytearray(pin.encode()))
    return "ok" if result["authenticated"] else result["error"]


def info_verdict(config: Path) -> str:
    """`info` spends no try: its verdict is the app's as far as it goes without a PIN."""
    result = _cli(cmd_info, "info", "--json", "--timeout", "10", "--config", str(config))
    if result["error"] is not None:
        return result["error"]
    return "last_try" if result["pin_prompt"] == "confirm_last_try" else "ok"


CASES = [   # card, configuration, PIN, the verdict both must reach (without, with last-try confirmation)
    ("registered-1", "test-pki", RIGHT_PIN, "ok", "ok"),
    ("registered-1", "test-pki", WRONG_PIN, "pin_wrong", "pin_wrong"),
    ("registered-1", "jlis-only", RIGHT_PIN, "unknown_ca", "unknown_ca"),
    ("foreign-ca", "test-pki", RIGHT_PIN, "unknown_ca", "unknown_ca"),
    ("expired", "test-pki", RIGHT_PIN, "cert_expired", "cert_expired"),
    ("not-yet-valid", "test-pki", RIGHT_PIN, "cert_not_yet_valid", "cert_not_yet_valid"),
    ("pin-1-try", "test-pki", RIGHT_PIN, "last_try", "ok"),
    ("pin-locked", "test-pki", RIGHT_PIN, "pin_locked", "pin_locked"),
    ("smartphone", "test-pki", RIGHT_PIN, "smartphone_unsupported", "smartphone_unsupported"),
    ("smartphone", "test-pki+smartphone", RIGHT_PIN, "ok", "ok"),
    ("juki-card", "test-pki", RIGHT_PIN, "juki_card", "juki_card"),
    ("transit-card", "test-pki", RIGHT_PIN, "not_jpki", "not_jpki"),
]


@pcsc
@pytest.mark.parametrize("card, config, pin, unconfirmed, confirmed", CASES,
                         ids=[f"{c[0]}@{c[1]}{'-wrong-pin' if c[2] == WRONG_PIN else ''}" for c in CASES])
def test_app_and_cli_reach_the_same_verdict(pcsc_readers, pcsc_demo_pki, tmp_path,
                                            card, config, pin, unconfirmed, confirmed):
    configs = {
        "test-pki": dict(test_pki=True, smartphone=False),
        "test-pki+smartphone": dict(test_pki=True, smartphone=True),
        "jlis-only": dict(test_pki=False, smartphone=False),
    }
    path = write_config(tmp_path, config, pcsc_demo_pki, reader=pcsc_readers.reader, **configs[config])
    bench = Bench(pcsc_readers, pcsc_demo_pki, tmp_path)
    verdicts = {}
    for confirm in (False, True) if unconfirmed != confirmed else (False,):
        bench.insert(card)
        verdicts["app", confirm] = app_verdict(path, pin, confirm)
        bench.insert(card)
        verdicts["verify", confirm] = verify_verdict(path, pin, confirm)
    if pin == RIGHT_PIN:
        bench.insert(card)
        verdicts["info", False] = info_verdict(path)
    expected = {key: unconfirmed if not key[1] else confirmed for key in verdicts}
    assert verdicts == expected


@pcsc
@pytest.mark.parametrize("twin, verdict", [("expired", "cert_expired"), ("foreign_ca", "unknown_ca")])
def test_a_key_that_signed_in_before_is_judged_on_the_certificate_now_on_the_card(
        pcsc_readers, pcsc_demo_pki, tmp_path, twin, verdict):
    """Issue item 1, as the kiosk runs: one card service (built from the site file) signs in a
    card, then a card with the same key and serial whose certificate is now expired / from an
    unknown CA with the same name is refused, before any PIN try is spent: already by the probe."""
    path = write_config(tmp_path, "site", pcsc_demo_pki, test_pki=True, smartphone=False,
                        reader=pcsc_readers.reader)
    settings = CardSettings.from_config(load_site(str(path)).config)
    service = build_card_service(settings, build_reader(settings), build_trust(settings), utcnow)
    bench = Bench(pcsc_readers, pcsc_demo_pki, tmp_path)
    try:
        bench.insert("registered-1")
        assert service.probe().usable
        assert service.authenticate(bytearray(RIGHT_PIN.encode())).ok
        service.release()
        card = bench.insert(twin_profile(pcsc_demo_pki, **{twin: True}))
        probe = service.probe()         # refused before the PIN pad (issue 16): no PIN is asked
        assert not probe.usable and probe.error is not None and probe.error.value == verdict
        assert probe.tries_left == 3
        outcome = service.authenticate(bytearray(RIGHT_PIN.encode()))
        assert outcome.error is not None and outcome.error.value == verdict and outcome.identity is None
        assert card.tries_left() == 3 and card.stats.by_ins[0x20] == 1      # only the tries query
    finally:
        service.release()


def test_the_one_last_try_rule():
    """kiosk.core.card.pin_prompt, which the session core and `kiosk card verify` both follow."""
    assert [pin_prompt(n) for n in (None, -1, 0, 1, 2, 3)] == [
        PinPrompt.LOCKED, PinPrompt.LOCKED, PinPrompt.LOCKED, PinPrompt.CONFIRM_LAST_TRY,
        PinPrompt.ASK, PinPrompt.ASK]
