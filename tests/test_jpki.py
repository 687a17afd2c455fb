"""The JPKI protocol layer over a real transport stack (virtual reader -> allowlist -> virtual card)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from kiosk.card.jpki import READ_MAX, JpkiCard, JpkiError, PinResult, der_length, digest_info_sha256
from kiosk.core.card import CardError, CardKind
from kiosk.core.interfaces import CardGoneError

H = bytes.fromhex


@pytest.fixture
def open_card(jpki_reader, make_jpki_card, apdu_log):
    """open_card("registered-1", **overrides) -> (JpkiCard, VirtualJpkiCard); APDUs land in apdu_log."""
    def open_(name="registered-1", **overrides):
        card = make_jpki_card(name, **overrides)
        jpki_reader.insert(card)
        return JpkiCard(jpki_reader.open()), card
    return open_


class Scripted:
    """A card that answers from a script: for status words no card profile produces."""

    def __init__(self, *replies: tuple[bytes, int]) -> None:
        self.replies = list(replies)
        self.sent: list[bytes] = []

    def transmit(self, apdu):
        self.sent.append(bytes(apdu))
        return self.replies.pop(0)

    def close(self):
        pass


def sent(apdu_log):
    return [r.apdu.hex().upper() for r in apdu_log]


# -- SELECT and token -------------------------------------------------------------------------

def test_select_ap(open_card, apdu_log):
    jc, _ = open_card()
    assert jc.select_ap() is True
    assert sent(apdu_log) == ["00A4040C0AD392F000260100000001"]
    jc, _ = open_card("transit-card")
    assert jc.select_ap() is False


@pytest.mark.parametrize("sw", [0x6A82, 0x6A81, 0x6A86, 0x6D00, 0x6E00, 0x6999])
def test_select_ap_not_found_answers(sw):
    assert JpkiCard(Scripted((b"", sw))).select_ap() is False


@pytest.mark.parametrize("sw", [0x6F00, 0x6581, 0x0000, 0x1234])
def test_select_ap_garbage_is_a_mute_card(sw):
    with pytest.raises(JpkiError) as info:
        JpkiCard(Scripted((b"", sw))).select_ap()
    assert info.value.kind is CardError.MUTE_CARD


def test_mute_card(open_card):
    jc, _ = open_card(mute=True)
    with pytest.raises(JpkiError) as info:
        jc.select_ap()
    assert info.value.kind is CardError.MUTE_CARD


@pytest.mark.parametrize("name, kind", [
    ("registered-1", CardKind.MY_NUMBER_CARD),
    ("juki-card", CardKind.JUKI_CARD),
    ("smartphone", CardKind.SMARTPHONE),
])
def test_token(open_card, apdu_log, name, kind):
    jc, _ = open_card(name)
    jc.select_ap()
    assert jc.read_token() is kind
    assert sent(apdu_log)[1:] == ["00A4020C020006", "00B0000014"]


def test_unknown_token_is_not_a_usable_jpki_card(open_card):
    jc, _ = open_card(token="JPKIAPXYZTOKEN")
    jc.select_ap()
    assert jc.read_token() is CardKind.NOT_JPKI


# -- certificate reads ------------------------------------------------------------------------

def expected_reads(total: int) -> list[str]:
    """256 bytes (Le=00) first, which holds the DER header, then only what is left."""
    reads = ["00B0000000"]
    offset = READ_MAX
    while offset < total:
        n = min(READ_MAX, total - offset)
        reads.append(f"00B0{offset:04X}{n & 0xFF:02X}")
        offset += n
    return reads


def test_read_auth_cert_sized_from_the_header(open_card, apdu_log, demo_pki):
    jc, card = open_card()
    der = demo_pki.profile("registered-1").auth_cert
    jc.select_ap()
    assert jc.read_auth_cert() == der
    assert sent(apdu_log)[1:] == ["00A4020C02000A"] + expected_reads(len(der))
    assert len(expected_reads(len(der))) == -(-len(der) // 256)                  # as few reads as can be
    assert sent(apdu_log)[-1].endswith(f"{len(der) % 256:02X}")                  # no padding read
    assert x509.load_der_x509_certificate(jc.read_auth_ca_cert()) == demo_pki.ca_cert


def test_read_auth_cert_reads_every_byte_each_time(open_card, apdu_log, demo_pki):
    """No earlier certificate stands in for the card's: the second read is the whole read again."""
    jc, _ = open_card()
    der = demo_pki.profile("registered-1").auth_cert
    jc.select_ap()
    assert jc.read_auth_cert() == der
    first = len(apdu_log)
    assert jc.read_auth_cert() == der
    assert sent(apdu_log)[first:] == expected_reads(len(der))


def test_a_short_certificate_is_one_read(demo_pki):
    tiny = bytes([0x30, 0x81, 0x7D]) + bytes(0x7D)
    card = Scripted((tiny + bytes(256 - len(tiny)), 0x9000))
    jc = JpkiCard(card)
    jc._ef = 0x000A
    assert jc.read_auth_cert() == tiny
    assert card.sent == [bytes.fromhex("00B0000000")]


@pytest.mark.parametrize("overrides", [dict(t0_get_response=True), dict(strict_le=True)])
def test_cert_read_through_61xx_and_6cxx_cards(open_card, apdu_log, demo_pki, overrides):
    jc, card = open_card(**overrides)
    jc.select_ap()
    assert jc.read_token() is CardKind.MY_NUMBER_CARD
    assert jc.read_auth_cert() == demo_pki.profile("registered-1").auth_cert
    ins = {r.apdu[1] for r in apdu_log}
    assert (0xC0 in ins) == bool(overrides.get("t0_get_response"))


def test_6cxx_resends_with_the_right_le(open_card, apdu_log):
    jc, _ = open_card(strict_le=True)
    jc.select_ap()
    jc._select_ef(0x0006)
    data, sw = jc._send(H("00B0000020"))
    assert (data.rstrip(), sw) == (b"JPKIAPICCTOKEN2", 0x9000)
    assert sent(apdu_log)[-2:] == ["00B0000020", "00B0000014"]


def test_endless_61xx_is_a_mute_card():
    replies = [(b"x", 0x6101)] * 100
    jc = JpkiCard(Scripted(*replies))
    with pytest.raises(JpkiError) as info:
        jc._send(H("00B0000001"))
    assert info.value.kind is CardError.MUTE_CARD


@pytest.mark.parametrize("head, total", [
    (H("3082032f"), 0x32F + 4), (H("3081c8"), 0xC8 + 3), (H("3005"), 7), (H("308300ffff"), 0xFFFF + 5),
])
def test_der_length(head, total):
    assert der_length(head) == total


@pytest.mark.parametrize("head", [H("0482032f"), H("30"), H("3080"), H("308401000000"), H("3082ff")])
def test_der_length_refuses_nonsense(head):
    with pytest.raises(JpkiError) as info:
        der_length(head)
    assert info.value.kind is CardError.BAD_CERTIFICATE


@pytest.mark.parametrize("replies, kind", [
    ([(b"", 0x9000), (H("04820300") + bytes(60), 0x9000)], CardError.BAD_CERTIFICATE),     # not DER
    ([(b"", 0x9000), (H("3083010000") + bytes(59), 0x9000)], CardError.BAD_CERTIFICATE),   # too big
    ([(b"", 0x9000), (H("30820300") + bytes(60), 0x9000), (b"", 0x6B00)], CardError.BAD_CERTIFICATE),
    ([(b"", 0x9000), (H("30820300") + bytes(60), 0x9000), (b"", 0x9000)], CardError.BAD_CERTIFICATE),
    ([(b"", 0x9000), (b"", 0x6982)], CardError.MUTE_CARD),                                  # unreadable
    ([(b"", 0x6A82)], CardError.MUTE_CARD),                                                  # no such EF
])
def test_broken_certificate_reads(replies, kind):
    with pytest.raises(JpkiError) as info:
        JpkiCard(Scripted(*replies)).read_auth_cert()
    assert info.value.kind is kind


def test_smartphone_cert_before_verify_is_refused_by_the_card(open_card):
    jc, _ = open_card("smartphone")
    jc.select_ap()
    with pytest.raises(JpkiError) as info:
        jc.read_auth_cert()
    assert info.value.sw == 0x6982


# -- PIN ----------------------------------------------------------------------------------------

def test_tries_query_spends_nothing_and_selects_once(open_card, apdu_log):
    jc, card = open_card()
    jc.select_ap()
    assert jc.pin_tries_left() == 3
    assert jc.pin_tries_left() == 3
    assert card.tries_left() == 3
    assert sent(apdu_log)[1:] == ["00A4020C020018", "00200080", "00200080"]


@pytest.mark.parametrize("name, overrides, tries", [
    ("pin-1-try", {}, 1), ("pin-locked", {}, 0), ("pin-locked", {"blocked_sw": 0x6984}, 0),
])
def test_tries_left(open_card, name, overrides, tries):
    jc, _ = open_card(name, **overrides)
    jc.select_ap()
    assert jc.pin_tries_left() == tries


def test_verify_pin_paths(open_card, apdu_log):
    jc, card = open_card()
    jc.select_ap()
    assert jc.verify_pin(bytearray(b"0000")) == PinResult(ok=False, tries_left=2)
    assert jc.verify_pin(bytearray(b"1234")) == PinResult(ok=True)
    assert jc.pin_tries_left() is None                       # verified: the card says 9000
    assert card.tries_left() == 3
    for _ in range(2):
        jc.verify_pin(bytearray(b"0000"))
    result = jc.verify_pin(bytearray(b"0000"))
    assert result == PinResult(ok=False, tries_left=0) and result.locked
    assert jc.verify_pin(bytearray(b"1234")) == PinResult(ok=False, tries_left=0)   # 6983
    verifies = [a for a in sent(apdu_log) if a.startswith("0020")]
    assert len(verifies) == 7 and all(a.endswith("30303030") for a in verifies if len(a) > 8)
    assert sent(apdu_log).count("00A4020C020018") == 1


def test_verify_pin_on_6984_card(open_card):
    jc, _ = open_card("pin-locked", blocked_sw=0x6984)
    jc.select_ap()
    assert jc.verify_pin(bytearray(b"1234")) == PinResult(ok=False, tries_left=0)


@pytest.mark.parametrize("pin", [b"123", b"12345", b"12a4", b"", "１２３４".encode()])
def test_malformed_pins_are_never_sent(open_card, apdu_log, pin):
    jc, card = open_card()
    jc.select_ap()
    with pytest.raises(ValueError):
        jc.verify_pin(bytearray(pin))
    assert len(apdu_log) == 1 and card.tries_left() == 3


def test_verify_apdu_buffer_is_zeroed(make_jpki_card, jpki_reader):
    card = make_jpki_card()
    jpki_reader.insert(card)
    inner = jpki_reader.open()
    kept = []

    class Keeping:
        def transmit(self, apdu):
            kept.append(apdu)               # hold the very object the protocol layer built
            return inner.transmit(apdu)

        def close(self):
            inner.close()

    jc = JpkiCard(Keeping())
    jc.select_ap()
    pin = bytearray(b"1234")
    assert jc.verify_pin(pin).ok
    verify_apdu = kept[-1]
    assert isinstance(verify_apdu, bytearray) and verify_apdu == bytearray(9)


def test_unexpected_verify_answers():
    with pytest.raises(JpkiError):
        JpkiCard(Scripted((b"", 0x9000), (b"", 0x6A80))).verify_pin(bytearray(b"1234"))
    with pytest.raises(JpkiError):
        JpkiCard(Scripted((b"", 0x9000), (b"", 0x6700))).pin_tries_left()


# -- signing ------------------------------------------------------------------------------------

def test_sign(open_card, apdu_log, demo_pki):
    jc, _ = open_card()
    jc.select_ap()
    digest = hashlib.sha256(b"nonce").digest()
    with pytest.raises(JpkiError) as info:
        jc.sign(digest)                     # no VERIFY yet: 6982
    assert info.value.sw == 0x6982 and info.value.kind is CardError.BAD_SIGNATURE
    assert jc.verify_pin(bytearray(b"1234")).ok
    signature = jc.sign(digest)
    cert = x509.load_der_x509_certificate(demo_pki.profile("registered-1").auth_cert)
    cert.public_key().verify(signature, b"nonce", padding.PKCS1v15(), hashes.SHA256())
    assert sent(apdu_log)[-1] == "802A008033" + digest_info_sha256(digest).hex().upper() + "00"
    with pytest.raises(ValueError):
        jc.sign(bytes(20))


def test_sign_through_get_response(open_card, demo_pki):
    jc, _ = open_card(t0_get_response=True)
    jc.select_ap()
    jc.verify_pin(bytearray(b"1234"))
    signature = jc.sign(bytes(32))
    assert len(signature) == 256


def test_card_gone_passes_through_and_forgets_the_selection(open_card, jpki_reader):
    jc, _ = open_card()
    jc.select_ap()
    jc.pin_tries_left()
    jpki_reader.remove()
    with pytest.raises(CardGoneError):
        jc.pin_tries_left()
    assert jc._ef is None
