"""What each screen's `Show.model` holds: one TypedDict per screen, and `check_model`.

The session and staff machines (kiosk/core/session.py, kiosk/core/staff.py) build each
model as a plain dict and the screens read it with `model.get(...)`, so a key misspelt
or dropped on one side would only show as a blank on the kiosk. These types are the
contract between the two: the view checks every model before drawing it, and the test
drivers check every model the core emits.

Plain Python (no Kivy): the core, the screens and the tests all import it.
"""

# No `from __future__ import annotations`: check_model reads these annotations at run time.

from functools import cache
from types import NoneType, UnionType
from typing import Any, Literal, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict


class PatronModel(TypedDict):
    """Keys every patron screen gets."""

    language: str
    countdown: int | None           # seconds left once the timeout warning starts
    card_reminder: bool             # a used card is still in the reader
    test_pki: bool
    notice: str | None


class Row(TypedDict):
    """One scanned item on the scanning and summary screens."""

    txn_id: str
    item_id: str
    state: Literal["pending", "ok", "refused", "unconfirmed"]
    title: str
    due: str                        # ISO date or the catalogue's text
    refusal: str | None
    offline: bool


class IdleModel(PatronModel):
    reader_ok: bool
    library_card: bool              # sign-in by library card allowed
    help: bool                      # the help overlay is open
    return_button: NotRequired[bool]    # the "return books" button (loans.return_button)
    card_number: NotRequired[bool]      # "type the card number" (loans.manual_card_entry)


class ReadingCardModel(PatronModel):
    pass


class PinModel(PatronModel):
    purpose: Literal["card", "library"]
    digits: int                     # how many were typed, never the digits
    max_digits: int
    tries_left: int | None          # card only


class CardNumberModel(PatronModel):
    number: str                     # the library card number typed so far (not a secret)
    max_digits: int


class LastTryModel(PatronModel):
    pass


class AuthenticatingModel(PatronModel):
    stage: Literal["card", "patron"]


class LibraryCardModel(PatronModel):
    pass


class TakeCardModel(PatronModel):
    pass


class ScanningModel(PatronModel):
    rows: list[Row]
    lent: int
    pending: int
    allowance: int | None           # None: no limit
    name: str | None                # only when the site shows patron names
    holds_ready: int
    offline: bool


class FinishingModel(PatronModel):
    pending: int


class SummaryModel(PatronModel):
    rows: list[Row]                 # borrowed first, then refused and unconfirmed
    receipt_available: bool
    due: str | None                 # the due date every borrowed row shares (said once), else None


class ThankYouModel(PatronModel):
    lent: int
    due: str | None                 # the first due date; None when nothing was borrowed (or no date given)
    several_dates: bool


class ErrorModel(PatronModel):
    code: str | None                # a CardError or Refusal value, or "timeout"
    counter: bool                   # go to the counter
    library_card: bool              # offer the library-card sign-in instead


class OutOfServiceModel(PatronModel):
    pass


class StaffModel(TypedDict):
    """Keys every staff screen gets (staff screens use the site's default language)."""

    countdown: int | None
    notice: str | None


class StaffSigninModel(StaffModel):
    badge: bool                     # a badge was scanned
    digits: int
    locked_for: int | None          # seconds


class StaffMenuModel(StaffModel):
    staff_id: str | None
    out_of_service: bool
    offline_lending: bool
    registration: bool
    counter: NotRequired[bool]      # a counter terminal: "exit" goes back to the counter screen


class StaffStatusModel(StaffModel):
    status: dict[str, Any]          # from the controller's staff backend


class StaffReviewModel(StaffModel):
    conflicts: list[dict[str, Any]]


class StaffSelftestModel(StaffModel):
    results: dict[str, str | dict[str, Any]]    # part -> "running"/"done" or {"result": ...}


class StaffConfirmModel(StaffModel):
    action: Literal["restart", "shutdown"]


class StaffRegisterModel(StaffModel):
    step: Literal["insert", "pin", "last_try", "authenticating", "pin2", "last_try2", "reading", "scan",
                  "confirm", "linking", "done", "error"]
    digits: int
    tries_left: int | None
    patron_id: str | None
    valid_until: str | None         # ISO date
    linked_before: bool
    error: str | None
    first_pin_tried: NotRequired[bool]  # pin2: the same PIN already cost the 券面事項入力補助 PIN a try
    patron_name: NotRequired[str]       # confirm: the catalogue's name for the card (staff screen only)


class StaffCounterModel(StaffModel):
    staff_id: str | None
    last: str | None                # "identified" or an error code: never a number or a name


class CounterIdentifyModel(StaffModel):
    step: Literal["insert", "reading", "pin", "last_try", "authenticating", "resolving", "identified", "error"]
    digits: int
    tries_left: int | None
    error: str | None
    bars: list[int] | None          # the barcode's bar/space widths in modules (kiosk/core/barcode_symbols.py)
    symbology: str | None
    keyboard: Literal["typing", "typed", "failed"] | None
    wipe_in: int | None             # seconds until the barcode is wiped


class AccountLoanRow(TypedDict):
    item_id: str
    title: str
    due: str                        # ISO date, or the catalogue's own text
    overdue: bool
    state: Literal["", "renewing", "renewed", "refused"]
    reason: str                     # a Refusal value ("on_hold", "renewal_limit", "overdue", ...) or ""


class AccountModel(TypedDict):
    """My account (kiosk/core/account.py), over the scanning screen."""

    language: str
    loading: bool
    unavailable: bool               # the catalogue did not answer
    loans: list[AccountLoanRow]     # this page
    loan_count: int
    holds_ready: list[str]
    holds_pending: list[str]
    fines: list[str]
    fee_amount: str                 # "" when none
    currency: str
    blocks: list[str]               # SIP2 patron-status names, worded on screen
    page: int
    pages: int
    renew_all: Literal["", "renewing", "done"]
    renew_all_result: dict[str, int]
    can_renew: bool
    why_not: str                    # why renewals are unavailable: "offline", "blocked" or ""


class ReturnRow(TypedDict):
    txn_id: str
    item_id: str
    title: str
    state: Literal["pending", "returned", "hold_shelf", "counter"]
    queued: bool                    # received while the catalogue was away; recorded later


class ReturnsModel(TypedDict):
    """The return desk (kiosk/core/returns.py)."""

    rows: list[ReturnRow]
    returned: int
    notice: str
    language: str
    countdown: int | None
    station: bool
    summary: bool
    receipt_available: bool
    printing: bool
    offline: bool


ScreenModel = (
    IdleModel | ReadingCardModel | PinModel | LastTryModel | AuthenticatingModel | LibraryCardModel
    | TakeCardModel | ScanningModel | FinishingModel | SummaryModel | ThankYouModel | ErrorModel
    | OutOfServiceModel | StaffSigninModel | StaffMenuModel | StaffStatusModel | StaffReviewModel
    | StaffSelftestModel | StaffConfirmModel | StaffRegisterModel | StaffCounterModel | CounterIdentifyModel
    | AccountModel | ReturnsModel
)

MODELS: dict[str, type] = {
    "idle": IdleModel,
    "reading_card": ReadingCardModel,
    "pin": PinModel,
    "last_try": LastTryModel,
    "card_number": CardNumberModel,
    "authenticating": AuthenticatingModel,
    "library_card": LibraryCardModel,
    "take_card": TakeCardModel,
    "scanning": ScanningModel,
    "finishing": FinishingModel,
    "summary": SummaryModel,
    "thank_you": ThankYouModel,
    "error": ErrorModel,
    "out_of_service": OutOfServiceModel,
    "staff_signin": StaffSigninModel,
    "staff_menu": StaffMenuModel,
    "staff_status": StaffStatusModel,
    "staff_review": StaffReviewModel,
    "staff_selftest": StaffSelftestModel,
    "staff_confirm": StaffConfirmModel,
    "staff_register": StaffRegisterModel,
    "staff_counter": StaffCounterModel,
    "counter_identify": CounterIdentifyModel,
    "account": AccountModel,
    "returns": ReturnsModel,
}


class ScreenModelError(ValueError):
    """A model that does not match its screen's type. Names the screen and the key, never
    the value (it may be a patron's)."""

    def __init__(self, screen: str, key: str | None, problem: str) -> None:
        super().__init__(f"{screen}: {problem}" + (f" {key!r}" if key is not None else ""))
        self.screen = screen
        self.key = key
        self.problem = problem


def check_model(screen: str, model: object) -> None:
    """Raise ScreenModelError unless `model` has exactly the keys of `screen`'s model type,
    each of the right type (checked at the top level; rows item by item)."""
    kind = MODELS.get(screen)
    if kind is None:
        raise ScreenModelError(screen, None, "unknown screen")
    if not isinstance(model, dict):
        raise ScreenModelError(screen, None, "model is not a dict")
    _check(screen, kind, model, "")


@cache
def _hints(kind: Any) -> dict[str, Any]:
    return get_type_hints(kind)


def _check(screen: str, kind: Any, model: dict, prefix: str) -> None:
    hints = _hints(kind)
    missing = sorted(kind.__required_keys__ - model.keys())
    if missing:
        raise ScreenModelError(screen, prefix + missing[0], "missing key")
    for key, value in model.items():
        if key not in hints:
            raise ScreenModelError(screen, prefix + str(key), "unexpected key")
        tp = hints[key]
        if not _fits(tp, value):
            raise ScreenModelError(screen, prefix + key, "wrong type for")
        if isinstance(value, list) and get_origin(tp) is list and is_typeddict(get_args(tp)[0]):
            for i, item in enumerate(value):        # rows: each one checked too
                if not isinstance(item, dict):
                    raise ScreenModelError(screen, f"{prefix}{key}[{i}]", "wrong type for")
                _check(screen, get_args(tp)[0], item, f"{prefix}{key}[{i}].")


def _fits(tp: Any, value: object) -> bool:
    """Whether `value` is of type `tp`, looking no deeper than the container."""
    origin = get_origin(tp)
    if tp is Any:
        return True
    if tp is None or tp is NoneType:
        return value is None
    if origin is Union or origin is UnionType:
        return any(_fits(arg, value) for arg in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if origin is not None:                      # list[...], dict[...]
        return isinstance(value, origin)
    if is_typeddict(tp):
        return isinstance(value, dict)
    if tp is int:                               # True is an int to Python, not to a screen
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, tp)
