"""Effects the session core asks the shell to carry out. The core never does I/O
itself; the controller turns each effect into a screen update, a light, a sound or
a call to the card layer or the catalogue, and feeds the answer back as an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from kiosk.core.card import CardIdentity
from kiosk.core.catalogue import LoanRequest


@dataclass(frozen=True)
class Show:
    """Draw `screen` from `model`, a plain dict: kiosk/core/screen_models.py has each screen's
    keys and types, and the view checks every model against them before drawing it."""

    screen: str
    # A screen_models.ScreenModel at run time; typed as a dict because the machines build it
    # key by key (dict.update), which mypy cannot follow into a TypedDict.
    model: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lights:
    pattern: str            # ready, busy, success, refused, error, card_left, out_of_service


@dataclass(frozen=True)
class Cue:
    sound: str              # accepted, refused, card_reminder, attention


@dataclass(frozen=True)
class ProbeCard:
    """Identify the inserted card and read its PIN tries, spending none."""

    serial: int = 0         # copied into the reply so a late answer is recognised as stale


@dataclass(frozen=True, eq=False)
class Authenticate:
    """VERIFY `pin`, sign a fresh challenge, check the chain. The card layer zeroes `pin`."""

    pin: bytearray
    serial: int = 0

    def __repr__(self) -> str:          # never let a PIN reach a log through repr()
        return "Authenticate(pin=<hidden>)"


@dataclass(frozen=True)
class ResolvePatron:
    identity: CardIdentity
    serial: int = 0


@dataclass(frozen=True, eq=False)
class LoadPatron:
    patron_id: str
    password: bytearray | None = None   # library-card password; zeroed by the shell after use
    serial: int = 0

    def __repr__(self) -> str:
        return "LoadPatron(<hidden>)"


@dataclass(frozen=True)
class Checkout:
    """Journal the loan durably, then push it. The answer comes back as ItemDone."""

    loan: LoanRequest


@dataclass(frozen=True)
class CheckIn:
    """Journal a return durably (the same outbox as loans), then push it. The answer comes
    back as ItemDone with a result of kind CHECKIN."""

    request: LoanRequest


@dataclass(frozen=True)
class LoadAccount:
    """Ask the catalogue for My account; the answer comes back as AccountLoaded."""

    patron_id: str
    serial: int = 0


@dataclass(frozen=True)
class Renew:
    """Renew one loan, once: `key` is this tap's own idempotency key."""

    patron_id: str
    item_id: str
    key: str


@dataclass(frozen=True)
class RenewAll:
    patron_id: str
    key: str


@dataclass(frozen=True)
class Withdraw:
    """The patron left before the catalogue confirmed this loan: it must not be lent."""

    txn_id: str


@dataclass(frozen=True)
class PrintReceipt:
    lines: tuple[tuple[str, str], ...]  # (title, due date) pairs; never the patron's name
    lang: str = "ja"                    # the patron's language: the receipt's words and dates
    returns: bool = False               # a return receipt: (title, outcome) pairs


@dataclass(frozen=True)
class EndSession:
    """The patron's session is over: release the card, tell the catalogue, forget everything."""

    patron_id: str | None
    reason: str             # finished, timeout, cancelled, error


@dataclass(frozen=True)
class Audit:
    """Record a staff action (who, what, when) in the store and the log; never patron data."""

    actor: str | None
    action: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __init__(self, actor: str | None, action: str, **fields: Any) -> None:
        object.__setattr__(self, "actor", actor)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "fields", fields)


@dataclass(frozen=True)
class StaffCommand:
    """A staff-menu action for the shell: reset, out_of_service, offline_lending, sync_now,
    load, patron_name, resolve_conflict, self_test, restart, shutdown, end_patron_session, leave,
    lock_signin, card_mode, release_card; on a counter terminal also rescan_card (read a card
    already in the reader)."""

    name: str
    value: Any = None


@dataclass(frozen=True, eq=False)
class AuthenticateForRegistration:
    """Counter mode: authenticate, then (if `birth_date`) read it with the same PIN when
    at least two tries remain on the 券面事項入力補助 PIN. The card layer zeroes `pin`."""

    pin: bytearray
    birth_date: bool
    serial: int = 0

    def __repr__(self) -> str:
        return "AuthenticateForRegistration(pin=<hidden>)"


@dataclass(frozen=True, eq=False)
class ReadBirthDate:
    """Counter mode: VERIFY the 券面事項入力補助 PIN once and read the birth date only."""

    pin: bytearray
    serial: int = 0

    def __repr__(self) -> str:
        return "ReadBirthDate(pin=<hidden>)"


@dataclass(frozen=True)
class LookupLink:
    identity: CardIdentity
    serial: int = 0


@dataclass(frozen=True)
class LinkCard:
    identity: CardIdentity
    patron_id: str
    birth_date: date | None = None
    serial: int = 0


@dataclass(frozen=True)
class UnlinkCard:
    identity: CardIdentity
    serial: int = 0


@dataclass(frozen=True, eq=False)
class HandOver:
    """Counter mode: type the identified patron's library card number and Enter into the
    staff PC through the USB keyboard gadget. Never logged; the answer is HandedOver."""

    patron_id: str
    serial: int = 0

    def __repr__(self) -> str:
        return "HandOver(<hidden>)"


Effect = (
    Show | Lights | Cue | ProbeCard | Authenticate | ResolvePatron | LoadPatron | Checkout | CheckIn
    | LoadAccount | Renew | RenewAll
    | Withdraw | PrintReceipt | EndSession | Audit | StaffCommand | AuthenticateForRegistration
    | ReadBirthDate | LookupLink | LinkCard | UnlinkCard | HandOver
)
