"""The card service end to end over the virtual reader: probe, authenticate, release."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from kiosk.card.demo_pki import issue_auth_cert
from kiosk.card.identity import TrustStore
from kiosk.card.service import CardService
from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk.core.card import CardError, CardKind
from kiosk.core.interfaces import CardEventKind

UTC = dt.timezone.utc


@pytest.fixture
def service(jpki_reader, demo_trust, jpki_now):
    svc = CardService(jpki_reader, demo_trust, jpki_now, rng=lambda n: b"\x5a" * n)
    yield svc
    svc.release()


@pytest.fixture
def insert(jpki_reader, make_jpki_card):
    def insert_(name="registered-1", **overrides) -> VirtualJpkiCard:
        card = make_jpki_card(name, **overrides)
        jpki_reader.insert(card)
        return card
    return insert_


def verifies(apdu_log, with_pin=True):
    return [r for r in apdu_log if r.apdu[1] == 0x20 and (len(r.apdu) > 4) == with_pin]


def pin(text="1234"):
    return bytearray(text.encode())


# -- probe --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, overrides, kind, tries, error", [
    ("registered-1", {}, CardKind.MY_NUMBER_CARD, 3, None),
    ("pin-1-try", {}, CardKind.MY_NUMBER_CARD, 1, None),
    ("pin-locked", {}, CardKind.MY_NUMBER_CARD, 0, CardError.PIN_LOCKED),
    ("pin-locked", {"blocked_sw": 0x6984}, CardKind.MY_NUMBER_CARD, 0, CardError.PIN_LOCKED),
    ("transit-card", {}, CardKind.NOT_JPKI, None, CardError.NOT_JPKI),
    ("juki-card", {}, CardKind.JUKI_CARD, None, CardError.JUKI_CARD),
    ("smartphone", {}, CardKind.SMARTPHONE, None, CardError.SMARTPHONE_UNSUPPORTED),
    ("registered-1", {"token": "SOMETHINGELSE"}, CardKind.NOT_JPKI, None, CardError.NOT_JPKI),
    ("registered-1", {"mute": True}, CardKind.MUTE, None, CardError.MUTE_CARD),
    ("expired", {}, CardKind.MY_NUMBER_CARD, 3, CardError.CERT_EXPIRED),
    ("not-yet-valid", {}, CardKind.MY_NUMBER_CARD, 3, CardError.CERT_NOT_YET_VALID),
])
def test_probe(service, insert, apdu_log, name, overrides, kind, tries, error):
    card = insert(name, **overrides)
    probe = service.probe()
    assert (probe.kind, probe.tries_left, probe.error) == (kind, tries, error)
    assert probe.usable == (error is None)
    assert not verifies(apdu_log)                       # a probe never spends a try
    if card.profile.jpki and not card.profile.mute:
        assert card.tries_left() == card.profile.auth_tries


def test_probe_smartphone_when_allowed(jpki_reader, demo_trust, jpki_now, insert):
    insert("smartphone")
    svc = CardService(jpki_reader, demo_trust, jpki_now, allow_smartphone=True)
    probe = svc.probe()
    assert (probe.kind, probe.tries_left, probe.usable) == (CardKind.SMARTPHONE, 3, True)


def test_probe_without_card_or_reader(service, jpki_reader, insert):
    assert service.probe().error is CardError.CARD_REMOVED
    insert()
    jpki_reader.unplug()
    assert service.probe().error is CardError.READER_GONE
    jpki_reader.replug()
    assert service.probe().usable


# -- authenticate: success --------------------------------------------------------------------------

def test_authenticate(service, insert, apdu_log, demo_pki):
    card = insert()
    assert service.probe().usable
    secret = pin()
    outcome = service.authenticate(secret)
    assert outcome.ok and outcome.error is None
    assert outcome.identity.cert_hash == demo_pki.cards["registered-1"].cert_hash
    assert outcome.identity.test_pki and outcome.identity.issuer == "auth_ca_test"
    assert secret == bytearray(4)                         # zeroed
    assert len(verifies(apdu_log)) == 1
    assert card.verified == frozenset()                   # VERIFY status dropped right after signing
    assert card.tries_left() == 3
    sign = [r.apdu for r in apdu_log if r.apdu[1] == 0x2A]
    assert len(sign) == 1
    service.release()
    assert apdu_log[-1].apdu.hex().upper() == "00A4040C0AD392F000260100000001"


def test_authenticate_without_probe_probes_first(service, insert):
    insert()
    assert service.authenticate(pin()).ok


def test_challenge_is_fresh_each_time(jpki_reader, demo_trust, jpki_now, insert, apdu_log):
    insert()
    svc = CardService(jpki_reader, demo_trust, jpki_now)        # real os.urandom
    for _ in range(2):
        svc.probe()
        assert svc.authenticate(pin()).ok
    digests = [r.apdu[24:56] for r in apdu_log if r.apdu[1] == 0x2A]
    assert len(digests) == 2 and digests[0] != digests[1]


def cert_reads(card: VirtualJpkiCard, apdu_log) -> int:
    """READ BINARY APDUs sent while EF 000A (the user-authentication certificate) was selected."""
    reads, ef = 0, None
    for r in apdu_log:
        if r.apdu[1] == 0xA4:
            ef = r.apdu[5:7] if r.apdu[2] == 0x02 else None
        elif r.apdu[1] == 0xB0 and ef == b"\x00\x0a":
            reads += 1
    return reads


def test_returning_card_reads_its_whole_certificate_again(service, insert, demo_pki, apdu_log):
    """Each session decides on the certificate bytes read from the card in that session."""
    first = insert()
    service.probe()
    assert service.authenticate(pin()).ok
    service.release()
    der = demo_pki.profile("registered-1").auth_cert
    again = insert()
    service.probe()
    outcome = service.authenticate(pin())
    assert outcome.ok and outcome.identity.cert_hash == demo_pki.cards["registered-1"].cert_hash
    assert again.stats.by_ins[0xB0] == first.stats.by_ins[0xB0] == 1 + -(-len(der) // 256)
    assert cert_reads(again, apdu_log) == 2 * -(-len(der) // 256)    # as few reads as 256-byte Le allows


def twin_certificate(demo_pki, *, expired: bool = False, foreign_ca: bool = False) -> bytes:
    """registered-1's certificate (same key, serial, names, length, so the same first 64 bytes),
    but expired, or signed by an unknown CA that has the test CA's name."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    original = x509.load_der_x509_certificate(demo_pki.profile("registered-1").auth_cert)
    not_before, not_after = original.not_valid_before_utc, original.not_valid_after_utc
    if expired:
        not_before, not_after = not_before - dt.timedelta(days=800), not_before - dt.timedelta(days=2)
    builder = (
        x509.CertificateBuilder().subject_name(original.subject).issuer_name(original.issuer)
        .public_key(original.public_key()).serial_number(original.serial_number)
        .not_valid_before(not_before).not_valid_after(not_after)
    )
    for ext in original.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    signer = rsa.generate_private_key(65537, 2048) if foreign_ca else demo_pki.ca_key
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("kind, error", [("expired", CardError.CERT_EXPIRED),
                                         ("foreign_ca", CardError.UNKNOWN_CA)])
def test_a_card_is_judged_on_the_certificate_it_holds_not_on_an_earlier_one(
        service, insert, demo_pki, apdu_log, kind, error):
    """Issue item 1: the same key and serial as an earlier valid sign-in, but the certificate
    on the card now is expired / from an unknown CA with the same name: refused, no try spent."""
    insert()
    service.probe()
    assert service.authenticate(pin()).ok                   # a valid sign-in of this key and serial
    service.release()
    real = demo_pki.profile("registered-1").auth_cert
    forged = twin_certificate(demo_pki, **{kind: True})
    assert forged[:64] == real[:64] and len(forged) == len(real) and forged != real
    card = insert(auth_cert=forged)
    service.probe()
    before = len(verifies(apdu_log))
    outcome = service.authenticate(pin())
    assert outcome.error is error and outcome.identity is None
    assert len(verifies(apdu_log)) == before and card.tries_left() == 3


@pytest.mark.parametrize("name, kind, error", [("expired", None, CardError.CERT_EXPIRED),
                                               ("not-yet-valid", None, CardError.CERT_NOT_YET_VALID),
                                               ("registered-1", "foreign_ca", CardError.UNKNOWN_CA)])
def test_the_probe_refuses_a_bad_certificate_before_any_pin(service, insert, demo_pki, apdu_log,
                                                            name, kind, error):
    """Issue 16: the certificate EF is read and checked without VERIFY, so the PIN pad is never
    shown for a card that would be refused; nothing is sent but allowlisted reads."""
    card = insert(name, **({"auth_cert": twin_certificate(demo_pki, foreign_ca=True)} if kind else {}))
    probe = service.probe()
    assert (probe.error, probe.tries_left, probe.usable) == (error, 3, False)
    assert cert_reads(card, apdu_log) == -(-len(card.profile.auth_cert) // 256)
    assert not verifies(apdu_log) and len(verifies(apdu_log, with_pin=False)) == 1    # the tries query
    assert {r.apdu[1] for r in apdu_log} <= {0xA4, 0xB0, 0x20}       # SELECT, READ BINARY, tries
    outcome = service.authenticate(pin())                             # even if asked: no VERIFY
    assert outcome.error is error and not verifies(apdu_log) and card.tries_left() == 3


def test_a_locked_card_is_not_read_further(service, insert, apdu_log):
    card = insert("pin-locked")
    assert service.probe().error is CardError.PIN_LOCKED
    assert cert_reads(card, apdu_log) == 0


@pytest.mark.parametrize("overrides", [dict(t0_get_response=True), dict(strict_le=True)])
def test_authenticate_on_cards_needing_get_response_or_le_fixes(service, insert, overrides):
    insert(**overrides)
    service.probe()
    assert service.authenticate(pin()).ok


def test_smartphone_when_allowed_reads_its_certificate_after_verify(jpki_reader, demo_trust, jpki_now,
                                                                   insert, apdu_log):
    insert("smartphone")
    svc = CardService(jpki_reader, demo_trust, jpki_now, allow_smartphone=True)
    svc.probe()
    assert svc.authenticate(pin()).ok
    ins = [r.apdu[1] for r in apdu_log]
    assert ins.index(0x20, ins.index(0x20) + 1) < max(i for i, x in enumerate(ins) if x == 0xB0)


# -- authenticate: PIN -------------------------------------------------------------------------------

def test_wrong_pin_is_sent_once_and_never_retried(service, insert, apdu_log):
    card = insert()
    service.probe()
    secret = pin("0000")
    outcome = service.authenticate(secret)
    assert (outcome.error, outcome.tries_left) == (CardError.PIN_WRONG, 2)
    assert len(verifies(apdu_log)) == 1 and card.tries_left() == 2
    assert secret == bytearray(4)
    assert not any(r.apdu[1] == 0x2A for r in apdu_log)
    # the patron types again: that is a new attempt, again exactly one VERIFY
    assert service.authenticate(pin()).ok
    assert len(verifies(apdu_log)) == 2


def test_wrong_then_right_pin_reads_the_certificate_once_per_session(jpki_reader, demo_trust, insert,
                                                                    apdu_log, demo_pki):
    """Issue item 8: the certificate read from this card in this session is reused for the next
    PIN attempt (and re-checked against the clock); a card taken out and put back is read again."""
    now = [dt.datetime.now(UTC)]
    service = CardService(jpki_reader, demo_trust, lambda: now[0])
    whole = -(-len(demo_pki.profile("registered-1").auth_cert) // 256)
    card = insert()
    service.probe()
    assert service.authenticate(pin("0000")).error is CardError.PIN_WRONG
    assert cert_reads(card, apdu_log) == whole
    assert service.authenticate(pin()).ok
    assert cert_reads(card, apdu_log) == whole             # no second read in the same session
    assert service.authenticate(pin("0000")).error is CardError.PIN_WRONG
    now[0] = x509.load_der_x509_certificate(card.profile.auth_cert).not_valid_after_utc + dt.timedelta(1)
    before = len(verifies(apdu_log))
    assert service.authenticate(pin()).error is CardError.CERT_EXPIRED      # checked again, at this time
    assert cert_reads(card, apdu_log) == whole and len(verifies(apdu_log)) == before
    service.release()
    now[0] = dt.datetime.now(UTC)
    insert()                                               # a new session: read again
    service.probe()
    assert service.authenticate(pin()).ok
    assert cert_reads(card, apdu_log) == 2 * whole


def select_ap_count(records) -> int:
    return sum(1 for r in records if r.apdu[:4] == bytes.fromhex("00A4040C"))


@pytest.mark.parametrize("name", ["registered-1", "transit-card"])
def test_release_never_sends_two_selects_back_to_back(service, insert, apdu_log, name):
    """Issue item 8: release re-SELECTs the AP only when something was sent since the last SELECT."""
    insert(name)
    probe = service.probe()
    if probe.usable:
        assert service.authenticate(pin()).ok
    service.release()
    pairs = zip(apdu_log, apdu_log[1:])
    assert not any(select_ap_count([a]) and select_ap_count([b]) for a, b in pairs)
    assert select_ap_count(apdu_log[-1:]) == 1                # the session still ends on a SELECT


def test_last_try_wrong_locks(service, insert, apdu_log):
    card = insert("pin-1-try")
    assert service.probe().tries_left == 1
    outcome = service.authenticate(pin("9999"))
    assert (outcome.error, outcome.tries_left) == (CardError.PIN_LOCKED, 0)
    assert card.tries_left() == 0
    again = service.authenticate(pin())
    assert again.error is CardError.PIN_LOCKED and len(verifies(apdu_log)) == 1


def test_locked_card_never_gets_a_verify(service, insert, apdu_log):
    insert("pin-locked")
    secret = pin()
    outcome = service.authenticate(secret)
    assert (outcome.error, outcome.tries_left) == (CardError.PIN_LOCKED, 0)
    assert not verifies(apdu_log) and secret == bytearray(4)


@pytest.mark.parametrize("text", ["123", "12345", "12a4", ""])
def test_malformed_pin_is_not_sent(service, insert, apdu_log, text):
    card = insert()
    service.probe()
    secret = bytearray(text.encode())
    outcome = service.authenticate(secret)
    assert outcome.error is CardError.PIN_WRONG and outcome.tries_left == 3
    assert not verifies(apdu_log) and card.tries_left() == 3
    assert secret == bytearray(len(text))


def test_pin_counter_survives_sessions_and_new_card_objects(jpki_reader, demo_trust, jpki_now, demo_pki, tmp_path):
    state = tmp_path / "card.json"
    svc = CardService(jpki_reader, demo_trust, jpki_now)
    for expected in (3, 2):
        jpki_reader.insert(VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state))
        assert svc.probe().tries_left == expected
        assert svc.authenticate(pin("0000")).tries_left == expected - 1
        svc.release()
        jpki_reader.remove()
    jpki_reader.insert(VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state))
    assert svc.probe().tries_left == 1


# -- authenticate: certificate and signature problems cost no try --------------------------------------

@pytest.mark.parametrize("name, error", [("expired", CardError.CERT_EXPIRED),
                                         ("not-yet-valid", CardError.CERT_NOT_YET_VALID)])
def test_bad_validity_refused_before_verify(service, insert, apdu_log, name, error):
    card = insert(name)
    service.probe()
    secret = pin()
    outcome = service.authenticate(secret)
    assert (outcome.error, outcome.tries_left) == (error, 3)
    assert not verifies(apdu_log) and card.tries_left() == 3 and secret == bytearray(4)


def test_unknown_ca_refused_before_verify(jpki_reader, jpki_now, insert, apdu_log):
    insert()
    svc = CardService(jpki_reader, TrustStore.shipped(), jpki_now)       # real J-LIS anchors only
    svc.probe()
    assert svc.authenticate(pin()).error is CardError.UNKNOWN_CA
    assert not verifies(apdu_log)


def test_wrong_key_usage_refused(service, insert, demo_pki, apdu_log):
    profile = demo_pki.profile("registered-1")
    now = dt.datetime.now(UTC)
    der = issue_auth_cert(demo_pki.ca_key, demo_pki.ca_cert, profile.auth_key.public_key(), now - dt.timedelta(1),
                          now + dt.timedelta(30), key_usage=x509.KeyUsage(False, False, True, False, False,
                                                                          False, False, False, False))
    insert(auth_cert=der)
    service.probe()
    assert service.authenticate(pin()).error is CardError.BAD_CERTIFICATE
    assert not verifies(apdu_log)


def test_card_with_someone_elses_certificate_fails_the_signature(service, insert, demo_pki):
    """A copied certificate (readable without PIN) on a card with another key: BAD_SIGNATURE."""
    victim = demo_pki.profile("registered-1")
    insert("registered-2", auth_cert=victim.auth_cert)
    service.probe()
    outcome = service.authenticate(pin())
    assert outcome.error is CardError.BAD_SIGNATURE and outcome.identity is None


def test_victim_signed_in_before_does_not_help_a_copy(service, insert, demo_pki):
    victim = demo_pki.profile("registered-1")
    insert("registered-1")
    service.probe()
    assert service.authenticate(pin()).ok                  # the victim signed in before
    insert("registered-2", auth_cert=victim.auth_cert)
    service.probe()
    assert service.authenticate(pin()).error is CardError.BAD_SIGNATURE


# -- card and reader leaving --------------------------------------------------------------------------

@pytest.mark.parametrize("ins", [0x20, 0x2A])     # the certificate (0xB0) is read by the probe
def test_card_removed_mid_way(service, insert, jpki_reader, ins):
    insert()
    service.probe()
    jpki_reader.remove_before(lambda header: header[1] == ins)
    secret = pin()
    outcome = service.authenticate(secret)
    assert outcome.error is CardError.CARD_REMOVED and outcome.identity is None
    assert secret == bytearray(4)
    assert jpki_reader.events[-1].kind is CardEventKind.REMOVED
    service.release()                                       # harmless after removal


@pytest.mark.parametrize("ins", [0x20, 0xB0])     # the tries query, the certificate read
def test_card_removed_during_probe(service, insert, jpki_reader, ins):
    insert()
    jpki_reader.remove_before(lambda header: header[1] == ins)
    assert service.probe().error is CardError.CARD_REMOVED
    secret = pin()
    assert service.authenticate(secret).error is CardError.CARD_REMOVED and secret == bytearray(4)


def test_reader_gone_mid_way(service, insert, jpki_reader):
    insert()
    service.probe()
    jpki_reader.unplug()
    secret = pin()
    assert service.authenticate(secret).error is CardError.READER_GONE
    assert secret == bytearray(4)
    assert jpki_reader.events[-1].kind is CardEventKind.READER_UNAVAILABLE


def test_swapped_card_is_not_trusted_with_the_old_session(service, insert, jpki_reader):
    insert("registered-1")
    service.probe()
    insert("registered-2")                                   # the old transport is dead now
    assert service.authenticate(pin()).error is CardError.CARD_REMOVED
    service.probe()
    assert service.authenticate(pin()).ok


def test_release_clears_verify_and_closes(service, insert, jpki_reader, demo_trust):
    card = insert()
    service.probe()
    assert service.authenticate(pin()).ok
    opened = jpki_reader.opened
    service.release()
    service.release()
    assert card.verified == frozenset()
    assert jpki_reader.opened == opened
    assert service.authenticate(pin()).ok                   # a new session opens a new transport
    assert jpki_reader.opened == opened + 1


# -- nothing secret in the logs ------------------------------------------------------------------------

def test_logs_hold_no_pin_and_no_card_data(service, insert, demo_pki, caplog):
    caplog.set_level(logging.DEBUG)
    insert("expired")
    service.probe()
    service.authenticate(pin("4321"))
    insert()
    service.probe()
    service.authenticate(pin("4321"))
    service.authenticate(pin("1234"))
    text = caplog.text
    cert = x509.load_der_x509_certificate(demo_pki.profile("expired").auth_cert)
    for secret in ("4321", "34333231", "1234", "31323334", f"{cert.serial_number:x}", str(cert.serial_number),
                   cert.subject.rfc4514_string()):
        assert secret.lower() not in text.lower()
    assert "cert_expired" in text                        # it does log *why*


def test_identity_is_plain_data(service, insert):
    insert()
    outcome = service.authenticate(pin())
    fields = {f.name for f in dataclasses.fields(outcome.identity)}
    assert fields == {"cert_hash", "not_before", "not_after", "issuer", "test_pki"}


def test_card_pulled_while_the_card_is_working_is_removed_not_mute(service, insert, jpki_reader):
    """The UI thread removes the card while the worker is inside card.process()."""
    card = insert()
    service.probe()
    real_process = card.process

    def process_then_lose_power(apdu):
        jpki_reader.remove()                # power goes away under the card...
        return real_process(apdu)           # ...so it answers nothing

    card.process = process_then_lose_power
    assert service.authenticate(pin()).error is CardError.CARD_REMOVED


def test_after_success_the_service_knows_the_counter_is_full_again(service, insert):
    card = insert("pin-1-try")
    service.probe()
    outcome = service.authenticate(pin())
    assert outcome.ok and card.tries_left() == 3
    assert outcome.tries_left == 3                          # reported, not None (issue item 3)
    assert service.authenticate(pin()).ok                   # a second sign-in in the same session works


def test_pcscd_gone_has_its_own_error(demo_trust, jpki_now):
    """pcscd stopping is told apart from one reader being unplugged (kiosk.core.interfaces.PcscdGoneError)."""
    from kiosk.card.service import CardService
    from kiosk.core.card import CardError
    from kiosk.core.interfaces import PcscdGoneError, ReaderGoneError

    class GoneReader:
        def __init__(self, exc):
            self.exc = exc

        def start(self, listener):
            pass

        def stop(self):
            pass

        def open(self):
            raise self.exc

    pcscd = CardService(GoneReader(PcscdGoneError("pcscd_gone")), demo_trust, lambda: jpki_now)
    assert pcscd.probe().error == CardError.PCSCD_GONE
    reader = CardService(GoneReader(ReaderGoneError("unplugged")), demo_trust, lambda: jpki_now)
    assert reader.probe().error == CardError.READER_GONE
