"""The card service: probe an inserted card, then authenticate its holder with PIN + signature.

This is the only place that strings the JPKI steps together (reference jpki.md §12):
SELECT -> token -> tries -> certificate (checked *before* the PIN is spent) ->
one VERIFY -> sign a fresh random challenge -> verify signature and chain.
Calls block on card I/O; the shell runs them on a worker thread, one at a time.
Nothing here logs or keeps a PIN, a certificate serial or any other card data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
from collections import OrderedDict
from dataclasses import replace
from typing import Callable

from kiosk.card import AuthOutcome, CardError, CardIdentity, CardKind, CardProbe
from kiosk.identity import IdentityError, TrustStore, check_certificate, verify_challenge
from kiosk.interfaces import CardGoneError, CardReader, PcscdGoneError, ReaderGoneError, Transport
from kiosk.jpki import CERT_HEAD_LEN, JpkiCard, JpkiError

log = logging.getLogger(__name__)

CHALLENGE_LEN = 32
AUTH_PIN_MAX_TRIES = 3


class CertCache:
    """Certificates of returning cards, so their full read can be skipped.

    In memory only (nothing reaches disk). Keys are an HMAC, under a per-process random
    key, of the certificate's first bytes, so the table itself holds no serial numbers.
    Entries are added only after the card proved it holds the certificate's key.
    """

    def __init__(self, capacity: int = 256, key: bytes | None = None) -> None:
        self.capacity = capacity
        self._key = key or os.urandom(32)
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def _slot(self, head: bytes) -> bytes:
        return hmac.new(self._key, head[:CERT_HEAD_LEN], hashlib.sha256).digest()

    def lookup(self, head: bytes) -> bytes | None:
        slot = self._slot(head)
        der = self._entries.get(slot)
        if der is not None:
            self._entries.move_to_end(slot)
        return der

    def add(self, der: bytes) -> None:
        if self.capacity <= 0:
            return
        self._entries[self._slot(der)] = der
        self._entries.move_to_end(self._slot(der))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def discard(self, der: bytes) -> None:
        self._entries.pop(self._slot(der), None)

    def __len__(self) -> int:
        return len(self._entries)


class CardService:
    """One card at a time: probe() when a card arrives, authenticate(pin), release() when done."""

    def __init__(self, reader: CardReader, trust: TrustStore, clock: Callable[[], dt.datetime],
                 cert_cache: CertCache | None = None, allow_smartphone: bool = False,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self._reader = reader
        self._trust = trust
        self._clock = clock
        self.cert_cache = cert_cache if cert_cache is not None else CertCache()
        self._allow_smartphone = allow_smartphone
        self._rng = rng
        self._transport: Transport | None = None
        self._card: JpkiCard | None = None
        self._probe: CardProbe | None = None

    # -- probe ---------------------------------------------------------------------------

    def probe(self) -> CardProbe:
        """What is in the reader, and how many PIN tries are left. Spends no try."""
        self.release()
        try:
            self._transport = self._reader.open()
        except CardGoneError:
            return CardProbe(CardKind.MUTE, error=CardError.CARD_REMOVED)
        except PcscdGoneError:
            return CardProbe(CardKind.MUTE, error=CardError.PCSCD_GONE)
        except ReaderGoneError:
            return CardProbe(CardKind.MUTE, error=CardError.READER_GONE)
        self._card = JpkiCard(self._transport)
        try:
            result = self._probe_card(self._card)
        except CardGoneError:
            result = CardProbe(CardKind.MUTE, error=CardError.CARD_REMOVED)
        except PcscdGoneError:
            result = CardProbe(CardKind.MUTE, error=CardError.PCSCD_GONE)
        except ReaderGoneError:
            result = CardProbe(CardKind.MUTE, error=CardError.READER_GONE)
        except JpkiError as exc:
            log.info("card probe failed: %s", exc.kind.value)
            result = CardProbe(CardKind.MUTE, error=exc.kind)
        self._probe = result
        return result

    def _probe_card(self, card: JpkiCard) -> CardProbe:
        if not card.select_ap():
            return CardProbe(CardKind.NOT_JPKI, error=CardError.NOT_JPKI)
        kind = card.read_token()
        if kind is CardKind.NOT_JPKI:
            return CardProbe(kind, error=CardError.NOT_JPKI)
        if kind is CardKind.JUKI_CARD:
            return CardProbe(kind, error=CardError.JUKI_CARD)
        if kind is CardKind.SMARTPHONE and not self._allow_smartphone:
            return CardProbe(kind, error=CardError.SMARTPHONE_UNSUPPORTED)
        tries = card.pin_tries_left()
        if tries is None:       # "already verified" straight after SELECT: not a sane card
            return CardProbe(CardKind.MUTE, error=CardError.MUTE_CARD)
        if tries == 0:
            return CardProbe(kind, tries_left=0, error=CardError.PIN_LOCKED)
        return CardProbe(kind, tries_left=tries)

    # -- authenticate --------------------------------------------------------------------

    def authenticate(self, pin: bytearray) -> AuthOutcome:
        """PIN + signature + chain. VERIFY is sent at most once; `pin` is zeroed on return."""
        try:
            return self._authenticate(pin)
        except CardGoneError:
            return AuthOutcome(error=CardError.CARD_REMOVED)
        except PcscdGoneError:
            return AuthOutcome(error=CardError.PCSCD_GONE)
        except ReaderGoneError:
            return AuthOutcome(error=CardError.READER_GONE)
        except JpkiError as exc:
            log.info("authentication failed at the card: %s", exc.kind.value)
            return AuthOutcome(error=exc.kind, tries_left=self._tries())
        except IdentityError as exc:
            log.info("authentication refused: %s", exc.kind.value)
            return AuthOutcome(error=exc.kind, tries_left=self._tries())
        finally:
            pin[:] = bytes(len(pin))

    def _tries(self) -> int | None:
        return self._probe.tries_left if self._probe is not None else None

    def _authenticate(self, pin: bytearray) -> AuthOutcome:
        probe = self._probe if self._card is not None and self._probe is not None else self.probe()
        if probe.error is not None:
            return AuthOutcome(error=probe.error, tries_left=probe.tries_left)
        if not probe.usable:
            return AuthOutcome(error=CardError.PIN_LOCKED, tries_left=probe.tries_left)
        if len(pin) != 4 or not all(0x30 <= b <= 0x39 for b in pin):      # no immutable copies
            # Never sent to the card, so no try is spent.
            return AuthOutcome(error=CardError.PIN_WRONG, tries_left=probe.tries_left)
        card = self._card
        assert card is not None
        now = self._clock()
        smartphone = probe.kind is CardKind.SMARTPHONE
        der = from_cache = identity = None
        if not smartphone:      # a card with a bad certificate must not cost the patron a try
            der, from_cache = self._read_cert(card)
            identity = check_certificate(der, self._trust, now)

        result = card.verify_pin(pin)
        # A right PIN resets the card's counter to its maximum (jpki.md §6).
        tries = AUTH_PIN_MAX_TRIES if result.ok else result.tries_left
        self._probe = replace(probe, tries_left=tries, error=CardError.PIN_LOCKED if result.locked else None)
        if not result.ok:
            return AuthOutcome(error=CardError.PIN_LOCKED if result.locked else CardError.PIN_WRONG,
                               tries_left=result.tries_left)
        if smartphone:          # smartphone JPKI only shows its certificate after VERIFY
            der, from_cache = self._read_cert(card)
            identity = check_certificate(der, self._trust, now)

        challenge = self._rng(CHALLENGE_LEN)
        signature = card.sign(hashlib.sha256(challenge).digest())
        der, identity = self._prove(card, der, from_cache, identity, challenge, signature, now)
        self.cert_cache.add(der)
        self._clear_verify(card)
        return AuthOutcome(identity=identity)

    def _read_cert(self, card: JpkiCard) -> tuple[bytes, bool]:
        hit: list[bytes] = []

        def cached(head: bytes) -> bytes | None:
            der = self.cert_cache.lookup(head)
            if der is not None:
                hit.append(der)
            return der

        der = card.read_auth_cert(cached)
        return der, bool(hit) and hit[0] is der

    def _prove(self, card: JpkiCard, der: bytes, from_cache: bool, identity: CardIdentity,
               challenge: bytes, signature: bytes, now: dt.datetime) -> tuple[bytes, CardIdentity]:
        """Signature check; a cache hit that fails is re-checked against the full certificate."""
        try:
            verify_challenge(der, challenge, signature)
            return der, identity
        except IdentityError as exc:
            if exc.kind is not CardError.BAD_SIGNATURE or not from_cache:
                raise
        self.cert_cache.discard(der)
        full = card.read_auth_cert(None)
        identity = check_certificate(full, self._trust, now)
        verify_challenge(full, challenge, signature)
        return full, identity

    def _clear_verify(self, card: JpkiCard) -> None:
        """Drop the card's VERIFY status as soon as the signature is made: nothing else needs it."""
        try:
            card.select_ap()
        except (CardGoneError, ReaderGoneError, JpkiError):
            pass    # identity is already proven; a card that left has lost its VERIFY status anyway

    # -- release -------------------------------------------------------------------------

    def release(self) -> None:
        """End of session: re-SELECT the AP (clears VERIFY status) and close the transport."""
        transport, card = self._transport, self._card
        self._transport = self._card = self._probe = None
        if transport is None:
            return
        try:
            if card is not None:
                card.select_ap()
        except (CardGoneError, ReaderGoneError, JpkiError):
            pass
        finally:
            try:
                transport.close()
            except (CardGoneError, ReaderGoneError):
                pass
