"""Certificate and signature checks: issuer by signature, validity, key usage, the card's proof."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from kiosk.card.demo_pki import AUTH_CA_NAME, AUTH_KEY_USAGE, _ku, issue_auth_cert
from kiosk.card.identity import (
    SHIPPED_TRUST_DIR,
    IdentityError,
    TrustAnchor,
    TrustStore,
    cert_hash,
    check_certificate,
    verify_challenge,
    verify_identity,
)
from kiosk.core.card import CardError

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def spare_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(key, name=AUTH_CA_NAME, before=None, after=None):
    now = dt.datetime.now(UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(before or now - 365 * DAY).not_valid_after(after or now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


def anchor(cert, label="ca", test=True):
    return TrustAnchor(label, cert, test)


def sign(key, challenge):
    return key.sign(challenge, padding.PKCS1v15(), hashes.SHA256())


def expect(kind, fn, *args):
    with pytest.raises(IdentityError) as info:
        fn(*args)
    assert info.value.kind is kind, str(info.value)


# -- demo cards ---------------------------------------------------------------------------------

def test_registered_demo_card_is_accepted_only_with_test_anchors(demo_pki, demo_trust):
    profile = demo_pki.profile("registered-1")
    now = dt.datetime.now(UTC)
    identity = verify_identity(profile.auth_cert, b"c" * 32, sign(profile.auth_key, b"c" * 32), demo_trust, now)
    assert identity.cert_hash == hashlib.sha256(profile.auth_cert).hexdigest() == demo_pki.cards["registered-1"].cert_hash
    assert identity.test_pki and identity.issuer == "auth_ca_test"
    cert = x509.load_der_x509_certificate(profile.auth_cert)
    assert (identity.not_before, identity.not_after) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    # the same anchors without the test switch: unknown CA
    strict = TrustStore(demo_trust.anchors, accept_test=False)
    expect(CardError.UNKNOWN_CA, check_certificate, profile.auth_cert, strict, now)
    expect(CardError.UNKNOWN_CA, check_certificate, profile.auth_cert, TrustStore.shipped(), now)


@pytest.mark.parametrize("name, kind", [("expired", CardError.CERT_EXPIRED),
                                        ("not-yet-valid", CardError.CERT_NOT_YET_VALID)])
def test_validity_period(demo_pki, demo_trust, name, kind):
    der = demo_pki.profile(name).auth_cert
    expect(kind, check_certificate, der, demo_trust, dt.datetime.now(UTC))


def test_validity_boundaries_use_the_injected_clock(demo_pki, demo_trust):
    der = demo_pki.profile("registered-1").auth_cert
    cert = x509.load_der_x509_certificate(der)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    assert check_certificate(der, demo_trust, start).cert_hash == cert_hash(der)
    assert check_certificate(der, demo_trust, end).cert_hash == cert_hash(der)
    expect(CardError.CERT_NOT_YET_VALID, check_certificate, der, demo_trust, start - dt.timedelta(seconds=1))
    expect(CardError.CERT_EXPIRED, check_certificate, der, demo_trust, end + dt.timedelta(seconds=1))
    with pytest.raises(ValueError):
        check_certificate(der, demo_trust, start.replace(tzinfo=None))


# -- the real J-LIS anchors -------------------------------------------------------------------------

def test_shipped_anchors_are_the_two_jlis_generations():
    store = TrustStore.shipped()
    assert [a.label for a in store.anchors] == ["auth_ca_2015", "auth_ca_2023"]
    assert not any(a.test for a in store.anchors)
    assert store.anchors[0].cert.subject == store.anchors[1].cert.subject      # one DN, two keys
    fingerprints = {a.label: a.cert.fingerprint(hashes.SHA256()).hex().upper() for a in store.anchors}
    assert fingerprints == {   # from /work/shared/trust/jpki/README.md
        "auth_ca_2015": "4DCFC4CA0AAF9FB2A3081B3F0C991C320B3ACC008667A341EEAEC5AF1D58CA7D",
        "auth_ca_2023": "64114F29620C24ED2631D46476A040E7EE740D956089C00B036A6A8118C322B5",
    }
    assert (SHIPPED_TRUST_DIR / "auth_ca_2023.pem").exists()


def test_lookalike_of_the_jlis_ca_is_refused(demo_pki, spare_key):
    """A CA with exactly the J-LIS DN but another key issues a card certificate: UNKNOWN_CA."""
    store = TrustStore.shipped()
    jlis_name = store.anchors[1].cert.subject
    fake_ca = make_ca(spare_key, name=jlis_name)
    card_key = demo_pki.profile("registered-1").auth_key
    now = dt.datetime.now(UTC)
    der = issue_auth_cert(spare_key, fake_ca, card_key.public_key(), now - DAY, now + 365 * DAY)
    assert x509.load_der_x509_certificate(der).issuer == jlis_name
    expect(CardError.UNKNOWN_CA, check_certificate, der, store, now)
    expect(CardError.UNKNOWN_CA, verify_identity, der, b"x", sign(card_key, b"x"), store, now)
    # it is the key, not the name: trusting the look-alike's key makes the very same cert pass
    with_fake = TrustStore(store.anchors + (anchor(fake_ca, "lookalike"),), accept_test=True)
    assert check_certificate(der, with_fake, now).issuer == "lookalike"


def test_issuer_is_chosen_by_signature_among_same_named_anchors(demo_pki, spare_key):
    other_key = demo_pki.ca_key
    now = dt.datetime.now(UTC)
    gen_a, gen_b = make_ca(other_key), make_ca(spare_key)
    assert gen_a.subject == gen_b.subject
    store = TrustStore([anchor(gen_a, "gen_a"), anchor(gen_b, "gen_b")], accept_test=True)
    card_key = demo_pki.profile("registered-2").auth_key
    der_b = issue_auth_cert(spare_key, gen_b, card_key.public_key(), now - DAY, now + DAY)
    der_a = issue_auth_cert(other_key, gen_a, card_key.public_key(), now - DAY, now + DAY)
    assert check_certificate(der_b, store, now).issuer == "gen_b"
    assert check_certificate(der_a, store, now).issuer == "gen_a"


def test_an_expired_anchor_does_not_vouch(demo_pki, spare_key):
    now = dt.datetime.now(UTC)
    old_ca = make_ca(spare_key, before=now - 3650 * DAY, after=now - DAY)
    key = demo_pki.profile("registered-1").auth_key
    der = issue_auth_cert(spare_key, old_ca, key.public_key(), now - 30 * DAY, now + 30 * DAY)
    store = TrustStore([anchor(old_ca)], accept_test=True)
    expect(CardError.CERT_EXPIRED, check_certificate, der, store, now)


def test_pem_bundles_load_every_certificate(tmp_path, demo_pki, spare_key):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(demo_pki.ca_pem + make_ca(spare_key).public_bytes(serialization.Encoding.PEM))
    store = TrustStore.from_pem_files([], test_paths=[bundle], accept_test=True)
    assert [a.label for a in store.anchors] == ["bundle#0", "bundle#1"] and all(a.test for a in store.anchors)
    assert store.active == store.anchors
    assert TrustStore(store.anchors).active == ()


# -- certificate shape ------------------------------------------------------------------------------

def odd_cert(demo_pki, key=None, key_usage=AUTH_KEY_USAGE, ca_ext=False):
    now = dt.datetime.now(UTC)
    ca = demo_pki.ca_cert
    key = key or demo_pki.profile("registered-1").auth_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, "ODD")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(0x1234567)
        .not_valid_before(now - DAY).not_valid_after(now + DAY)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if ca_ext:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(demo_pki.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def sha1_cert(demo_pki, tmp_path):
    """`cryptography` will not sign with SHA-1 any more; the openssl CLI still does."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(demo_pki.ca_pem)
    (tmp_path / "ca.key").write_bytes(demo_pki.ca_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "card.key").write_bytes(demo_pki.profile("registered-1").auth_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "ext").write_text("keyUsage=critical,digitalSignature\n")
    run = lambda *a: subprocess.run(["openssl", *a], cwd=tmp_path, check=True, capture_output=True)
    run("req", "-new", "-key", "card.key", "-subj", "/C=JP/CN=ODD", "-out", "card.csr")
    run("x509", "-req", "-in", "card.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-sha1", "-days", "1",
        "-extfile", "ext", "-set_serial", "12345", "-outform", "DER", "-out", "card.der")
    der = (tmp_path / "card.der").read_bytes()
    assert isinstance(x509.load_der_x509_certificate(der).signature_hash_algorithm, hashes.SHA1)
    return der


@pytest.mark.parametrize("variant", ["keyCertSign only", "no key usage", "EC key", "RSA-1024", "CA cert",
                                     "SHA-1 signature", "garbage", "truncated"])
def test_bad_certificates(demo_pki, demo_trust, variant, tmp_path):
    if variant == "keyCertSign only":
        der = odd_cert(demo_pki, key_usage=_ku(key_cert_sign=True))
    elif variant == "no key usage":
        der = odd_cert(demo_pki, key_usage=None)
    elif variant == "EC key":
        der = odd_cert(demo_pki, key=ec.generate_private_key(ec.SECP256R1()))
    elif variant == "RSA-1024":
        der = odd_cert(demo_pki, key=rsa.generate_private_key(public_exponent=65537, key_size=1024))
    elif variant == "CA cert":
        der = odd_cert(demo_pki, ca_ext=True)
    elif variant == "SHA-1 signature":
        der = sha1_cert(demo_pki, tmp_path)
    elif variant == "garbage":
        der = b"\x30\x03\x02\x01\x01"
    else:
        der = demo_pki.profile("registered-1").auth_cert[:-10]
    expect(CardError.BAD_CERTIFICATE, check_certificate, der, demo_trust, dt.datetime.now(UTC))


def test_a_well_formed_odd_cert_is_fine(demo_pki, demo_trust):
    """The builder above is sound: with nothing odd, it passes (so the failures above are real)."""
    assert check_certificate(odd_cert(demo_pki), demo_trust, dt.datetime.now(UTC)).test_pki


# -- the card's signature over the challenge ---------------------------------------------------------

def test_signature_checks(demo_pki, demo_trust):
    profile = demo_pki.profile("registered-1")
    challenge = bytes(range(32))
    good = sign(profile.auth_key, challenge)
    verify_challenge(profile.auth_cert, challenge, good)
    flipped = bytearray(good)
    flipped[100] ^= 1
    wrong_key = sign(demo_pki.profile("registered-2").auth_key, challenge)
    for bad in (bytes(flipped), wrong_key, good[:-1], b"", sign(profile.auth_key, challenge[::-1])):
        expect(CardError.BAD_SIGNATURE, verify_challenge, profile.auth_cert, challenge, bad)
    pss = profile.auth_key.sign(challenge, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    expect(CardError.BAD_SIGNATURE, verify_challenge, profile.auth_cert, challenge, pss)
    expect(CardError.BAD_SIGNATURE, verify_identity, profile.auth_cert, challenge, wrong_key, demo_trust,
           dt.datetime.now(UTC))
