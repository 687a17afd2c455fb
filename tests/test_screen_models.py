"""The typed model of each screen (kiosk/core/screen_models.py): one per screen the view
draws, `check_model` refusing what does not fit, and the view refusing to draw it.

Every model the session and staff machines emit in the other tests is checked by their
drivers (kiosk_testing/checked_models.py); these tests check the checker.
"""

from __future__ import annotations

import logging

import pytest

from kiosk.core.screen_models import MODELS, ScreenModelError, check_model
from kiosk.core.session import SCREENS
from kiosk.logs import check_fields
from kiosk_testing.manual_loop import RecordingView
from kiosk_testing.session_driver import SessionDriver

CANARY = "秘密のカナリア本"


def idle(**kw) -> dict:
    m = dict(language="ja", countdown=None, card_reminder=False, test_pki=False, notice=None, reader_ok=True,
             library_card=True, help=False)
    m.update(kw)
    return m


def row(**kw) -> dict:
    r = dict(txn_id="t1", item_id="10000001", state="ok", title=CANARY, due="2025-04-15", refusal=None,
             offline=False)
    r.update(kw)
    return r


def scanning(**kw) -> dict:
    m = dict(language="ja", countdown=None, card_reminder=False, test_pki=False, notice=None, rows=[row()], lent=1,
             pending=0, allowance=None, name=None, holds_ready=0, offline=False)
    m.update(kw)
    return m


def refusal(screen: str, model: object) -> ScreenModelError:
    with pytest.raises(ScreenModelError) as caught:
        check_model(screen, model)
    return caught.value


def test_every_screen_the_view_draws_has_a_model_type_and_no_other():
    from kiosk.screens.view import SCREEN_CLASSES

    assert set(MODELS) == set(SCREEN_CLASSES)


@pytest.mark.parametrize("screen", SCREENS)
def test_every_session_screen_reached_the_ordinary_way_fits_its_type(screen):
    d = SessionDriver().drive_to(screen)            # the driver checks every Show on the way
    check_model(screen, d.model)


def test_a_model_that_fits_passes():
    check_model("idle", idle())
    check_model("idle", idle(countdown=12, notice="sign_in_first"))
    check_model("scanning", scanning(rows=[], allowance=3, name="Maria"))
    check_model("staff_confirm", dict(countdown=None, notice=None, action="shutdown"))


def test_a_missing_key_is_refused_by_name():
    model = idle()
    del model["help"]
    e = refusal("idle", model)
    assert (e.screen, e.key, e.problem) == ("idle", "help", "missing key")


def test_an_unexpected_key_is_refused_by_name():
    e = refusal("idle", idle(rows=[]))
    assert (e.screen, e.key, e.problem) == ("idle", "rows", "unexpected key")
    e = refusal("staff_menu", dict(countdown=None, notice=None, staff_id="s01", out_of_service=False,
                                   offline_lending=False, registration=True, language="ja"))
    assert e.key == "language"                  # staff screens have no language of their own


@pytest.mark.parametrize("key, value", [
    ("reader_ok", "yes"),           # str for bool
    ("countdown", "12"),            # str for int | None
    ("countdown", True),            # a bool is no count
    ("countdown", 1.5),
    ("language", None),             # not None-able
    ("notice", 3),
])
def test_a_wrong_type_is_refused_by_name(key, value):
    e = refusal("idle", idle(**{key: value}))
    assert (e.screen, e.key, e.problem) == ("idle", key, "wrong type for")


def test_values_a_screen_chooses_between_are_held_to_their_choices():
    pin = dict(language="ja", countdown=None, card_reminder=False, test_pki=False, notice=None, purpose="kard",
               digits=0, max_digits=4, tries_left=3)
    assert refusal("pin", pin).key == "purpose"
    assert refusal("scanning", scanning(rows={})).key == "rows"


def test_rows_are_checked_one_by_one():
    assert refusal("scanning", scanning(rows=[row(), row(state="lent")])).key == "rows[1].state"
    assert refusal("scanning", scanning(rows=[row(title=None)])).key == "rows[0].title"
    assert refusal("summary", dict(language="ja", countdown=None, card_reminder=False, test_pki=False, notice=None,
                                   rows=[row(extra=1)], receipt_available=False, due=None)).key == "rows[0].extra"
    assert refusal("scanning", scanning(rows=["t1"])).key == "rows[0]"


def test_an_unknown_screen_or_a_model_that_is_no_dict_is_refused():
    e = refusal("checkout", idle())
    assert (e.screen, e.key, e.problem) == ("checkout", None, "unknown screen")
    assert refusal("idle", [("language", "ja")]).problem == "model is not a dict"


def test_the_refusal_names_the_key_never_the_value():
    e = refusal("scanning", scanning(name=[CANARY]))
    assert e.key == "name" and CANARY not in str(e)
    e = refusal("scanning", scanning(rows=[row(due=CANARY.encode())]))
    assert e.key == "rows[0].due" and CANARY not in str(e)


def test_the_recording_view_refuses_like_the_real_one(refused_models):
    view = RecordingView()
    view.show("idle", idle())
    view.show("idle", idle(help=None))
    assert view.shown == [("idle", idle())]
    assert refused_models == [("idle", "help")]
    refused_models.clear()


# -- the real view ------------------------------------------------------------------------


@pytest.mark.ui
def test_the_view_refuses_to_draw_a_broken_model_and_logs_only_screen_and_key(make_view, kivy_window, caplog,
                                                                             refused_models):
    view, _ = make_view()
    view.show("idle", idle())
    kivy_window.settle()
    assert view.current == "idle"
    with caplog.at_level(logging.ERROR, logger="kiosk.screens"):
        broken = scanning(name=CANARY)
        del broken["lent"]
        view.show("scanning", broken)                               # a new screen: not drawn
        kivy_window.settle()
        assert view.current == "idle" and "scanning" not in view.screens
        view.show("idle", idle(help="open"))                        # the current screen: not redrawn
        kivy_window.settle()
        assert view._model == idle() and view.screens["idle"].help_overlay is None
    assert refused_models == [("scanning", "lent"), ("idle", "help")]
    refused_models.clear()
    records = [r for r in caplog.records if r.getMessage() == "view.model_refused"]
    assert [r.kiosk_fields for r in records] == [
        {"screen": "scanning", "key": "lent", "problem": "missing key"},
        {"screen": "idle", "key": "help", "problem": "wrong type for"},
    ]
    for r in records:
        check_fields(r.kiosk_fields)
    assert CANARY not in caplog.text and not any(CANARY in t for t in view.texts())
    view.show("scanning", scanning(name="Maria"))                  # a good model is drawn as before
    kivy_window.settle()
    assert view.current == "scanning"


@pytest.mark.ui
def test_an_unknown_screen_is_still_only_a_warning(make_view, kivy_window, caplog, refused_models):
    view, _ = make_view()
    view.show("idle", idle())
    with caplog.at_level(logging.WARNING, logger="kiosk.screens"):
        view.show("checkout", idle())
    kivy_window.settle()
    assert view.current == "idle" and refused_models == []
    assert [r.getMessage() for r in caplog.records if r.name == "kiosk.screens"] == ["view.unknown_screen"]
