"""Events that drive the session core: from the patron's touches, the card layer,
the scanner, the catalogue and the clock. Plain immutable data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from kiosk.core.card import AuthOutcome, CardIdentity, CardProbe
from kiosk.core.catalogue import LoanResult, PatronAccount, PatronStatus, Refusal, RenewAllResult


@dataclass(frozen=True)
class CardInserted:
    pass


@dataclass(frozen=True)
class CardRemoved:
    pass


@dataclass(frozen=True)
class ReaderChanged:
    available: bool
    detail: str = ""


@dataclass(frozen=True)
class CardProbed:
    probe: CardProbe
    serial: int | None = None           # the effect's serial; None = the current session


@dataclass(frozen=True)
class AuthDone:
    outcome: AuthOutcome
    serial: int | None = None


@dataclass(frozen=True)
class PatronResolved:
    """The card identity's library card number, or None when the card is not linked."""

    patron_id: str | None
    offline: bool = False               # answered from the local link cache
    unavailable: bool = False           # neither the catalogue nor the cache could answer
    serial: int | None = None


@dataclass(frozen=True)
class PatronLoaded:
    status: PatronStatus | None
    refusal: Refusal | None = None      # Refusal.OFFLINE when the catalogue is unreachable
    serial: int | None = None


@dataclass(frozen=True)
class Barcode:
    code: str


@dataclass(frozen=True)
class ItemDone:
    result: LoanResult


@dataclass(frozen=True)
class Press:
    """A touch on the screen: `action` names the button, `value` its argument."""

    action: str
    value: str | None = None


@dataclass(frozen=True)
class Tick:
    """The clock moved on; the session checks its timeouts."""


@dataclass(frozen=True)
class JournalFailed:
    """The loan `txn_id` could not be written to the journal: it must not count as lent."""

    txn_id: str


@dataclass(frozen=True)
class SetOutOfService:
    on: bool


@dataclass(frozen=True)
class SetOfflineLending:
    on: bool


@dataclass(frozen=True)
class ReceiptDone:
    """The receipt printer finished (ok) or could not print (paper out, missing)."""

    ok: bool


@dataclass(frozen=True)
class Reset:
    """Staff reset (or staff signing in): end any patron session now and show idle."""

    reason: str = "staff"


@dataclass(frozen=True)
class CardPresence:
    """Whether a card sits in the reader, learnt while staff mode had the reader: only
    remembered (so a left card is reminded about), never read."""

    present: bool


@dataclass(frozen=True)
class StaffOpen:
    """The hidden gesture, the GPIO reset button or a staff badge asks for staff mode."""

    badge: str | None = None


@dataclass(frozen=True)
class StaffData:
    """Data staff screens asked for: kind "status", "conflicts" or "selftest"."""

    kind: str
    data: object


@dataclass(frozen=True)
class RegistrationRead:
    """Counter registration: the card authenticated (or not) and, when asked for, the
    birth date read with the same PIN. `second_pin_tries` is set when the patron must
    enter the 券面事項入力補助 PIN themselves."""

    outcome: AuthOutcome
    birth_date: date | None = None
    second_pin_tries: int | None = None
    serial: int | None = None
    first_pin_tried: bool = False       # the same PIN went to the 券面事項入力補助 PIN: a try of it spent


@dataclass(frozen=True)
class BirthDateRead:
    birth_date: date | None
    tries_left: int | None = None
    serial: int | None = None


@dataclass(frozen=True)
class LinkFound:
    patron_id: str | None
    serial: int | None = None


@dataclass(frozen=True)
class LinkDone:
    error: str | None = None            # a CardError/Refusal value, or "offline"
    unlinked: bool = False
    serial: int | None = None


@dataclass(frozen=True)
class HandedOver:
    """Counter mode: the USB keyboard typed the number (ok) or the staff PC did not take it."""

    ok: bool
    serial: int | None = None


@dataclass(frozen=True)
class AccountLoaded:
    """My account's data (None: the catalogue did not answer)."""

    account: PatronAccount | None
    serial: int = 0


@dataclass(frozen=True)
class RenewDone:
    """A renewal's answer (result None: the catalogue did not answer; nothing is known)."""

    item_id: str
    key: str
    result: LoanResult | None


@dataclass(frozen=True)
class RenewAllDone:
    key: str
    result: RenewAllResult | None


Event = (
    CardInserted | CardRemoved | ReaderChanged | CardProbed | AuthDone | PatronResolved
    | PatronLoaded | Barcode | ItemDone | JournalFailed | Press | Tick | SetOutOfService | SetOfflineLending
    | ReceiptDone | Reset | CardPresence | StaffOpen | StaffData | RegistrationRead | BirthDateRead | LinkFound | LinkDone
    | HandedOver | AccountLoaded | RenewDone | RenewAllDone
)

__all__ = [
    "AuthDone", "Barcode", "CardIdentity", "CardInserted", "CardProbed", "CardRemoved", "Event",
    "ItemDone", "JournalFailed", "PatronLoaded", "PatronResolved", "Press", "ReaderChanged", "SetOfflineLending",
    "SetOutOfService", "Tick", "StaffOpen", "StaffData", "RegistrationRead", "BirthDateRead",
    "LinkFound", "LinkDone", "Reset", "CardPresence", "ReceiptDone", "HandedOver", "AccountLoaded", "RenewDone",
    "RenewAllDone",
]
