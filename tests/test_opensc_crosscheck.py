"""OpenSC's own jpki driver, talking to the virtual card through pcscd, agrees with it.

Why: the virtual card is written by us, from the same reference as the kiosk's protocol
code; a shared misreading would pass every kiosk test. OpenSC is an independent
implementation that works with real My Number Cards, so if it can read the certificate
and make a signature that verifies, the virtual card behaves like one where it matters.
OpenSC talks to the card directly (not through the kiosk's allowlist), so the APDUs it
sends are not part of the kiosk's APDU audit.
"""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from kiosk.card.demo_pki import DEMO_AUTH_PIN
from kiosk.card.virtual_card import VirtualJpkiCard
from kiosk_testing.pcscd import missing_opensc, opensc_env, opensc_read_auth_cert, opensc_sign

pytestmark = pytest.mark.pcsc


@pytest.fixture
def opensc(tmp_path):
    reason = missing_opensc()
    if reason:
        pytest.skip(reason)
    return opensc_env(tmp_path / "opensc-home")


@pytest.fixture
def card(pcsc_readers, pcsc_demo_pki, tmp_path):
    card = VirtualJpkiCard(pcsc_demo_pki.profile("registered-1"), state_path=tmp_path / "card.json")
    pcsc_readers.insert(card)
    return card


def test_opensc_reads_the_user_authentication_certificate(opensc, card, tmp_path):
    der = opensc_read_auth_cert(opensc, tmp_path / "auth.pem")
    assert der == card.profile.auth_cert
    assert card.tries_left() == 3                   # reading it spends no PIN try


def test_opensc_signature_verifies_with_the_certificate(opensc, card, tmp_path):
    challenge = os.urandom(32)
    (tmp_path / "challenge").write_bytes(challenge)
    signature = opensc_sign(opensc, tmp_path / "challenge", tmp_path / "sig", DEMO_AUTH_PIN)
    assert len(signature) == 256
    public_key = x509.load_der_x509_certificate(card.profile.auth_cert).public_key()
    public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        public_key.verify(signature, challenge[::-1], padding.PKCS1v15(), hashes.SHA256())
    assert card.tries_left() == 3


def test_opensc_wrong_pin_costs_one_try(opensc, card, tmp_path):
    (tmp_path / "challenge").write_bytes(b"x" * 32)
    wrong = "0000" if DEMO_AUTH_PIN != "0000" else "9999"
    with pytest.raises(RuntimeError):
        opensc_sign(opensc, tmp_path / "challenge", tmp_path / "sig", wrong)
    assert card.tries_left() == 2
