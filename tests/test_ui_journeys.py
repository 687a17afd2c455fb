"""Patron journeys through the whole kiosk, drawn in a real Kivy window.

The real controller, session, virtual My Number Card (demo PKI), local catalogue,
encrypted outbox and its worker run as in `kiosk demo`; touches are real touch
events on the real buttons and barcodes come in as keyboard-wedge keystrokes.
Only the controller's clock is fake (for timeouts) and its loop is pumped here.
"""

from __future__ import annotations

import math

import pytest

from kiosk.i18n import translator

pytestmark = pytest.mark.ui

PIN = "1234"          # every demo card's user-authentication PIN
WRONG = "9999"


def sign_in(k, card: str = "registered-1", pin: str = PIN) -> dict:
    k.services.demo.insert_card(card)
    k.until("pin")
    k.enter_pin(pin)
    k.until("take_card")
    k.services.demo.remove_card()
    return k.until("scanning")


def scan(k, code: str, state: str | None = None) -> dict:
    before = len(k.model.get("rows") or [])
    k.h.type_keys(code)
    k.pump()
    if state is None:
        return k.until_model(lambda m: len(m.get("rows") or []) > before)
    return k.until_model(lambda m: len(m.get("rows") or []) > before and m["rows"][-1]["state"] == state)


def secrets_left(k, *secrets: str) -> list[str]:
    return [s for s in secrets if any(s in text for text in k.view.texts())]


def test_happy_path_with_my_number_card(ui_kiosk):
    k = ui_kiosk
    assert k.screen == "idle"
    k.services.demo.insert_card("registered-1")
    model = k.until("pin")
    assert model["tries_left"] == 3
    assert k.view.screens["pin"].dots.text == "○ ○ ○ ○"
    for d in PIN[:3]:
        k.tap(f"digit:{d}")
    assert k.view.screens["pin"].dots.text == "● ● ● ○"
    k.tap(f"digit:{PIN[3]}")
    k.tap("ok")
    k.until("take_card")
    assert k.view.find("badge:test") is not None           # signed by the demo (test) PKI
    assert k.view.light_pattern == "card_left"              # take your card back
    k.services.demo.remove_card()
    k.until("scanning")
    scan(k, "10000001", "ok")
    model = scan(k, "10000002", "ok")
    screen = k.view.screens["scanning"]
    assert {r.heading.text for r in screen.list.rows.values()} == {"吾輩は猫である", "坊っちゃん"}
    assert all("返却期限" in r.detail.text for r in screen.list.rows.values())
    assert screen.counts.text.startswith("貸出：2冊")
    assert k.view.last_cue == "accepted" and k.view.light_pattern == "success"
    k.tap("finish")
    k.until("summary")
    assert k.view.screens["summary"].count.text == "借りた本：2冊"
    k.tap("done")
    k.until("thank_you")
    k.elapse(9)
    k.until("idle")
    assert secrets_left(k, "吾輩は猫である", "坊っちゃん", "10000001", "20000001") == []
    assert k.services.catalogue.loans_of("20000001") == ["10000001", "10000002"]


def test_library_card_and_password_journey_in_english(ui_kiosk):
    k = ui_kiosk
    k.tap("language:en")
    assert k.model["language"] == "en"
    assert k.view.screens["idle"].title.text == translator("en")("idle.title")
    k.tap("library_card")
    k.until("library_card")
    k.h.type_keys("10000001")                              # a book, not a library card
    k.pump()
    k.until_model(lambda m: m.get("notice") == "not_a_library_card")
    assert "not a library card" in k.view.find("notice:not_a_library_card").message.text
    k.h.type_keys("20000001")
    model = k.until("pin")
    assert model["purpose"] == "library" and model["language"] == "en"
    assert k.view.screens["pin"].title.text == "Enter your library card password"
    k.enter_pin("1234")
    k.until("scanning")                                    # no card to take back
    scan(k, "10000003", "ok")
    assert "Due " in next(iter(k.view.screens["scanning"].list.rows.values())).detail.text
    k.tap("finish")
    k.until("summary")
    k.tap("done")
    k.until("thank_you")
    k.tap("done")
    k.until("idle")
    assert k.model["language"] == "ja"                     # the next patron starts in Japanese
    assert k.view.screens["idle"].title.text == translator("ja")("idle.title")


def test_wrong_pin_shows_tries_left_then_the_right_pin_works(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("registered-2")
    k.until("pin")
    k.enter_pin(WRONG)
    model = k.until_model(lambda m: m.get("notice") == "pin_wrong")
    assert k.screen == "pin" and model["tries_left"] == 2
    assert k.view.find("notice:pin_wrong") is not None
    assert "2" in k.view.screens["pin"].tries.text and "⚠" in k.view.screens["pin"].tries.text
    assert k.view.screens["pin"].dots.text == "○ ○ ○ ○"
    k.enter_pin(PIN)
    k.until("take_card")


def test_last_try_warns_and_cancel_spends_nothing(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("pin-1-try")
    k.until("last_try")
    assert k.view.find("digit:1") is None
    k.tap("cancel")
    k.until("idle")
    assert k.view.screens["idle"].frame is not None
    k.services.demo.remove_card()
    k.pump()
    k.services.demo.insert_card("pin-1-try")
    k.until("last_try")                                    # still one try: nothing was spent
    k.tap("confirm_last_try")
    k.until("pin")
    k.enter_pin(PIN)
    k.until("take_card")


def test_locked_pin_sends_the_patron_to_the_city_office(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("pin-locked")
    model = k.until("error")
    assert model["code"] == "pin_locked" and model["counter"] is True
    screen = k.view.screens["error"]
    assert screen.message.text == translator("ja")("error.pin_locked")
    assert "カウンター" in screen.counter.text
    assert k.view.last_cue == "refused"
    assert k.view.light_pattern == "card_left"               # the locked card is still in the reader
    k.services.demo.remove_card()
    k.pump()
    assert k.view.light_pattern == "error"
    k.tap("ok")
    k.until("idle")


def test_unregistered_card_is_told_to_link_at_the_counter(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("unregistered")
    k.until("pin")
    k.enter_pin(PIN)
    model = k.until("error")
    assert model["code"] == "not_registered"
    assert "カウンターで登録できます" in k.view.screens["error"].message.text


def test_refused_item_shows_the_reason_in_words(ui_kiosk):
    k = ui_kiosk
    sign_in(k)
    scan(k, "10000007", "refused")                         # on hold for another patron
    scan(k, "10000008", "refused")                         # a CD: counter only
    rows = k.view.screens["scanning"].list.rows
    details = sorted(r.detail.text for r in rows.values())
    assert any("予約" in d for d in details) and any("カウンターで貸し出します" in d for d in details)
    assert all(r.kind == "refused" and "✕" in r.mark.text for r in rows.values())
    assert k.view.last_cue == "refused" and k.view.light_pattern == "refused"


def test_over_the_limit(ui_kiosk):
    k = ui_kiosk
    model = sign_in(k, "registered-3")                     # 8 of 10 already on loan
    assert model["allowance"] == 2
    scan(k, "10000001", "ok")
    scan(k, "10000002", "ok")
    model = scan(k, "10000003", "refused")
    assert model["rows"][-1]["refusal"] == "limit_reached"
    # not "あと 0 冊借りられます": the limit in words (wording review #7)
    assert k.view.screens["scanning"].counts.text.splitlines()[:2] == ["貸出：2冊", "貸出冊数の上限に達しました"]


def test_language_switch_mid_session_redraws_every_text(ui_kiosk):
    k = ui_kiosk
    sign_in(k)
    scan(k, "10000001", "ok")
    k.tap("language:ko")
    screen = k.view.screens["scanning"]
    assert screen.title.text == translator("ko")("scan.title")
    assert "반납일" in next(iter(screen.list.rows.values())).detail.text
    assert screen.title.font_name == "Kiosk-ko"
    k.tap("language:vi")
    assert screen.finish.text.endswith("Hoàn tất")


@pytest.mark.parametrize("screen", ["pin", "last_try", "library_card", "take_card", "scanning", "summary",
                                    "error", "thank_you"])
def test_timeout_on_every_screen_with_a_countdown_and_more_time(ui_kiosk, screen):
    k = ui_kiosk
    reach = {
        "pin": lambda: (k.services.demo.insert_card("registered-1"), k.until("pin")),
        "last_try": lambda: (k.services.demo.insert_card("pin-1-try"), k.until("last_try")),
        "library_card": lambda: (k.tap("library_card"), k.until("library_card")),
        "take_card": lambda: (k.services.demo.insert_card("registered-1"), k.until("pin"), k.enter_pin(PIN),
                              k.until("take_card")),
        "scanning": lambda: (sign_in(k), scan(k, "10000001", "ok")),
        "summary": lambda: (sign_in(k), scan(k, "10000001", "ok"), k.tap("finish"), k.until("summary")),
        "error": lambda: (k.services.demo.insert_card("pin-locked"), k.until("error")),
        "thank_you": lambda: (sign_in(k), k.tap("finish"), k.until("thank_you")),
    }
    reach[screen]()
    timeouts = k.controller.session.settings.timeouts
    limit = timeouts.for_screen(screen)
    warning = timeouts.warning
    if limit > warning + 2:
        k.elapse(limit - warning - 2)
        assert k.view.find("more_time") is None            # no countdown before the warning
    k.elapse(4)
    assert k.screen == screen
    bar = k.view.screens[screen].countdown
    assert bar.seconds is not None and bar.seconds <= warning
    k.tap("more_time")
    if limit > warning:
        assert k.view.find("more_time") is None            # the clock starts again
    else:
        assert bar.seconds == math.ceil(limit)             # short screens count down from the start
    k.elapse(limit - 1)
    assert k.screen == screen
    k.elapse(3)
    assert k.screen == "idle"
    assert secrets_left(k, "吾輩は猫である", "10000001") == []
    if screen == "take_card":
        assert k.view.find("card_reminder", "idle") is not None   # the card is still in the reader


def test_a_forgotten_card_is_reminded_on_every_screen_until_taken(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("registered-1")
    k.until("pin")
    k.enter_pin(PIN)
    k.until("take_card")
    k.tap("cancel")
    k.until("idle")
    assert k.view.find("card_reminder") is not None
    k.elapse(5)
    assert k.view.light_pattern == "card_left" and k.view.last_cue == "card_reminder"
    k.services.demo.remove_card()
    k.pump()
    k.h.settle()
    assert k.view.find("card_reminder") is None


def test_demo_panel_drives_the_real_kiosk(ui_kiosk):
    from kiosk.screens.demo_panel import DemoControls, DemoPanel

    k = ui_kiosk
    assert isinstance(k.services.demo, DemoControls)
    panel = DemoPanel(k.services.demo, k.view.theme, size_hint=(None, None), size=(320, 600), pos=(0, 0))
    k.view.add_listener(panel.on_view_event)
    k.view.add_widget(panel)
    try:
        k.h.settle()
        k.h.tap(panel.card_buttons["registered-1"])
        k.until("pin")
        assert panel.lamps.states == (False, False, False) or panel.pattern in ("busy", "ready")
        k.enter_pin(PIN)
        k.until("take_card")
        panel.scroll.scroll_to(panel.remove, animate=False)
        k.h.settle()
        k.h.tap(panel.remove)
        k.until("scanning")
        book = next(b for b in panel.barcode_buttons if b.value == "10000001")
        panel.scroll.scroll_to(book, animate=False)
        k.h.settle()
        k.h.tap(book)
        k.pump()
        k.until_model(lambda m: any(r["state"] == "ok" for r in m.get("rows") or []))
        assert panel.pattern == "success" and panel.lamps.states == (True, False, False)
        assert panel.sound == "accepted"
        assert "成功" in panel.lights_label.text
    finally:
        k.view.remove_widget(panel)


def test_catalogue_gone_mid_session_finishing_times_out_to_unconfirmed_rows(ui_kiosk):
    k = ui_kiosk
    sign_in(k)
    k.services.catalogue.available = False                # the ILS stops answering
    scan(k, "10000001", "pending")
    k.tap("finish")
    model = k.until("finishing")
    assert model["pending"] == 1
    assert "1" in k.view.screens["finishing"].detail.text
    k.elapse(k.controller.session.settings.timeouts.for_screen("finishing") + 1)
    model = k.until("summary")
    assert model["notice"] == "not_confirmed"
    summary = k.view.screens["summary"]
    row = next(iter(summary.list.rows.values()))
    assert row.kind == "unconfirmed" and "カウンター" in row.detail.text
    assert "カウンター" in summary.note.text
    k.tap("done")
    k.until("thank_you")


@pytest.mark.parametrize("screen", ["pin", "scanning", "summary", "error"])
def test_controls_never_move_when_the_countdown_appears(ui_kiosk, screen):
    """The countdown's room is kept free: the patron's finger is on the same button before
    and after "Returning to the start in …" appears, and a tap there still reaches it."""
    k = ui_kiosk
    reach = {
        "pin": lambda: (k.services.demo.insert_card("registered-1"), k.until("pin")),
        "summary": lambda: (sign_in(k), scan(k, "10000001", "ok"), k.tap("finish"), k.until("summary")),
        "error": lambda: (k.services.demo.insert_card("pin-locked"), k.until("error")),
        "scanning": lambda: (sign_in(k), scan(k, "10000001", "ok")),
    }
    reach[screen]()
    k.h.settle()
    from kiosk.screens.widgets.buttons import KButton

    def places() -> dict[str, tuple]:
        return {w.ident: (*w.to_window(w.x, w.y), w.width, w.height)
                for w in k.view.screens[screen].walk(restrict=True)
                if isinstance(w, KButton) and w.ident and w.ident != "more_time" and w.opacity > 0}

    before = places()
    assert before and k.view.find("more_time") is None
    timeouts = k.controller.session.settings.timeouts
    k.elapse(max(0.0, timeouts.for_screen(screen) - timeouts.warning) + 1)
    k.h.settle()
    assert k.screen == screen and k.view.find("more_time") is not None
    assert places() == before
    k.tap("more_time")                     # the bar's own button works, and the rest stay put
    k.h.settle()
    assert k.screen == screen and places() == before



def test_a_book_scanned_twice_is_already_on_the_list_not_refused(ui_kiosk):
    k = ui_kiosk
    sign_in(k)
    scan(k, "10000001", "ok")
    k.view.last_cue = None
    k.h.type_keys("10000001")
    k.pump()
    model = k.until_model(lambda m: m.get("notice") == "already_on_list")
    assert [r["state"] for r in model["rows"]] == ["ok"]                 # listed once, as borrowed
    banner = k.view.find("notice:already_on_list")
    assert banner is not None and banner.kind == "info"                  # no warning colour
    assert "すでに貸出リストにあります" in banner.message.text
    assert k.view.last_cue is None and k.view.light_pattern != "refused"
    rows = k.view.screens["scanning"].list.rows
    assert [r.kind for r in rows.values()] == ["ok"]
    k.tap("finish")
    k.until("summary")
    assert [r["state"] for r in k.model["rows"]] == ["ok"]


def test_a_new_card_while_an_error_shows_starts_a_new_reading(ui_kiosk):
    k = ui_kiosk
    k.services.demo.insert_card("pin-locked")
    k.until("error")
    k.services.demo.remove_card()
    k.pump()
    assert k.screen == "error"
    k.services.demo.insert_card("registered-1")       # another card, the error still on screen
    k.until("pin")
    k.enter_pin(PIN)
    k.until("take_card")
    k.services.demo.remove_card()
    k.until("scanning")
    k.tap("finish")
    k.until("thank_you")
    k.elapse(k.controller.session.settings.timeouts.for_screen("thank_you") + 1)
    k.until("idle")
    assert k.model.get("card_reminder") is False              # no card asked back at idle


def test_the_demo_staff_account_opens_staff_mode(ui_kiosk):
    """README: badge S00001 and staff PIN 2468 (the demo config's own account)."""
    k = ui_kiosk
    k.h.type_keys("S00001")
    k.pump()
    k.until("staff_signin")
    for d in "2468":
        k.tap(f"digit:{d}")
    k.tap("ok")
    k.until("staff_menu")
    k.tap("exit")
    k.until("idle")


@pytest.mark.parametrize("card, code", [("expired", "cert_expired"), ("not-yet-valid", "cert_not_yet_valid")])
def test_a_bad_certificate_is_refused_before_the_pin_pad_and_offers_the_library_card(ui_kiosk, apdu_log,
                                                                                     card, code):
    """Issue 16: the certificate is read and checked before the PIN pad (no PIN asked, no try
    spent); the error screen leads to the library-card sign-in, in the patron's language."""
    k = ui_kiosk
    shown: list[str] = []
    real_show = k.view.show
    k.view.show = lambda screen, model: (shown.append(screen), real_show(screen, model))[1]
    k.tap("language:en")
    k.services.demo.insert_card(card)
    model = k.until("error")
    assert model["code"] == code and model["library_card"] is True
    assert "pin" not in shown and "last_try" not in shown
    assert not [r for r in apdu_log if r.apdu[1] == 0x20 and len(r.apdu) > 4]     # no VERIFY with a PIN
    screen = k.view.screens["error"]
    assert screen.message.text == translator("en")(f"error.{code}")
    assert k.view.find("library_card").text == translator("en")("idle.library_card")
    k.services.demo.remove_card()
    k.pump()
    k.tap("library_card")
    k.until("library_card")
    k.h.type_keys("20000001")
    model = k.until("pin")
    assert model["purpose"] == "library" and model["language"] == "en"
    k.enter_pin("1234")
    k.until("scanning")
    scan(k, "10000003", "ok")
    k.tap("finish")
    k.until("summary")
    k.tap("done")
    k.until("thank_you")
    k.tap("done")
    k.until("idle")
    assert k.services.catalogue.loans_of("20000001") == ["10000003"]
    # The same card again, on a new session: read and refused again (no verdict kept), and a
    # card-removed error offers no library card.
    k.services.demo.insert_card(card)
    assert k.until("error")["code"] == code
    k.services.demo.remove_card()
    k.tap("ok")
    k.until("idle")


def test_a_library_card_number_typed_on_the_keypad(ui_kiosk):
    """Issue 16: the barcode will not scan, so the patron types the number on the idle
    screen's keypad; it meets the library-card rules (a book's number is refused)."""
    k = ui_kiosk
    k.tap("card_number")
    k.until("card_number")
    screen = k.view.screens["card_number"]
    assert screen.title.text == translator("ja")("card_number.title")
    for d in "10000001":                                   # a book's number, not a library card
        k.tap(f"digit:{d}")
    assert screen.dots.text == "10000001"
    k.tap("ok")
    k.until_model(lambda m: m.get("notice") == "not_a_library_card")
    assert k.view.last_cue == "refused" and k.model["number"] == ""
    for d in "200000019":
        k.tap(f"digit:{d}")
    k.tap("delete")
    assert screen.dots.text == "20000001"
    k.tap("ok")
    model = k.until("pin")
    assert model["purpose"] == "library"
    k.enter_pin("1234")
    k.until("scanning")
    scan(k, "10000002", "ok")
    k.tap("finish")
    k.until("summary")
    k.tap("done")
    k.until("thank_you")
    k.tap("done")
    k.until("idle")
    assert k.services.catalogue.loans_of("20000001") == ["10000002"]
    assert secrets_left(k, "20000001") == []               # the typed number is wiped with the session


def test_summary_lists_borrowed_books_first_under_one_due_date_and_thanks_names_it(ui_kiosk):
    from kiosk.i18n import format_due

    k = ui_kiosk
    sign_in(k)
    scan(k, "10000007", "refused")                         # scanned first, listed last
    scan(k, "10000001", "ok")
    scan(k, "10000002", "ok")
    k.tap("finish")
    model = k.until("summary")
    due = model["due"]
    assert due and all(r["due"] == due for r in model["rows"] if r["state"] == "ok")
    summary = k.view.screens["summary"]
    k.h.settle()
    top_down = sorted(summary.list.rows.values(), key=lambda w: -w.to_window(*w.pos)[1])
    assert [w.kind for w in top_down] == ["ok", "ok", "refused"]
    assert [w.heading.text for w in top_down[:2]] == ["吾輩は猫である", "坊っちゃん"]
    date_ja = format_due(due, "ja")
    assert summary.due.text == f"返却期限：{date_ja}"      # said once, above the list
    assert not any("返却期限" in w.detail.text for w in top_down)
    k.tap("done")
    k.until("thank_you")
    assert k.view.screens["thank_you"].detail.text == f"{date_ja}までにお返しください。"
    k.tap("done")
    k.until("idle")
    sign_in(k)
    k.tap("finish")                                        # nothing borrowed: no date to name
    k.until("thank_you")
    assert k.view.screens["thank_you"].detail.text == ""


def test_scanning_shows_where_to_scan_and_cancel_until_the_first_book(ui_kiosk):
    from kiosk.screens.widgets.drawings import ScannerArt

    k = ui_kiosk
    sign_in(k)
    screen = k.view.screens["scanning"]
    art = screen.where
    assert isinstance(art, ScannerArt) and art.get_root_window() is not None and art.height > 40
    assert k.view.find("cancel").text == "借りずにやめる"
    scan(k, "10000001", "ok")
    assert k.view.find("cancel") is None and art.get_root_window() is None   # the rows took their room
    k.tap("finish")
    k.until("summary")                                     # the loan stands: only Finish ends this visit
    k.tap("done")
    k.until("thank_you")
    k.tap("done")
    k.until("idle")
    sign_in(k)
    k.tap("cancel")                                        # nothing borrowed: straight back to the start
    k.until("idle")
    assert k.services.catalogue.loans_of("20000001") == ["10000001"]


@pytest.fixture(params=[(1024, 600, 170), (800, 480, 131), (720, 1280, 210)], ids=["1024x600", "800x480", "720x1280"])
def sized_kiosk(request, kivy_window, tmp_path, demo_pki):
    """The demo kiosk on one of the matrix's panels (the window is put back afterwards)."""
    from kivy.metrics import Metrics

    from kiosk_testing.kivy_app import running_kiosk

    size, dpi = tuple(kivy_window.Window.size), Metrics.dpi
    kivy_window.set_size(*request.param)
    try:
        with running_kiosk(kivy_window, tmp_path, demo_pki) as kiosk:
            yield kiosk
    finally:
        kivy_window.set_size(*size, dpi)


def test_a_language_swap_keeps_the_badges_and_language_buttons_in_place(sized_kiosk):
    k = sized_kiosk
    k.services.demo.insert_card("registered-1")
    k.until("pin")
    k.enter_pin(PIN)
    k.until("take_card")                                   # a test card: TEST and DEMO badges both shown
    langs = k.controller.session.settings.languages

    portrait = k.view.theme.portrait

    def geometry() -> tuple:
        header = k.view.screens[k.screen].header
        # In portrait the buttons have a row of their own: there the badges fit their words
        # (the name needs the room), and only the buttons must stay put.
        badges = () if portrait else tuple(round(b.width) for b in header.badges.children)
        buttons = tuple((round(x), round(y), round(b.width), round(b.height)) for b in
                        (k.view.find(f"language:{lang}") for lang in langs) for x, y in [b.to_window(*b.pos)])
        return badges, buttons

    assert k.view.find("badge:test") is not None and k.view.find("badge:demo") is not None
    before = geometry()
    for lang in (*langs[1:], langs[0]):
        k.tap(f"language:{lang}")
        k.h.settle()
        assert k.model["language"] == lang
        assert geometry() == before, lang
    k.services.demo.remove_card()
    k.until("scanning")
