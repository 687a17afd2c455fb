"""Plain data the card layer hands to the session core.

These types carry no personal data: a card is known to the rest of the kiosk
only by a hash of its user-authentication certificate, never by its serial.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class CardKind(str, enum.Enum):
    """What answered on the reader, decided by SELECT of the JPKI AP (never by ATR)."""

    MY_NUMBER_CARD = "my_number_card"   # token JPKIAPICCTOKEN2
    JUKI_CARD = "juki_card"             # token JPKIAPICCTOKEN (住基カード)
    SMARTPHONE = "smartphone"           # token JPKIAPGPSETOKEN
    NOT_JPKI = "not_jpki"               # SELECT answered 6A82 (transit IC card etc.)
    MUTE = "mute"                       # no usable answer at all


class CardError(str, enum.Enum):
    """Why a card could not sign a patron in; each has its own patron-facing message."""

    NOT_JPKI = "not_jpki"
    JUKI_CARD = "juki_card"
    SMARTPHONE_UNSUPPORTED = "smartphone_unsupported"
    MUTE_CARD = "mute_card"
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    UNKNOWN_CA = "unknown_ca"
    BAD_CERTIFICATE = "bad_certificate"     # unparsable, wrong key usage, wrong key type
    BAD_SIGNATURE = "bad_signature"
    CARD_REMOVED = "card_removed"
    READER_GONE = "reader_gone"
    PCSCD_GONE = "pcscd_gone"
    PIN_WRONG = "pin_wrong"
    PIN_LOCKED = "pin_locked"
    NOT_REGISTERED = "not_registered"


class PinPrompt(str, enum.Enum):
    """What may be done with a card's PIN, given the tries it reported before any VERIFY."""

    ASK = "ask"                             # two or more tries left: ask for the PIN
    CONFIRM_LAST_TRY = "confirm_last_try"   # one left: only after an explicit confirmation
    LOCKED = "locked"                       # none left, or the card would not say: never ask


def pin_prompt(tries_left: int | None) -> PinPrompt:
    """The one last-try rule, for the patron app (session core) and `kiosk card verify` alike.

    A wrong PIN at one try left locks the card until the municipal office unblocks it, so
    the holder must say they mean it; nothing ever retries a PIN on anyone's behalf.
    """
    if tries_left is None or tries_left <= 0:
        return PinPrompt.LOCKED
    if tries_left == 1:
        return PinPrompt.CONFIRM_LAST_TRY
    return PinPrompt.ASK


@dataclass(frozen=True)
class CardProbe:
    """What the kiosk learnt from a freshly inserted card without spending a PIN try."""

    kind: CardKind
    tries_left: int | None = None       # user-authentication PIN tries (0 = locked)
    error: CardError | None = None      # set when the card cannot go on to the PIN pad

    @property
    def usable(self) -> bool:
        return self.error is None and self.tries_left is not None and self.tries_left > 0


@dataclass(frozen=True)
class CardIdentity:
    """An authenticated card. `cert_hash` is SHA-256 of the certificate DER, hex."""

    cert_hash: str
    not_before: datetime
    not_after: datetime
    issuer: str                 # which trust anchor verified it (a label, not a DN)
    test_pki: bool = False      # chained to a test CA (demo); the screen then shows TEST


@dataclass(frozen=True)
class AuthOutcome:
    """Result of PIN + signature + chain. `identity` is set only when all three held."""

    identity: CardIdentity | None = None
    error: CardError | None = None
    tries_left: int | None = None

    @property
    def ok(self) -> bool:
        return self.identity is not None and self.error is None
