"""Staff screens in a real Kivy window: drawn from kiosk/core/staff.py's models, opened by the
hidden corner gesture, and driven end to end through the real controller, store,
outbox, local catalogue and virtual My Number Card (counter registration).

Assertions are on widget state, not pixels; screenshots of every staff screen in
Japanese and English go to test-artifacts/screens/<lang>/staff_*.png.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from kiosk.i18n import translator
from kiosk.screens.widgets.layout import layout_overflow
from kiosk_testing.kivy_app import ARTIFACTS, running_kiosk

pytestmark = pytest.mark.ui

LANGS = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
STAFF_PIN = "2468"
PATRON_CARD = "20000003"


def conflicts() -> list[dict]:
    return [
        dict(id="c1", item_id="10000007", patron_id="20000001", reason="refused", refusal="on_hold", offline=True,
             recorded_at="2025-04-01T10:15"),
        dict(id="c2", item_id="10000009", patron_id="20000002", reason="catalogue said: blocked", refusal=None,
             offline=False, recorded_at="2025-04-02T16:40"),
    ]


STATUS = {"reader": "ok", "scanner": "wedge", "catalogue": "failing (3)", "catalogue_error": "tls",
          "outbox_pending": 2, "oldest_pending": "2025-04-01T10:15", "last_sync": "", "conflicts": 1,
          "config_version": "42", "app_version": "0.1.0", "disk_free_mb": 5120, "uptime_s": 7380}


def staff_model(screen: str, **extra) -> dict:
    """Models as kiosk/core/staff.py sends them (its docstring lists the keys)."""
    m: dict = dict(countdown=None, notice=None)
    m.update({
        "staff_signin": dict(badge=False, digits=3, locked_for=None),
        "staff_menu": dict(staff_id="s01", out_of_service=False, offline_lending=False, registration=True),
        "staff_status": dict(status=STATUS),
        "staff_review": dict(conflicts=conflicts()),
        "staff_selftest": dict(results={"lights": "running", "scanner": {"result": "scanned", "n": 8},
                                        "reader": {"result": "card", "kind": "my_number_card", "tries": 3}}),
        "staff_confirm": dict(action="restart"),
        "staff_register": dict(step="insert", digits=0, tries_left=None, patron_id=None, valid_until=None,
                               linked_before=False, error=None),
    }[screen])
    m.update(extra)
    return m


def idle_model(lang: str) -> dict:
    """The patron idle screen's model, for leaving staff screens."""
    return dict(language=lang, countdown=None, card_reminder=False, test_pki=False, notice=None, reader_ok=True,
                library_card=True, help=False)


# name of the screenshot -> (screen, model overrides): the busiest variant of each screen and every
# registration step.
VARIANTS = {
    "staff_signin": ("staff_signin", dict(notice="wrong_pin", countdown=9)),
    "staff_signin_locked": ("staff_signin", dict(notice="locked", locked_for=840, digits=0)),
    "staff_menu": ("staff_menu", dict(out_of_service=True, notice="sync_started")),
    "staff_status": ("staff_status", {}),
    "staff_review": ("staff_review", {}),
    "staff_selftest": ("staff_selftest", {}),
    "staff_confirm_restart": ("staff_confirm", {}),
    "staff_confirm_shutdown": ("staff_confirm", dict(action="shutdown")),
    "staff_register_insert": ("staff_register", {}),
    "staff_register_pin": ("staff_register", dict(step="pin", digits=2, tries_left=2, notice="pin_wrong")),
    "staff_register_last_try": ("staff_register", dict(step="last_try", tries_left=1)),
    "staff_register_authenticating": ("staff_register", dict(step="authenticating")),
    "staff_register_pin2": ("staff_register", dict(step="pin2", digits=4, tries_left=3)),
    "staff_register_reading": ("staff_register", dict(step="reading")),
    "staff_register_scan": ("staff_register", dict(step="scan", notice="not_a_library_card")),
    "staff_register_confirm": ("staff_register", dict(step="confirm", patron_id=PATRON_CARD,
                                                      valid_until="2030-03-31", linked_before=True, countdown=12)),
    "staff_register_linking": ("staff_register", dict(step="linking", patron_id=PATRON_CARD)),
    "staff_register_done": ("staff_register", dict(step="done", patron_id=PATRON_CARD)),
    "staff_register_error": ("staff_register", dict(step="error", error="second_pin_locked")),
}


def show(view, h, screen: str, **extra):
    view.show(screen, staff_model(screen, **extra))
    h.settle()
    return view.screens[screen]


def find(view, ident: str):
    w = view.find(ident)
    assert w is not None, f"no widget {ident!r} on {view.current}"
    return w


def hold(h, x: float, y: float, seconds: float) -> None:
    """A real touch held down for `seconds` of real time (Kivy's clock runs on it)."""
    from kivy.tests.common import UnitTestTouch

    touch = UnitTestTouch(x, y)
    touch.touch_down()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        h.settle(1)
    touch.touch_up()
    h.settle(2)


def corner(view) -> tuple[float, float]:
    x, y, w, hgt = view.staff_corner.zone()
    return x + w * 0.5, y + hgt * 0.35


# -- drawing -----------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_every_staff_screen_renders_every_string_in_every_language(make_view, kivy_window, lang):
    view, _ = make_view(strict_text=True, default_language=lang)
    for name, (screen, extra) in VARIANTS.items():
        show(view, kivy_window, screen, **extra)
        assert view.manager.current == screen
        assert not layout_overflow(view, kivy_window.Window.size), (lang, name,
                                                                     layout_overflow(view, kivy_window.Window.size)[:3])


@pytest.mark.parametrize("width, height, dpi", [(800, 480, 131), (480, 800, 131), (1920, 1080, 102)])
def test_staff_screens_fit_small_portrait_and_large_panels(make_view, kivy_window, width, height, dpi):
    kivy_window.set_size(width, height, dpi)
    view, _ = make_view(default_language="pt-BR")          # the longest sentences
    for name, (screen, extra) in VARIANTS.items():
        show(view, kivy_window, screen, **extra)
        problems = layout_overflow(view, (width, height))
        assert not problems, (name, problems[:3])
    show(view, kivy_window, "staff_signin")
    for key in "0123456789":
        assert view.theme.px_to_mm(find(view, f"digit:{key}").height) >= 12 - 1e-6


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_screenshots_of_every_staff_screen(make_view, kivy_window, lang):
    kivy_window.set_size(1024, 600, 170)
    view, _ = make_view(default_language=lang, demo=True)
    for name, (screen, extra) in VARIANTS.items():
        show(view, kivy_window, screen, **extra)
        path = kivy_window.screenshot(ARTIFACTS / lang / f"{name}.png")
        assert path.stat().st_size > 5000


def test_sign_in_masks_the_pin_and_the_lockout_disables_the_pad(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_signin", digits=0)
    for d in "2468":
        kivy_window.tap(find(view, f"digit:{d}"))
    for ident in ("delete", "clear", "ok", "cancel"):
        kivy_window.tap(find(view, ident))
    assert posted.presses() == [("digit", "2"), ("digit", "4"), ("digit", "6"), ("digit", "8"), ("delete", None),
                                ("clear", None), ("ok", None), ("cancel", None)]
    show(view, kivy_window, "staff_signin", digits=4)
    assert screen.dots.text == "●●●●"
    assert view.find("notice:wrong_pin") is None
    show(view, kivy_window, "staff_signin", badge=True, notice="wrong_pin", digits=0)
    assert screen.hint.text == "Badge read. Now enter your PIN."
    assert find(view, "notice:wrong_pin").message.text == "Wrong staff PIN."
    show(view, kivy_window, "staff_signin", locked_for=61, notice="locked")
    assert "2 min" in screen.locked.text and "⚠" in screen.locked.text
    assert find(view, "digit:1").disabled and find(view, "ok").disabled and not find(view, "cancel").disabled


def test_menu_offers_every_action_and_shows_switches_in_words(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_menu", out_of_service=True, offline_lending=False)
    oos, offline = find(view, "out_of_service"), find(view, "offline_lending")
    assert oos.text.endswith("Out-of-service mode: On") and "✓" in oos.text
    assert offline.text == "Offline lending: Off"
    assert "s01" in screen.title.text
    for action in ("register", "out_of_service", "offline_lending", "sync_now", "status", "review", "self_test",
                   "reset", "restart", "shutdown", "exit"):
        kivy_window.tap(find(view, action))
        assert posted.presses()[-1] == (action, None)
    show(view, kivy_window, "staff_menu", notice="reset_done")
    assert find(view, "notice:reset_done").kind == "info"


def test_status_is_a_readable_table(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_status", status={})
    assert "Loading" in " ".join(view.texts())
    show(view, kivy_window, "staff_status")
    values = {k: w.text for k, w in screen.values.items()}
    assert values["reader"] == "OK" and values["catalogue"] == "Connection errors (3 in a row)"
    assert values["disk_free_mb"] == "5120 MB" and values["uptime_s"] == "2 h 3 min"
    assert values["last_sync"] == "—" and values["outbox_pending"] == "2"
    texts = " ".join(view.texts())
    assert "Loans waiting to be sent" in texts and "Software version" in texts
    kivy_window.tap(find(view, "back"))
    assert posted.presses() == [("back", None)]


def test_review_lists_conflicts_with_a_resolve_button_each_and_forgets_them(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_review")
    row = screen.rows["c1"]
    assert "10000007" in row.heading.text and "20000001" in row.heading.text
    assert "reserved" in row.reason.text and "2025-04-01 10:15" in row.detail.text and "offline" in row.detail.text
    # a catalogue's own words become the refusal they mean, in the staff's language
    assert screen.rows["c2"].reason.text == "Reason: " + translator("en")("refusal.patron_blocked")
    kivy_window.tap(find(view, "resolve:c2"))
    assert posted.presses() == [("resolve", "c2")]
    show(view, kivy_window, "staff_review", conflicts=[])
    assert screen.placeholder.text == "Nothing to check."
    show(view, kivy_window, "staff_review")
    view.show("idle", idle_model("en"))
    kivy_window.settle()
    assert not any("20000001" in x or "10000007" in x for x in view.texts())


def test_self_test_shows_results_as_text_and_hints(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_selftest", results={})
    assert {w.text for w in screen.results.values()} == {"Not tested yet"}
    show(view, kivy_window, "staff_selftest")
    assert screen.results["lights"].text.startswith("Running")
    assert find(view, "test_lights").disabled and not find(view, "test_sound").disabled
    assert "8 characters read" in screen.results["scanner"].text
    assert "My Number Card: 3 PIN tries left" in screen.results["reader"].text
    show(view, kivy_window, "staff_selftest", results={"reader": {"result": "error", "code": "not_jpki"}})
    assert screen.results["reader"].text == translator("en")("error.not_jpki")
    show(view, kivy_window, "staff_selftest", results={"reader": {"result": "reading"}})
    assert screen.results["reader"].text == "Card found, reading…"     # contactless: placed, not inserted
    assert "Scan any barcode" in screen.hints.text and "Place a card" in screen.hints.text
    kivy_window.tap(find(view, "test_sound"))
    assert posted.presses() == [("test_sound", None)]


def test_restart_and_shutdown_ask_first(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_confirm", action="shutdown")
    assert "Shut the kiosk down?" in screen.title.text and screen.confirm.text == "Shut down now"
    kivy_window.tap(find(view, "back"))
    kivy_window.tap(find(view, "confirm"))
    assert posted.presses() == [("back", None), ("confirm", None)]


def test_registration_screen_follows_the_step(make_view, kivy_window):
    view, posted = make_view(default_language="en")
    screen = show(view, kivy_window, "staff_register")
    assert view.find("digit:1") is None and view.find("link") is None
    show(view, kivy_window, "staff_register", step="pin", digits=2, tries_left=2)
    assert screen.dots.text == "● ● ○ ○" and "2 tries left" in screen.tries.text and "⚠" in screen.tries.text
    assert find(view, "ok").disabled
    kivy_window.tap(find(view, "digit:7"))
    show(view, kivy_window, "staff_register", step="last_try", tries_left=1)
    assert view.find("digit:1") is None
    kivy_window.tap(find(view, "confirm_last_try"))
    show(view, kivy_window, "staff_register", step="confirm", patron_id=PATRON_CARD, valid_until="2030-03-31")
    assert find(view, "patron_id").text == PATRON_CARD and "2030" in find(view, "valid_until").text
    assert view.find("linked_before") is None and view.find("unlink") is None
    show(view, kivy_window, "staff_register", step="confirm", patron_id=PATRON_CARD, valid_until="2030-03-31",
         linked_before=True)
    assert "already linked" in find(view, "linked_before").text
    kivy_window.tap(find(view, "unlink"))
    kivy_window.tap(find(view, "link"))
    show(view, kivy_window, "staff_register", step="linking")
    assert view.find("cancel") is None                       # the catalogue is being written
    show(view, kivy_window, "staff_register", step="error", error="wrong_password")
    assert "birth date" in screen.message.text
    show(view, kivy_window, "staff_register", step="error", error="cert_expired")
    assert screen.message.text.endswith(translator("en")("error.cert_expired"))
    kivy_window.tap(find(view, "again"))
    assert posted.presses() == [("digit", "7"), ("confirm_last_try", None), ("unlink", None), ("link", None),
                                ("again", None)]
    show(view, kivy_window, "staff_menu")
    assert screen.card_value.text == "" and screen.dots.text == ""


# -- the hidden gesture -------------------------------------------------------------------


def test_a_short_press_in_the_corner_does_nothing_and_the_corner_still_takes_taps(make_view, kivy_window):
    from kiosk.core.events import StaffOpen

    kivy_window.set_size(480, 800, 131)                     # portrait: a language button lies in the corner
    view, posted = make_view()
    view.show("scanning", dict(language="ja", rows=[], lent=0, pending=0, allowance=5, name=None, holds_ready=0,
                               offline=False, countdown=None, notice=None, card_reminder=False, test_pki=False))
    kivy_window.settle()
    x, y = corner(view)
    hold(kivy_window, x, y, 1.0)
    assert not any(isinstance(e, StaffOpen) for e in posted)
    under = [w for w in view.screens["scanning"].walk(restrict=True)
             if getattr(w, "action", "") == "language" and w.collide_point(*w.to_widget(x, y))]
    assert under, "expected a language button under the corner in portrait"
    assert posted.presses() == [("language", under[0].value)]     # the tap went through as usual


def test_a_long_press_elsewhere_or_on_a_staff_screen_does_not_open_staff_mode(make_view, kivy_window):
    from kiosk.core.events import StaffOpen

    view, posted = make_view()
    show(view, kivy_window, "staff_menu")
    hold(kivy_window, *corner(view), 3.2)
    view.show("idle", idle_model("ja"))
    kivy_window.settle()
    hold(kivy_window, view.center_x, view.center_y, 3.2)
    assert not any(isinstance(e, StaffOpen) for e in posted)


# -- end to end through the real controller --------------------------------------------------


@pytest.fixture
def staff_kiosk(kivy_window, tmp_path: Path, demo_pki):
    from kiosk.core.staff_pins import hash_pin

    def with_staff(config: dict) -> None:
        config["staff"].update({"accounts": [{"id": "s01", "badge": "S00001",
                                              "pin_hash": hash_pin(STAFF_PIN.encode(), log2_n=10)}]})

    with running_kiosk(kivy_window, tmp_path, demo_pki, with_staff) as kiosk:
        yield kiosk


def test_staff_journey_sign_in_menu_status_review_registration_and_exit(staff_kiosk):
    from kiosk.core.catalogue import LoanRequest, LoanResult, Refusal

    k = staff_kiosk
    t = translator("ja")
    services = k.services
    loan = LoanRequest(txn_id="t-offline", patron_id="20000001", item_id="10000007",
                       created_at=datetime.now().astimezone(), offline=True)
    services.outbox.append(loan)
    services.outbox.conflict("t-offline", LoanResult("t-offline", ok=False, item_id="10000007",
                                                     refusal=Refusal.ON_HOLD))
    cert_hash = services.demo.pki.cards["unregistered"].cert_hash
    assert services.catalogue.resolve_identity(cert_hash) is None
    assert k.screen == "idle"

    # The hidden gesture: hold the top-left corner for three seconds.
    hold(k.h, *corner(k.view), 3.2)
    k.until("staff_signin")
    assert k.view.staff_corner.opened == 1

    # A wrong PIN, then the right one.
    k.enter_pin("1111")
    k.until_model(lambda m: m.get("notice") == "wrong_pin")
    assert find(k.view, "notice:wrong_pin").message.text == t("staff.notice.wrong_pin")
    assert k.view.screens["staff_signin"].dots.text == ""
    k.enter_pin(STAFF_PIN)
    k.until("staff_menu")
    assert "s01" in k.view.screens["staff_menu"].title.text

    # Out of service on and off, in words.
    k.tap("out_of_service")
    k.until_model(lambda m: m.get("out_of_service") is True)
    assert find(k.view, "out_of_service").text.endswith(t("common.on"))
    assert services.store.get_setting("staff.out_of_service") is True
    k.tap("out_of_service")
    k.until_model(lambda m: m.get("out_of_service") is False)
    assert find(k.view, "out_of_service").text.endswith(t("common.off"))

    # Status shows the kiosk's real values.
    k.tap("status")
    k.until_model(lambda m: bool(m.get("status")))
    values = k.view.screens["staff_status"].values
    assert values["reader"].text == t("staff.value.ok")
    assert values["conflicts"].text == "1" and values["disk_free_mb"].text.endswith(" MB")
    k.tap("back")
    k.until("staff_menu")

    # The review list, resolved from its own button.
    k.tap("review")
    k.until_model(lambda m: bool(m.get("conflicts")))
    (cid, row), = k.view.screens["staff_review"].rows.items()
    assert "10000007" in row.heading.text and "20000001" in row.heading.text
    k.tap(f"resolve:{cid}")
    k.until_model(lambda m: m.get("conflicts") == [])
    assert services.outbox.stats().conflicts == 0
    assert k.view.screens["staff_review"].placeholder.text == t("staff.review.empty")
    k.tap("back")
    k.until("staff_menu")

    # Counter registration with the virtual card, then the library card scan and the link.
    k.tap("register")
    k.until_model(lambda m: m.get("step") == "insert")
    assert k.view.screens["staff_register"].message.text == t("staff.register.insert")
    services.demo.insert_card("unregistered")
    model = k.until_model(lambda m: m.get("step") == "pin")
    assert model["tries_left"] == 3
    for d in "123":
        k.tap(f"digit:{d}")
    assert k.view.screens["staff_register"].dots.text == "● ● ● ○"
    k.tap("digit:4")
    k.tap("ok")
    k.until_model(lambda m: m.get("step") not in ("authenticating", "reading"))
    assert k.model["step"] == "scan", k.model
    k.h.type_keys(PATRON_CARD)
    k.pump()
    k.until_model(lambda m: m.get("step") == "confirm")
    screen = k.view.screens["staff_register"]
    assert screen.card_value.text == PATRON_CARD and screen.valid_value.text not in ("", "—")
    # the catalogue's name for the card, for staff to check (the demo catalogue's 20000003)
    k.until_model(lambda m: m.get("patron_name") == "Maria Silva")
    assert screen.name_value.text == "Maria Silva" and screen.name_value.get_root_window() is not None
    assert screen.name_label.text == t("staff.register.patron_name")
    k.tap("link")
    k.until_model(lambda m: m.get("step") == "done")
    assert screen.message.text.endswith(t("staff.register.done"))
    assert services.catalogue.resolve_identity(cert_hash) == PATRON_CARD
    services.demo.remove_card()
    k.pump()
    k.tap("done")
    k.until("staff_menu")

    # Leave staff mode: back to the patron's idle screen, nothing of it left.
    k.tap("exit")
    k.until("idle")
    assert services.card.mode == "kiosk"
    assert not any(PATRON_CARD in x or "20000001" in x for x in k.view.texts())
    assert not any("Maria Silva" in x for x in k.view.texts())
    assert "Maria Silva" not in repr(services.audit.entries())
    actions = [e["action"] for e in services.audit.entries()]
    for action in ("staff.signin_opened", "staff.signin_failed", "staff.signed_in", "staff.conflict_resolved",
                   "staff.card_linked", "staff.signed_out"):
        assert action in actions, action


def test_staff_screens_follow_the_site_language_and_the_corner_works_mid_session(staff_kiosk):
    """Staff sign-in from a patron's PIN screen ends that patron's session."""
    k = staff_kiosk
    k.services.demo.insert_card("registered-1")
    k.until("pin")
    k.tap("language:en")
    k.tap("digit:1")
    hold(k.h, *corner(k.view), 3.2)
    k.until("staff_signin")
    assert k.view.screens["staff_signin"].title.text == translator("ja")("staff.signin.title")
    k.enter_pin(STAFF_PIN)
    k.until("staff_menu")
    assert k.controller.session.screen == "idle"
    k.services.demo.remove_card()
    k.tap("exit")
    k.until("idle")


def test_staff_and_out_of_service_texts_are_words_in_every_language_not_config_or_catalogue_words(staff_kiosk):
    """Issue 16 item 8: the status table's config words, a catalogue's own refusal text and the
    out-of-service screen, through the real controller and real touches."""
    from kiosk.core.catalogue import LoanRequest, LoanResult
    from kiosk.screens import fonts

    k = staff_kiosk
    t = translator("ja")
    services = k.services
    for txn, reason in (("t-free", "catalogue said: blocked"), ("t-gone", "withdrawn_unanswered")):
        services.outbox.append(LoanRequest(txn_id=txn, patron_id="20000001", item_id="10000007",
                                           created_at=datetime.now().astimezone(), offline=True))
        services.outbox.conflict(txn, LoanResult(txn, ok=False, item_id="10000007"), reason=reason)
    hold(k.h, *corner(k.view), 3.2)
    k.until("staff_signin")
    k.enter_pin(STAFF_PIN)
    k.until("staff_menu")

    k.tap("status")
    k.until_model(lambda m: bool(m.get("status")))
    values = k.view.screens["staff_status"].values
    assert values["scanner"].text == t("staff.value.scanner.wedge") == "USBキーボード入力"
    assert values["config_version"].text == t("staff.value.config_site")
    k.tap("back")
    k.until("staff_menu")

    k.tap("review")
    k.until_model(lambda m: len(m.get("conflicts") or []) == 2)
    reasons = sorted(row.reason.text for row in k.view.screens["staff_review"].rows.values())
    assert reasons == sorted([t("staff.review.reason", reason=t("refusal.patron_blocked")),
                              t("staff.review.reason", reason=t("staff.review.why.withdrawn_unanswered"))])
    assert not any("catalogue said" in x or "blocked" in x for x in k.view.texts())
    k.tap("back")
    k.until("staff_menu")

    k.tap("out_of_service")
    k.until_model(lambda m: m.get("out_of_service") is True)
    k.tap("exit")
    k.until("out_of_service")
    screen = k.view.screens["out_of_service"]
    assert screen.title.text == t("oos.title")
    for lang in ("en", "pt-BR", "zh-Hans", "ko", "vi"):
        other = translator(lang)
        line = k.view.find(f"oos:{lang}")
        assert line.text == other("oos.title") + " — " + other("oos.body")
        assert line.font_name == fonts.registered(lang) and line.get_root_window() is not None
