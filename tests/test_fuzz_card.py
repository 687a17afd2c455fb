"""Fuzz the card's parsers: only IdentityError, JpkiError or KenhojoError may escape.

A hostile or broken card controls every byte the kiosk reads from it: the token, the
certificate, the status words, the kenhojo TLV headers. Whatever they are, the card
layer must answer with its own typed verdict (bad certificate, mute card, ...), never
with a library's exception that the shell can only show as "mute card".
"""

from __future__ import annotations

import datetime as dt
from datetime import date

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import example, given
from hypothesis import strategies as st
from kiosk_testing.fuzz import FUZZ

from kiosk.card.demo_pki import AUTH_CA_NAME, issue_auth_cert
from kiosk.card.identity import IdentityError, TrustAnchor, TrustStore, check_certificate, verify_challenge
from kiosk.card.jpki import JpkiCard, JpkiError, der_length
from kiosk.card.kenhojo import KenhojoCard, KenhojoError, TlvHeader, parse_birth_date, parse_tlv_header
from kiosk.card.service import CardService
from kiosk.core.card import CardError

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = dt.timedelta(days=1)

# One CA and one card certificate for the module: the fuzzer damages copies of CARD_DER.
_CA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_CARD_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_CA = (x509.CertificateBuilder().subject_name(AUTH_CA_NAME).issuer_name(AUTH_CA_NAME)
       .public_key(_CA_KEY.public_key()).serial_number(1)
       .not_valid_before(NOW - 365 * DAY).not_valid_after(NOW + 3650 * DAY)
       .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
       .sign(_CA_KEY, hashes.SHA256()))
CARD_DER = issue_auth_cert(_CA_KEY, _CA, _CARD_KEY.public_key(), NOW - DAY, NOW + 100 * DAY)
TRUST = TrustStore([TrustAnchor("ca", _CA, test=True)], accept_test=True)
CHALLENGE = b"\x5a" * 32
SIGNATURE = _CARD_KEY.sign(CHALLENGE, padding.PKCS1v15(), hashes.SHA256())

# Where the inner fields sit in CARD_DER: damage there leaves the outer DER intact.
VERSION_AT = CARD_DER.index(bytes.fromhex("a003020102")) + 4                  # v3 -> garbage version
SIG_ALG_AT = CARD_DER.rindex(bytes.fromhex("06092a864886f70d01010b")) + 10    # outer signatureAlgorithm OID
KEY_ALG_AT = CARD_DER.index(bytes.fromhex("06092a864886f70d010101")) + 10     # rsaEncryption OID, last arc
KEY_BITS_AT = CARD_DER.index(bytes.fromhex("0282010100")) - 3                 # inside the key's SEQUENCE


def damaged(edits: list[tuple[int, int]], cut: int = 0) -> bytes:
    der = bytearray(CARD_DER)
    for at, value in edits:
        der[at % len(der)] = value
    return bytes(der[:len(der) - cut])


def test_the_undamaged_certificate_verifies():
    assert check_certificate(CARD_DER, TRUST, NOW).issuer == "ca"
    verify_challenge(CARD_DER, CHALLENGE, SIGNATURE)


@pytest.mark.parametrize("at, value, was, key_too", [
    (VERSION_AT, 0x4C, "InvalidVersion", True),         # "76 is not a valid X509 version"
    (SIG_ALG_AT, 0x00, "UnsupportedAlgorithm", False),  # "Signature algorithm OID ... not recognized"
    (KEY_ALG_AT, 0x05, "UnsupportedAlgorithm", True),   # "Unknown key type"
    (KEY_BITS_AT, 0x31, "ValueError", True),            # "Could not deserialize key data"
])
def test_a_damaged_inner_field_is_a_bad_certificate(at, value, was, key_too):
    """These escaped as library exceptions (`was`) before; now the verdict is BAD_CERTIFICATE.
    `key_too`: the damage also hides the key, so the signature check refuses it the same way."""
    der = damaged([(at, value)])
    checks = [lambda: check_certificate(der, TRUST, NOW)]
    if key_too:
        checks.append(lambda: verify_challenge(der, CHALLENGE, SIGNATURE))
    for check in checks:
        with pytest.raises(IdentityError) as info:
            check()
        assert info.value.kind is CardError.BAD_CERTIFICATE, (was, str(info.value))


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(CARD_DER) - 1), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, len(CARD_DER)) | st.just(0))
@example(edits=[(VERSION_AT, 0x4C)], cut=0)
@example(edits=[(SIG_ALG_AT, 0x00)], cut=0)
@example(edits=[(KEY_ALG_AT, 0x05)], cut=0)
@example(edits=[(KEY_BITS_AT, 0x31)], cut=0)
def test_a_damaged_certificate_gives_only_identity_errors(edits, cut):
    der = damaged(edits, cut)
    try:
        check_certificate(der, TRUST, NOW)
    except IdentityError as e:
        assert isinstance(e.kind, CardError)
    try:
        verify_challenge(der, CHALLENGE, SIGNATURE)
    except IdentityError as e:
        assert e.kind in (CardError.BAD_CERTIFICATE, CardError.BAD_SIGNATURE)


@FUZZ
@given(der=st.binary(max_size=600) | st.builds(lambda tail: b"\x30\x82" + tail, st.binary(max_size=600)))
def test_arbitrary_bytes_as_a_certificate_give_only_identity_errors(der):
    with pytest.raises(IdentityError):
        check_certificate(der, TRUST, NOW)


def test_a_card_with_a_damaged_certificate_is_a_bad_certificate_and_costs_no_try(
        jpki_reader, demo_trust, jpki_now, make_jpki_card, demo_pki):
    """End to end: the patron is told "bad certificate", not "mute card", and keeps the try."""
    good = demo_pki.profile("registered-1").auth_cert
    at = good.index(bytes.fromhex("a003020102")) + 4
    card = make_jpki_card("registered-1", auth_cert=good[:at] + b"\x4c" + good[at + 1:])
    jpki_reader.insert(card)
    service = CardService(jpki_reader, demo_trust, jpki_now, rng=lambda n: b"\x5a" * n)
    try:
        outcome = service.authenticate(bytearray(b"1234"))
    finally:
        service.release()
    assert outcome.error is CardError.BAD_CERTIFICATE
    assert card.tries_left() == card.profile.auth_tries


# -- JPKI AP: token, certificate EF, status words ----------------------------------------------

class ScriptedCard:
    """A transport that answers each APDU with the next drawn (data, SW), then 6F00."""

    def __init__(self, answers: list[tuple[bytes, int]]) -> None:
        self.answers = list(answers)

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        return self.answers.pop(0) if self.answers else (b"", 0x6F00)

    def close(self) -> None:
        pass


sws = st.sampled_from([0x9000, 0x6A82, 0x6982, 0x63C2, 0x6983, 0x6B00, 0x6C10, 0x6110, 0x6F00, 0x0000]) | \
    st.integers(0, 0xFFFF)
answers = st.lists(st.tuples(st.binary(max_size=258) | st.builds(lambda t: b"\x30\x82" + t, st.binary(max_size=80)),
                             sws), max_size=24)


@FUZZ
@given(answers=answers)
@example(answers=[(b"", 0x9000), (b"", 0x9000), (b"JPKIAPICCTOKEN2\xff\xfe", 0x9000)])
def test_the_jpki_ap_gives_only_jpki_errors(answers):
    card = JpkiCard(ScriptedCard(answers))
    try:
        if card.select_ap():
            card.read_token()
            card.pin_tries_left()
            der = card.read_auth_cert(lambda head: None)
            assert len(der) == der_length(der)
    except JpkiError as e:
        assert isinstance(e.kind, CardError)


@FUZZ
@given(head=st.binary(max_size=70))
def test_der_length_is_a_size_or_a_jpki_error(head):
    try:
        n = der_length(head)
    except JpkiError as e:
        assert e.kind is CardError.BAD_CERTIFICATE
    else:
        assert 2 <= n <= 2 + 3 + 0xFFFFFF


def test_the_scripted_token_and_certificate_read_as_a_real_card_would():
    """The harness is sound: a well-formed script gives the token and the certificate."""
    cert = CARD_DER
    script = [(b"", 0x9000), (b"", 0x9000), (b"JPKIAPICCTOKEN2\x00\x00\x00\x00\x00", 0x9000), (b"", 0x9000),
              (cert[:64], 0x9000)]
    script += [(cert[i:i + 256], 0x9000) for i in range(64, len(cert), 256)]
    card = JpkiCard(ScriptedCard(script))
    assert card.select_ap() and card.read_token().value == "my_number_card"
    assert card.read_auth_cert() == cert


# -- kenhojo AP: the TLV walker over EF 0002 ---------------------------------------------------

@FUZZ
@given(buf=st.binary(max_size=8))
def test_a_tlv_header_is_a_header_none_or_a_kenhojo_error(buf):
    try:
        header = parse_tlv_header(buf)
    except KenhojoError:
        return
    if header is not None:
        assert isinstance(header, TlvHeader) and header.size <= len(buf) and header.length >= 0
        assert header.constructed in (True, False)


@FUZZ
@given(value=st.binary(max_size=18) | st.text("0123456789 \x00", max_size=12).map(str.encode))
@example(value=b"00000101")             # year 0
@example(value=b"20241301")             # month 13
def test_a_birth_date_is_a_date_or_a_kenhojo_error(value):
    try:
        assert isinstance(parse_birth_date(value), date)
    except KenhojoError:
        pass


class BasicInfoEf:
    """EF 0002 holding `content`: READ BINARY served from it, every other command 9000."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def transmit(self, apdu: bytes | bytearray) -> tuple[bytes, int]:
        if apdu[1] == 0xB0:
            offset, length = apdu[2] << 8 | apdu[3], apdu[4] or 256
            if offset >= len(self.content):
                return b"", 0x6B00
            return self.content[offset:offset + length], 0x9000
        return b"", 0x9000

    def close(self) -> None:
        pass


def _item(tag: int, value: bytes) -> bytes:
    return tag.to_bytes(2, "big") + bytes([len(value)]) + value


ef_contents = st.binary(max_size=120) | st.builds(
    lambda items, pad: b"\xff\x20" + bytes([sum(map(len, items))]) + b"".join(items) + pad,
    st.lists(st.builds(_item, st.sampled_from([0xDF21, 0xDF22, 0xDF24, 0xDF25, 0x1F01]),
                       st.binary(max_size=20) | st.just(b"19800229")), max_size=5),
    st.binary(max_size=6))


@FUZZ
@given(content=ef_contents)
@example(content=b"\xff\x20\x0b" + _item(0xDF24, b"19800229"))
def test_the_basic_info_walker_gives_a_date_or_a_kenhojo_error(content):
    card = KenhojoCard(BasicInfoEf(content))
    try:
        born = card.read_birth_date()
    except KenhojoError:
        return
    assert isinstance(born, date)
