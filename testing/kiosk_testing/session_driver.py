"""A small driver for the pure session core: a Session, a fake clock, recorded effects.

Shared by the session, controller and UI tests. It plays the shell's part only as far
as the tests ask it to (`sign_in_with_card()` answers the card and catalogue effects
with canned replies); it never talks to hardware. Every Show it sees is checked against
the screen's model type (kiosk/core/screen_models.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable, TypeVar

import pytest

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardIdentity, CardKind, CardProbe
from kiosk.core.catalogue import LoanResult, PatronStatus, Refusal
from kiosk.core.session import Session, SessionSettings, replace_settings
from kiosk_testing.checked_models import check_shows

E = TypeVar("E")

WALL = datetime(2025, 4, 1, 10, 30, tzinfo=timezone.utc)
START = 1000.0
CARD_PATRON = "20000001"
LIBRARY_PATRON = "20000002"
ITEM_A = "10000001"
ITEM_B = "10000002"
ITEM_C = "10000003"
IDENTITY = CardIdentity(
    cert_hash="ab" * 32,
    not_before=datetime(2024, 1, 1, tzinfo=timezone.utc),
    not_after=datetime(2029, 1, 1, tzinfo=timezone.utc),
    issuer="jpki-user-auth",
)
TEST_IDENTITY = CardIdentity(
    cert_hash="cd" * 32,
    not_before=IDENTITY.not_before,
    not_after=IDENTITY.not_after,
    issuer="demo-ca",
    test_pki=True,
)


def status(patron_id: str = CARD_PATRON, **kw: Any) -> PatronStatus:
    """A valid patron who may borrow, unless `kw` says otherwise."""
    kw.setdefault("valid", True)
    return PatronStatus(patron_id=patron_id, **kw)


@dataclass
class SessionDriver:
    """Holds a Session and a fake monotonic clock; records every effect it returns."""

    settings: SessionSettings = field(default_factory=SessionSettings)
    now: float = START
    wall: datetime = WALL
    effects: list = field(default_factory=list)       # every effect, in order
    last: list = field(default_factory=list)          # effects of the latest call
    txn_ids: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = Session(self.settings, self._new_txn_id, lambda: self.wall)
        self._record(self.session.start(self.now))

    @classmethod
    def with_settings(cls, **changes: Any) -> SessionDriver:
        return cls(settings=replace_settings(SessionSettings(), **changes))

    # -- plumbing ---------------------------------------------------------------

    def _new_txn_id(self) -> str:
        txn = f"txn-{len(self.txn_ids) + 1}"
        self.txn_ids.append(txn)
        return txn

    def _record(self, out: list) -> list:
        check_shows(out)                # every model the session emits fits its screen
        self.last = list(out)
        self.effects.extend(out)
        return out

    def send(self, event: ev.Event) -> list:
        """Hand one event to the session at the current fake time."""
        return self._record(self.session.handle(event, self.now))

    def tick(self) -> list:
        return self.send(ev.Tick())

    def advance(self, seconds: float) -> list:
        """Move the clock on by `seconds`, then Tick once."""
        self.now += seconds
        return self.tick()

    def advance_to(self, t: float) -> list:
        self.now = t
        return self.tick()

    def run_for(self, seconds: float, step: float = 1.0) -> list:
        """Tick every `step` seconds for `seconds`; returns every effect produced."""
        out: list = []
        end = self.now + seconds
        while self.now + step <= end + 1e-9:
            out += self.advance(step)
        self.last = out
        return out

    @property
    def screen(self) -> str:
        return self.session.screen

    @property
    def serial(self) -> int:
        return self.session.serial

    @property
    def deadline(self) -> float | None:
        return self.session._deadline

    # -- looking at effects -------------------------------------------------------

    @staticmethod
    def of_type(kind: type[E], effects: Iterable) -> list[E]:
        return [e for e in effects if isinstance(e, kind)]

    def all_of(self, kind: type[E]) -> list[E]:
        return self.of_type(kind, self.effects)

    def last_of(self, kind: type[E]) -> list[E]:
        return self.of_type(kind, self.last)

    def last_show(self) -> fx.Show:
        shows = self.all_of(fx.Show)
        assert shows, "no Show effect yet"
        return shows[-1]

    @property
    def model(self) -> dict:
        return self.last_show().model

    def cues(self, effects: Iterable | None = None) -> list[str]:
        return [c.sound for c in self.of_type(fx.Cue, self.last if effects is None else effects)]

    def lights(self, effects: Iterable | None = None) -> list[str]:
        return [x.pattern for x in self.of_type(fx.Lights, self.last if effects is None else effects)]

    # -- patron actions -----------------------------------------------------------

    def press(self, action: str, value: str | None = None) -> list:
        return self.send(ev.Press(action, value))

    def insert_card(self) -> list:
        return self.send(ev.CardInserted())

    def remove_card(self) -> list:
        return self.send(ev.CardRemoved())

    def scan(self, code: str) -> list:
        return self.send(ev.Barcode(code))

    def type_pin(self, digits: str) -> list:
        out: list = []
        for d in digits:
            out += self.press("digit", d)
        return out

    def enter_pin(self, digits: str = "1234") -> list:
        """Type `digits` and press OK; returns the effects of OK."""
        self.type_pin(digits)
        return self.press("ok")

    # -- answers from the card layer and the catalogue ----------------------------

    def probe(self, tries: int | None = 3, error: CardError | None = None,
              kind: CardKind = CardKind.MY_NUMBER_CARD, serial: int | None = ...) -> list:
        s = self.serial if serial is ... else serial
        return self.send(ev.CardProbed(CardProbe(kind=kind, tries_left=tries, error=error), serial=s))

    def auth_ok(self, identity: CardIdentity = IDENTITY, serial: int | None = ...) -> list:
        s = self.serial if serial is ... else serial
        return self.send(ev.AuthDone(AuthOutcome(identity=identity), serial=s))

    def auth_fail(self, error: CardError | None, tries_left: int | None = None,
                  serial: int | None = ...) -> list:
        s = self.serial if serial is ... else serial
        return self.send(ev.AuthDone(AuthOutcome(error=error, tries_left=tries_left), serial=s))

    def resolved(self, patron_id: str | None = CARD_PATRON, unavailable: bool = False,
                 serial: int | None = ...) -> list:
        s = self.serial if serial is ... else serial
        return self.send(ev.PatronResolved(patron_id, unavailable=unavailable, serial=s))

    def loaded(self, st: PatronStatus | None = None, refusal: Refusal | None = None,
               serial: int | None = ...) -> list:
        s = self.serial if serial is ... else serial
        return self.send(ev.PatronLoaded(st, refusal, serial=s))

    def item_done(self, txn_id: str, ok: bool = True, title: str = "A Title",
                  due: date | None = date(2025, 4, 15), due_text: str = "",
                  refusal: Refusal | None = None, item_id: str = "") -> list:
        return self.send(ev.ItemDone(LoanResult(
            txn_id=txn_id, ok=ok, item_id=item_id, title=title, due_date=due if ok else None,
            due_text=due_text, refusal=refusal)))

    # -- whole journeys -------------------------------------------------------------

    def sign_in_with_card(self, tries: int = 3, pin: str = "1234", patron_id: str = CARD_PATRON,
                          st: PatronStatus | None = None, identity: CardIdentity = IDENTITY,
                          take_card: bool = True) -> list:
        """Insert a card and answer every step until the scanning screen (or take_card
        when `take_card` is False). Returns every effect of the journey."""
        start = len(self.effects)
        self.insert_card()
        self.probe(tries)
        if tries == 1:
            self.press("confirm_last_try")
        self.enter_pin(pin)
        self.auth_ok(identity)
        self.resolved(patron_id)
        self.loaded(st or status(patron_id))
        if take_card:
            self.remove_card()
        assert self.screen == ("scanning" if take_card else "take_card"), self.screen
        return self.effects[start:]

    def sign_in_with_library_card(self, patron_id: str = LIBRARY_PATRON, password: str | None = "1234",
                                  st: PatronStatus | None = None) -> list:
        """Scan a library card at idle (typing `password` when the settings ask for one)
        and answer the catalogue until the scanning screen."""
        start = len(self.effects)
        self.scan(patron_id)
        if self.settings.library_card_password:
            self.enter_pin(password or "")
        self.loaded(st or status(patron_id, password_ok=True if self.settings.library_card_password else None))
        assert self.screen == "scanning", self.screen
        return self.effects[start:]

    def checkout(self, code: str) -> fx.Checkout:
        """Scan an item and return its Checkout effect (fails if none was asked for)."""
        out = self.scan(code)
        checkouts = self.of_type(fx.Checkout, out)
        assert len(checkouts) == 1, out
        return checkouts[0]

    def drive_to(self, screen: str) -> SessionDriver:
        """Bring a fresh-started session to `screen` by the shortest ordinary path."""
        if screen == "idle":
            pass
        elif screen == "out_of_service":
            self.send(ev.SetOutOfService(True))
        elif screen == "reading_card":
            self.insert_card()
        elif screen == "pin":
            self.insert_card()
            self.probe(3)
        elif screen == "last_try":
            self.insert_card()
            self.probe(1)
        elif screen == "authenticating":
            self.insert_card()
            self.probe(3)
            self.enter_pin()
        elif screen == "library_card":
            self.press("library_card")
        elif screen == "card_number":
            self.press("card_number")
        elif screen == "take_card":
            self.sign_in_with_card(take_card=False)
        elif screen == "scanning":
            self.sign_in_with_card()
        elif screen == "finishing":
            self.sign_in_with_card()
            self.scan(ITEM_A)
            self.press("finish")
        elif screen == "summary":
            self.sign_in_with_card()
            self.scan(ITEM_A)
            self.item_done(self.txn_ids[-1])
            self.press("finish")
        elif screen == "thank_you":
            self.sign_in_with_card()
            self.press("finish")
        elif screen == "error":
            self.insert_card()
            self.probe(error=CardError.NOT_JPKI)
        else:
            raise ValueError(screen)
        assert self.screen == screen, (screen, self.screen)
        return self


@pytest.fixture
def session_driver() -> SessionDriver:
    """A started session with default settings, at idle, at fake time START."""
    return SessionDriver()
