"""Effects the session core asks the shell to carry out. The core never does I/O
itself; the controller turns each effect into a screen update, a light, a sound or
a call to the card layer or the catalogue, and feeds the answer back as an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kiosk.card import CardIdentity
from kiosk.catalogue import LoanRequest


@dataclass(frozen=True)
class Show:
    """Draw `screen` from `model`, a plain dict (see kiosk/session.py for each screen's keys)."""

    screen: str
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
class Withdraw:
    """The patron left before the catalogue confirmed this loan: it must not be lent."""

    txn_id: str


@dataclass(frozen=True)
class PrintReceipt:
    lines: tuple[tuple[str, str], ...]  # (title, due date) pairs; never the patron's name


@dataclass(frozen=True)
class EndSession:
    """The patron's session is over: release the card, tell the catalogue, forget everything."""

    patron_id: str | None
    reason: str             # finished, timeout, cancelled, error


Effect = (
    Show | Lights | Cue | ProbeCard | Authenticate | ResolvePatron | LoadPatron | Checkout
    | Withdraw | PrintReceipt | EndSession
)
