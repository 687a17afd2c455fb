"""The virtual My Number Card behaves like the reference says a card does (jpki.md §3-§6);
the demo PKI its profiles come from; the in-process reader it sits in."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from kiosk.card.apdu_allowlist import AllowlistTransport, ApduRefused
from kiosk.card.demo_pki import AUTH_CA_NAME, demo_profiles, demo_trust_pem, ensure_demo_pki
from kiosk.card.virtual_card import (
    DEFAULT_ATR,
    FAKE_MY_NUMBER,
    KENHOJO_AID,
    KENKAKU_AID,
    CardProfile,
    LinkModel,
    VirtualJpkiCard,
)
from kiosk.card.virtual_reader import VirtualReader
from kiosk.core.interfaces import CardEventKind as K
from kiosk.core.interfaces import CardGoneError, ReaderGoneError

H = bytes.fromhex
SELECT_JPKI = H("00A4040C0AD392F000260100000001")
SHA256_DI = H("3031300d060960864801650304020105000420")
SHA1_DI = H("3021300906052b0e03021a05000414")


def ef(fid: int) -> bytes:
    return H("00A4020C02") + fid.to_bytes(2, "big")


def verify(pin: bytes | None = None) -> bytes:
    return H("00200080") if pin is None else H("0020008004") + pin if len(pin) == 4 else \
        H("00200080") + bytes([len(pin)]) + pin


def sign_apdu(digest: bytes, prefix: bytes = SHA256_DI, le: bool = True) -> bytes:
    body = prefix + digest
    return H("802A0080") + bytes([len(body)]) + body + (b"\x00" if le else b"")


def sw(resp: bytes) -> int:
    return int.from_bytes(resp[-2:], "big")


def tx(card: VirtualJpkiCard, *apdus: bytes) -> bytes:
    """Send several APDUs, return the last response (all earlier ones must succeed)."""
    for apdu in apdus[:-1]:
        assert sw(card.process(apdu)) == 0x9000, apdu.hex()
    return card.process(apdus[-1])


def read_all(card: VirtualJpkiCard, fid: int) -> bytes:
    head = tx(card, SELECT_JPKI, ef(fid), H("00B0000004"))
    total = int.from_bytes(head[2:4], "big") + 4
    out = b""
    while len(out) < total:
        n = min(256, total - len(out))
        r = card.process(bytes([0, 0xB0, len(out) >> 8, len(out) & 0xFF, n & 0xFF]))
        assert sw(r) == 0x9000
        out += r[:-2]
    return out


def test_defaults(make_jpki_card):
    card = make_jpki_card()
    assert card.atr == DEFAULT_ATR == H("3BE000FF8131FE4514")
    assert VirtualJpkiCard(CardProfile(), atr=H("3B88800100000041E0B381A1003B")).atr[0] == 0x3B


def test_select(make_jpki_card):
    card = make_jpki_card()
    assert card.process(SELECT_JPKI) == H("9000")
    assert card.process(H("00A4040C0AD392F000260100000002")) == H("6A82")
    assert card.process(H("00A4040C05D392F00026")) == H("6A82")       # no partial DF names
    assert card.process(ef(0x0005)) == H("6A82")
    assert card.process(ef(0x000A)) == H("9000")
    card.reset()
    assert card.process(ef(0x000A)) == H("6A82")                      # nothing selected after reset
    assert card.process(H("00A4080C02000A")) == H("6A86")


def test_not_a_jpki_card_answers_6a82_to_everything_it_is_asked_to_select(make_jpki_card):
    card = make_jpki_card("transit-card")
    for aid in ("D392F000260100000001", "D3921000310001010408", "D3921000310001010402"):
        assert card.process(H("00A4040C0A") + H(aid)) == H("6A82")


def test_token_info(make_jpki_card, demo_pki):
    card = make_jpki_card()
    assert tx(card, SELECT_JPKI, ef(0x0006), H("00B0000014")) == H("4A504B494150494343544F4B454E322020202020") + H("9000")
    assert tx(make_jpki_card("juki-card"), SELECT_JPKI, ef(0x0006), H("00B0000014"))[:-2].rstrip() == b"JPKIAPICCTOKEN"


def test_read_binary_offsets_and_end(make_jpki_card, demo_pki):
    card = make_jpki_card()
    der = demo_pki.profile("registered-1").auth_cert
    assert read_all(card, 0x000A) == der
    assert x509.load_der_x509_certificate(read_all(card, 0x000B)) == demo_pki.ca_cert
    r = tx(card, ef(0x000A), H("00B0010000"))
    assert r[:-2] == der[256:512] and sw(r) == 0x9000
    r = card.process(H("00B0030000"))
    assert len(r) == 258 and r[:-2] == der[768:] + bytes(256 - (len(der) - 768))   # EF is padded
    assert card.process(H("00B0080000")) == H("6B00")                 # offset == EF size (2048)
    assert card.process(H("00B07F0000")) == H("6B00")
    r = card.process(H("00B007FF00"))
    assert r == b"\x00" + H("9000")                                    # last byte, short read
    assert card.process(H("00B0810000")) == H("6A81")                 # no SFI reads
    tx(card, ef(0x0018))
    assert card.process(H("00B0000004")) == H("6981")                 # a PIN is not readable


def test_read_without_a_current_ef(make_jpki_card):
    card = make_jpki_card()
    assert card.process(H("00B0000004")) == H("6986")
    assert tx(card, SELECT_JPKI, H("00B0000004")) == H("6986")


def test_auth_pin_counter_lock_and_reset(make_jpki_card):
    card = make_jpki_card()
    tx(card, SELECT_JPKI, ef(0x0018))
    assert card.process(verify()) == H("63C3")
    assert card.process(verify(b"0000")) == H("63C2")
    assert card.process(verify()) == H("63C2")                       # the query spends nothing
    assert card.process(verify(b"1234")) == H("9000")
    assert card.process(verify()) == H("9000")                       # already verified
    assert card.tries_left() == 3                                    # a right PIN resets the counter
    assert card.process(verify(b"9999")) == H("63C2")
    assert "jpki/0018" not in card.verified                          # a wrong PIN drops VERIFY status
    assert card.process(verify(b"9999")) == H("63C1")
    assert card.process(verify(b"9999")) == H("63C0")
    assert card.process(verify()) == H("6983")
    assert card.process(verify(b"1234")) == H("6983")                # even the right PIN, now
    assert card.tries_left() == 0
    assert card.process(verify(b"123")) == H("6983")


def test_blocked_status_word_is_configurable(make_jpki_card):
    card = make_jpki_card("pin-locked", blocked_sw=0x6984)
    assert tx(card, SELECT_JPKI, ef(0x0018), verify()) == H("6984")


def test_pin_counters_persist_across_instances(make_jpki_card, demo_pki, tmp_path):
    state = tmp_path / "card.json"
    first = VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state)
    assert tx(first, SELECT_JPKI, ef(0x0018), verify(b"0000")) == H("63C2")
    assert tx(first, ef(0x001B), verify(b"WRONGPIN")) == H("63C4")
    second = VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state)
    assert tx(second, SELECT_JPKI, ef(0x0018), verify()) == H("63C2")
    assert tx(second, ef(0x001B), verify()) == H("63C4")
    assert second.process(verify(b"JPKITEST1")) == H("9000")
    assert VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state).tries_left("jpki/001B") == 5
    for _ in range(2):
        tx(second, ef(0x0018), verify(b"0000"))
    third = VirtualJpkiCard(demo_pki.profile("registered-1"), state_path=state)
    assert tx(third, SELECT_JPKI, ef(0x0018), verify()) == H("6983")


def test_profiles_start_with_their_tries(make_jpki_card):
    assert tx(make_jpki_card("pin-1-try"), SELECT_JPKI, ef(0x0018), verify()) == H("63C1")
    assert tx(make_jpki_card("pin-locked"), SELECT_JPKI, ef(0x0018), verify()) == H("6983")
    assert tx(make_jpki_card(), SELECT_JPKI, ef(0x001B), verify()) == H("63C5")


def test_signature_side_needs_the_signature_pin(make_jpki_card, demo_pki):
    card = make_jpki_card()
    assert tx(card, SELECT_JPKI, ef(0x0001), H("00B0000004")) == H("6982")
    assert tx(card, ef(0x0002), H("00B0000004"))[:2] == H("3082")     # the CA is free
    tx(card, ef(0x001B), verify(b"JPKITEST1"))
    assert tx(card, ef(0x0001), H("00B0000004"))[:-2] == demo_pki.profile("registered-1").sign_cert[:4]


def test_auth_signature(make_jpki_card, demo_pki):
    card = make_jpki_card()
    digest = hashlib.sha256(b"challenge").digest()
    assert tx(card, SELECT_JPKI, ef(0x0017), sign_apdu(digest)) == H("6982")   # before VERIFY
    tx(card, ef(0x0018), verify(b"1234"), ef(0x0017))
    r = card.process(sign_apdu(digest))
    assert sw(r) == 0x9000 and len(r) == 258
    cert = x509.load_der_x509_certificate(demo_pki.profile("registered-1").auth_cert)
    cert.public_key().verify(r[:-2], b"challenge", padding.PKCS1v15(), hashes.SHA256())
    # the card pads whatever DigestInfo it gets: SHA-1 works too (the kiosk never sends it)
    d1 = hashlib.sha1(b"x").digest()
    r1 = card.process(sign_apdu(d1, SHA1_DI))
    cert.public_key().verify(r1[:-2], d1, padding.PKCS1v15(), Prehashed(hashes.SHA1()))
    assert card.process(sign_apdu(bytes(32), prefix=b"")) == H("6A80")        # raw data: no
    assert card.process(sign_apdu(bytes(31))) == H("6A80")
    assert card.process(b"\x00" + sign_apdu(digest)[1:]) == H("6E00")          # CLA 80 only
    card.process(SELECT_JPKI)                                                 # re-SELECT clears VERIFY
    assert tx(card, ef(0x0017), sign_apdu(digest)) == H("6982")


def test_signature_without_le_comes_by_get_response(make_jpki_card, demo_pki):
    card = make_jpki_card()
    tx(card, SELECT_JPKI, ef(0x0018), verify(b"1234"), ef(0x0017))
    assert card.process(sign_apdu(bytes(32), le=False)) == H("6100")
    first = card.process(H("00C0000080"))
    assert len(first) == 130 and first[-2:] == H("6180")
    rest = card.process(H("00C0000080"))
    assert rest[-2:] == H("9000")
    cert = x509.load_der_x509_certificate(demo_pki.profile("registered-1").auth_cert)
    cert.public_key().verify(first[:-2] + rest[:-2], bytes(32), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert card.process(H("00C0000000")) == H("6985")                  # nothing pending any more


def test_signature_key_signs_after_signature_pin(make_jpki_card, demo_pki):
    card = make_jpki_card()
    tx(card, SELECT_JPKI, ef(0x0018), verify(b"1234"))
    assert tx(card, ef(0x001A), sign_apdu(bytes(32))) == H("6982")    # the auth PIN does not do
    tx(card, ef(0x001B), verify(b"JPKITEST1"), ef(0x001A))
    r = card.process(sign_apdu(bytes(32)))
    cert = x509.load_der_x509_certificate(demo_pki.profile("registered-1").sign_cert)
    cert.public_key().verify(r[:-2], bytes(32), padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def test_reset_and_power_clear_verify_status(make_jpki_card):
    card = make_jpki_card()
    for clear in (card.reset, lambda: (card.power_off(), card.power_on())):
        tx(card, SELECT_JPKI, ef(0x0018), verify(b"1234"))
        assert card.verified == {"jpki/0018"}
        clear()
        assert card.verified == frozenset()
        assert tx(card, SELECT_JPKI, ef(0x0017), sign_apdu(bytes(32))) == H("6982")


def test_unpowered_and_mute_cards_say_nothing(make_jpki_card):
    card = make_jpki_card()
    card.power_off()
    assert card.process(SELECT_JPKI) == b"" and not card.powered
    card.power_on()
    assert card.process(SELECT_JPKI) == H("9000")
    assert make_jpki_card(mute=True).process(SELECT_JPKI) == b""


def test_no_writes_no_pin_change_no_unknown_instructions(make_jpki_card):
    card = make_jpki_card()
    tx(card, SELECT_JPKI, ef(0x0018), verify(b"1234"))
    for apdu in (H("0024018004") + b"9999", H("002C0080"), H("00D6000001") + b"A", H("00E2000001") + b"A"):
        assert card.process(apdu) == H("6D00")
    assert card.process(H("10A4040C0A") + SELECT_JPKI[5:]) == H("6E00")
    assert card.process(H("00A4")) == H("6700")
    assert card.process(H("00B000000400")) == H("6700")                 # malformed body
    assert tx(card, ef(0x0018), verify()) == H("9000")                  # the PIN is unchanged...
    assert card.process(verify(b"1234")) == H("9000")                   # ...still 1234


def test_my_number_aps_exist_and_hold_only_a_fake_number(make_jpki_card):
    card = make_jpki_card()
    kenhojo = H("00A4040C0A") + KENHOJO_AID
    assert tx(card, kenhojo, ef(0x0001), H("00B0000000")) == H("6982")   # needs the support PIN
    r = tx(card, ef(0x0011), verify(b"1234"), ef(0x0001), H("00B0000000"))
    assert FAKE_MY_NUMBER.encode() in r
    r = tx(card, H("00A4040C0A") + KENKAKU_AID, ef(0x0001), H("00B0000000"))
    assert FAKE_MY_NUMBER.encode() in r
    # 11-digit weighted check digit of the fake number is 0, so ...1 can never be valid
    digits = [int(c) for c in FAKE_MY_NUMBER[:11]][::-1]
    weights = [n + 1 if n <= 6 else n - 5 for n in range(1, 12)]
    remainder = sum(p * q for p, q in zip(digits, weights)) % 11
    check = 0 if remainder <= 1 else 11 - remainder
    assert int(FAKE_MY_NUMBER[-1]) != check
    # a 住基カード or a smartphone has no such APs
    assert make_jpki_card("juki-card").process(kenhojo) == H("6A82")


def test_smartphone_certificate_needs_the_auth_pin(make_jpki_card):
    card = make_jpki_card("smartphone")
    assert tx(card, SELECT_JPKI, ef(0x000A), H("00B0000004")) == H("6982")
    assert tx(card, ef(0x0018), verify(b"1234"), ef(0x000A), H("00B0000004"))[:2] == H("3082")


def test_t0_style_and_strict_le_profiles(make_jpki_card):
    card = make_jpki_card(t0_get_response=True)
    assert tx(card, SELECT_JPKI, ef(0x0006), H("00B0000014")) == H("6114")
    assert card.process(H("00C0000014"))[:-2].startswith(b"JPKIAPICCTOKEN2")
    strict = make_jpki_card(strict_le=True)
    assert tx(strict, SELECT_JPKI, ef(0x0006), H("00B0000020")) == H("6C14")
    assert strict.process(H("00B0000014"))[-2:] == H("9000")
    assert strict.process(H("00B0001000")) == H("6C04")


def test_stats_and_link_model(demo_pki):
    slept = []
    link = LinkModel(bits_per_second=10_000, per_apdu_s=0.001, sign_s=0.5, sleep=slept.append)
    card = VirtualJpkiCard(demo_pki.profile("registered-1"), latency=link)
    card.process(SELECT_JPKI)                                       # 15 in, 2 out
    assert slept == [pytest.approx(0.001 + 17 * 10 / 10_000)]
    tx(card, ef(0x0018), verify(b"1234"), ef(0x0017))
    slept.clear()
    card.process(sign_apdu(bytes(32)))                               # 57 in, 258 out, + signing
    assert slept == [pytest.approx(0.001 + 315 * 10 / 10_000 + 0.5)]
    assert card.stats.apdus == 5 and card.stats.bytes_in == 15 + 7 + 9 + 7 + 57
    assert card.stats.bytes_out == 2 * 4 + 258 and card.stats.by_ins[0xA4] == 3
    assert card.stats.cpu_seconds > 0
    card.stats.reset()
    assert card.stats.bytes_total == 0 and not card.stats.by_ins


# -- the demo PKI the profiles come from --------------------------------------------------------------

def test_demo_pki_has_every_patron_facing_case(demo_pki):
    assert {"registered-1", "registered-2", "registered-3", "unregistered", "expired", "not-yet-valid",
            "pin-1-try", "pin-locked", "transit-card", "juki-card", "smartphone",
            "second-pin-differs", "second-pin-1-try"} <= set(demo_pki.cards)
    assert demo_pki.ca_cert.subject == AUTH_CA_NAME
    assert AUTH_CA_NAME.rfc4514_string() == "OU=JPKI for user authentication TEST,O=JPKI-TEST,C=JP"
    assert [n for n, c in demo_pki.cards.items() if c.registered and n.startswith("registered")] == \
        ["registered-1", "registered-2", "registered-3"]
    assert not demo_pki.cards["unregistered"].registered
    assert demo_pki.cards["transit-card"].cert_hash is None and not demo_pki.profile("transit-card").jpki
    hashes_ = {c.cert_hash for c in demo_pki.cards.values() if c.cert_hash}
    assert len(hashes_) == 12                                     # every card has its own certificate
    now = dt.datetime.now(dt.timezone.utc)
    for name, card in demo_pki.cards.items():
        if not card.profile.auth_cert:
            continue
        cert = x509.load_der_x509_certificate(card.profile.auth_cert)
        assert [a.oid for a in cert.subject] == [NameOID.COUNTRY_NAME, NameOID.COMMON_NAME]  # no personal data
        assert cert.public_key().key_size == 2048 and cert.issuer == AUTH_CA_NAME
        assert cert.public_key().public_numbers() == card.profile.auth_key.public_key().public_numbers()
        if name == "expired":
            assert cert.not_valid_after_utc < now
        elif name == "not-yet-valid":
            assert cert.not_valid_before_utc > now + dt.timedelta(days=9 * 365)
        else:
            assert cert.not_valid_before_utc < now < cert.not_valid_after_utc


def test_demo_pki_is_idempotent_keeps_keys_private_and_repairs(demo_pki, tmp_path):
    copy = tmp_path / "pki"
    shutil.copytree(demo_pki.directory, copy)
    again = ensure_demo_pki(copy)
    assert {n: c.cert_hash for n, c in again.cards.items()} == {n: c.cert_hash for n, c in demo_pki.cards.items()}
    keys = list(copy.rglob("*.key.pem"))
    assert len(keys) == 2 + 2 * 12
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    assert demo_trust_pem(copy).read_bytes() == demo_pki.ca_pem
    (copy / "cards" / "expired" / "auth.der").unlink()
    repaired = ensure_demo_pki(copy)
    assert repaired.cards["expired"].cert_hash != demo_pki.cards["expired"].cert_hash
    assert repaired.cards["registered-1"].cert_hash == demo_pki.cards["registered-1"].cert_hash
    assert demo_profiles(copy)["expired"].auth_cert == repaired.profile("expired").auth_cert


# -- the in-process reader ----------------------------------------------------------------------------

def test_virtual_reader_events_and_transports(make_jpki_card):
    reader = VirtualReader(name="R")
    with pytest.raises(CardGoneError):
        reader.open()
    card = make_jpki_card()
    reader.insert(card)                         # before start: no listener yet
    events = []
    reader.start(events.append)
    assert [e.kind for e in events] == [K.READER_AVAILABLE, K.INSERTED] and events[0].reader == "R"
    transport = reader.open()
    assert isinstance(transport, AllowlistTransport)
    assert transport.transmit(SELECT_JPKI) == (b"", 0x9000)
    with pytest.raises(ApduRefused):
        transport.transmit(H("00A4040C0A") + KENHOJO_AID)
    reader.remove()
    assert events[-1].kind is K.REMOVED and not card.powered
    with pytest.raises(CardGoneError):
        transport.transmit(SELECT_JPKI)
    reader.insert(card)                         # the same card back: the old transport stays dead
    with pytest.raises(CardGoneError):
        transport.transmit(SELECT_JPKI)
    fresh = reader.open()
    reader.unplug()
    assert events[-1].kind is K.READER_UNAVAILABLE
    with pytest.raises(ReaderGoneError):
        fresh.transmit(SELECT_JPKI)
    with pytest.raises(ReaderGoneError):
        reader.open()
    reader.replug()
    assert [e.kind for e in events[-2:]] == [K.READER_AVAILABLE, K.INSERTED]
    closed = reader.open()
    closed.close()
    with pytest.raises(CardGoneError):
        closed.transmit(SELECT_JPKI)
    reader.stop()
    reader.remove()
    assert events[-1].kind is K.INSERTED        # no listener after stop()
