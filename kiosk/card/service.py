"""The card service: probe an inserted card, then authenticate its holder with PIN + signature.

This is the only place that strings the JPKI steps together (reference jpki.md §12):
SELECT -> token -> tries -> certificate (checked *before* the PIN is spent) ->
one VERIFY -> sign a fresh random challenge -> verify signature and chain.
Calls block on card I/O; the shell runs them on a worker thread, one at a time.
Nothing here logs or keeps a PIN, a certificate serial or any other card data.

Counter registration (staff signed in, `set_mode("counter")`) adds the birth date from
the 券面事項入力補助AP (kiosk/kenhojo.py), read with the patron's own PIN(s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import replace
from typing import Callable

from kiosk.card.apdu_allowlist import policy_for
from kiosk.card.identity import IdentityError, TrustStore, check_certificate, verify_challenge
from kiosk.card.jpki import JpkiCard, JpkiError
from kiosk.card.kenhojo import KenhojoCard, KenhojoError
from kiosk.core.card import AuthOutcome, CardError, CardIdentity, CardKind, CardProbe
from kiosk.core.interfaces import CardGoneError, CardReader, PcscdGoneError, ReaderGoneError, Transport

log = logging.getLogger(__name__)

CHALLENGE_LEN = 32
AUTH_PIN_MAX_TRIES = 3


class CounterModeRequired(RuntimeError):
    """A registration call in kiosk mode: refused before the card is touched."""


class CardService:
    """One card at a time: probe() when a card arrives, authenticate(pin), release() when done."""

    def __init__(self, reader: CardReader, trust: TrustStore, clock: Callable[[], dt.datetime],
                 allow_smartphone: bool = False, rng: Callable[[int], bytes] = os.urandom) -> None:
        self._reader = reader
        self._trust = trust
        self._clock = clock
        self._allow_smartphone = allow_smartphone
        self._rng = rng
        self._transport: Transport | None = None
        self._card: JpkiCard | None = None
        self._probe: CardProbe | None = None
        # The certificate as read from the open card in this session (same transport): a second
        # PIN attempt reuses these bytes instead of reading them again. Never kept past release().
        self._cert: bytes | None = None
        self._mode = getattr(reader, "mode", "kiosk")
        self._registered = False        # the open card passed authenticate_for_registration
        # The last registration sent the user-authentication PIN to the 券面事項入力補助 PIN
        # (one of its tries spent, whatever the answer): staff tell the patron so.
        self.same_pin_tried = False

    # -- probe ---------------------------------------------------------------------------

    def probe(self) -> CardProbe:
        """What is in the reader, how many PIN tries are left, and whether its certificate is
        valid now and chains to an anchor. Spends no try."""
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
        if result.error is not None:
            self._cert = None           # a refused card's certificate is not kept either
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
        if kind is not CardKind.SMARTPHONE:
            # The certificate EF is readable without VERIFY (jpki.md): a card that will be
            # refused for its certificate is refused here, before the PIN pad, no try spent.
            # After the PIN the same bytes are checked again with the signature (authenticate).
            try:
                self._checked_cert(card, self._clock())
            except IdentityError as exc:
                log.info("certificate refused before the PIN: %s", exc.kind.value)
                return CardProbe(kind, tries_left=tries, error=exc.kind)
        return CardProbe(kind, tries_left=tries)

    # -- authenticate --------------------------------------------------------------------

    def authenticate(self, pin: bytearray) -> AuthOutcome:
        """PIN + signature + chain. VERIFY is sent at most once; `pin` is zeroed on return."""
        try:
            return self._outcome(pin)
        finally:
            pin[:] = bytes(len(pin))

    def _outcome(self, pin: bytearray) -> AuthOutcome:
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
        checked = None
        if not smartphone:      # a card with a bad certificate must not cost the patron a try
            checked = self._checked_cert(card, now)

        result = card.verify_pin(pin)
        # A right PIN resets the card's counter to its maximum (jpki.md §6).
        tries = AUTH_PIN_MAX_TRIES if result.ok else result.tries_left
        self._probe = replace(probe, tries_left=tries, error=CardError.PIN_LOCKED if result.locked else None)
        if not result.ok:
            return AuthOutcome(error=CardError.PIN_LOCKED if result.locked else CardError.PIN_WRONG,
                               tries_left=result.tries_left)
        if checked is None:     # smartphone JPKI only shows its certificate after VERIFY
            checked = self._checked_cert(card, now)

        challenge = self._rng(CHALLENGE_LEN)
        signature = card.sign(hashlib.sha256(challenge).digest())
        der, identity = checked
        verify_challenge(der, challenge, signature)
        self._clear_verify(card)
        return AuthOutcome(identity=identity, tries_left=AUTH_PIN_MAX_TRIES)

    def _checked_cert(self, card: JpkiCard, now: dt.datetime) -> tuple[bytes, CardIdentity]:
        """This session's certificate (read from the card once per session) and the identity it
        names, checked now: the checks are pure and cheap, the card read is not."""
        if self._cert is None:
            self._cert = card.read_auth_cert()
        return self._cert, check_certificate(self._cert, self._trust, now)

    def _clear_verify(self, card: JpkiCard) -> None:
        """Drop the card's VERIFY status as soon as the signature is made: nothing else needs it."""
        try:
            card.select_ap()
        except (CardGoneError, ReaderGoneError, JpkiError):
            pass    # identity is already proven; a card that left has lost its VERIFY status anyway

    # -- counter mode: registration with staff signed in ---------------------------------

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """"kiosk" or "counter": the allowlist mode of transports opened from now on.

        A change of mode releases the card, so no transport of the old mode lives on and
        the next probe opens one in the new mode.
        """
        policy_for(mode)                        # unknown modes are an error
        if mode == self._mode:
            return
        self.release()
        self._reader.mode = mode
        self._mode = mode
        log.info("card layer mode: %s", mode)

    def authenticate_for_registration(self, pin: bytearray,
                                      birth_date: bool) -> tuple[AuthOutcome, dt.date | None, int | None]:
        """Full authentication, then (if `birth_date`) the birth date with the same PIN.

        The same PIN goes to the 券面事項入力補助 PIN only while at least two tries remain
        on it, so a patron whose two PINs differ never loses more than one try to this and
        is never locked out by it. Returns (outcome, birth date, second-PIN tries): the tries
        are set when the patron must enter that PIN (ReadBirthDate) or it is locked (0).
        `pin` is zeroed on return. Counter mode only; kiosk mode raises CounterModeRequired
        before the card is touched.
        """
        self._registered = False
        self.same_pin_tried = False
        try:
            self._require_counter()
            outcome = self._outcome(pin)
            if not outcome.ok:
                return outcome, None, None
            self._registered = True
            if not birth_date:
                return outcome, None, None
            try:
                born, tries = self._kenhojo(pin, same_pin=True)
            except CardGoneError:
                return AuthOutcome(error=CardError.CARD_REMOVED), None, None
            except PcscdGoneError:
                return AuthOutcome(error=CardError.PCSCD_GONE), None, None
            except ReaderGoneError:
                return AuthOutcome(error=CardError.READER_GONE), None, None
            except (KenhojoError, JpkiError) as exc:
                # A My Number Card whose birth date cannot be read cannot be registered here.
                log.info("birth date unreadable: %s", type(exc).__name__)
                self._registered = False
                return AuthOutcome(error=CardError.MUTE_CARD), None, None
            return outcome, born, tries
        finally:
            pin[:] = bytes(len(pin))

    def read_birth_date(self, pin: bytearray) -> tuple[dt.date | None, int | None]:
        """The patron's own 券面事項入力補助 PIN, one VERIFY, then the birth date only.

        Returns (birth date, None) or (None, tries left); (None, None) when the card is gone
        or unreadable. Only after authenticate_for_registration succeeded on this very card
        (same transport); counter mode only. `pin` is zeroed on return.
        """
        try:
            self._require_counter()
            if not self._registered or self._card is None:
                return None, None
            try:
                return self._kenhojo(pin, same_pin=False)
            except (CardGoneError, ReaderGoneError):
                return None, None
            except (KenhojoError, JpkiError) as exc:
                log.info("birth date unreadable: %s", type(exc).__name__)
                return None, None
        finally:
            pin[:] = bytes(len(pin))

    def _require_counter(self) -> None:
        if self._mode != "counter":
            raise CounterModeRequired("registration needs counter mode (staff signed in)")

    def _kenhojo(self, pin: bytearray, same_pin: bool) -> tuple[dt.date | None, int | None]:
        """One kenhojo session on the current card; always ends with the JPKI AP selected again,
        which drops the kenhojo VERIFY status and keeps JpkiCard's idea of the selection true."""
        card, transport = self._card, self._transport
        assert card is not None and transport is not None
        if getattr(transport, "mode", None) != "counter":
            raise CounterModeRequired("the open transport is not in counter mode")
        kenhojo = KenhojoCard(transport)
        card.verify_clear = False       # APDUs go past `card` now; its finally SELECT sets it again
        try:
            if not kenhojo.select_ap():
                raise KenhojoError("the card has no kenhojo AP")
            tries = kenhojo.pin_tries_left()
            if tries is None:           # "already verified" straight after SELECT: not a sane card
                raise KenhojoError("kenhojo PIN reported verified before VERIFY")
            if tries == 0 or (same_pin and tries < 2):
                return None, tries
            if len(pin) != 4 or not all(0x30 <= b <= 0x39 for b in pin):
                return None, tries      # never sent, so no try is spent
            self.same_pin_tried = same_pin
            result = kenhojo.verify_pin(pin)
            if not result.ok:
                return None, result.tries_left
            return kenhojo.read_birth_date(), None
        finally:
            try:
                card.select_ap()
            except (CardGoneError, ReaderGoneError, JpkiError):
                pass

    # -- release -------------------------------------------------------------------------

    def release(self) -> None:
        """End of session: re-SELECT the AP (clears VERIFY status; skipped when the last APDU
        already was that SELECT) and close the transport, forgetting this session's certificate."""
        transport, card = self._transport, self._card
        self._transport = self._card = self._probe = None
        self._cert = None
        self._registered = False
        if transport is None:
            return
        try:
            if card is not None and not card.verify_clear:     # no second SELECT straight after one
                card.select_ap()
        except (CardGoneError, ReaderGoneError, JpkiError):
            pass
        finally:
            try:
                transport.close()
            except (CardGoneError, ReaderGoneError):
                pass
