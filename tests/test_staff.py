"""Staff mode as a pure state machine (kiosk/core/staff.py): sign-in, lockout, idle timeout, the
menu's actions and counter registration, driven by canned events and a fake clock.

The PIN check is the real scrypt one (kiosk/core/staff_pins.py) at a low cost factor.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone

import pytest

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardIdentity, CardKind, CardProbe
from kiosk.core.staff import (
    CLOSED,
    CONFIRM,
    MENU,
    REGISTER,
    REVIEW,
    SELFTEST,
    SIGNIN,
    STATUS,
    StaffAccount,
    StaffMode,
    StaffSettings,
)
from kiosk.core.staff_pins import check_pin, hash_pin
from kiosk.logs import check_fields
from kiosk_testing.checked_models import check_shows

ALICE_PIN, BOB_PIN = "2468", "13579"
ALICE = StaffAccount("alice", hash_pin(ALICE_PIN.encode(), log2_n=4), badge="S00001")
BOB = StaffAccount("bob", hash_pin(BOB_PIN.encode(), log2_n=4))
PATRON = "20005550001"
OTHER_PATRON = "20007770002"
BORN = date(1985, 4, 12)
IDENTITY = CardIdentity(cert_hash="ab" * 32, not_before=datetime(2024, 1, 1, tzinfo=timezone.utc),
                        not_after=datetime(2029, 4, 11, tzinfo=timezone.utc), issuer="test", test_pki=True)
OK = AuthOutcome(identity=IDENTITY)
T0 = 1_000.0


def settings(**kw) -> StaffSettings:
    base = dict(accounts=(ALICE, BOB), max_failures=3, lockout_seconds=300.0, idle_timeout=60.0, warning=15.0)
    base.update(kw)
    return StaffSettings(**base)


class Staff:
    """Drives one StaffMode; remembers every effect and the last screen shown."""

    def __init__(self, locked_for: float = 0.0, **kw) -> None:
        self.now = T0
        self.mode = StaffMode(settings(**kw), check_pin, locked_for=locked_for, now=self.now)
        self.effects: list = []

    def _keep(self, out: list) -> list:
        self.effects += check_shows(out)        # every model staff mode emits fits its screen
        return out

    def open(self, badge=None, out_of_service=False, offline_lending=False) -> list:
        return self._keep(self.mode.open(self.now, out_of_service, offline_lending, badge=badge))

    def send(self, event) -> list:
        return self._keep(self.mode.handle(event, self.now))

    def press(self, action, value=None) -> list:
        return self.send(ev.Press(action, value))

    def type(self, digits: str) -> list:
        out = []
        for d in digits:
            out += self.press("digit", d)
        return out

    def tick(self, seconds: float = 0.0) -> list:
        self.now += seconds
        return self.send(ev.Tick())

    def sign_in(self, pin=ALICE_PIN, badge=None) -> list:
        self.open(badge=badge)
        self.type(pin)
        return self.press("ok")

    @property
    def screen(self) -> str:
        return self.mode.screen

    @property
    def shown(self) -> fx.Show:
        return [e for e in self.effects if isinstance(e, fx.Show)][-1]

    @property
    def model(self) -> dict:
        return self.shown.model

    # -- registration helpers --------------------------------------------------------

    def start_registration(self, birth_date=False) -> list:
        if birth_date:
            self.mode.settings = dataclasses.replace(self.mode.settings, birth_date=True)
        self.sign_in()
        return self.press("register")

    def to_pin(self, tries=3) -> None:
        self.send(ev.CardInserted())
        self.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=tries), serial=self.mode.serial))

    def enter_pin(self, pin="1234") -> list:
        self.type(pin)
        return self.press("ok")

    def read(self, outcome=OK, birth=None, second=None) -> list:
        return self.send(ev.RegistrationRead(outcome, birth, second, serial=self.mode.serial))

    def to_scan(self, birth_date=False) -> None:
        self.start_registration(birth_date)
        self.to_pin()
        self.enter_pin()
        self.read(birth=BORN if birth_date else None)


def of(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def commands(effects) -> list[tuple]:
    return [(e.name, e.value) for e in of(effects, fx.StaffCommand)]


def audits(effects) -> list[str]:
    return [e.action for e in of(effects, fx.Audit)]


# -- closed: nothing happens without sign-in --------------------------------------------------------

ALL_EVENTS = [
    ev.Press("register"), ev.Press("ok"), ev.Press("digit", "1"), ev.Press("exit"), ev.Press("link"),
    ev.Press("reset"), ev.Press("out_of_service"), ev.Press("confirm"), ev.Barcode(PATRON), ev.Barcode("S00001"),
    ev.CardInserted(), ev.CardRemoved(), ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3)),
    ev.RegistrationRead(OK, BORN), ev.BirthDateRead(BORN), ev.LinkFound(PATRON), ev.LinkDone(),
    ev.Tick(), ev.StaffData("status", {"x": 1}),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
def test_closed_staff_mode_ignores_everything(event):
    s = Staff()
    assert s.send(event) == [] and s.screen == CLOSED and not s.mode.active


def test_registration_is_impossible_without_sign_in():
    s = Staff()
    s.open()
    out = []
    for event in ALL_EVENTS:
        out += s.send(event)
    card_work = (fx.ProbeCard, fx.AuthenticateForRegistration, fx.ReadBirthDate, fx.LookupLink, fx.LinkCard,
                 fx.UnlinkCard)
    assert not any(isinstance(e, card_work) for e in out)
    assert ("card_mode", "counter") not in commands(out) and s.mode.staff_id is None
    assert s.screen in (SIGNIN, CLOSED)


# -- sign-in ------------------------------------------------------------------------------------------

def test_open_shows_sign_in():
    s = Staff()
    out = s.open()
    assert audits(out) == ["staff.signin_opened"] and of(out, fx.Audit)[0].actor == "staff"
    assert s.screen == SIGNIN
    assert s.model == {"countdown": None, "notice": None, "badge": False, "digits": 0, "locked_for": None}
    assert s.open() == []                                   # already open


def test_sign_in_by_pin_alone_finds_the_account():
    s = Staff()
    s.open()
    s.type(BOB_PIN)
    assert s.model["digits"] == 5
    out = s.press("ok")
    assert s.screen == MENU and s.mode.staff_id == "bob"
    assert [(a.actor, a.action) for a in of(out, fx.Audit)] == [("bob", "staff.signed_in")]
    assert commands(out) == [("end_patron_session", None)]
    assert s.model == {"countdown": None, "notice": None, "staff_id": "bob", "out_of_service": False,
                       "offline_lending": False, "registration": True}


def test_sign_in_with_badge_then_pin():
    s = Staff()
    s.open(badge=" S00001 ")
    assert s.model["badge"] is True and s.model["notice"] is None
    s.type(BOB_PIN)                                          # the right PIN of another account
    s.press("ok")
    assert s.screen == SIGNIN and s.model["notice"] == "wrong_pin" and s.mode.staff_id is None
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.screen == MENU and s.mode.staff_id == "alice"


def test_badge_scanned_at_the_sign_in_screen():
    s = Staff()
    s.open()
    s.send(ev.Barcode("S00001"))
    assert s.model["badge"] is True
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.mode.staff_id == "alice"


def test_unknown_badge():
    s = Staff()
    s.open(badge="S99999")
    assert s.model["notice"] == "unknown_badge" and s.model["badge"] is False
    s.send(ev.Barcode(PATRON))                               # a library card is no badge either
    assert s.model["notice"] == "unknown_badge"


def test_wrong_pin_is_audited_without_the_pin():
    s = Staff()
    s.open()
    s.type("0000")
    out = s.press("ok")
    assert s.screen == SIGNIN and s.model["notice"] == "wrong_pin" and s.model["digits"] == 0
    (audit,) = of(out, fx.Audit)
    assert (audit.actor, audit.action, audit.fields) == ("staff", "staff.signin_failed", {"failures": 1})


def test_digits_delete_clear_and_limits():
    s = Staff()
    s.open()
    s.type("123456789")
    assert s.model["digits"] == 8                            # at most 8
    s.press("delete")
    assert s.model["digits"] == 7
    s.press("clear")
    assert s.model["digits"] == 0
    assert s.press("delete") != [] and s.model["digits"] == 0
    for bad in ("a", "12", "", None, "٣"):
        s.press("digit", bad)
    assert s.model["digits"] == 0
    assert s.press("ok") == []                               # nothing typed: nothing checked
    assert s.press("menu_thing") == []


def test_lockout_after_max_failures_and_unlock_after_the_lockout_time():
    s = Staff()
    s.open()
    for n in (1, 2):
        s.type("0000")
        s.press("ok")
    s.type("0000")
    out = s.press("ok")
    assert audits(out) == ["staff.signin_failed", "staff.signin_locked"]
    assert ("lock_signin", 300.0) in commands(out)
    assert s.model["notice"] == "locked" and s.model["locked_for"] == 300
    s.type(ALICE_PIN)                                        # refused while locked, even the right PIN
    out = s.press("ok")
    assert s.mode.staff_id is None and s.model["notice"] == "locked" and s.model["digits"] == 0
    assert of(out, fx.Audit) == []
    s.tick(10)
    assert s.model["locked_for"] == 290                      # the count-down is redrawn on ticks
    s.press("cancel")
    assert s.screen == CLOSED
    s.now += 291
    s.open()
    assert s.model["locked_for"] is None
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.mode.staff_id == "alice"


def test_failures_start_afresh_after_a_lockout_and_after_success():
    s = Staff()
    s.open()
    for _ in range(3):
        s.type("0000")
        s.press("ok")
    s.now += 301
    s.type("0000")
    out = s.press("ok")
    assert of(out, fx.Audit)[0].fields == {"failures": 1}
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.mode.failures == 0


def test_failures_are_not_forgotten_by_cancelling_and_reopening():
    """Otherwise the lockout could be dodged: two failures, cancel, reopen, two failures..."""
    s = Staff()
    for _ in range(3):
        s.open()
        s.type("0000")
        s.press("ok")
        s.press("cancel")
    s.open()
    assert s.model["locked_for"] == 300 and s.mode.locked_until is not None


def test_lockout_remembered_across_a_restart():
    s = Staff(locked_for=120)
    s.open()
    assert s.model["locked_for"] == 120
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.mode.staff_id is None
    s.now += 121
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.mode.staff_id == "alice"


def test_cancel_at_sign_in_leaves_without_audit_and_wipes_digits():
    s = Staff()
    s.open()
    s.type("24")
    digits = s.mode._digits
    out = s.press("cancel")
    assert s.screen == CLOSED and commands(out) == [("leave", None)] and of(out, fx.Audit) == []
    assert bytes(digits) == b"" and s.mode._digits == bytearray()


def test_more_time_and_timeout_at_sign_in():
    s = Staff()
    s.open()
    assert s.tick(44) == []
    s.tick(1)
    assert s.model["countdown"] == 15
    s.press("more_time")
    assert s.model["countdown"] is None
    out = s.tick(60)
    assert s.screen == CLOSED and commands(out) == [("leave", None)] and of(out, fx.Audit) == []


# -- idle timeout on every staff screen -----------------------------------------------------------------

def _go_to(s: Staff, screen: str) -> None:
    s.sign_in()
    press = {MENU: None, STATUS: "status", REVIEW: "review", SELFTEST: "self_test", CONFIRM: "restart",
             REGISTER: "register"}[screen]
    if press:
        s.press(press)
    assert s.screen == screen


@pytest.mark.parametrize("screen", [MENU, STATUS, REVIEW, SELFTEST, CONFIRM, REGISTER])
def test_idle_countdown_more_time_and_timeout_on_every_screen(screen):
    s = Staff()
    _go_to(s, screen)
    assert s.tick(44.5) == []
    s.tick(0.5)
    assert s.shown.screen == screen and s.model["countdown"] == 15
    s.tick(1)
    assert s.model["countdown"] == 14
    assert s.tick(0.2) == []                                  # same second: nothing redrawn
    s.press("more_time")
    assert s.screen == screen and s.model["countdown"] is None
    s.tick(59)
    assert s.screen == screen
    out = s.tick(1)
    assert s.screen == CLOSED
    assert [(a.actor, a.action) for a in of(out, fx.Audit)] == [("alice", "staff.timed_out")]
    assert ("leave", None) in commands(out) and s.mode.staff_id is None


@pytest.mark.parametrize("screen", [MENU, STATUS, REVIEW, SELFTEST, CONFIRM, REGISTER])
def test_any_touch_counts_as_activity(screen):
    s = Staff()
    _go_to(s, screen)
    s.tick(50)
    s.press("something_unknown")
    s.tick(50)
    assert s.screen == screen


def test_exit_signs_out():
    s = Staff()
    s.sign_in()
    out = s.press("exit")
    assert s.screen == CLOSED and audits(out) == ["staff.signed_out"] and commands(out) == [("leave", None)]
    assert s.mode.staff_id is None


def test_serial_changes_when_staff_mode_closes():
    s = Staff()
    s.sign_in()
    before = s.mode.serial
    s.press("exit")
    assert s.mode.serial == before + 1


# -- menu actions -----------------------------------------------------------------------------------------

def test_reset():
    s = Staff()
    s.sign_in()
    out = s.press("reset")
    assert audits(out) == ["staff.reset"] and commands(out) == [("reset", None)]
    assert s.screen == MENU and s.model["notice"] == "reset_done"


@pytest.mark.parametrize("action, key", [("out_of_service", "out_of_service"), ("offline_lending", "offline_lending")])
def test_toggles(action, key):
    s = Staff()
    s.sign_in()
    out = s.press(action)
    assert commands(out) == [(action, True)] and of(out, fx.Audit)[0].fields == {"on": True}
    assert of(out, fx.Audit)[0].action == "staff." + action and s.model[key] is True
    out = s.press(action)
    assert commands(out) == [(action, False)] and s.model[key] is False


def test_toggles_start_from_what_the_kiosk_says():
    s = Staff()
    s.open(out_of_service=True, offline_lending=True)
    s.type(ALICE_PIN)
    s.press("ok")
    assert s.model["out_of_service"] is True and s.model["offline_lending"] is True
    assert commands(s.press("out_of_service")) == [("out_of_service", False)]


def test_sync_now():
    s = Staff()
    s.sign_in()
    out = s.press("sync_now")
    assert audits(out) == ["staff.sync_now"] and commands(out) == [("sync_now", None)]
    assert s.model["notice"] == "sync_started"


def test_status_screen():
    s = Staff()
    s.sign_in()
    out = s.press("status")
    assert commands(out) == [("load", "status")] and s.screen == STATUS and s.model["status"] == {}
    s.send(ev.StaffData("status", {"queued": 2, "online": True}))
    assert s.model["status"] == {"queued": 2, "online": True}
    s.press("back")
    assert s.screen == MENU
    assert s.send(ev.StaffData("status", {"queued": 0})) == []     # stored, not drawn on the menu


def test_review_and_resolve():
    s = Staff()
    s.sign_in()
    assert commands(s.press("review")) == [("load", "conflicts")] and s.screen == REVIEW
    s.send(ev.StaffData("conflicts", [{"id": "c1", "reason": "item_unknown"}]))
    assert s.model["conflicts"] == [{"id": "c1", "reason": "item_unknown"}]
    out = s.press("resolve", "c1")
    assert [(a.actor, a.action, a.fields) for a in of(out, fx.Audit)] == [("alice", "staff.conflict_resolved", {})]
    assert commands(out) == [("resolve_conflict", "c1"), ("load", "conflicts")]
    assert s.press("resolve") == [] and s.press("resolve", "") == []
    s.press("back")
    assert s.screen == MENU


def test_self_test_lights_sound_scanner_and_reader():
    s = Staff()
    s.sign_in()
    out = s.press("self_test")
    assert audits(out) == ["staff.self_test"] and s.screen == SELFTEST and s.model["results"] == {}
    assert commands(s.press("test_lights")) == [("self_test", "lights")]
    assert s.model["results"] == {"lights": "running"}
    assert commands(s.press("test_sound")) == [("self_test", "sound")]
    s.send(ev.StaffData("selftest", {"lights": "done"}))
    assert s.model["results"] == {"lights": "done", "sound": "running"}
    s.send(ev.Barcode(PATRON))
    assert s.model["results"]["scanner"] == {"result": "scanned", "n": 11}
    assert PATRON not in repr(s.model)                          # what was scanned is not shown
    out = s.send(ev.CardInserted())
    assert of(out, fx.ProbeCard) == [fx.ProbeCard(serial=s.mode.serial)]
    assert s.model["results"]["reader"] == {"result": "reading"}
    s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=s.mode.serial))
    assert s.model["results"]["reader"] == {"result": "card", "kind": "my_number_card", "tries": 3}
    s.send(ev.CardProbed(CardProbe(CardKind.NOT_JPKI, error=CardError.NOT_JPKI), serial=s.mode.serial))
    assert s.model["results"]["reader"] == {"result": "error", "code": "not_jpki"}
    assert s.send(ev.CardProbed(CardProbe(CardKind.MUTE), serial=s.mode.serial + 1)) == []   # stale
    assert not of(s.effects, fx.AuthenticateForRegistration) and not of(s.effects, fx.Authenticate)
    s.press("back")
    assert s.screen == MENU


@pytest.mark.parametrize("action", ["restart", "shutdown"])
def test_restart_and_shutdown_need_confirmation(action):
    s = Staff()
    s.sign_in()
    out = s.press(action)
    assert s.screen == CONFIRM and s.model["action"] == action and commands(out) == [] and of(out, fx.Audit) == []
    s.press("back")
    assert s.screen == MENU
    s.press(action)
    out = s.press("confirm")
    assert audits(out) == ["staff." + action, "staff.signed_out"]
    assert commands(out) == [("leave", None), (action, None)] and s.screen == CLOSED


def test_unknown_menu_press_does_nothing():
    s = Staff()
    s.sign_in()
    assert s.press("format_disk") == [] and s.screen == MENU
    assert s.press("confirm") == [] and s.press("back") == []


# -- counter registration -----------------------------------------------------------------------------------

def test_registration_start():
    s = Staff()
    s.sign_in()
    out = s.press("register")
    assert audits(out) == ["staff.registration_started"] and commands(out) == [("card_mode", "counter")]
    assert s.screen == REGISTER
    assert s.model == {"countdown": None, "notice": None, "step": "insert", "digits": 0, "tries_left": None,
                       "patron_id": None, "valid_until": None, "linked_before": False, "error": None,
                       "first_pin_tried": False}


def test_registration_whole_flow_link():
    s = Staff()
    s.start_registration()
    out = s.send(ev.CardInserted())
    assert of(out, fx.ProbeCard) == [fx.ProbeCard(serial=s.mode.serial)] and s.model["step"] == "reading"
    s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=s.mode.serial))
    assert s.model["step"] == "pin" and s.model["tries_left"] == 3
    s.type("12345")
    assert s.model["digits"] == 4
    out = s.press("ok")
    (auth,) = of(out, fx.AuthenticateForRegistration)
    assert auth.pin == bytearray(b"1234") and auth.birth_date is False and auth.serial == s.mode.serial
    assert "1234" not in repr(auth) and s.model["step"] == "authenticating" and s.model["digits"] == 0
    out = s.read()
    assert of(out, fx.LookupLink) == [fx.LookupLink(IDENTITY, serial=s.mode.serial)]
    assert s.model["step"] == "scan" and s.model["valid_until"] == "2029-04-11"
    s.send(ev.LinkFound(None, serial=s.mode.serial))
    assert s.model["linked_before"] is False
    s.send(ev.Barcode("S00001"))
    assert s.model["notice"] == "not_a_library_card" and s.model["step"] == "scan"
    s.send(ev.Barcode(f" {PATRON} "))
    assert s.model["step"] == "confirm" and s.model["patron_id"] == PATRON
    out = s.press("link")
    assert of(out, fx.LinkCard) == [fx.LinkCard(IDENTITY, PATRON, None, serial=s.mode.serial)]
    assert s.model["step"] == "linking"
    out = s.send(ev.LinkDone(serial=s.mode.serial))
    assert [(a.actor, a.action, a.fields) for a in of(out, fx.Audit)] == [
        ("alice", "staff.card_linked", {"kenhojo_read": False})]
    assert s.model["step"] == "done"
    out = s.press("done")
    assert commands(out) == [("release_card", None), ("card_mode", "kiosk")] and s.screen == MENU


def test_registration_confirm_names_the_patron_for_staff_only_while_confirming():
    s = Staff()
    s.to_scan()
    s.send(ev.LinkFound(None, serial=s.mode.serial))
    out = s.send(ev.Barcode(PATRON))
    assert commands(out) == [("patron_name", PATRON)]
    assert s.model["step"] == "confirm" and "patron_name" not in s.model      # until the catalogue answers
    assert s.send(ev.StaffData("patron_name", {"patron_id": OTHER_PATRON, "name": "Someone Else"})) == []
    s.send(ev.StaffData("patron_name", {"patron_id": PATRON, "name": "図書 花子"}))
    assert s.model["patron_name"] == "図書 花子"
    assert s.mode._data.get("patron_name") is None                  # kept with the registration only
    s.press("link")
    assert s.model["step"] == "linking" and "patron_name" not in s.model
    assert s.mode._reg.patron_name is None


def test_registration_confirm_without_a_name_from_the_catalogue():
    s = Staff()
    s.to_scan()
    s.send(ev.Barcode(PATRON))
    s.send(ev.StaffData("patron_name", {"patron_id": PATRON, "name": None}))
    assert s.model["step"] == "confirm" and "patron_name" not in s.model


def test_registration_relink_replaces_an_old_link():
    s = Staff()
    s.to_scan()
    s.send(ev.LinkFound(OTHER_PATRON, serial=s.mode.serial))
    assert s.model["linked_before"] is True
    assert OTHER_PATRON not in repr(s.model)                    # the old library card is not shown
    s.send(ev.Barcode(PATRON))
    s.press("link")
    out = s.send(ev.LinkDone(serial=s.mode.serial))
    assert audits(out) == ["staff.card_relinked"]


def test_registration_unlink():
    s = Staff()
    s.to_scan()
    s.send(ev.LinkFound(PATRON, serial=s.mode.serial))
    s.send(ev.Barcode(PATRON))
    out = s.press("unlink")
    assert of(out, fx.UnlinkCard) == [fx.UnlinkCard(IDENTITY, serial=s.mode.serial)]
    out = s.send(ev.LinkDone(unlinked=True, serial=s.mode.serial))
    assert audits(out) == ["staff.card_unlinked"] and s.model["step"] == "done"


@pytest.mark.parametrize("error", ["offline", "patron_blocked", "not_found"])
def test_registration_link_errors(error):
    s = Staff()
    s.to_scan()
    s.send(ev.Barcode(PATRON))
    s.press("link")
    out = s.send(ev.LinkDone(error, serial=s.mode.serial))
    assert s.model["step"] == "error" and s.model["error"] == error
    assert [(a.action, a.fields) for a in of(out, fx.Audit)] == [("staff.registration_failed", {"reason": error})]
    out = s.press("ok")
    assert commands(out) == [("release_card", None), ("card_mode", "kiosk")] and s.screen == MENU


def test_registration_again_keeps_counter_mode():
    s = Staff()
    s.to_scan()
    s.send(ev.Barcode(PATRON))
    s.press("link")
    s.send(ev.LinkDone(serial=s.mode.serial))
    out = s.press("again")
    assert commands(out) == [("release_card", None)] and s.model["step"] == "insert"
    assert s.model["patron_id"] is None and s.model["valid_until"] is None


def test_registration_pin_wrong_then_last_try():
    s = Staff()
    s.start_registration()
    s.to_pin()
    s.enter_pin("9999")
    s.read(AuthOutcome(error=CardError.PIN_WRONG, tries_left=2))
    assert s.model["step"] == "pin" and s.model["tries_left"] == 2 and s.model["notice"] == "pin_wrong"
    s.enter_pin("9998")
    s.read(AuthOutcome(error=CardError.PIN_WRONG, tries_left=1))
    assert s.model["step"] == "last_try" and s.model["tries_left"] == 1
    assert s.type("1") == [] and s.press("ok") == []           # no PIN pad before the warning is confirmed
    s.press("confirm_last_try")
    assert s.model["step"] == "pin"
    out = s.enter_pin()
    assert of(out, fx.AuthenticateForRegistration)


def test_registration_card_with_one_try_left_warns_first():
    s = Staff()
    s.start_registration()
    s.to_pin(tries=1)
    assert s.model["step"] == "last_try"
    s.press("confirm_last_try")
    assert s.model["step"] == "pin"


@pytest.mark.parametrize("probe, error", [
    (CardProbe(CardKind.MY_NUMBER_CARD, tries_left=0, error=CardError.PIN_LOCKED), "pin_locked"),
    (CardProbe(CardKind.MY_NUMBER_CARD, tries_left=0), "pin_locked"),
    (CardProbe(CardKind.NOT_JPKI, error=CardError.NOT_JPKI), "not_jpki"),
    (CardProbe(CardKind.JUKI_CARD, error=CardError.JUKI_CARD), "juki_card"),
    (CardProbe(CardKind.MUTE, error=CardError.CARD_REMOVED), "card_removed"),
])
def test_registration_refused_at_the_probe(probe, error):
    s = Staff()
    s.start_registration()
    s.send(ev.CardInserted())
    out = s.send(ev.CardProbed(probe, serial=s.mode.serial))
    assert s.model["step"] == "error" and s.model["error"] == error
    assert of(out, fx.Audit)[0].fields == {"reason": error}


@pytest.mark.parametrize("outcome, error", [
    (AuthOutcome(error=CardError.PIN_WRONG, tries_left=0), "pin_locked"),
    (AuthOutcome(error=CardError.PIN_LOCKED, tries_left=0), "pin_locked"),
    (AuthOutcome(error=CardError.CERT_EXPIRED, tries_left=3), "cert_expired"),
    (AuthOutcome(error=CardError.BAD_SIGNATURE), "bad_signature"),
    (AuthOutcome(error=CardError.CARD_REMOVED), "card_removed"),
    (AuthOutcome(error=CardError.MUTE_CARD), "mute_card"),
])
def test_registration_refused_at_authentication(outcome, error):
    s = Staff()
    s.start_registration()
    s.to_pin()
    s.enter_pin()
    out = s.read(outcome)
    assert s.model["step"] == "error" and s.model["error"] == error
    assert not of(out, fx.LookupLink)


@pytest.mark.parametrize("step_setup", ["reading", "pin", "last_try", "authenticating", "pin2", "reading2"])
def test_registration_card_removed_while_the_card_is_needed(step_setup):
    s = Staff()
    s.start_registration(birth_date=True)
    s.send(ev.CardInserted())
    if step_setup != "reading":
        s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=1 if step_setup == "last_try" else 3),
                             serial=s.mode.serial))
    if step_setup in ("authenticating", "pin2", "reading2"):
        s.enter_pin()
    if step_setup in ("pin2", "reading2"):
        s.read(birth=None, second=2)
    if step_setup == "reading2":
        s.enter_pin("5678")
    s.type("12")
    pin = s.mode._reg.pin
    out = s.send(ev.CardRemoved())
    assert s.model["step"] == "error" and s.model["error"] == "card_removed"
    assert audits(out) == ["staff.registration_failed"] and bytes(pin) == b"" and s.model["digits"] == 0


@pytest.mark.parametrize("step", ["scan", "confirm", "linking", "done"])
def test_registration_card_removed_after_authentication_is_fine(step):
    s = Staff()
    s.to_scan()
    if step != "scan":
        s.send(ev.Barcode(PATRON))
    if step in ("linking", "done"):
        s.press("link")
    if step == "done":
        s.send(ev.LinkDone(serial=s.mode.serial))
    assert s.send(ev.CardRemoved()) == [] and s.model["step"] == step


def test_registration_ignores_stale_and_out_of_step_replies():
    s = Staff()
    s.start_registration()
    s.send(ev.CardInserted())
    stale = s.mode.serial + 1
    assert s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=stale)) == []
    assert s.send(ev.RegistrationRead(OK, serial=s.mode.serial)) == []           # not authenticating yet
    assert s.send(ev.LinkDone(serial=s.mode.serial)) == []                       # not linking
    s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=s.mode.serial))
    s.enter_pin()
    assert s.send(ev.RegistrationRead(OK, serial=stale)) == []
    assert s.send(ev.BirthDateRead(BORN, serial=s.mode.serial)) == []           # not reading a birth date
    assert s.send(ev.LinkFound(PATRON, serial=stale)) == []
    assert s.send(ev.Barcode(PATRON)) == []                                       # not scanning yet
    assert s.send(ev.CardInserted()) == []                                        # only in the insert step
    assert s.model["step"] == "authenticating"


def test_registration_pin_pad_limits():
    s = Staff()
    s.start_registration()
    s.to_pin()
    s.type("12")
    s.press("delete")
    assert s.model["digits"] == 1
    s.press("clear")
    assert s.model["digits"] == 0
    s.type("123")
    assert s.press("ok") == [] and s.model["step"] == "pin"                     # 4 digits exactly
    s.press("digit", "x")
    assert s.model["digits"] == 3


@pytest.mark.parametrize("where", ["insert", "reading", "pin", "authenticating", "scan", "confirm", "linking",
                                   "error"])
def test_registration_cancel_anywhere(where):
    s = Staff()
    s.start_registration()
    if where != "insert":
        s.send(ev.CardInserted())
    if where not in ("insert", "reading"):
        s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=s.mode.serial))
    if where == "error":
        s.enter_pin()
        s.read(AuthOutcome(error=CardError.CERT_EXPIRED))
    if where in ("authenticating", "scan", "confirm", "linking"):
        s.enter_pin()
    if where in ("scan", "confirm", "linking"):
        s.read()
    if where in ("confirm", "linking"):
        s.send(ev.Barcode(PATRON))
    if where == "linking":
        s.press("link")
    s.type("12")
    pin = s.mode._reg.pin
    out = s.press("cancel")
    assert audits(out) == ["staff.registration_cancelled"]
    assert commands(out) == [("release_card", None), ("card_mode", "kiosk")]
    assert s.screen == MENU and bytes(pin) == bytes(len(pin))
    assert s.mode._reg.identity is None and s.mode._reg.patron_id is None


# -- the second PIN (birth date) ---------------------------------------------------------------------------

def test_birth_date_with_the_same_pin():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    out = s.enter_pin()
    assert of(out, fx.AuthenticateForRegistration)[0].birth_date is True
    out = s.read(birth=BORN)
    assert s.model["step"] == "scan" and of(out, fx.LookupLink)
    assert "1985" not in repr(s.model)                            # the date is never shown
    s.send(ev.Barcode(PATRON))
    out = s.press("link")
    assert of(out, fx.LinkCard) == [fx.LinkCard(IDENTITY, PATRON, BORN, serial=s.mode.serial)]
    out = s.send(ev.LinkDone(serial=s.mode.serial))
    assert of(out, fx.Audit)[0].fields == {"kenhojo_read": True}


def test_birth_date_with_a_different_pin():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    out = s.read(birth=None, second=2)
    assert s.model["step"] == "pin2" and s.model["tries_left"] == 2 and s.model["digits"] == 0
    assert of(out, fx.LookupLink)                                 # the link lookup starts meanwhile
    s.type("5678")
    out = s.press("ok")
    (read,) = of(out, fx.ReadBirthDate)
    assert read.pin == bytearray(b"5678") and read.serial == s.mode.serial and "5678" not in repr(read)
    assert s.model["step"] == "reading"
    s.send(ev.BirthDateRead(BORN, serial=s.mode.serial))
    assert s.model["step"] == "scan"
    s.send(ev.Barcode(PATRON))
    out = s.press("link")
    assert of(out, fx.LinkCard)[0].birth_date == BORN


def test_second_pin_wrong_then_right():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=2)
    s.enter_pin("0000")
    s.send(ev.BirthDateRead(None, tries_left=1, serial=s.mode.serial))
    assert s.model["step"] == "last_try2" and s.model["tries_left"] == 1 and s.model["notice"] == "pin_wrong"
    s.press("confirm_last_try")
    s.enter_pin("5678")
    s.send(ev.BirthDateRead(BORN, serial=s.mode.serial))
    assert s.model["step"] == "scan"


def test_second_pin_with_one_try_left_is_asked_only_after_a_last_try_confirmation():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=1)
    assert s.model["step"] == "last_try2" and s.model["tries_left"] == 1
    assert s.type("5678") == [] or s.model["digits"] == 0       # no pad before the confirmation
    assert not of(s.press("ok"), fx.ReadBirthDate)
    s.press("confirm_last_try")
    assert s.model["step"] == "pin2" and s.model["tries_left"] == 1 and s.model["digits"] == 0
    s.type("5678")
    assert of(s.press("ok"), fx.ReadBirthDate)


def test_the_second_pin_screen_says_when_the_first_pin_already_cost_it_a_try():
    for tried in (True, False):
        s = Staff()
        s.start_registration(birth_date=True)
        s.to_pin()
        s.enter_pin()
        s.send(ev.RegistrationRead(OK, None, 2, serial=s.mode.serial, first_pin_tried=tried))
        assert s.model["step"] == "pin2" and s.model["first_pin_tried"] is tried


def test_second_pin_locked_by_a_wrong_last_try():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=1)
    s.press("confirm_last_try")
    s.enter_pin("0000")
    out = s.send(ev.BirthDateRead(None, tries_left=0, serial=s.mode.serial))
    assert s.model["step"] == "error" and s.model["error"] == "second_pin_locked"
    assert of(out, fx.Audit)[0].fields == {"reason": "second_pin_locked"}


def test_second_pin_already_locked():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    out = s.read(birth=None, second=0)
    assert s.model["step"] == "error" and s.model["error"] == "second_pin_locked" and not of(out, fx.LookupLink)


def test_birth_date_not_asked_for_is_not_needed():
    s = Staff()
    s.start_registration(birth_date=False)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=None)
    assert s.model["step"] == "scan"


# -- what staff mode may say --------------------------------------------------------------------------------

def _every_flow() -> list:
    effects = []
    for flow in (test_registration_whole_flow_link, test_birth_date_with_the_same_pin):
        flow()
    for birth in (False, True):
        s = Staff()
        s.to_scan(birth_date=birth)
        s.send(ev.LinkFound(OTHER_PATRON, serial=s.mode.serial))
        s.send(ev.Barcode(PATRON))
        s.press("link")
        s.send(ev.LinkDone("patron_blocked", serial=s.mode.serial))
        s.press("again")
        s.to_pin()
        s.enter_pin("9999")
        s.read(AuthOutcome(error=CardError.PIN_WRONG, tries_left=1))
        s.press("exit")
        effects += s.effects
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=2)
    s.enter_pin("5678")
    s.send(ev.BirthDateRead(BORN, serial=s.mode.serial))
    s.send(ev.Barcode(PATRON))
    s.press("unlink")
    s.send(ev.LinkDone(unlinked=True, serial=s.mode.serial))
    s.press("done")
    s.press("status")
    s.press("back")
    s.press("restart")
    s.press("confirm")
    effects += s.effects
    s = Staff()
    s.open(badge="S00001")
    for _ in range(3):
        s.type("1234")
        s.press("ok")
    effects += s.effects
    return effects


def test_audits_never_carry_patron_ids_pins_or_birth_dates():
    effects = _every_flow()
    audit_list = of(effects, fx.Audit)
    assert len(audit_list) > 15
    for a in audit_list:
        check_fields(a.fields)                                  # the log's own forbidden names
        text = repr(a)
        for secret in (PATRON, OTHER_PATRON, "1234", "5678", "9999", ALICE_PIN, "1985", "S00001", IDENTITY.cert_hash):
            assert secret not in text, (secret, a)
        assert all(isinstance(v, (bool, int, str)) for v in a.fields.values())
    assert {a.actor for a in audit_list} <= {"alice", "staff"}


def test_screens_never_show_pins_or_birth_dates():
    for show in of(_every_flow(), fx.Show):
        text = repr(show.model)
        for secret in ("1234", "5678", "9999", ALICE_PIN, "1985", IDENTITY.cert_hash, "S00001"):
            assert secret not in text, (secret, show)


def test_pin_effects_hide_the_pin_in_repr():
    assert "4321" not in repr(fx.AuthenticateForRegistration(bytearray(b"4321"), True))
    assert "4321" not in repr(fx.ReadBirthDate(bytearray(b"4321")))


# -- leaving mid-registration --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["exit", "timeout"])
def test_leaving_staff_mode_mid_registration_returns_the_card_layer_to_kiosk_mode(how):
    s = Staff()
    s.start_registration()
    s.to_pin()
    out = s.press("exit") if how == "exit" else s.tick(61)
    assert s.screen == CLOSED
    assert ("card_mode", "kiosk") in commands(out) and ("release_card", None) in commands(out)


def test_sign_in_typing_keeps_the_screen_open():
    s = Staff()
    s.open()
    for _ in range(10):
        s.now += 10                        # 100 s in all, well past the 60 s idle timeout
        s.press("digit", "1")
        s.tick(0)
    assert s.screen == "staff_signin"


def test_unreadable_birth_date_is_not_called_a_locked_pin():
    s = Staff()
    s.start_registration(birth_date=True)
    s.to_pin()
    s.enter_pin()
    s.read(birth=None, second=2)           # the patron is asked for the second PIN
    s.enter_pin("5678")
    s.send(ev.BirthDateRead(None, None, serial=s.mode.serial))
    assert s.model["step"] == "error" and s.model["error"] == "birth_date_unreadable"
