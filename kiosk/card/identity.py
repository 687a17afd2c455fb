"""Is this card's certificate genuine, current and held by whoever is at the kiosk?

Pure functions over DER bytes, a trust store and an injected `now`; `cryptography`
does all the X.509 and RSA work. The two J-LIS user-authentication CA generations
share one subject DN, so the issuer is found by verifying the certificate's
signature against each anchor's key, never by comparing names.

Errors: whatever the bytes from the card are, the only exception is IdentityError,
whose `kind` is the patron's verdict. `cryptography` parses lazily, so a certificate
whose outer DER parses can still raise ValueError, UnsupportedAlgorithm or
InvalidVersion when a field is first read; every such read happens inside
`_certificate_fields`, which turns them into BAD_CERTIFICATE ("bad certificate", not
"mute card"). A naive `now` is the caller's bug and stays a ValueError.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kiosk.core.card import CardError, CardIdentity
from kiosk.data import shipped as shipped_data

# The J-LIS anchors shipped with the kiosk (auth_ca_2015.pem, auth_ca_2023.pem).
SHIPPED_TRUST_DIR = shipped_data("trust", "jpki")

MIN_RSA_BITS = 2048
_ACCEPTED_CERT_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

# What `cryptography` raises for a damaged field of a certificate that did load.
_DAMAGED_FIELD = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
                  x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


class IdentityError(Exception):
    def __init__(self, kind: CardError, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class TrustAnchor:
    label: str                      # shown as CardIdentity.issuer, e.g. "auth_ca_2023"
    cert: x509.Certificate
    test: bool = False              # a demo/test CA: only used when the store accepts test anchors


class TrustStore:
    """The CA certificates the kiosk accepts. Test anchors stay inert unless `accept_test`."""

    def __init__(self, anchors: Iterable[TrustAnchor], accept_test: bool = False) -> None:
        self.anchors: tuple[TrustAnchor, ...] = tuple(anchors)
        self.accept_test = accept_test

    @classmethod
    def from_pem_files(cls, paths: Sequence[Path], *, test_paths: Sequence[Path] = (),
                       accept_test: bool = False) -> TrustStore:
        anchors = [a for p in paths for a in load_anchors(Path(p))]
        anchors += [a for p in test_paths for a in load_anchors(Path(p), test=True)]
        return cls(anchors, accept_test=accept_test)

    @classmethod
    def shipped(cls, *, test_paths: Sequence[Path] = (), accept_test: bool = False,
                directory: Path = SHIPPED_TRUST_DIR) -> TrustStore:
        """The J-LIS anchors in `directory` (every *.pem), plus optional test anchors."""
        return cls.from_pem_files(sorted(Path(directory).glob("*.pem")), test_paths=test_paths,
                                  accept_test=accept_test)

    @property
    def active(self) -> tuple[TrustAnchor, ...]:
        return tuple(a for a in self.anchors if self.accept_test or not a.test)


def load_anchors(path: Path, *, test: bool = False) -> list[TrustAnchor]:
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    stem = path.name.removesuffix(".pem")
    return [TrustAnchor(stem if len(certs) == 1 else f"{stem}#{i}", c, test) for i, c in enumerate(certs)]


def cert_hash(der: bytes) -> str:
    """How the rest of the kiosk knows a card: never by serial number."""
    return hashlib.sha256(der).hexdigest()


def parse_certificate(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except _DAMAGED_FIELD as exc:           # InvalidVersion comes at load time, not ValueError
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate does not parse") from exc


@dataclass(frozen=True)
class _Fields:
    """The parts of a card certificate the checks use, read once with damage contained."""

    cert: x509.Certificate
    not_before: dt.datetime
    not_after: dt.datetime


def _certificate_fields(der: bytes) -> _Fields:
    """Parse and check the shape; IdentityError(BAD_CERTIFICATE) for any damaged field."""
    cert = parse_certificate(der)
    try:
        _check_shape(cert)
        return _Fields(cert, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except _DAMAGED_FIELD as exc:
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate field does not parse") from exc


def _check_shape(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate key is not RSA-2048 or larger")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate has no key usage") from None
    if not usage.digital_signature:
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate key usage lacks digitalSignature")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise IdentityError(CardError.BAD_CERTIFICATE, "a CA certificate is not a card certificate")
    except x509.ExtensionNotFound:
        pass
    if not isinstance(cert.signature_hash_algorithm, _ACCEPTED_CERT_HASHES):
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate signed with a weak hash")


def find_issuer(cert: x509.Certificate, trust: TrustStore) -> TrustAnchor:
    """The anchor whose key verifies the certificate's signature (names alone decide nothing)."""
    for anchor in trust.active:
        try:
            cert.verify_directly_issued_by(anchor.cert)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
            continue
        return anchor
    raise IdentityError(CardError.UNKNOWN_CA, "certificate not issued by a trusted CA")


def _check_time(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> None:
    if now < not_before:
        raise IdentityError(CardError.CERT_NOT_YET_VALID, "certificate not valid yet")
    if now > not_after:
        raise IdentityError(CardError.CERT_EXPIRED, "certificate expired")


def check_certificate(der: bytes, trust: TrustStore, now: dt.datetime) -> CardIdentity:
    """Parse, shape, issuer (by signature), then validity of the certificate and its CA."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    fields = _certificate_fields(der)
    anchor = find_issuer(fields.cert, trust)
    _check_time(fields.not_before, fields.not_after, now)
    _check_time(anchor.cert.not_valid_before_utc, anchor.cert.not_valid_after_utc, now)
    return CardIdentity(
        cert_hash=cert_hash(der),
        not_before=fields.not_before,
        not_after=fields.not_after,
        issuer=anchor.label,
        test_pki=anchor.test,
    )


def verify_challenge(der: bytes, challenge: bytes, signature: bytes) -> None:
    """The card proved it holds the certificate's key: PKCS#1 v1.5 / SHA-256 over `challenge`."""
    cert = parse_certificate(der)
    try:
        key = cert.public_key()
    except _DAMAGED_FIELD as exc:
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate key does not parse") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise IdentityError(CardError.BAD_CERTIFICATE, "certificate key is not RSA")
    try:
        key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError) as exc:
        raise IdentityError(CardError.BAD_SIGNATURE, "card signature does not verify") from exc


def verify_identity(der: bytes, challenge: bytes, signature: bytes, trust: TrustStore,
                    now: dt.datetime) -> CardIdentity:
    identity = check_certificate(der, trust, now)
    verify_challenge(der, challenge, signature)
    return identity
