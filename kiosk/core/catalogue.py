"""The library catalogue as the session core sees it: plain data and one interface.

Backends (`kiosk/sync/local_catalogue.py`, `sip2_backend.py`, `rest_backend.py`)
implement `Catalogue`; the session core and the outbox only use these types.
"""

from __future__ import annotations

import enum
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol, Sequence, TypeVar


class Refusal(str, enum.Enum):
    """Why an item or a patron was refused; each maps to a friendly local message."""

    ITEM_UNKNOWN = "item_unknown"
    ON_HOLD = "on_hold"                  # reserved for someone else / waiting on the hold shelf
    ALREADY_OUT = "already_out"          # charged to another patron
    ALREADY_YOURS = "already_yours"      # already on this patron's card this session
    LIMIT_REACHED = "limit_reached"
    COUNTER_ONLY = "counter_only"        # AV, multi-part, reference-only: please go to the counter
    PATRON_BLOCKED = "patron_blocked"
    PATRON_UNKNOWN = "patron_unknown"
    WRONG_PASSWORD = "wrong_password"
    OFFLINE = "offline"                  # catalogue unreachable and offline lending is off
    RENEWAL_LIMIT = "renewal_limit"      # renewed as often as the library allows
    OVERDUE = "overdue"                  # an overdue item cannot be renewed at the kiosk
    NOT_ON_LOAN = "not_on_loan"          # a return of an item nobody has on loan
    OTHER = "other"


class Outage(str, enum.Enum):
    """Why the catalogue could not be used, in a few words staff can act on (the status
    screen and /metrics show these, never the exception text, which may quote a reply)."""

    UNREACHABLE = "unreachable"              # no connection: refused, no route, name not found, hung up
    TIMEOUT = "timeout"                      # connected (or trying), but no answer in time
    TLS = "tls"                              # the TLS handshake failed: certificate, protocol version
    LOGIN_REFUSED = "login_refused"          # SIP2 login 94 N, HTTP 401/403: the kiosk's account
    PROTOCOL = "protocol"                    # a garbled, unreadable or mismatched answer (checksum, schema)
    REFUSED_BY_SERVER = "refused_by_server"  # a well-formed error answer (HTTP 4xx/5xx)
    HELD = "held"                            # it answers but takes no checkouts now (SIP2 98)
    OTHER = "other"                          # anything else (a kiosk or backend bug)


class CatalogueUnavailable(Exception):
    """The catalogue could not be reached or answered garbage; the caller may retry later.

    `reason`: why, when the backend knows at the raise (None: see the exception's cause).
    """

    def __init__(self, *args: object, reason: Outage | None = None) -> None:
        super().__init__(*args)
        self.reason = reason


class CheckoutsHeld(CatalogueUnavailable):
    """The catalogue answers but takes no checkouts now (SIP2 98: checkout not allowed, or
    off-line). Nothing was sent; the queue waits and asks again later."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args, reason=Outage.HELD)


class LinkRefused(Exception):
    """The catalogue would not link a card identity to that library card; nothing was linked.

    `refusal` is PATRON_UNKNOWN (no such library card) or WRONG_PASSWORD (the birth date
    given at registration did not match), so the counter screen can say which.
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True)
class PatronStatus:
    patron_id: str
    valid: bool
    password_ok: bool | None = None      # None: no password was checked
    blocked: tuple[str, ...] = ()        # reasons (SIP2 patron-status flags), empty = may borrow
    limit: int | None = None             # max items on loan, None = no limit given
    charged: int = 0                     # items already on loan
    holds_ready: int = 0
    overdue: int = 0
    name: str | None = None              # shown only when configured

    @property
    def may_borrow(self) -> bool:
        return self.valid and self.password_ok is not False and not self.blocked


@dataclass(frozen=True)
class ItemInfo:
    item_id: str
    title: str
    available: bool = True
    counter_only: bool = False
    media_type: str = "book"


CHECKOUT = "checkout"
CHECKIN = "checkin"


@dataclass(frozen=True)
class LoanRequest:
    """One checkout (or, with kind CHECKIN, one return), identified by `txn_id` so that a
    replay is recognised, never doubled. Returns travel the same journal as loans, in
    one queue, so a return and a later loan of the same book reach the catalogue in order."""

    txn_id: str
    patron_id: str                       # "" for a return: no one signs in to return
    item_id: str
    created_at: datetime
    offline: bool = False                # lent/returned under local rules; sent with no-block
    due_date: date | None = None         # the offline due date given to the patron
    kind: str = CHECKOUT                 # CHECKOUT or CHECKIN


@dataclass(frozen=True)
class LoanResult:
    txn_id: str
    ok: bool
    item_id: str
    title: str = ""
    due_date: date | None = None
    due_text: str = ""                   # the catalogue's due date when it could not be parsed
    refusal: Refusal | None = None
    message: str = ""                    # catalogue text, shown as secondary detail only
    replayed: bool = False               # the catalogue already had this loan
    kind: str = CHECKOUT                 # what was asked: CHECKOUT (also renewals) or CHECKIN
    hold_shelf: bool = False             # a return another patron waits for: put it on the hold shelf
    alert: bool = False                  # a return the catalogue flags (other branch, damaged...): counter


class ReturnOutcome(str, enum.Enum):
    """What a return station tells the patron about one book."""

    RETURNED = "returned"                # done (or safely queued while offline)
    HOLD_SHELF = "hold_shelf"            # another patron is waiting: please put it on the hold shelf
    COUNTER = "counter"                  # unknown item or an alert: please take it to the counter


def return_outcome(result: LoanResult) -> ReturnOutcome:
    """The patron-facing verdict of a checkin answer. A book nobody has on loan (e.g. its
    return was recorded before the kiosk restarted) is back where it belongs: returned,
    as Koha's `checked_in_ok` self-check setting says it, unless the catalogue raised an alert."""
    if result.hold_shelf:
        return ReturnOutcome.HOLD_SHELF
    if (result.ok or result.refusal == Refusal.NOT_ON_LOAN) and not result.alert:
        return ReturnOutcome.RETURNED
    return ReturnOutcome.COUNTER


@dataclass(frozen=True)
class AccountLoan:
    """One item on the patron's card, as My account lists it."""

    item_id: str
    title: str = ""
    due_date: date | None = None
    due_text: str = ""                   # the catalogue's due date when it could not be parsed
    overdue: bool = False


@dataclass(frozen=True)
class AccountHold:
    item_id: str                         # the catalogue's hold identifier (often a title)
    title: str = ""
    ready: bool = False                  # waiting for pickup (SIP2 AS) vs pending/in transit (CD)


@dataclass(frozen=True)
class AccountFine:
    description: str                     # the catalogue's fine line (SIP2 AV), shown as it is
    amount: Decimal | None = None


@dataclass(frozen=True)
class PatronAccount:
    """Everything My account shows. Never logged, never stored; wiped with the session."""

    patron_id: str
    valid: bool
    loans: tuple[AccountLoan, ...] = ()
    holds: tuple[AccountHold, ...] = ()
    fines: tuple[AccountFine, ...] = ()
    fee_amount: Decimal | None = None    # total owed (SIP2 BV); None = not given
    currency: str = ""                   # ISO 4217 (SIP2 BH), "" = not given
    blocked: tuple[str, ...] = ()        # SIP2 patron-status flag names (renewal blocks included)
    name: str | None = None

    @property
    def holds_ready(self) -> tuple[AccountHold, ...]:
        return tuple(h for h in self.holds if h.ready)

    @property
    def holds_pending(self) -> tuple[AccountHold, ...]:
        return tuple(h for h in self.holds if not h.ready)

    @property
    def overdue(self) -> tuple[AccountLoan, ...]:
        return tuple(loan for loan in self.loans if loan.overdue)


@dataclass(frozen=True)
class RenewAllResult:
    """SIP2 66 / REST renew-all: which items were renewed and which were not."""

    ok: bool
    renewed: tuple[str, ...] = ()
    unrenewed: tuple[str, ...] = ()
    message: str = ""


class Catalogue(Protocol):
    """What the kiosk asks of the central catalogue. Every call may raise CatalogueUnavailable."""

    def patron_status(self, patron_id: str, password: str | None = None) -> PatronStatus: ...

    def item_info(self, item_id: str) -> ItemInfo: ...

    def checkout(self, loan: LoanRequest) -> LoanResult: ...

    def renew(self, patron_id: str, item_id: str, key: str | None = None) -> LoanResult:
        """One renewal. `key` (one per tap) makes a repeat of the same request harmless
        where the protocol has idempotency keys (REST); SIP2 never repeats a 29 itself."""

    def renew_all(self, patron_id: str, key: str | None = None) -> RenewAllResult: ...

    def patron_account(self, patron_id: str) -> PatronAccount:
        """Loans, holds, fines and blocks for My account (read only, never cached)."""

    def checkin(self, request: LoanRequest) -> LoanResult:
        """Return one item (request.kind == CHECKIN); offline returns go with no-block."""

    def end_session(self, patron_id: str) -> None: ...

    def resolve_identity(self, cert_hash: str) -> str | None:
        """Library card number linked to this card identity, or None when not linked."""

    def link_identity(self, cert_hash: str, patron_id: str, birth_date: date | None = None) -> None: ...

    def unlink_identity(self, cert_hash: str) -> None: ...

    def reset(self) -> None:
        """Drop any open connection (staff reset): the next call opens a new one."""

    def close(self) -> None:
        """Release connections and files for good (the kiosk is stopping)."""


class BatchCheckout(Protocol):
    """Optional extra of a backend that takes many loans per round trip (REST). The
    outbox worker uses it when present; results come back in the order given."""

    checkout_batch_size: int

    def checkout_many(self, loans: Sequence[LoanRequest]) -> list[LoanResult]: ...


class CheckoutGate(Protocol):
    """Optional extra of a backend whose library system says when it takes checkouts
    (SIP2 98 ACS Status). The outbox worker asks before it sends queued loans."""

    def checkout_hold(self) -> str | None:
        """None when checkouts may be sent now, else why not (staff-facing, no patron data).

        Asks the library system afresh; may raise CatalogueUnavailable.
        """


@dataclass
class CatalogueCapabilities:
    """What a backend told us it can do (SIP2 98 BX / REST discovery)."""

    online: bool = True
    offline_ok: bool = False
    checkout: bool = True
    renew: bool = True
    messages: dict[str, bool] = field(default_factory=dict)


def catalogue_text(text: str) -> str:
    """Text from a library system, in NFC.

    Library systems may send decomposed Unicode (NFD, e.g. from MARC records):
    ぐりとぐら arrives as 7 code points, so it would not equal, search or print like
    the same title typed on the kiosk.
    """
    return text if text.isascii() else unicodedata.normalize("NFC", text)


_Shown = TypeVar("_Shown", PatronStatus, ItemInfo, LoanResult, AccountLoan, AccountHold, AccountFine)

#: The fields of catalogue results that people read (identifiers are never rewritten).
SHOWN_TEXT_FIELDS = ("title", "name", "message", "due_text", "description")


def from_catalogue(result: _Shown) -> _Shown:
    """`result` with its readable text (title, name, message, due text) in NFC.

    The one place every backend (SIP2, REST, local) passes its results through.
    """
    changes: dict[str, Any] = {
        name: catalogue_text(value) for name in SHOWN_TEXT_FIELDS
        if isinstance(value := getattr(result, name, None), str) and not value.isascii()}
    return replace(result, **changes) if changes else result
