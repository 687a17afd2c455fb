"""A test PKI and a set of virtual demo cards, generated once into a directory.

The demo mode, the tests and the benchmark need cards whose certificates chain to
a CA the kiosk can be told to trust (only when test anchors are switched on), and
cards for every patron-facing case: registered, unregistered, expired,
not-yet-valid, one PIN try left, locked, not a JPKI card, 住基カード, smartphone,
and for counter registration a 券面事項入力補助 PIN that differs or has one try left.
RSA key generation is slow on a Pi, so keys are kept on disk (PEM, mode 0600) and
generation is idempotent: files that exist are reused.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from kiosk.card.virtual_card import (
    TOKEN_JUKI_CARD,
    TOKEN_MY_NUMBER_CARD,
    TOKEN_SMARTPHONE,
    CardProfile,
)

DEMO_AUTH_PIN = "1234"
DEMO_SIGN_PIN = "JPKITEST1"
DEMO_SUPPORT_PIN_DIFFERENT = "5678"     # the 券面事項入力補助 PIN of "second-pin-differs"

AUTH_CA_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for user authentication TEST"),
])
SIGN_CA_NAME = x509.Name([
    x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "JPKI-TEST"),
    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "JPKI for digital signature TEST"),
])

CA_FILE = "auth_ca_test.pem"            # the anchor to trust when test PKI is enabled


def _ku(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


AUTH_KEY_USAGE = _ku(digital_signature=True)


@dataclass(frozen=True)
class DemoCardSpec:
    name: str
    description: str
    registered: bool = False            # the demo patron registry links this card to a patron
    validity: str = "valid"             # valid | expired | not_yet_valid
    auth_tries: int = 3
    token: str = TOKEN_MY_NUMBER_CARD
    jpki: bool = True
    auth_cert_needs_pin: bool = False
    birth_date: str = "19800101"        # 券面事項入力補助AP EF 0002, YYYYMMDD (fake holder)
    support_pin: str | None = None      # 券面事項入力補助 PIN; None = the same as the auth PIN
    support_tries: int = 3


CARD_SPECS: tuple[DemoCardSpec, ...] = (
    DemoCardSpec("registered-1", "Registered patron", registered=True, birth_date="19850412"),
    DemoCardSpec("registered-2", "Registered patron", registered=True, birth_date="19720105"),
    DemoCardSpec("registered-3", "Registered patron", registered=True, birth_date="20010930"),
    DemoCardSpec("unregistered", "Valid card, not linked to any patron", birth_date="19990228"),
    DemoCardSpec("second-pin-differs", "Not linked; 券面事項入力補助 PIN differs (5678)",
                 birth_date="19641124", support_pin=DEMO_SUPPORT_PIN_DIFFERENT),
    DemoCardSpec("second-pin-1-try", "Not linked; 券面事項入力補助 PIN: 1 try left",
                 birth_date="19930717", support_tries=1),
    DemoCardSpec("expired", "Certificate expired", registered=True, validity="expired"),
    DemoCardSpec("not-yet-valid", "Certificate not yet valid", registered=True, validity="not_yet_valid"),
    DemoCardSpec("pin-1-try", "User-authentication PIN: 1 try left", registered=True, auth_tries=1),
    DemoCardSpec("pin-locked", "User-authentication PIN locked", registered=True, auth_tries=0),
    DemoCardSpec("transit-card", "Not a JPKI card (transit IC card)", jpki=False),
    DemoCardSpec("juki-card", "住基カード", token=TOKEN_JUKI_CARD),
    DemoCardSpec("smartphone", "Smartphone JPKI", registered=True, token=TOKEN_SMARTPHONE,
                 auth_cert_needs_pin=True),
)


@dataclass(frozen=True)
class DemoCard:
    name: str
    description: str
    registered: bool
    profile: CardProfile

    @property
    def cert_hash(self) -> str | None:
        """How the kiosk will know this card (sha256 of the auth certificate DER, hex)."""
        return hashlib.sha256(self.profile.auth_cert).hexdigest() if self.profile.auth_cert else None

    @property
    def birth_date(self) -> dt.date | None:
        """The birth date counter registration reads from this card (None: it has no kenhojo AP)."""
        if not (self.profile.jpki and self.profile.my_number_aps):
            return None
        b = self.profile.birth_date
        return dt.date(int(b[:4]), int(b[4:6]), int(b[6:8]))


@dataclass(frozen=True)
class DemoPki:
    directory: Path
    cards: dict[str, DemoCard]
    ca_key: rsa.RSAPrivateKey           # tests issue odd certificates with it

    @property
    def ca_pem_path(self) -> Path:
        return self.directory / CA_FILE

    @property
    def ca_pem(self) -> bytes:
        return self.ca_pem_path.read_bytes()

    @property
    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.ca_pem)

    def profile(self, name: str) -> CardProfile:
        return self.cards[name].profile

    def profiles(self) -> dict[str, CardProfile]:
        return {name: card.profile for name, card in self.cards.items()}


def ensure_demo_pki(directory: Path, now: dt.datetime | None = None) -> DemoPki:
    """Create (or reuse) the demo PKI in `directory` and return its cards.

    `now` only matters for files generated by this call: validity periods are set
    relative to it, far enough out that a reused directory keeps its meaning for years.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two kiosks/tests starting at once must not mix keys
        ca_key, ca_cert = _ensure_ca(directory, "auth_ca_test", AUTH_CA_NAME, now)
        sign_ca_key, sign_ca_cert = _ensure_ca(directory, "sign_ca_test", SIGN_CA_NAME, now)
        cards = {}
        for spec in CARD_SPECS:
            profile = _ensure_card(directory / "cards" / spec.name, spec, now,
                                   (ca_key, ca_cert), (sign_ca_key, sign_ca_cert))
            cards[spec.name] = DemoCard(spec.name, spec.description, spec.registered, profile)
    return DemoPki(directory=directory, cards=cards, ca_key=ca_key)


def demo_profiles(directory: Path) -> dict[str, CardProfile]:
    """Demo card names -> virtual card profiles."""
    return ensure_demo_pki(directory).profiles()


def demo_trust_pem(directory: Path) -> Path:
    """The PEM file of the test CA (trust it only with test anchors switched on)."""
    return ensure_demo_pki(directory).ca_pem_path


def issue_auth_cert(ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate, public_key,
                    not_before: dt.datetime, not_after: dt.datetime, *,
                    key_usage: x509.KeyUsage | None = AUTH_KEY_USAGE) -> bytes:
    """A user-authentication certificate like J-LIS issues: C=JP, CN=<opaque id>, DER.

    `key_usage=None` leaves the extension out (tests of odd certificates).
    """
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.COMMON_NAME, _opaque_id()),
    ])
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, rsa.RSAPublicKey):      # ca_key signs: the CA's own key is RSA too
        raise TypeError(f"the test CA must have an RSA key, not {type(ca_public).__name__}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(secrets.randbelow(2**31 - 2**24) + 2**24)      # 4 bytes, like real cards
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


# -- files ---------------------------------------------------------------------------------

def _ensure_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        # Our own files: skipping the slow consistency check saves ~30 ms per key on a Pi.
        key = serialization.load_pem_private_key(path.read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_private(path, pem)
    return key


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _ensure_ca(directory: Path, stem: str, name: x509.Name,
               now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key_path, cert_path = directory / f"{stem}.key.pem", directory / f"{stem}.pem"
    fresh_key = not key_path.exists()
    key = _ensure_key(key_path)
    if cert_path.exists() and not fresh_key:
        return key, x509.load_pem_x509_certificate(cert_path.read_bytes())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=365 * 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ku(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _ensure_card(folder: Path, spec: DemoCardSpec, now: dt.datetime, auth_ca, sign_ca) -> CardProfile:
    profile = CardProfile(
        name=spec.name, jpki=spec.jpki, token=spec.token, auth_pin=DEMO_AUTH_PIN, sign_pin=DEMO_SIGN_PIN,
        auth_tries=spec.auth_tries, auth_cert_needs_pin=spec.auth_cert_needs_pin,
        my_number_aps=spec.token == TOKEN_MY_NUMBER_CARD, birth_date=spec.birth_date,
        support_pin=spec.support_pin or DEMO_AUTH_PIN, support_tries=spec.support_tries,
    )
    if not spec.jpki:
        return profile
    ca_key, ca_cert = auth_ca
    sign_ca_key, sign_ca_cert = sign_ca
    auth_key = _ensure_key(folder / "auth.key.pem")
    sign_key = _ensure_key(folder / "sign.key.pem")
    auth_path, sign_path = folder / "auth.der", folder / "sign.der"
    if not auth_path.exists() or not _issued_by(auth_path, ca_cert, auth_key):
        before, after = _validity(spec.validity, now)
        _write_public(auth_path, issue_auth_cert(ca_key, ca_cert, auth_key.public_key(), before, after))
    if not sign_path.exists() or not _issued_by(sign_path, sign_ca_cert, sign_key):
        before, after = _validity(spec.validity, now)
        _write_public(sign_path, _issue_sign_cert(sign_ca_key, sign_ca_cert, sign_key, before, after))
    der = serialization.Encoding.DER
    return replace(
        profile,
        auth_cert=auth_path.read_bytes(), auth_key=auth_key, auth_ca_cert=ca_cert.public_bytes(der),
        sign_cert=sign_path.read_bytes(), sign_key=sign_key, sign_ca_cert=sign_ca_cert.public_bytes(der),
    )


def _issued_by(path: Path, ca_cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bool:
    """A card file left over from an older CA or key is reissued, not reused."""
    cert = x509.load_der_x509_certificate(path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    cert_key = cert.public_key()
    return isinstance(cert_key, rsa.RSAPublicKey) and cert_key.public_numbers() == key.public_key().public_numbers()


def _validity(kind: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    day = dt.timedelta(days=1)
    if kind == "expired":
        return now - 5 * 365 * day, now - day
    if kind == "not_yet_valid":
        return now + 10 * 365 * day, now + 15 * 365 * day
    return now - 30 * day, now + 5 * 365 * day


def _issue_sign_cert(ca_key, ca_cert, key, not_before, not_after) -> bytes:
    # Real signature certificates carry name/address/birth date; these carry obvious fakes.
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "FAKE TEST ADDRESS"),
        x509.NameAttribute(NameOID.COMMON_NAME, "FAKE TEST NAME"),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbelow(2**31 - 2**24) + 2**24)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_ku(digital_signature=True, content_commitment=True), critical=True)
        .sign(ca_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def _opaque_id() -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(23))
