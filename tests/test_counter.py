"""Counter identification as a pure state machine (kiosk/core/counter.py inside kiosk/core/staff.py):
the counter screen after sign-in, the patron's card and PIN with the self-checkout rules, the
hand-over routes, the wipe, the next patron, and what the audit may say. Canned events, fake clock.
"""

from __future__ import annotations

import json

import pytest

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.barcode_symbols import encode
from kiosk.core.card import AuthOutcome, CardError, CardKind, CardProbe
from kiosk.core.counter import CounterSettings
from kiosk.core.staff import CLOSED, COUNTER, IDENTIFY, MENU, REGISTER, SIGNIN
from kiosk.logs import check_fields
from test_staff import IDENTITY, OK, PATRON, Staff


def counter_staff(**counter) -> Staff:
    return Staff(counter=CounterSettings(**counter))


def identify(s: Staff, tries: int = 3) -> None:
    s.sign_in()
    assert s.screen == COUNTER
    s.press("identify")
    s.send(ev.CardInserted())
    s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=tries), serial=s.mode.serial))


def enter_pin(s: Staff, pin: str = "1234") -> fx.Authenticate:
    s.type(pin)
    out = s.press("ok")
    auth = [e for e in out if isinstance(e, fx.Authenticate)]
    assert len(auth) == 1 and s.model["step"] == "authenticating" and s.model["digits"] == 0
    return auth[0]


def audits(s: Staff) -> list[fx.Audit]:
    return [e for e in s.effects if isinstance(e, fx.Audit)]


def no_number_anywhere(s: Staff) -> None:
    for e in s.effects:
        if isinstance(e, fx.Show):
            assert PATRON not in json.dumps(e.model), e.screen
        if isinstance(e, fx.Audit):
            check_fields(e.fields)
            assert PATRON not in json.dumps(e.fields)


def test_a_counter_terminal_lands_on_the_counter_screen_and_its_menu_comes_back_to_it():
    s = counter_staff()
    s.sign_in()
    assert s.screen == COUNTER and s.model == {"countdown": None, "notice": None, "staff_id": "alice", "last": None}
    s.press("menu")
    assert s.screen == MENU and s.model["counter"] is True
    s.press("exit")                                 # from the menu: back to the counter, still signed in
    assert s.screen == COUNTER and s.mode.staff_id == "alice"
    s.press("register")
    assert s.screen == REGISTER
    s.press("cancel")
    assert s.screen == COUNTER
    s.press("exit")
    assert s.screen == CLOSED


def test_identification_success_hands_over_by_barcode_then_wipes_it():
    s = counter_staff(barcode_seconds=10)
    identify(s)
    assert s.model["step"] == "pin" and s.model["tries_left"] == 3
    auth = enter_pin(s)
    assert bytes(auth.pin) == b"1234" and auth.serial == s.mode.serial
    out = s.send(ev.AuthDone(OK, serial=s.mode.serial))
    assert [e for e in out if isinstance(e, fx.ResolvePatron)] == [fx.ResolvePatron(IDENTITY, serial=s.mode.serial)]
    out = s.send(ev.PatronResolved(PATRON, serial=s.mode.serial))
    assert fx.StaffCommand("release_card") in out and not any(isinstance(e, fx.HandOver) for e in out)
    m = s.model
    assert m["step"] == "identified" and m["bars"] == list(encode(PATRON, "nw7").widths) and m["symbology"] == "nw7"
    assert m["wipe_in"] == 10 and m["keyboard"] is None
    s.tick(4)
    assert s.model["wipe_in"] == 6 and s.model["bars"]
    s.tick(6)
    assert s.screen == IDENTIFY and s.model["step"] == "insert" and s.model["bars"] is None
    assert [a.action for a in audits(s)][-1] == "counter.identified"
    assert audits(s)[-1].actor == "alice" and audits(s)[-1].fields == {"on_screen": True, "keyboard": False,
                                                                      "offline": False}
    no_number_anywhere(s)


def test_keyboard_route_types_the_number_and_reports_a_pc_that_did_not_take_it():
    s = counter_staff(barcode=False, keyboard=True)
    identify(s)
    enter_pin(s)
    s.send(ev.AuthDone(OK, serial=s.mode.serial))
    out = s.send(ev.PatronResolved(PATRON, serial=s.mode.serial))
    (handover,) = [e for e in out if isinstance(e, fx.HandOver)]
    assert handover.patron_id == PATRON and PATRON not in repr(handover)
    assert s.model["keyboard"] == "typing" and s.model["bars"] is None
    s.send(ev.HandedOver(False, serial=s.mode.serial))
    assert s.model["keyboard"] == "failed" and audits(s)[-1].action == "counter.keyboard_failed"
    no_number_anywhere(s)


@pytest.mark.parametrize("outcome, expected", [
    (AuthOutcome(error=CardError.CERT_EXPIRED, tries_left=3), "cert_expired"),
    (AuthOutcome(error=CardError.PIN_LOCKED, tries_left=0), "pin_locked"),
    (AuthOutcome(error=CardError.PIN_WRONG, tries_left=0), "pin_locked"),
    (AuthOutcome(error=CardError.BAD_SIGNATURE), "bad_signature"),
])
def test_refused_authentication_shows_the_reason_only(outcome, expected):
    s = counter_staff()
    identify(s)
    enter_pin(s)
    out = s.send(ev.AuthDone(outcome, serial=s.mode.serial))
    assert fx.StaffCommand("release_card") in out
    assert s.model["step"] == "error" and s.model["error"] == expected
    assert audits(s)[-1].action == "counter.identify_failed" and audits(s)[-1].fields == {"reason": expected}
    s.press("back")
    assert s.screen == COUNTER and s.model["last"] == expected


def test_wrong_pin_asks_again_then_the_last_try_needs_a_confirmation():
    s = counter_staff()
    identify(s)
    enter_pin(s, "9999")
    s.send(ev.AuthDone(AuthOutcome(error=CardError.PIN_WRONG, tries_left=2), serial=s.mode.serial))
    assert s.model["step"] == "pin" and s.model["tries_left"] == 2 and s.model["notice"] == "pin_wrong"
    enter_pin(s, "8888")
    s.send(ev.AuthDone(AuthOutcome(error=CardError.PIN_WRONG, tries_left=1), serial=s.mode.serial))
    assert s.model["step"] == "last_try"
    assert s.type("1234") == [] or s.model["digits"] == 0      # no pad before the confirmation
    s.press("confirm_last_try")
    assert s.model["step"] == "pin"
    enter_pin(s)


def test_a_locked_card_is_never_asked_for_a_pin_and_a_last_try_card_asks_first():
    s = counter_staff()
    identify(s, tries=0)
    assert s.model["step"] == "error" and s.model["error"] == "pin_locked"
    s = counter_staff()
    identify(s, tries=1)
    assert s.model["step"] == "last_try"


def test_unregistered_card_and_catalogue_down_say_so():
    for resolved, expected in ((ev.PatronResolved(None), "not_registered"),
                               (ev.PatronResolved(None, unavailable=True), "catalogue_unavailable")):
        s = counter_staff()
        identify(s)
        enter_pin(s)
        s.send(ev.AuthDone(OK, serial=s.mode.serial))
        s.send(ev.PatronResolved(resolved.patron_id, unavailable=resolved.unavailable, serial=s.mode.serial))
        assert s.model["step"] == "error" and s.model["error"] == expected


def test_the_next_patron_starts_at_once_and_stale_replies_are_ignored():
    s = counter_staff()
    identify(s)
    enter_pin(s)
    old = s.mode.serial
    s.send(ev.AuthDone(OK, serial=old))
    s.send(ev.PatronResolved(PATRON, serial=old))
    s.send(ev.CardRemoved())
    assert s.model["step"] == "identified"                  # taking the card back is expected
    out = s.send(ev.CardInserted())                          # the next patron's card, barcode still up
    assert any(isinstance(e, fx.ProbeCard) for e in out) and s.model["bars"] is None
    assert s.model["step"] == "reading" and s.mode.serial != old
    s.send(ev.AuthDone(OK, serial=old))
    s.send(ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=old))
    assert s.model["step"] == "reading"
    out = s.press("next")                                   # only once done
    assert s.model["step"] == "reading"


def test_card_taken_away_mid_pin_is_an_error_and_the_pin_is_wiped():
    s = counter_staff()
    identify(s)
    s.type("12")
    pin = s.mode._ident.pin
    s.send(ev.CardRemoved())
    assert s.model["step"] == "error" and s.model["error"] == "card_removed" and pin == bytearray()


def test_idle_staff_are_signed_out_even_mid_identification_and_the_barcode_goes_with_them():
    s = counter_staff(barcode_seconds=30)
    identify(s)
    enter_pin(s)
    s.send(ev.AuthDone(OK, serial=s.mode.serial))
    s.send(ev.PatronResolved(PATRON, serial=s.mode.serial))
    s.tick(29)
    assert s.screen == IDENTIFY and s.model["bars"]
    s.tick(31)      # 60 s without a touch: staff signed out
    assert s.screen != IDENTIFY and s.mode._ident is None
    assert any(isinstance(e, fx.StaffCommand) and e.name == "leave" for e in s.effects)


def test_a_number_the_symbology_cannot_carry_falls_back_to_the_keyboard_or_fails():
    s = counter_staff(symbology="nw7")
    identify(s)
    enter_pin(s)
    s.send(ev.AuthDone(OK, serial=s.mode.serial))
    s.send(ev.PatronResolved("L-2000X", serial=s.mode.serial))
    assert s.model["step"] == "error" and s.model["error"] == "barcode_unavailable"
    s = counter_staff(symbology="nw7", keyboard=True)
    identify(s)
    enter_pin(s)
    s.send(ev.AuthDone(OK, serial=s.mode.serial))
    s.send(ev.PatronResolved("L-2000X", serial=s.mode.serial))
    assert s.model["step"] == "identified" and s.model["keyboard"] == "typing"
    assert s.model["notice"] == "barcode_unavailable"


def test_not_a_counter_terminal_keeps_the_menu():
    s = Staff()
    s.sign_in()
    assert s.screen == MENU
    s.press("identify")
    assert s.screen == MENU
    assert SIGNIN
