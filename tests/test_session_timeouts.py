"""Inactivity timeouts on every screen, and a property test: whatever happens, the
kiosk gets back to idle with nothing of the patron left in memory."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardKind, CardProbe
from kiosk.core.catalogue import LoanResult, Refusal
from kiosk.core.session import SessionSettings, Timeouts
from kiosk_testing.session_driver import (
    CARD_PATRON,
    IDENTITY,
    ITEM_A,
    ITEM_B,
    LIBRARY_PATRON,
    SessionDriver,
    status,
)

WARNING = 15.0
# Written out (not read from Timeouts) so a changed default is noticed.
SECONDS = {
    "reading_card": 30, "pin": 60, "last_try": 60, "authenticating": 45, "library_card": 45,
    "take_card": 45, "scanning": 120, "finishing": 30, "summary": 60, "thank_you": 8, "error": 20,
}


def test_default_timeouts():
    t = Timeouts()
    assert t.warning == WARNING
    for screen, seconds in SECONDS.items():
        assert t.for_screen(screen) == seconds
    assert t.for_screen("idle") is None and t.for_screen("out_of_service") is None
    assert Timeouts(default=33, per_screen={}).for_screen("pin") == 33


@pytest.mark.parametrize("screen", ["idle", "out_of_service"])
def test_idle_and_out_of_service_never_time_out(screen):
    d = SessionDriver().drive_to(screen)
    assert d.run_for(3600, step=60) == []
    assert d.screen == screen


def _shows(effects) -> list[fx.Show]:
    return [e for e in effects if isinstance(e, fx.Show)]


@pytest.mark.parametrize("screen", list(SECONDS))
def test_warning_countdown_then_more_time(screen):
    d = SessionDriver().drive_to(screen)
    t0 = d.now
    timeout = SECONDS[screen]
    deadline = t0 + timeout
    if timeout > WARNING:
        assert d.model["countdown"] is None
        assert _shows(d.advance_to(deadline - WARNING - 0.01)) == []
        (show,) = _shows(d.advance_to(deadline - WARNING))      # exactly `warning` seconds before
        assert show.screen == screen and show.model["countdown"] == WARNING
    else:
        assert d.model["countdown"] == timeout                  # shorter than the warning: at once
    (show,) = _shows(d.advance_to(deadline - 0.5))
    assert show.model["countdown"] == 1 and d.screen == screen
    out = d.press("more_time")
    assert out == [fx.Show(screen, {**show.model, "countdown": None if timeout > WARNING else timeout})]
    new_deadline = d.now + timeout
    d.advance_to(new_deadline - 0.01)
    assert d.screen == screen                                   # re-armed: not yet
    d.advance_to(new_deadline)
    assert d.screen != screen


def test_countdown_is_redrawn_once_per_second():
    d = SessionDriver().drive_to("scanning")
    deadline = d.now + 120
    seen = []
    while d.screen == "scanning":
        for show in _shows(d.advance(0.25)):
            if show.screen == "scanning":
                seen.append(show.model["countdown"])
    assert seen == list(range(15, 0, -1))
    assert d.now == deadline


def test_countdown_goes_away_after_activity():
    d = SessionDriver().drive_to("pin")
    d.advance(50)
    assert d.model["countdown"] == 10
    d.press("digit", "1")
    assert d.model["countdown"] is None
    assert _shows(d.advance(1)) == []


# ---------------------------------------------------------------------------- what each timeout does


def _time_out(d: SessionDriver) -> list:
    """Let the current screen run out, in one Tick at its deadline."""
    screen = d.screen
    out = d.advance_to(d.deadline)
    assert d.screen != screen
    return out


@pytest.mark.parametrize("screen", ["pin", "last_try", "library_card"])
def test_timeout_before_the_patron_is_known_returns_to_idle(screen):
    d = SessionDriver().drive_to(screen)
    if screen == "pin":
        d.type_pin("12")
    pin = d.session.p.pin
    serial = d.serial
    out = _time_out(d)
    assert out[0] == fx.EndSession(None, "timeout")
    assert out[1].screen == "idle" and d.serial == serial + 1
    assert len(pin) == 0
    assert d.session.p.method is None


@pytest.mark.parametrize("stage", ["reading_card", "card", "patron", "library"])
def test_timeout_while_waiting_for_card_or_catalogue_is_an_error(stage):
    d = SessionDriver()
    if stage == "reading_card":
        d.insert_card()
        patron = None
    elif stage == "card":
        d.drive_to("authenticating")
        patron = None
    elif stage == "patron":
        d.drive_to("authenticating")
        d.auth_ok()
        d.resolved()
        patron = CARD_PATRON
    else:
        d.scan(LIBRARY_PATRON)
        d.enter_pin()
        patron = LIBRARY_PATRON
    serial = d.serial
    out = _time_out(d)
    assert out[0] == fx.EndSession(patron, "error")
    assert d.screen == "error" and d.model["code"] == "timeout" and d.model["counter"] is True
    assert d.cues(out) == ["refused"]
    assert d.loaded(status(), serial=serial) == []              # the late answer is dropped
    d.remove_card()
    _time_out(d)                                                # error screen: 20 s, then idle
    assert d.screen == "idle"


def test_take_card_timeout_ends_the_session_and_keeps_reminding():
    d = SessionDriver().drive_to("take_card")
    out = _time_out(d)
    assert fx.EndSession(CARD_PATRON, "timeout") in out
    assert d.screen == "idle" and d.model["card_reminder"] is True
    assert d.cues(d.advance(4)) == ["card_reminder"]


def test_scanning_timeout_withdraws_pending_loans_only():
    d = SessionDriver()
    d.sign_in_with_card()
    a = d.checkout(ITEM_A).loan.txn_id
    b = d.checkout(ITEM_B).loan.txn_id
    d.item_done(a)
    out = _time_out(d)
    assert d.of_type(fx.Withdraw, out) == [fx.Withdraw(b)]
    assert d.of_type(fx.EndSession, out) == [fx.EndSession(CARD_PATRON, "timeout")]
    assert d.screen == "idle"
    assert d.item_done(b) == []


def test_finishing_timeout_withdraws_and_shows_what_is_unconfirmed():
    d = SessionDriver()
    d.sign_in_with_card()
    a = d.checkout(ITEM_A).loan.txn_id
    b = d.checkout(ITEM_B).loan.txn_id
    d.press("finish")
    d.item_done(a)
    out = _time_out(d)
    assert out[0] == fx.Withdraw(b)
    assert d.screen == "summary" and d.model["notice"] == "not_confirmed"
    assert [r["state"] for r in d.model["rows"]] == ["ok", "unconfirmed"]
    assert d.all_of(fx.EndSession) == []
    assert d.item_done(b) == []                                 # too late: withdrawn
    out = _time_out(d)                                          # summary times out in its turn
    assert d.of_type(fx.Withdraw, out) == []                    # not withdrawn twice
    assert out[0] == fx.EndSession(CARD_PATRON, "timeout") and d.screen == "idle"


def test_summary_timeout_does_not_print():
    d = SessionDriver(settings=SessionSettings(receipt_printer=True)).drive_to("summary")
    out = _time_out(d)
    assert d.of_type(fx.PrintReceipt, out) == []
    assert out[0] == fx.EndSession(CARD_PATRON, "timeout")


@pytest.mark.parametrize("screen", ["thank_you", "error"])
def test_closing_screens_time_out_to_idle_without_ending_twice(screen):
    d = SessionDriver().drive_to(screen)
    ends = len(d.all_of(fx.EndSession))
    d.remove_card()
    out = _time_out(d)
    assert out == [fx.Show("idle", d.model), fx.Lights("ready")]
    assert len(d.all_of(fx.EndSession)) == ends


def test_custom_timeouts_and_warning():
    t = Timeouts(default=10, per_screen={"scanning": 40}, warning=5)
    d = SessionDriver(settings=SessionSettings(timeouts=t))
    d.sign_in_with_card()
    assert _shows(d.advance_to(d.now + 34.9)) == []
    assert d.model["countdown"] is None
    assert d.advance_to(d.now + 0.1)[0].model["countdown"] == 5
    d.advance_to(d.now + 5)
    assert d.screen == "idle"
    d.press("library_card")                                     # not listed: the default
    d.advance(9.9)
    assert d.screen == "library_card"
    d.advance(0.1)
    assert d.screen == "idle"


def test_one_tick_handles_one_screen_at_a_time():
    """A long sleep (suspend) does not skip the summary: each screen gets its turn."""
    d = SessionDriver().drive_to("finishing")
    d.advance(10_000)
    assert d.screen == "summary"
    d.advance(10_000)
    assert d.screen == "idle"


# ---------------------------------------------------------------------------- property: always back to idle

DIGITS = st.sampled_from(list("0123456789") + ["", "12", "x", "١", "１", "²", None])
BARCODES = st.one_of(
    st.sampled_from([ITEM_A, ITEM_B, "10000003", f"A{ITEM_A}B", LIBRARY_PATRON, "20000009", f"c{LIBRARY_PATRON}d",
                     "", "garbage", "1" * 40, "1234567\x00", "１２３４５６７８９"]),
    st.text(max_size=12),
)
SERIAL = st.sampled_from(["current", "current", "current", "old", None])
ACTIONS = st.sampled_from([
    "digit", "delete", "clear", "ok", "cancel", "confirm_last_try", "finish", "receipt", "done",
    "more_time", "library_card", "help", "close_help", "language", "bogus",
])


def _serial(d: SessionDriver, which):
    if which == "current":
        return d.serial
    if which == "old":
        return d.serial - 1
    return None


def _press(action, value=None):
    return lambda d: ev.Press(action, value)


CARD_JOURNEY = [
    lambda d: ev.CardInserted(),
    lambda d: ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, 3), d.serial),
    *[_press("digit", c) for c in "1234"], _press("ok"),
    lambda d: ev.AuthDone(AuthOutcome(identity=IDENTITY), d.serial),
    lambda d: ev.PatronResolved(CARD_PATRON, serial=d.serial),
    lambda d: ev.PatronLoaded(status(limit=4), serial=d.serial),
    lambda d: ev.CardRemoved(),
    lambda d: ev.Barcode(ITEM_A),
    lambda d: ev.Barcode(ITEM_B),
    lambda d: _done(d, 0),
    _press("finish"),
    lambda d: _done(d, 1),
    _press("receipt"),
]
LIBRARY_JOURNEY = [
    _press("library_card"),
    lambda d: ev.Barcode(LIBRARY_PATRON),
    *[_press("digit", c) for c in "1234"], _press("ok"),
    lambda d: ev.PatronLoaded(status(LIBRARY_PATRON, password_ok=True), serial=d.serial),
    lambda d: ev.Barcode(ITEM_A),
    _press("finish"),
    lambda d: _done(d, 0),
    _press("done"),
]
LAST_TRY_JOURNEY = [
    lambda d: ev.CardInserted(),
    lambda d: ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, 1), d.serial),
    _press("confirm_last_try"),
    *[_press("digit", c) for c in "1234"], _press("ok"),
    lambda d: ev.AuthDone(AuthOutcome(error=CardError.PIN_WRONG, tries_left=0), d.serial),
]


def _done(d: SessionDriver, back: int, ok: bool = True) -> ev.ItemDone:
    txn = d.txn_ids[-1 - back] if back < len(d.txn_ids) else "txn-unknown"
    return ev.ItemDone(LoanResult(txn, ok, ITEM_A, "T", date(2025, 5, 1) if ok else None))


@st.composite
def some_events(draw):
    """Functions of the driver, each giving one event: a single plausible-or-not event,
    or the start of an ordinary journey (which random events alone seldom complete)."""
    kind = draw(st.sampled_from(["journey", "single", "single", "single"]))
    if kind == "single":
        return [draw(an_event())]
    journey = draw(st.sampled_from([CARD_JOURNEY, LIBRARY_JOURNEY, LAST_TRY_JOURNEY]))
    return journey[:draw(st.integers(1, len(journey)))]


@st.composite
def an_event(draw):
    """A function of the driver giving one plausible-or-not event."""
    kind = draw(st.sampled_from([
        "insert", "remove", "reader", "probe", "auth", "resolved", "loaded", "barcode", "item_done",
        "item_done", "press", "press", "press", "tick", "oos", "offline",
    ]))
    if kind == "insert":
        return lambda d: ev.CardInserted()
    if kind == "remove":
        return lambda d: ev.CardRemoved()
    if kind == "reader":
        on = draw(st.booleans())
        return lambda d: ev.ReaderChanged(on)
    if kind == "probe":
        tries = draw(st.sampled_from([None, 0, 1, 2, 3]))
        error = draw(st.one_of(st.none(), st.sampled_from(list(CardError))))
        which = draw(SERIAL)
        return lambda d: ev.CardProbed(CardProbe(CardKind.MY_NUMBER_CARD, tries, error), _serial(d, which))
    if kind == "auth":
        outcome = draw(st.sampled_from([
            AuthOutcome(identity=IDENTITY), AuthOutcome(error=CardError.PIN_WRONG, tries_left=2),
            AuthOutcome(error=CardError.PIN_WRONG, tries_left=1), AuthOutcome(error=CardError.PIN_WRONG),
            AuthOutcome(error=CardError.CERT_EXPIRED), AuthOutcome(),
        ]))
        which = draw(SERIAL)
        return lambda d: ev.AuthDone(outcome, _serial(d, which))
    if kind == "resolved":
        pid = draw(st.sampled_from([CARD_PATRON, None]))
        unavailable = draw(st.booleans())
        which = draw(SERIAL)
        return lambda d: ev.PatronResolved(pid, unavailable=unavailable, serial=_serial(d, which))
    if kind == "loaded":
        st_ = draw(st.sampled_from([
            status(), status(limit=2), status(password_ok=False), status(password_ok=True),
            status(valid=False), status(blocked=("x",)), None,
        ]))
        refusal = draw(st.sampled_from([None, Refusal.OFFLINE, Refusal.PATRON_BLOCKED]))
        which = draw(SERIAL)
        return lambda d: ev.PatronLoaded(st_, refusal, _serial(d, which))
    if kind == "barcode":
        code = draw(BARCODES)
        return lambda d: ev.Barcode(code)
    if kind == "item_done":
        index = draw(st.integers(0, 5))
        ok = draw(st.booleans())
        due = draw(st.sampled_from([date(2025, 5, 1), None]))
        refusal = draw(st.sampled_from([None, Refusal.ON_HOLD]))

        def item_done(d):
            txn = d.txn_ids[-1 - index] if index < len(d.txn_ids) else "txn-unknown"
            return ev.ItemDone(LoanResult(txn, ok, ITEM_A, "T", due if ok else None, "", refusal))
        return item_done
    if kind == "press":
        action = draw(ACTIONS)
        if action == "digit":
            value = draw(DIGITS)
        elif action == "language":
            value = draw(st.sampled_from(["en", "ko", "xx", None]))
        else:
            value = None
        return lambda d: ev.Press(action, value)
    if kind == "tick":
        return lambda d: ev.Tick()
    if kind == "oos":
        on = draw(st.booleans())
        return lambda d: ev.SetOutOfService(on)
    on = draw(st.booleans())
    return lambda d: ev.SetOfflineLending(on)


def _run(d: SessionDriver, make, gap: float, pins: list, ledger: dict) -> None:
    d.now += gap
    event = make(d)
    out = d.send(event)
    for e in out:
        # Play the shell: zero handed-over secrets, and keep the loan ledger.
        if isinstance(e, fx.Authenticate):
            ledger["handed"].add(id(e.pin))
            e.pin[:] = bytes(len(e.pin))
        elif isinstance(e, fx.LoadPatron) and e.password is not None:
            ledger["handed"].add(id(e.password))
            e.password[:] = bytes(len(e.password))
        elif isinstance(e, fx.Checkout):
            assert e.loan.txn_id not in ledger["checkout"], "same txn checked out twice"
            ledger["checkout"][e.loan.txn_id] = e.loan.offline
        elif isinstance(e, fx.Withdraw):
            assert e.txn_id in ledger["checkout"] and not ledger["checkout"][e.txn_id]
            assert e.txn_id not in ledger["withdrawn"], "withdrawn twice"
            assert e.txn_id not in ledger["settled"], "withdrawn after the catalogue answered"
            ledger["withdrawn"].add(e.txn_id)
    if isinstance(event, ev.ItemDone) and out:      # answered while the row was pending
        ledger["settled"].add(event.result.txn_id)
    pins.append(d.session.p.pin)
    # Never a model with secrets; idle never carries patron data.
    for show in (e for e in out if isinstance(e, fx.Show)):
        assert "pin" not in show.model and "password" not in show.model
        if show.screen == "idle":
            assert set(show.model) == {"language", "countdown", "card_reminder", "test_pki", "notice",
                                       "reader_ok", "library_card", "help"} | (
                                           {"card_number"} if show.model["library_card"] else set())
            assert show.model["test_pki"] is False and show.model["countdown"] is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.tuples(some_events(), st.sampled_from([0.0, 0.5, 3.0, 20.0, 70.0])), max_size=40),
    offline=st.booleans(),
    receipt=st.booleans(),
    password=st.booleans(),
)
def test_any_sequence_ends_back_at_idle_with_nothing_left(steps, offline, receipt, password):
    d = SessionDriver(settings=SessionSettings(offline_lending=offline, receipt_printer=receipt,
                                               library_card_password=password))
    pins: list[bytearray] = [d.session.p.pin]
    ledger: dict = {"handed": set(), "checkout": {}, "withdrawn": set(), "settled": set()}
    for makers, gap in steps:
        for i, make in enumerate(makers):
            _run(d, make, gap if i == 0 else 0.0, pins, ledger)
        event("reached " + d.screen)

    # The patron walks away: card out, staff put the kiosk back in service, time passes.
    for make in (lambda d: ev.CardRemoved(), lambda d: ev.SetOutOfService(False)):
        _run(d, make, 0.0, pins, ledger)
    longest = max(SECONDS.values())
    for _ in range(4 * int(longest) // 5):                      # every chain of timeouts, 5 s a tick
        _run(d, lambda d: ev.Tick(), 5.0, pins, ledger)

    s = d.session
    assert s.screen == "idle"
    assert not s.in_session
    assert s.p.method is None and s.p.patron_id is None and s.p.status is None and s.p.identity is None
    assert s.p.rows == [] and s.p.error is None and s.p.tries_left is None and s.p.password_failures == 0
    assert len(s.p.pin) == 0
    assert s.language == "ja"
    assert d.model["language"] == "ja" and d.model["card_reminder"] is False
    for pin in pins:
        if id(pin) not in ledger["handed"]:
            assert len(pin) == 0, "a PIN buffer was dropped without being wiped"
    # No loan left hanging: every online checkout was answered or withdrawn, never both.
    for txn, was_offline in ledger["checkout"].items():
        if not was_offline:
            assert (txn in ledger["settled"]) != (txn in ledger["withdrawn"]), txn
    assert d.run_for(60, step=5) == []                          # and it stays quiet
