"""The session core's transitions, event by event, screen by screen (timeouts are in
test_session_timeouts.py). Everything runs on plain data with a fake clock."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, timedelta

import pytest

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardKind, CardProbe
from kiosk.core.catalogue import LoanRequest, LoanResult, Refusal
from kiosk.core.loan_rules import OfflineRules
from kiosk.core.session import SCREENS
from kiosk_testing.session_driver import (
    CARD_PATRON,
    IDENTITY,
    ITEM_A,
    ITEM_B,
    ITEM_C,
    LIBRARY_PATRON,
    TEST_IDENTITY,
    WALL,
    SessionDriver,
    status,
)

BASE_KEYS = {"language", "countdown", "card_reminder", "test_pki", "notice"}

# Written out here on purpose (not imported): which errors send the patron to the counter.
COUNTER_ERRORS = {
    "pin_locked", "not_registered", "cert_expired", "cert_not_yet_valid", "unknown_ca",
    "bad_signature", "bad_certificate", "juki_card", "reader_gone", "pcscd_gone",
    "patron_blocked", "patron_unknown", "offline", "wrong_password",
}
# And where the error screen offers the library-card sign-in instead (issue 16).
LIBRARY_CARD_ERRORS = {
    "cert_expired", "cert_not_yet_valid", "unknown_ca", "bad_certificate", "pin_locked", "juki_card",
    "smartphone_unsupported",
}


def base(**kw) -> dict:
    m = {"language": "ja", "countdown": None, "card_reminder": False, "test_pki": False, "notice": None}
    m.update(kw)
    return m


def idle_model(**kw) -> dict:
    m = base(**{"reader_ok": True, "library_card": True, "help": False, **kw})
    if m["library_card"] and "card_number" not in kw:
        m["card_number"] = True                 # loans.manual_card_entry is on by default
    return m


def snapshot(d: SessionDriver) -> tuple:
    s = d.session
    return (s.screen, s.serial, s._deadline, s.notice, s.language, s.card_present, s.card_used,
            s.reader_ok, s.out_of_service, s._out_of_service_requested, s.offline_lending, s.help_open,
            repr(asdict(s.p)))


def assert_idle_without_patron(d: SessionDriver) -> None:
    s = d.session
    assert d.screen == "idle"
    assert d.model == idle_model(language=d.settings.default_language,
                                 card_reminder=d.model["card_reminder"])
    assert s.p.method is None and s.p.patron_id is None and s.p.status is None
    assert s.p.identity is None and s.p.rows == [] and len(s.p.pin) == 0
    assert s.p.error is None and s.p.tries_left is None and not s.p.offline


@pytest.fixture
def d() -> SessionDriver:
    return SessionDriver()


# ---------------------------------------------------------------------------- start and idle


def test_start_shows_idle_ready(d):
    assert d.effects == [fx.Show("idle", idle_model()), fx.Lights("ready")]
    assert not d.session.in_session
    assert d.deadline is None


# The keys each screen's model has beyond BASE_KEYS, as kiosk/core/session.py documents them.
SCREEN_KEYS = {
    "idle": {"reader_ok", "library_card", "help", "card_number"},
    "reading_card": set(),
    "pin": {"purpose", "digits", "max_digits", "tries_left"},
    "last_try": set(),
    "authenticating": {"stage"},
    "library_card": set(),
    "card_number": {"number", "max_digits"},
    "take_card": set(),
    "scanning": {"rows", "lent", "pending", "allowance", "name", "holds_ready", "offline"},
    "finishing": {"pending"},
    "summary": {"rows", "receipt_available", "due"},
    "thank_you": {"lent", "due", "several_dates"},
    "error": {"code", "counter", "library_card"},
    "out_of_service": set(),
}


NOTHING_LENT = dict(lent=0, due=None, several_dates=False)


@pytest.mark.parametrize("screen", SCREENS)
def test_every_model_has_exactly_the_documented_keys(screen):
    assert set(SCREEN_KEYS) == set(SCREENS)
    d = SessionDriver().drive_to(screen)
    assert d.last_show().screen == screen
    assert set(d.model) == BASE_KEYS | SCREEN_KEYS[screen]


def test_help_opens_and_closes_at_idle(d):
    assert d.press("help") == [fx.Show("idle", idle_model(help=True))]
    assert d.press("close_help") == [fx.Show("idle", idle_model(help=False))]


def test_help_closes_when_the_session_ends(d):
    d.press("help")
    d.press("library_card")
    d.press("cancel")
    assert d.model["help"] is False


def test_idle_without_library_card_sign_in():
    d = SessionDriver.with_settings(library_card_enabled=False)
    assert d.model["library_card"] is False
    assert d.press("library_card") == []
    assert d.screen == "idle"


# ---------------------------------------------------------------------------- card sign-in, happy path


def test_card_journey_effects_step_by_step(d):
    assert d.insert_card() == [fx.Show("reading_card", base()), fx.Lights("busy"), fx.ProbeCard(serial=0)]

    pin_model = base(purpose="card", digits=0, max_digits=4, tries_left=3)
    assert d.probe(3) == [fx.Show("pin", pin_model), fx.Lights("ready")]

    d.type_pin("123")
    assert d.model == {**pin_model, "digits": 3}
    ok = d.enter_pin("4")
    assert ok[0] == fx.Show("authenticating", base(stage="card"))
    assert ok[1] == fx.Lights("busy")
    (auth,) = d.of_type(fx.Authenticate, ok)
    assert len(ok) == 3 and auth.serial == 0 and auth.pin == bytearray(b"1234")

    assert d.auth_ok() == [fx.Show("authenticating", base(stage="patron")), fx.ResolvePatron(IDENTITY, serial=0)]
    (load,) = d.resolved(CARD_PATRON)
    assert isinstance(load, fx.LoadPatron)
    assert (load.patron_id, load.password, load.serial) == (CARD_PATRON, None, 0)

    assert d.loaded(status(CARD_PATRON)) == [
        fx.Show("take_card", base(card_reminder=True)), fx.Lights("card_left"), fx.Cue("card_reminder")]
    scanning = base(rows=[], lent=0, pending=0, allowance=None, name=None, holds_ready=0, offline=False)
    assert d.remove_card() == [fx.Show("scanning", scanning), fx.Lights("ready")]
    assert d.session.in_session


def test_card_already_out_when_patron_loads_goes_straight_to_scanning(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.remove_card()                         # fine once the card has signed
    assert d.screen == "authenticating"
    d.resolved()
    out = d.loaded(status())
    assert d.screen == "scanning"
    assert d.cues(out) == ["accepted"]


def test_test_pki_identity_is_flagged_on_screen(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok(TEST_IDENTITY)
    assert d.model["test_pki"] is True
    d.resolved()
    d.loaded(status())
    assert d.model["test_pki"] is True
    d.remove_card()
    d.press("finish")
    assert d.model["test_pki"] is False          # thank_you: the identity is forgotten


# ---------------------------------------------------------------------------- tries left


def test_three_tries_go_to_pin(d):
    d.insert_card()
    d.probe(3)
    assert d.screen == "pin" and d.model["tries_left"] == 3


def test_one_try_left_needs_explicit_confirmation(d):
    d.insert_card()
    out = d.probe(1)
    assert out == [fx.Show("last_try", base()), fx.Lights("ready"), fx.Cue("attention")]
    assert d.press("digit", "1") == [] and d.press("ok") == []
    assert len(d.session.p.pin) == 0
    d.press("confirm_last_try")
    assert d.screen == "pin" and d.model["tries_left"] == 1
    assert d.of_type(fx.Authenticate, d.enter_pin()) != []


@pytest.mark.parametrize("tries", [0, None, -1])
def test_locked_or_unknown_tries_end_at_the_counter(d, tries):
    d.insert_card()
    out = d.probe(tries)
    assert out == [fx.EndSession(None, "error"),
                   fx.Show("error", base(code="pin_locked", counter=True, library_card=True,
                                         card_reminder=True)),
                   fx.Lights("card_left"), fx.Cue("refused")]
    assert d.all_of(fx.Authenticate) == []


def test_wrong_pin_returns_to_pin_with_notice_and_new_tries(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin("9999")
    out = d.auth_fail(CardError.PIN_WRONG, tries_left=2)
    assert out == [fx.Show("pin", base(purpose="card", digits=0, max_digits=4, tries_left=2, notice="pin_wrong")),
                   fx.Lights("ready"), fx.Cue("refused")]
    assert len(d.session.p.pin) == 0
    d.press("digit", "1")
    assert d.model["notice"] is None            # typing again clears the notice
    assert d.model["tries_left"] == 2


def test_wrong_pin_with_one_try_left_asks_for_confirmation_again(d):
    d.insert_card()
    d.probe(2)
    d.enter_pin("9999")
    out = d.auth_fail(CardError.PIN_WRONG, tries_left=1)
    assert out == [fx.Show("last_try", base(notice="pin_wrong")), fx.Lights("ready"), fx.Cue("refused")]
    d.press("confirm_last_try")
    assert d.model["tries_left"] == 1


@pytest.mark.parametrize("tries", [0, None])
def test_wrong_pin_that_locks_the_card_ends_at_the_counter(d, tries):
    d.insert_card()
    d.probe(1)
    d.press("confirm_last_try")
    d.enter_pin("9999")
    out = d.auth_fail(CardError.PIN_WRONG, tries_left=tries)
    assert d.screen == "error"
    assert d.model["code"] == "pin_locked" and d.model["counter"] is True
    assert d.cues(out) == ["refused"]
    assert fx.EndSession(None, "error") in out


def test_the_kiosk_never_retries_a_pin_by_itself(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin("9999")
    d.auth_fail(CardError.PIN_WRONG, tries_left=2)
    d.run_for(30)
    assert len(d.all_of(fx.Authenticate)) == 1


# ---------------------------------------------------------------------------- card errors


@pytest.mark.parametrize("error", list(CardError), ids=lambda e: e.value)
def test_every_probe_error_shows_its_code(d, error):
    d.insert_card()
    out = d.probe(3, error=error, kind=CardKind.NOT_JPKI)
    assert d.screen == "error"
    assert d.model["code"] == error.value
    assert d.model["counter"] is (error.value in COUNTER_ERRORS)
    assert d.model["library_card"] is (error.value in LIBRARY_CARD_ERRORS)
    assert out[0] == fx.EndSession(None, "error")
    assert d.cues(out) == ["refused"]
    assert d.last_of(fx.Lights) == [fx.Lights("card_left")]    # the card is still in: take it
    d.remove_card()
    assert d.last_of(fx.Lights) == [fx.Lights("error")]


@pytest.mark.parametrize("error", [e for e in CardError if e != CardError.PIN_WRONG], ids=lambda e: e.value)
def test_every_authentication_error_shows_its_code(d, error):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    out = d.auth_fail(error, tries_left=3)
    assert d.screen == "error"
    assert d.model == base(code=error.value, counter=error.value in COUNTER_ERRORS,
                           library_card=error.value in LIBRARY_CARD_ERRORS, card_reminder=True)
    assert out[0] == fx.EndSession(None, "error") and d.cues(out) == ["refused"]


def test_authentication_failure_without_a_reason_is_a_bad_signature(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_fail(None)
    assert d.model["code"] == "bad_signature" and d.model["counter"] is True


def test_unlinked_card_is_not_registered(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    out = d.resolved(None)
    assert d.model["code"] == "not_registered" and d.model["counter"] is True
    assert out[0] == fx.EndSession(None, "error")
    assert d.all_of(fx.LoadPatron) == []


def test_link_lookup_unavailable_is_offline(d):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.resolved(None, unavailable=True)
    assert d.model["code"] == "offline" and d.model["counter"] is True


@pytest.mark.parametrize("st, code", [
    (status(valid=False), "patron_unknown"),
    (status(blocked=("card_lost",)), "patron_blocked"),
])
def test_invalid_or_blocked_patron(d, st, code):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.resolved()
    out = d.loaded(st)
    assert d.model["code"] == code and d.model["counter"] is True
    assert out[0] == fx.EndSession(CARD_PATRON, "error")


@pytest.mark.parametrize("refusal", [Refusal.PATRON_BLOCKED, Refusal.PATRON_UNKNOWN, Refusal.OFFLINE])
def test_patron_refused_by_the_catalogue(d, refusal):
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.resolved()
    d.loaded(None, refusal)
    assert d.model["code"] == refusal.value and d.model["counter"] is True


def test_error_screen_ok_returns_to_idle(d):
    d.drive_to("error")
    d.remove_card()
    out = d.press("ok")
    assert out == [fx.Show("idle", idle_model()), fx.Lights("ready")]
    assert_idle_without_patron(d)


@pytest.mark.parametrize("code", sorted(LIBRARY_CARD_ERRORS))
def test_a_card_refused_before_the_pin_offers_the_library_card_sign_in(code):
    """Issue 16: a certificate refused at the probe never reaches the PIN pad; the error screen
    leads straight to the library-card sign-in, in the patron's language, as a new session."""
    d = SessionDriver()
    d.press("language", "en")
    d.insert_card()
    out = d.probe(3, error=CardError(code))
    assert d.screen == "error" and d.all_of(fx.Authenticate) == []
    assert all(s.screen != "pin" for s in d.all_of(fx.Show))
    assert d.model["library_card"] is True
    serial = d.session.serial
    d.remove_card()
    d.press("library_card")
    assert d.screen == "library_card" and d.model["language"] == "en"
    assert d.session.serial == serial and d.session.p.method == "library" and d.session.p.error is None
    d.scan(CARD_PATRON)
    assert d.screen == "pin" and d.model["purpose"] == "library"


def test_the_library_card_offer_follows_the_setting_and_the_error():
    off = SessionDriver.with_settings(library_card_enabled=False)
    off.insert_card()
    off.probe(3, error=CardError.CERT_EXPIRED)
    assert off.model["library_card"] is False
    assert off.press("library_card") == [] and off.screen == "error"
    d = SessionDriver()
    d.insert_card()
    d.probe(3, error=CardError.CARD_REMOVED)
    assert d.model["library_card"] is False
    assert d.press("library_card") == [] and d.screen == "error"


def test_a_typed_library_card_number_takes_the_scanned_card_path(d):
    """Issue 16: a card number typed on the keypad meets the same pattern and password rules
    as a scanned library card; a wrong number is refused and cleared, cancel ends it."""
    d.press("card_number")
    assert d.screen == "card_number" and d.model["number"] == "" and d.model["max_digits"] == 16
    d.type_pin("1000")
    d.press("delete")
    assert d.model["number"] == "100"
    d.type_pin("00001")                                 # 10000001: a book, not a library card
    out = d.press("ok")
    assert d.screen == "card_number" and d.model["notice"] == "not_a_library_card"
    assert d.cues(out) == ["refused"] and d.model["number"] == ""
    d.type_pin("9")
    d.press("clear")
    assert d.model["number"] == ""
    d.type_pin(LIBRARY_PATRON)
    d.press("ok")
    assert d.screen == "pin" and d.model["purpose"] == "library" and d.session.p.patron_id == LIBRARY_PATRON
    d.press("cancel")
    assert_idle_without_patron(d)


def test_a_typed_number_without_a_password_loads_the_patron():
    d = SessionDriver.with_settings(library_card_password=False)
    d.press("card_number")
    d.type_pin(LIBRARY_PATRON)
    out = d.press("ok")
    assert d.screen == "authenticating" and d.of_type(fx.LoadPatron, out)[0].patron_id == LIBRARY_PATRON


@pytest.mark.parametrize("kw", [dict(manual_card_entry=False), dict(library_card_enabled=False)])
def test_the_card_number_keypad_follows_its_switches(kw):
    d = SessionDriver.with_settings(**kw)
    assert "card_number" not in d.model
    assert d.press("card_number") == [] and d.screen == "idle"


def test_a_card_put_down_at_the_number_keypad_is_read(d):
    d.press("card_number")
    d.type_pin("2000")
    out = d.insert_card()
    assert out[0] == fx.EndSession(None, "cancelled") and d.screen == "reading_card"
    assert d.of_type(fx.ProbeCard, out) and d.session.p.number == "" and d.session.p.method == "card"


def test_error_screen_done_also_returns_to_idle(d):
    d.drive_to("error")
    d.press("done")
    assert d.screen == "idle"


# ---------------------------------------------------------------------------- PIN handling


def test_card_pin_takes_exactly_four_digits(d):
    d.drive_to("pin")
    d.type_pin("123456")
    assert d.model["digits"] == 4
    assert bytes(d.session.p.pin) == b"1234"


@pytest.mark.parametrize("value", [None, "", "12", "a", "²", "١", "１", " ", "-"])
def test_only_ascii_digits_are_pin_digits(d, value):
    d.drive_to("pin")
    d.press("digit", value)
    assert d.model["digits"] == 0 and len(d.session.p.pin) == 0


@pytest.mark.parametrize("typed", ["", "1", "123"])
def test_incomplete_card_pin_is_not_sent(d, typed):
    d.drive_to("pin")
    d.type_pin(typed)
    out = d.press("ok")
    assert d.screen == "pin" and d.model["notice"] == "pin_incomplete"
    assert d.model["digits"] == len(typed)
    assert d.of_type(fx.Authenticate, out) == []


def test_delete_and_clear_zero_what_they_remove(d):
    d.drive_to("pin")
    d.type_pin("123")
    pin = d.session.p.pin
    d.press("delete")
    assert d.model["digits"] == 2 and bytes(pin) == b"12"
    d.press("clear")
    assert d.model["digits"] == 0 and len(pin) == 0 and pin is d.session.p.pin
    d.press("delete")                           # nothing left to delete
    assert d.model["digits"] == 0


def test_delete_zeroes_the_byte_before_dropping_it(d):
    d.drive_to("pin")
    d.type_pin("1234")
    pin = d.session.p.pin
    view = memoryview(pin)                      # a resize is refused while exported...
    with pytest.raises(BufferError):
        d.press("delete")
    assert bytes(view) == b"123\x00"            # ...so we can see the byte was zeroed first
    view.release()


def test_authenticate_carries_the_pin_and_the_session_forgets_it(d):
    d.drive_to("pin")
    d.type_pin("4321")
    held = d.session.p.pin
    (auth,) = d.of_type(fx.Authenticate, d.press("ok"))
    assert auth.pin is held and bytes(auth.pin) == b"4321"
    assert d.session.p.pin is not held and len(d.session.p.pin) == 0
    assert all(v is not held for v in vars(d.session.p).values())
    auth.pin[:] = b"\0\0\0\0"                   # what the card layer does after VERIFY
    assert len(d.session.p.pin) == 0


def test_pin_never_reaches_a_model_or_a_repr(d):
    d.drive_to("pin")
    pin = "9786"
    d.type_pin(pin)
    out = d.press("ok")
    (auth,) = d.of_type(fx.Authenticate, out)
    assert repr(auth) == str(auth) == "Authenticate(pin=<hidden>)"
    assert not any(c.isdigit() for c in repr(auth))
    assert pin not in repr(d.effects) and pin not in str(d.effects)
    for show in d.all_of(fx.Show):
        assert pin not in repr(show.model)
        assert not any(k in ("pin", "password") for k in show.model)


def test_load_patron_repr_hides_patron_and_password():
    d = SessionDriver()
    d.scan(LIBRARY_PATRON)
    d.type_pin("5831")
    (load,) = d.of_type(fx.LoadPatron, d.press("ok"))
    assert bytes(load.password) == b"5831"
    assert repr(load) == "LoadPatron(<hidden>)"
    assert not any(c.isdigit() for c in repr(load))
    assert "5831" not in repr(d.effects)


def test_cancel_at_pin_wipes_the_digits_typed(d):
    d.drive_to("pin")
    d.type_pin("123")
    pin = d.session.p.pin
    out = d.press("cancel")
    assert out[0] == fx.EndSession(None, "cancelled")
    assert d.screen == "idle" and len(pin) == 0


def test_cancel_at_last_try(d):
    d.drive_to("last_try")
    out = d.press("cancel")
    assert out[0] == fx.EndSession(None, "cancelled") and d.screen == "idle"


def test_confirm_last_try_is_meaningless_on_the_pin_screen(d):
    d.drive_to("pin")
    assert d.press("confirm_last_try") == []


# ---------------------------------------------------------------------------- card removal, reader


@pytest.mark.parametrize("screen", ["reading_card", "pin", "last_try", "authenticating"])
def test_card_removed_while_needed_ends_with_card_removed(d, screen):
    d.drive_to(screen)
    if screen == "pin":
        d.type_pin("12")
    pin = d.session.p.pin
    serial = d.serial
    out = d.remove_card()
    assert out == [fx.EndSession(None, "error"),
                   fx.Show("error", base(code="card_removed", counter=False, library_card=False)),
                   fx.Lights("error"), fx.Cue("refused")]
    assert len(pin) == 0 and d.serial == serial + 1


def test_card_removed_after_signing_is_fine(d):
    d.drive_to("authenticating")
    d.auth_ok()
    assert d.remove_card() == [fx.Show("authenticating", base(stage="patron")), fx.Lights("busy")]
    assert d.screen == "authenticating"


def test_card_removed_at_take_card_goes_to_scanning(d):
    d.drive_to("take_card")
    assert d.model["card_reminder"] is True
    out = d.remove_card()
    assert d.screen == "scanning" and d.model["card_reminder"] is False
    assert d.lights(out) == ["ready"]


def test_reader_unavailable_shows_a_banner_at_idle(d):
    assert d.send(ev.ReaderChanged(False, "pcscd_gone")) == [fx.Show("idle", idle_model(reader_ok=False))]
    out = d.insert_card()                                   # cannot be read: not started
    assert d.screen == "idle" and d.of_type(fx.ProbeCard, out) == []
    d.remove_card()
    assert d.send(ev.ReaderChanged(True)) == [fx.Show("idle", idle_model(reader_ok=True))]
    assert d.of_type(fx.ProbeCard, d.insert_card()) == [fx.ProbeCard(serial=0)]


@pytest.mark.parametrize("screen", ["reading_card", "pin", "last_try", "authenticating"])
def test_reader_gone_mid_sign_in(d, screen):
    d.drive_to(screen)
    out = d.send(ev.ReaderChanged(False, "reader_gone"))
    assert out[0] == fx.EndSession(None, "error")
    assert d.model == base(code="reader_gone", counter=True, library_card=False)     # no reminder: the card is gone too
    assert d.session.card_present is False


@pytest.mark.parametrize("screen", ["take_card", "scanning", "finishing", "summary", "library_card"])
def test_reader_gone_later_does_not_disturb_the_session(d, screen):
    d.drive_to(screen)
    assert d.send(ev.ReaderChanged(False)) == []
    assert d.screen == screen and d.session.reader_ok is False


def test_reader_gone_after_the_card_signed_does_not_end_the_session(d):
    d.drive_to("authenticating")
    d.auth_ok()
    assert d.send(ev.ReaderChanged(False)) == []
    d.resolved()
    d.loaded(status())
    assert d.screen == "take_card"


def test_card_inserted_during_a_library_session_is_not_read(d):
    d.sign_in_with_library_card()
    out = d.insert_card()
    assert d.of_type(fx.ProbeCard, out) == []
    assert d.screen == "scanning" and d.model["card_reminder"] is True
    assert d.lights(out) == ["card_left"]


# ---------------------------------------------------------------------------- card reminder


def test_card_left_in_reader_is_reminded_periodically_until_removed(d):
    d.drive_to("take_card")
    reminder = [fx.Cue("card_reminder"), fx.Lights("card_left")]
    assert d.last[-1] == fx.Cue("card_reminder")       # said once on arrival...
    t0 = d.now
    assert d.advance_to(t0 + 0.25) == []                # ...and not again on the next Tick
    assert d.advance_to(t0 + 3.75) == []
    assert d.advance_to(t0 + 4.0) == reminder           # every 4 s
    assert d.advance_to(t0 + 7.75) == []
    assert d.advance_to(t0 + 8.0) == reminder
    d.remove_card()
    assert d.run_for(20) == []


def test_card_left_after_an_error_is_reminded_at_error_and_idle(d):
    d.insert_card()
    d.probe(0)                                      # locked: error screen, card still in
    assert d.model["card_reminder"] is True
    assert d.cues(d.advance(1)) == ["card_reminder"]
    d.press("ok")
    assert d.screen == "idle" and d.model["card_reminder"] is True
    assert d.lights() == ["card_left"]
    out = d.run_for(12)
    assert d.cues(out) == ["card_reminder"] * 3
    out = d.remove_card()
    assert d.model["card_reminder"] is False and d.lights(out) == ["ready"]
    assert d.run_for(12) == []


def test_a_new_card_during_an_error_starts_a_new_reading(d):
    d.insert_card()
    d.probe(0)                                      # locked: error screen
    d.remove_card()
    assert d.screen == "error"
    out = d.insert_card()                           # the patron tries another card
    assert d.screen == "reading_card" and d.model.get("card_reminder") is False
    assert d.of_type(fx.ProbeCard, out) == [fx.ProbeCard(serial=d.serial)]
    d.probe(3)
    assert d.screen == "pin"


def test_card_left_at_idle_is_not_read_again_but_barcode_sign_in_works(d):
    d.drive_to("error")                             # card still in the reader
    d.press("ok")
    d.run_for(30)
    d.press("library_card")                         # another patron may still use a library card
    assert d.screen == "library_card"
    assert d.all_of(fx.ProbeCard) == [fx.ProbeCard(serial=0)]    # only the first read


def test_card_reminder_is_not_given_while_the_card_is_busy(d):
    d.drive_to("pin")
    assert d.model["card_reminder"] is False
    assert d.cues(d.run_for(10)) == []


# ---------------------------------------------------------------------------- library card


def test_library_card_by_button_then_scan_with_password(d):
    assert d.press("library_card") == [fx.Show("library_card", base()), fx.Lights("ready")]
    out = d.scan(f"A{LIBRARY_PATRON}B")                       # NW-7 start/stop stripped
    assert out == [fx.Show("pin", base(purpose="library", digits=0, max_digits=16, tries_left=None)),
                   fx.Lights("ready")]
    d.type_pin("1" * 20)
    assert d.model["digits"] == 16
    d.press("clear")
    out = d.enter_pin("2580")
    assert out[0] == fx.Show("authenticating", base(stage="patron"))
    (load,) = d.of_type(fx.LoadPatron, out)
    assert (load.patron_id, bytes(load.password), load.serial) == (LIBRARY_PATRON, b"2580", d.serial)
    out = d.loaded(status(LIBRARY_PATRON, password_ok=True, limit=10, charged=3, holds_ready=2))
    assert d.screen == "scanning" and d.cues(out) == ["accepted"]
    assert d.model["allowance"] == 7 and d.model["holds_ready"] == 2


def test_library_card_scanned_at_idle(d):
    d.scan(LIBRARY_PATRON)
    assert d.screen == "pin" and d.model["purpose"] == "library"


def test_library_card_without_password():
    d = SessionDriver.with_settings(library_card_password=False)
    out = d.scan(LIBRARY_PATRON)
    assert out[0] == fx.Show("authenticating", base(stage="patron"))
    (load,) = d.of_type(fx.LoadPatron, out)
    assert load.patron_id == LIBRARY_PATRON and load.password is None
    d.loaded(status(LIBRARY_PATRON))
    assert d.screen == "scanning"


def test_library_password_may_be_any_length_but_not_empty(d):
    d.scan(LIBRARY_PATRON)
    out = d.press("ok")
    assert d.model["notice"] == "pin_incomplete" and d.of_type(fx.LoadPatron, out) == []
    assert d.of_type(fx.LoadPatron, d.enter_pin("7")) != []


def test_wrong_library_password_up_to_the_limit(d):
    d.scan(LIBRARY_PATRON)
    for attempt in (1, 2):
        d.enter_pin("0000")
        out = d.loaded(status(LIBRARY_PATRON, password_ok=False))
        assert out == [fx.Show("pin", base(purpose="library", digits=0, max_digits=16, tries_left=None,
                                           notice="password_wrong")),
                       fx.Lights("ready"), fx.Cue("refused")]
    d.enter_pin("0000")
    out = d.loaded(status(LIBRARY_PATRON, password_ok=False))
    assert out[0] == fx.EndSession(LIBRARY_PATRON, "error")
    assert d.model["code"] == "wrong_password" and d.model["counter"] is True


def test_password_failures_do_not_carry_over_to_the_next_patron(d):
    d.scan(LIBRARY_PATRON)
    for _ in range(2):
        d.enter_pin("0000")
        d.loaded(status(LIBRARY_PATRON, password_ok=False))
    d.press("cancel")
    d.scan(LIBRARY_PATRON)
    d.enter_pin("0000")
    d.loaded(status(LIBRARY_PATRON, password_ok=False))
    assert d.screen == "pin"


def test_custom_password_failure_limit():
    d = SessionDriver.with_settings(max_password_failures=1)
    d.scan(LIBRARY_PATRON)
    d.enter_pin("0000")
    d.loaded(status(LIBRARY_PATRON, password_ok=False))
    assert d.model["code"] == "wrong_password"


def test_library_patron_is_not_lent_offline():
    d = SessionDriver.with_settings(offline_lending=True)
    d.scan(LIBRARY_PATRON)
    d.enter_pin()
    d.loaded(None, Refusal.OFFLINE)
    assert d.model["code"] == "offline" and d.model["counter"] is True


@pytest.mark.parametrize("code, notice", [(ITEM_A, "not_a_library_card"), ("garbage", "not_a_library_card")])
def test_library_card_screen_refuses_other_barcodes(d, code, notice):
    d.press("library_card")
    out = d.scan(code)
    assert out == [fx.Show("library_card", base(notice=notice)), fx.Lights("ready"), fx.Cue("refused")]


def test_cancel_library_card(d):
    d.press("library_card")
    out = d.press("cancel")
    assert out == [fx.EndSession(None, "cancelled"), fx.Show("idle", idle_model()), fx.Lights("ready")]


def test_card_inserted_at_library_card_screen_switches_to_card(d):
    d.press("library_card")
    out = d.insert_card()
    assert out[0] == fx.EndSession(None, "cancelled")
    assert out[-1] == fx.ProbeCard(serial=1)
    assert d.screen == "reading_card" and d.session.p.method == "card"


def test_library_patron_with_card_in_reader_is_not_asked_to_take_it():
    # A card inserted while the reader was down is not "ours"; but the patron is
    # still reminded of it, only not held at take_card.
    d = SessionDriver()
    d.send(ev.ReaderChanged(False))
    d.insert_card()
    d.send(ev.ReaderChanged(True))
    d.scan(LIBRARY_PATRON)
    d.enter_pin()
    d.loaded(status(LIBRARY_PATRON, password_ok=True))
    assert d.screen == "scanning" and d.model["card_reminder"] is True


# ---------------------------------------------------------------------------- barcodes at idle and scanning


@pytest.mark.parametrize("code, notice", [(ITEM_A, "sign_in_first"), ("xyz", "bad_barcode"), ("", "bad_barcode")])
def test_non_patron_barcodes_at_idle(d, code, notice):
    out = d.scan(code)
    assert out == [fx.Show("idle", idle_model(notice=notice)), fx.Lights("ready"), fx.Cue("refused")]
    assert d.session.p.method is None


def test_patron_barcode_at_idle_when_library_cards_are_off():
    d = SessionDriver.with_settings(library_card_enabled=False)
    d.scan(LIBRARY_PATRON)
    assert d.screen == "idle" and d.model["notice"] == "bad_barcode"


@pytest.mark.parametrize("code, notice", [(LIBRARY_PATRON, "not_an_item"), ("xyz", "bad_barcode"),
                                          ("1" * 40, "bad_barcode")])
def test_non_item_barcodes_while_scanning(d, code, notice):
    d.sign_in_with_card()
    out = d.scan(code)
    assert d.screen == "scanning" and d.model["notice"] == notice
    assert d.cues(out) == ["refused"] and d.of_type(fx.Checkout, out) == []
    assert d.model["rows"] == []


# ---------------------------------------------------------------------------- scanning and loans


def test_checkout_carries_the_loan_request(d):
    d.sign_in_with_card(st=status(limit=10, charged=2))
    c = d.checkout(f"a{ITEM_A}d")
    assert c.loan == LoanRequest(txn_id="txn-1", patron_id=CARD_PATRON, item_id=ITEM_A,
                                 created_at=WALL, offline=False, due_date=None)
    assert d.last == [c, fx.Show("scanning", d.model), fx.Lights("ready")]
    assert d.model["rows"] == [{"txn_id": "txn-1", "item_id": ITEM_A, "state": "pending", "title": "",
                                "due": "", "refusal": None, "offline": False}]
    assert (d.model["lent"], d.model["pending"], d.model["allowance"]) == (0, 1, 7)


def test_item_done_ok_and_refused_update_rows(d):
    d.sign_in_with_card()
    a = d.checkout(ITEM_A).loan.txn_id
    b = d.checkout(ITEM_B).loan.txn_id
    out = d.item_done(a, title="Kokoro", due=date(2025, 4, 15))
    assert out == [fx.Show("scanning", d.model), fx.Cue("accepted"), fx.Lights("success")]
    out = d.item_done(b, ok=False, title="Botchan", refusal=Refusal.ON_HOLD)
    assert d.cues(out) == ["refused"] and d.lights(out) == ["refused"]
    rows = {r["txn_id"]: r for r in d.model["rows"]}
    assert rows[a] == {"txn_id": a, "item_id": ITEM_A, "state": "ok", "title": "Kokoro",
                           "due": "2025-04-15", "refusal": None, "offline": False}
    assert rows[b]["state"] == "refused" and rows[b]["refusal"] == "on_hold" and rows[b]["title"] == "Botchan"
    assert (d.model["lent"], d.model["pending"]) == (1, 0)


def test_item_done_with_unparsed_due_date_keeps_the_catalogue_text(d):
    d.sign_in_with_card()
    t = d.checkout(ITEM_A).loan.txn_id
    d.item_done(t, due=None, due_text="15/04/2025 23:59")
    assert d.model["rows"][0]["due"] == "15/04/2025 23:59"


def test_refusal_without_a_reason_is_other(d):
    d.sign_in_with_card()
    t = d.checkout(ITEM_A).loan.txn_id
    d.item_done(t, ok=False, refusal=None)
    assert d.model["rows"][0]["refusal"] == "other"


def test_item_done_for_unknown_or_settled_txn_is_ignored(d):
    d.sign_in_with_card()
    t = d.checkout(ITEM_A).loan.txn_id
    before = snapshot(d)
    assert d.item_done("txn-unknown") == []
    assert snapshot(d) == before
    d.item_done(t)
    after = snapshot(d)
    assert d.item_done(t) == [] and d.item_done(t, ok=False, refusal=Refusal.ALREADY_OUT) == []
    assert snapshot(d) == after


def test_duplicate_scan_is_a_neutral_already_on_your_list(d):
    """Not a refusal: the book is being lent or lent already; patrons took the red ✕ for
    "not borrowed". No row, no refusal sound or light, a note instead."""
    d.sign_in_with_card()
    t = d.checkout(ITEM_A).loan.txn_id
    out = d.scan(ITEM_A)                                # still pending
    assert d.of_type(fx.Checkout, out) == []
    assert d.cues(out) == [] and "refused" not in d.lights(out)
    assert d.model["notice"] == "already_on_list" and [r["state"] for r in d.model["rows"]] == ["pending"]
    d.item_done(t)
    out = d.scan(f"A{ITEM_A}A")                         # confirmed, and NW-7 framed
    assert d.of_type(fx.Checkout, out) == [] and d.cues(out) == [] and d.model["notice"] == "already_on_list"
    assert [r["state"] for r in d.model["rows"]] == ["ok"]
    assert (d.model["lent"], d.model["pending"]) == (1, 0)


def test_item_refused_by_the_catalogue_may_be_scanned_again(d):
    d.sign_in_with_card()
    t = d.checkout(ITEM_A).loan.txn_id
    d.item_done(t, ok=False, refusal=Refusal.ITEM_UNKNOWN)
    c = d.checkout(ITEM_A)
    assert c.loan.txn_id != t


def test_allowance_counts_down_and_refuses_at_the_limit(d):
    d.sign_in_with_card(st=status(limit=5, charged=3))
    assert d.model["allowance"] == 2
    a = d.checkout(ITEM_A).loan.txn_id
    assert d.model["allowance"] == 1
    d.checkout(ITEM_B)
    assert d.model["allowance"] == 0
    out = d.scan(ITEM_C)
    assert d.of_type(fx.Checkout, out) == [] and d.model["rows"][-1]["refusal"] == "limit_reached"
    d.item_done(a, ok=False, refusal=Refusal.ON_HOLD)    # a refused loan frees its place
    assert d.model["allowance"] == 1
    assert d.checkout(ITEM_C).loan.item_id == ITEM_C


def test_patron_already_at_the_limit(d):
    d.sign_in_with_card(st=status(limit=5, charged=7))
    assert d.model["allowance"] == 0
    d.scan(ITEM_A)
    assert d.model["rows"][0]["refusal"] == "limit_reached"


def test_patron_name_only_when_configured():
    st = status(name="Natsume Soseki")
    d = SessionDriver()
    d.sign_in_with_card(st=st)
    assert d.model["name"] is None
    assert "Natsume" not in repr(d.all_of(fx.Show))
    d = SessionDriver.with_settings(show_patron_name=True)
    d.sign_in_with_card(st=st)
    assert d.model["name"] == "Natsume Soseki"


def test_scan_rearms_the_timeout(d):
    d.sign_in_with_card()
    d.advance(100)
    d.scan(ITEM_A)
    d.advance(100)
    assert d.screen == "scanning"


# ---------------------------------------------------------------------------- finishing and summary


def test_finish_without_any_scan_says_thank_you(d):
    d.sign_in_with_card()
    out = d.press("finish")
    # thank_you lasts 8 s, less than the 15 s warning: its countdown shows from the start
    assert out == [fx.EndSession(CARD_PATRON, "finished"), fx.Show("thank_you", base(countdown=8, **NOTHING_LENT)),
                   fx.Lights("ready")]
    d.press("ok")
    assert_idle_without_patron(d)


def test_finish_with_pending_waits_then_shows_summary(d):
    d.sign_in_with_card()
    a = d.checkout(ITEM_A).loan.txn_id
    b = d.checkout(ITEM_B).loan.txn_id
    out = d.press("finish")
    assert out == [fx.Show("finishing", base(pending=2)), fx.Lights("busy")]
    assert d.scan(ITEM_C) == [] and d.press("finish") == []
    out = d.item_done(a)
    assert out == [fx.Show("finishing", base(pending=1)), fx.Cue("accepted"), fx.Lights("success")]
    out = d.item_done(b, ok=False, refusal=Refusal.ALREADY_OUT)
    assert out[0].screen == "summary" and d.cues(out) == ["refused"]
    assert [r["state"] for r in d.model["rows"]] == ["ok", "refused"]
    assert d.model["receipt_available"] is False
    assert d.all_of(fx.EndSession) == [] and d.all_of(fx.Withdraw) == []


def test_finish_with_everything_settled_goes_to_summary(d):
    d.sign_in_with_card()
    d.scan(ITEM_A)
    d.scan(ITEM_A)                      # already on the list: no row
    d.item_done("txn-1")
    out = d.press("finish")
    assert out == [fx.Show("summary", base(rows=d.model["rows"], receipt_available=False, due=d.model["due"])), fx.Lights("ready")]
    assert [r["state"] for r in d.model["rows"]] == ["ok"]


def test_finish_with_only_refused_rows_shows_summary(d):
    d.sign_in_with_card(st=status(limit=0))
    d.scan(ITEM_A)
    d.press("finish")
    assert d.screen == "summary" and d.model["rows"][0]["refusal"] == "limit_reached"


def test_summary_done_ends_the_session(d):
    d.drive_to("summary")
    out = d.press("done")
    thanks = dict(lent=1, due="2025-04-15", several_dates=False)
    assert out == [fx.EndSession(CARD_PATRON, "finished"), fx.Show("thank_you", base(countdown=8, **thanks)),
                   fx.Lights("ready"), fx.Cue("accepted")]
    assert d.all_of(fx.PrintReceipt) == []
    out = d.press("done")
    assert out == [fx.Show("idle", idle_model()), fx.Lights("ready")]


def test_thank_you_ok_returns_to_idle(d):
    d.drive_to("thank_you")
    d.press("ok")
    assert_idle_without_patron(d)


# ---------------------------------------------------------------------------- receipts


def _receipt_session(**kw) -> SessionDriver:
    d = SessionDriver.with_settings(receipt_printer=True, **kw)
    d.sign_in_with_card()
    a = d.checkout(ITEM_A).loan.txn_id
    b = d.checkout(ITEM_B).loan.txn_id
    c = d.checkout(ITEM_C).loan.txn_id
    d.item_done(a, title="Kokoro", due=date(2025, 4, 15))
    d.item_done(b, ok=False, refusal=Refusal.ON_HOLD, title="Botchan")
    d.item_done(c, title="", due=date(2025, 4, 22))
    d.press("finish")
    return d


def test_receipt_lists_title_and_due_of_lent_items_only():
    d = _receipt_session()
    assert d.model["receipt_available"] is True
    out = d.press("receipt")
    assert out[0] == fx.PrintReceipt((("Kokoro", "2025-04-15"), (ITEM_C, "2025-04-22")))
    for line in out[0].lines:
        assert CARD_PATRON not in "".join(line)


def test_the_receipt_is_printed_in_the_patrons_language():
    d = _receipt_session()
    d.press("language", "en")
    assert d.of_type(fx.PrintReceipt, d.press("receipt"))[0].lang == "en"
    # The summary stays up until the printer answers: it is the fallback on paper-out.
    assert d.screen == "summary" and d.model["notice"] == "printing"
    assert d.press("done") == [] and d.press("receipt") == []
    out = d.send(ev.ReceiptDone(True))
    assert out[0] == fx.EndSession(CARD_PATRON, "finished")
    assert d.screen == "thank_you" and d.cues(out) == ["accepted"]


def test_receipt_failure_falls_back_to_the_on_screen_summary():
    d = _receipt_session()
    d.press("receipt")
    out = d.send(ev.ReceiptDone(False))
    assert d.screen == "summary" and d.model["notice"] == "receipt_failed"
    assert d.model["receipt_available"] is False and d.cues(out) == ["attention"]
    assert [r["title"] for r in d.model["rows"] if r["state"] == "ok"] == ["Kokoro", ""]
    assert d.of_type(fx.PrintReceipt, d.press("receipt")) == []       # no second try on paper-out
    assert d.screen == "thank_you"


def test_no_receipt_without_a_printer(d):
    d.sign_in_with_card()
    d.item_done(d.checkout(ITEM_A).loan.txn_id)
    d.press("finish")
    assert d.model["receipt_available"] is False
    out = d.press("receipt")
    assert d.of_type(fx.PrintReceipt, out) == [] and d.screen == "thank_you"


def test_no_receipt_when_nothing_was_lent():
    d = SessionDriver.with_settings(receipt_printer=True)
    d.sign_in_with_card()
    d.item_done(d.checkout(ITEM_A).loan.txn_id, ok=False, refusal=Refusal.ON_HOLD)
    d.press("finish")
    assert d.model["receipt_available"] is False
    assert d.of_type(fx.PrintReceipt, d.press("receipt")) == []


def test_done_does_not_print():
    d = _receipt_session()
    assert d.of_type(fx.PrintReceipt, d.press("done")) == []


# ---------------------------------------------------------------------------- offline lending


def _offline_card_session(d: SessionDriver) -> None:
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.resolved()
    d.loaded(None, Refusal.OFFLINE)
    d.remove_card()


def test_offline_lending_off_refuses_card_patron(d):
    _offline_card_session(d)
    assert d.screen == "error" and d.model["code"] == "offline" and d.model["counter"] is True


def test_offline_lending_switched_on_lends_under_local_rules(d):
    assert d.send(ev.SetOfflineLending(True)) == []
    _offline_card_session(d)
    assert d.screen == "scanning" and d.model["offline"] is True
    assert d.model["allowance"] == 5                          # OfflineRules().max_items
    out = d.scan(ITEM_A)
    (c,) = d.of_type(fx.Checkout, out)
    due = WALL.date() + timedelta(days=14)
    assert c.loan == LoanRequest(txn_id="txn-1", patron_id=CARD_PATRON, item_id=ITEM_A, created_at=WALL,
                                 offline=True, due_date=due)
    assert out[0] == c                                        # journaled before the screen says so
    assert d.cues(out) == ["accepted"] and d.lights(out) == ["ready", "success"]
    assert d.model["rows"] == [{"txn_id": "txn-1", "item_id": ITEM_A, "state": "ok", "title": "",
                                "due": due.isoformat(), "refusal": None, "offline": True}]
    assert (d.model["lent"], d.model["pending"], d.model["allowance"]) == (1, 0, 4)
    assert d.item_done("txn-1", ok=False, refusal=Refusal.ALREADY_OUT) == []   # the outbox's business now
    d.press("finish")
    assert d.screen == "summary"
    d.press("done")
    assert d.all_of(fx.Withdraw) == []


def test_refusal_missing_means_offline():
    d = SessionDriver.with_settings(offline_lending=True)
    d.insert_card()
    d.probe(3)
    d.enter_pin()
    d.auth_ok()
    d.resolved()
    d.loaded(None, None)
    assert d.screen == "take_card" and d.session.p.offline


def test_offline_max_items_and_refused_patterns():
    rules = OfflineRules(max_items=2, loan_days=7, refused_patterns=(r"19\d+",))
    d = SessionDriver.with_settings(offline_lending=True, offline_rules=rules)
    _offline_card_session(d)
    out = d.scan("19000001")
    assert d.of_type(fx.Checkout, out) == [] and d.model["rows"][-1]["refusal"] == "counter_only"
    c = d.checkout(ITEM_A)
    assert c.loan.due_date == WALL.date() + timedelta(days=7)
    d.checkout(ITEM_B)
    out = d.scan(ITEM_C)
    assert d.of_type(fx.Checkout, out) == [] and d.model["rows"][-1]["refusal"] == "limit_reached"


def test_offline_lending_switched_off_again(d):
    d.send(ev.SetOfflineLending(True))
    d.send(ev.SetOfflineLending(False))
    _offline_card_session(d)
    assert d.model["code"] == "offline"


def test_offline_switch_does_not_change_a_running_session(d):
    d.send(ev.SetOfflineLending(True))
    _offline_card_session(d)
    d.send(ev.SetOfflineLending(False))
    assert d.checkout(ITEM_A).loan.offline is True


def test_online_patron_is_not_offline_even_when_offline_lending_is_on():
    d = SessionDriver.with_settings(offline_lending=True)
    d.sign_in_with_card()
    assert d.model["offline"] is False and d.model["allowance"] is None
    assert d.checkout(ITEM_A).loan.offline is False


# ---------------------------------------------------------------------------- out of service


def test_out_of_service_at_idle_is_immediate(d):
    out = d.send(ev.SetOutOfService(True))
    assert out == [fx.Show("out_of_service", base()), fx.Lights("out_of_service")]
    assert not d.session.in_session
    assert d.of_type(fx.ProbeCard, d.insert_card()) == []
    assert d.screen == "out_of_service" and d.model["card_reminder"] is True
    d.remove_card()
    assert d.scan(LIBRARY_PATRON) == [] and d.scan(ITEM_A) == []
    assert d.press("library_card") == [] and d.press("language", "en") == []
    assert d.run_for(100) == []
    assert d.send(ev.SetOutOfService(False)) == [fx.Show("idle", idle_model()), fx.Lights("ready")]


@pytest.mark.parametrize("screen", ["reading_card", "pin", "last_try", "authenticating", "library_card",
                                    "take_card", "scanning", "finishing", "summary"])
def test_out_of_service_waits_for_the_session_to_end(d, screen):
    d.drive_to(screen)
    before = snapshot(d)
    assert d.send(ev.SetOutOfService(True)) == []
    assert d.screen == screen and snapshot(d)[0:2] == before[0:2]
    d.remove_card()
    d.run_for(400, step=5)
    assert d.screen == "out_of_service"
    assert d.session.p.method is None
    d.send(ev.SetOutOfService(False))
    assert_idle_without_patron(d)


def test_out_of_service_after_a_finished_session(d):
    d.sign_in_with_card()
    d.send(ev.SetOutOfService(True))
    d.press("finish")
    assert d.screen == "thank_you"
    d.press("ok")
    assert d.screen == "out_of_service"


@pytest.mark.parametrize("screen", ["error", "thank_you"])
def test_out_of_service_is_immediate_on_closing_screens(d, screen):
    d.drive_to(screen)
    d.press("language", "en")
    out = d.send(ev.SetOutOfService(True))
    assert d.screen == "out_of_service" and out[0] == fx.Show("out_of_service", d.model)
    assert d.model["language"] == "ja"
    d.send(ev.SetOutOfService(False))
    assert_idle_without_patron(d)


def test_out_of_service_request_withdrawn_during_the_session(d):
    d.drive_to("scanning")
    d.send(ev.SetOutOfService(True))
    d.send(ev.SetOutOfService(False))
    d.press("finish")
    d.press("ok")
    assert d.screen == "idle"


def test_deferred_out_of_service_is_not_skipped_by_inserting_a_card(d):
    d.press("library_card")
    d.send(ev.SetOutOfService(True))
    out = d.insert_card()
    assert fx.EndSession(None, "cancelled") in out
    assert d.of_type(fx.ProbeCard, out) == []
    assert d.screen == "out_of_service" and d.model["card_reminder"] is True


# ---------------------------------------------------------------------------- language


def test_language_switch_and_reset(d):
    assert d.press("language", "en") == [fx.Show("idle", idle_model(language="en"))]
    assert d.press("language", "xx") == []
    assert d.press("language", None) == []
    d.sign_in_with_card()
    assert d.model["language"] == "en"
    d.press("language", "pt-BR")
    assert d.model["language"] == "pt-BR"
    d.press("finish")
    assert d.screen == "thank_you" and d.model["language"] == "pt-BR"   # still theirs to read
    d.press("ok")
    assert d.model["language"] == "ja"


@pytest.mark.parametrize("leave", ["cancel", "timeout", "error"])
def test_language_resets_however_the_session_ends(d, leave):
    d.drive_to("pin")
    d.press("language", "ko")
    if leave == "cancel":
        d.press("cancel")
    elif leave == "timeout":
        d.run_for(61)
    else:
        d.remove_card()
        assert d.model["language"] == "ko"          # the error is shown in their language
        d.press("ok")
    assert d.screen == "idle" and d.model["language"] == "ja"


def test_language_press_rearms_the_timeout(d):
    d.drive_to("pin")
    d.advance(50)
    d.press("language", "vi")
    d.advance(50)
    assert d.screen == "pin"


def test_custom_default_language():
    d = SessionDriver.with_settings(default_language="en")
    d.press("language", "ja")
    d.press("library_card")
    d.press("cancel")
    assert d.model["language"] == "en"


# ---------------------------------------------------------------------------- stale and misplaced events


def _probe_event(serial):
    return ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries_left=3), serial=serial)


def _auth_event(serial):
    return ev.AuthDone(AuthOutcome(identity=IDENTITY), serial=serial)


def _resolved_event(serial):
    return ev.PatronResolved(CARD_PATRON, serial=serial)


def _loaded_event(serial):
    return ev.PatronLoaded(status(), serial=serial)


REPLIES = {"probe": _probe_event, "auth": _auth_event, "resolved": _resolved_event, "loaded": _loaded_event}


def _drive_to_reply_home(d: SessionDriver, reply: str) -> None:
    d.insert_card()
    if reply == "probe":
        return
    d.probe(3)
    d.enter_pin()
    if reply == "auth":
        return
    d.auth_ok()
    if reply == "resolved":
        return
    d.resolved()


@pytest.mark.parametrize("reply", list(REPLIES))
@pytest.mark.parametrize("delta", [-1, 1, -7])
def test_replies_with_another_serial_are_ignored(d, reply, delta):
    _drive_to_reply_home(d, reply)
    before = snapshot(d)
    assert d.send(REPLIES[reply](d.serial + delta)) == []
    assert snapshot(d) == before
    assert d.send(REPLIES[reply](d.serial)) != []           # the right one still works


@pytest.mark.parametrize("reply", list(REPLIES))
def test_late_reply_from_a_previous_patron_is_ignored(d, reply):
    _drive_to_reply_home(d, reply)
    old = d.serial
    d.remove_card()
    d.run_for(100, step=5)                                  # error (or timeout), then idle
    assert d.screen == "idle"
    _drive_to_reply_home(d, reply)                          # the next patron, at the same step
    assert d.serial == old + 1
    before = snapshot(d)
    assert d.send(REPLIES[reply](old)) == []
    assert snapshot(d) == before


def _ignored_cases():
    cases = []
    for s in SCREENS:
        if s != "reading_card":
            cases.append((s, "probe"))
        if s != "authenticating":
            cases += [(s, "auth"), (s, "resolved"), (s, "loaded")]
        if s not in ("idle", "library_card", "scanning"):
            cases += [(s, "barcode_item"), (s, "barcode_patron")]
        if s != "scanning":
            cases.append((s, "finish"))
        if s not in ("pin", "last_try", "library_card", "card_number", "take_card", "scanning"):
            cases.append((s, "cancel"))
        if s not in ("pin", "card_number"):
            cases.append((s, "digit"))
        if s != "last_try":
            cases.append((s, "confirm_last_try"))
        if s not in ("summary",):
            cases.append((s, "receipt"))
        cases += [(s, "item_done_unknown"), (s, "unknown_action"), (s, "offline_switch")]
        if s in ("idle", "out_of_service"):
            cases.append((s, "more_time"))
    return cases


def _ignored_event(name: str):
    return {
        "probe": _probe_event(None), "auth": _auth_event(None), "resolved": _resolved_event(None),
        "loaded": _loaded_event(None), "barcode_item": ev.Barcode(ITEM_A),
        "barcode_patron": ev.Barcode(LIBRARY_PATRON), "finish": ev.Press("finish"),
        "cancel": ev.Press("cancel"), "digit": ev.Press("digit", "5"),
        "confirm_last_try": ev.Press("confirm_last_try"), "receipt": ev.Press("receipt"),
        "item_done_unknown": ev.ItemDone(LoanResult("txn-nope", True, ITEM_A)),
        "unknown_action": ev.Press("launch_rocket"), "offline_switch": ev.SetOfflineLending(False),
        "more_time": ev.Press("more_time"),
    }[name]


@pytest.mark.parametrize("screen, name", _ignored_cases())
def test_events_that_do_not_belong_to_the_screen_are_ignored(screen, name):
    d = SessionDriver().drive_to(screen)
    before = snapshot(d)
    assert d.send(_ignored_event(name)) == []
    assert snapshot(d) == before


def test_auth_done_after_identity_is_known_is_ignored(d):
    d.drive_to("authenticating")
    d.auth_ok()
    before = snapshot(d)
    assert d.auth_ok() == [] and d.auth_fail(CardError.PIN_WRONG, 2) == []
    assert snapshot(d) == before


def test_card_reply_from_an_earlier_card_during_a_library_sign_in_is_ignored(d):
    d.drive_to("authenticating")
    card_serial = d.serial
    d.remove_card()                             # card session ends: card_removed
    d.press("ok")
    d.scan(LIBRARY_PATRON)
    d.enter_pin()
    assert d.screen == "authenticating" and d.model["stage"] == "patron"
    before = snapshot(d)
    assert d.auth_ok(serial=card_serial) == [] and d.probe(3, serial=card_serial) == []
    assert snapshot(d) == before


def test_patron_replies_before_their_step_are_ignored(d):
    d.drive_to("authenticating")                # card stage: no identity, no patron id yet
    before = snapshot(d)
    assert d.resolved() == [] and d.loaded(status()) == []
    assert snapshot(d) == before
    d.auth_ok()
    before = snapshot(d)
    assert d.loaded(status()) == []             # not resolved yet
    assert snapshot(d) == before


def test_unknown_event_type_is_ignored(d):
    class Bogus:
        pass
    assert d.send(Bogus()) == []


def test_more_time_outside_the_warning_just_rearms(d):
    d.drive_to("scanning")
    d.advance(10)
    assert d.press("more_time") == [fx.Show("scanning", d.model)]
    assert d.deadline == d.now + 120


# ---------------------------------------------------------------------------- wipe on return to idle


def _hold_everything(d: SessionDriver) -> tuple:
    s = d.session
    return s.p, s.p.pin, s.p.rows


@pytest.mark.parametrize("how", ["cancel", "timeout", "card_removed", "reader_gone"])
def test_pin_typed_so_far_is_zeroed_when_the_session_ends(d, how):
    # "locked": the reader went away, which ends the sign-in at the counter
    d.drive_to("pin")
    d.type_pin("123")
    old, pin, _ = _hold_everything(d)
    assert bytes(pin) == b"123"
    if how == "cancel":
        d.press("cancel")
    elif how == "timeout":
        d.run_for(60)
    elif how == "card_removed":
        d.remove_card()
        d.press("ok")
    else:
        d.send(ev.ReaderChanged(False))
        d.press("ok")
        d.send(ev.ReaderChanged(True))
    assert len(pin) == 0 and not any(pin)
    assert d.session.p is not old
    assert_idle_without_patron(d)


def test_pin_zeroed_in_place_before_being_cleared(d):
    d.drive_to("pin")
    d.type_pin("1234")
    pin = d.session.p.pin
    view = memoryview(pin)
    with pytest.raises(BufferError):            # the clear cannot resize an exported buffer...
        d.press("cancel")
    assert bytes(view) == b"\0\0\0\0"           # ...but the digits were already overwritten
    view.release()


def test_everything_about_the_patron_is_gone_after_a_full_session(d):
    d.press("language", "en")
    d.sign_in_with_card(st=status(name="Natsume", holds_ready=1, limit=9))
    d.item_done(d.checkout(ITEM_A).loan.txn_id, title="Kokoro")
    d.checkout(ITEM_B)
    old, pin, rows = _hold_everything(d)
    d.run_for(120)
    assert d.screen == "idle"
    assert_idle_without_patron(d)
    assert d.session.p is not old and d.session.p.rows is not rows
    idle_show = d.last_show()
    for secret in (CARD_PATRON, ITEM_A, ITEM_B, "Kokoro", "Natsume", IDENTITY.cert_hash):
        assert secret not in repr(idle_show)


def test_withdraw_and_end_session_come_before_idle(d):
    d.sign_in_with_card()
    t1 = d.checkout(ITEM_A).loan.txn_id
    t2 = d.checkout(ITEM_B).loan.txn_id
    d.item_done(t1)
    out = d.run_for(120)
    i = out.index(fx.Withdraw(t2))
    assert out[i:] == [fx.Withdraw(t2), fx.EndSession(CARD_PATRON, "timeout"), fx.Show("idle", idle_model()),
                       fx.Lights("ready")]
    assert d.all_of(fx.Withdraw) == [fx.Withdraw(t2)]
    assert d.item_done(t2) == []                 # a late answer finds nobody


def test_each_session_ends_exactly_once(d):
    d.sign_in_with_card()
    d.press("finish")
    d.run_for(30)
    d.sign_in_with_library_card()
    d.run_for(300)
    d.drive_to("idle")
    assert d.all_of(fx.EndSession) == [fx.EndSession(CARD_PATRON, "finished"),
                                       fx.EndSession(LIBRARY_PATRON, "timeout")]


def test_reader_gone_with_a_left_card_stops_the_reminder(d):
    d.insert_card()
    d.probe(0)                                      # error screen, the used card still in the reader
    d.press("ok")
    assert d.screen == "idle" and d.model["card_reminder"] is True
    d.send(ev.ReaderChanged(False, "no_reader"))
    assert d.model["card_reminder"] is False and d.model["reader_ok"] is False
    assert d.cues(d.run_for(12)) == []


# ---------------------------------------------------------------------------- summary order and due dates


def test_summary_lists_borrowed_books_first_and_says_a_shared_due_date_once(d):
    d.sign_in_with_card()
    d.scan(ITEM_A)
    d.scan(ITEM_B)
    d.scan(ITEM_C)
    d.item_done("txn-1", ok=False, refusal=Refusal.ON_HOLD)
    d.item_done("txn-2")
    d.item_done("txn-3")
    d.press("finish")
    assert [(r["txn_id"], r["state"]) for r in d.model["rows"]] == [
        ("txn-2", "ok"), ("txn-3", "ok"), ("txn-1", "refused")]
    assert d.model["due"] == "2025-04-15"
    d.press("done")
    assert d.screen == "thank_you"
    assert (d.model["lent"], d.model["due"], d.model["several_dates"]) == (2, "2025-04-15", False)


def test_summary_leaves_different_due_dates_on_their_rows_and_thanks_names_the_first(d):
    d.sign_in_with_card()
    d.scan(ITEM_A)
    d.scan(ITEM_B)
    d.item_done("txn-1", due=date(2025, 4, 29))
    d.item_done("txn-2", due=date(2025, 4, 15))
    d.press("finish")
    assert d.model["due"] is None
    assert [r["due"] for r in d.model["rows"]] == ["2025-04-29", "2025-04-15"]
    d.press("done")
    assert (d.model["lent"], d.model["due"], d.model["several_dates"]) == (2, "2025-04-15", True)


def test_thanks_has_no_date_when_nothing_was_borrowed_and_forgets_it_at_idle(d):
    d.sign_in_with_card(st=status(limit=0))
    d.scan(ITEM_A)
    d.press("finish")
    assert d.model["due"] is None and d.model["rows"][0]["state"] == "refused"
    d.press("done")
    assert (d.model["lent"], d.model["due"]) == (0, None)
    d.press("ok")
    assert d.screen == "idle" and d.session.p.thanks == {}


# ---------------------------------------------------------------------------- cancel on the scanning screen


def test_cancel_before_any_scan_ends_the_session_without_a_loan(d):
    d.sign_in_with_card()
    out = d.press("cancel")
    assert out[0] == fx.EndSession(CARD_PATRON, "cancelled")
    assert_idle_without_patron(d)
    assert d.all_of(fx.Checkout) == [] and d.all_of(fx.Withdraw) == []


def test_cancel_after_only_refusals_ends_the_session(d):
    d.sign_in_with_card(st=status(limit=0))
    d.scan(ITEM_A)
    assert d.model["rows"][0]["state"] == "refused"
    assert d.press("cancel")[0] == fx.EndSession(CARD_PATRON, "cancelled")
    assert d.screen == "idle"


@pytest.mark.parametrize("answered", [False, True])
def test_cancel_never_undoes_or_drops_a_loan(d, answered):
    d.sign_in_with_card()
    d.scan(ITEM_A)
    if answered:
        d.item_done("txn-1")
    assert d.press("cancel") == []                  # a race with a scan, or a stale button: ignored
    assert d.screen == "scanning" and d.all_of(fx.EndSession) == [] and d.all_of(fx.Withdraw) == []
    assert d.model["rows"][0]["state"] == ("ok" if answered else "pending")
