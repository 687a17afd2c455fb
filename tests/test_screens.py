"""Every patron screen drawn by the real KioskView in a real (offscreen) Kivy window.

Models are the session's plain dicts (kiosk/core/session.py docstring); touches are real
touch events on the real buttons; assertions are on widget state, not pixels.
Screenshots of every screen in Japanese and English go to test-artifacts/screens/.
"""

from __future__ import annotations

import pytest

from kiosk.core.card import CardError
from kiosk.core.catalogue import Refusal
from kiosk.i18n import translator
from kiosk.screens.widgets.layout import layout_overflow
from kiosk_testing.kivy_app import ARTIFACTS

pytestmark = pytest.mark.ui

LANGS = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
CANARY_TITLE = "秘密のカナリア本・第七巻"
CANARY_ITEM = "19182736450"
CANARY_NAME = "仮名 カナリア"

# Panel sizes a kiosk may have, with the density the panel really has (dots per inch).
SIZES = [
    ("pi7-800x480", 800, 480, 131),          # official Raspberry Pi 7" display
    ("hdmi7-1024x600", 1024, 600, 170),      # common 7" HDMI panel
    ("10in-1280x800", 1280, 800, 149),
    ("monitor-1920x1080", 1920, 1080, 102),  # 21.5" monitor
    ("pi7-portrait-480x800", 480, 800, 131),
    ("pi-touch2-720x1280", 720, 1280, 210),  # Touch Display 2 (portrait native)
    ("monitor-portrait-1080x1920", 1080, 1920, 102),
]


def rows(n: int = 4) -> list[dict]:
    base = [
        dict(txn_id="t1", item_id=CANARY_ITEM, state="ok", title=CANARY_TITLE, due="2025-04-15", refusal=None,
             offline=False),
        dict(txn_id="t2", item_id="10000007", state="refused", title="日本の野鳥図鑑", due="", refusal="on_hold",
             offline=False),
        dict(txn_id="t3", item_id="10000003", state="pending", title="", due="", refusal=None, offline=False),
        dict(txn_id="t4", item_id="10000004", state="unconfirmed", title="銀河鉄道の夜", due="", refusal=None,
             offline=False),
    ]
    return base[:n]


def model(screen: str, lang: str = "ja", **extra) -> dict:
    """A model as the session would send it, with every screen's own keys."""
    m = dict(language=lang, countdown=None, card_reminder=False, test_pki=False, notice=None)
    m.update({
        "idle": dict(reader_ok=True, library_card=True, help=False, card_number=True),
        "reading_card": {},
        "pin": dict(purpose="card", digits=2, max_digits=4, tries_left=3),
        "last_try": {},
        "authenticating": dict(stage="card"),
        "library_card": {},
        "card_number": dict(number="2000", max_digits=16),
        "take_card": {},
        "scanning": dict(rows=rows(), lent=1, pending=1, allowance=8, name=None, holds_ready=0, offline=False),
        "finishing": dict(pending=1),
        "summary": dict(rows=rows(), receipt_available=False, due=None),
        "thank_you": dict(lent=1, due="2025-04-15", several_dates=False),
        "error": dict(code="pin_locked", counter=True, library_card=False),
        "out_of_service": {},
    }[screen])
    m.update(extra)
    return m


SCREENS = ("idle", "reading_card", "pin", "last_try", "authenticating", "library_card", "card_number", "take_card",
           "scanning", "finishing", "summary", "thank_you", "error", "out_of_service")
# The busiest variant of each screen: banners, countdown, overlays.
BUSY = {
    "idle": dict(reader_ok=False, help=False, notice="sign_in_first"),
    "pin": dict(notice="pin_wrong", tries_left=2, countdown=12),
    "card_number": dict(notice="not_a_library_card", number="20000001234567", countdown=12),
    "scanning": dict(card_reminder=True, holds_ready=2, name=CANARY_NAME, countdown=9, notice="not_an_item"),
    "summary": dict(receipt_available=True, countdown=10, notice="not_confirmed"),
    "take_card": dict(test_pki=True, countdown=5),
    "error": dict(countdown=3),
}


def show(view, h, screen, lang="ja", **extra):
    view.show(screen, model(screen, lang, **extra))
    h.settle()
    return view.screens[screen]


def find(view, ident, screen=None):
    w = view.find(ident, screen)
    assert w is not None, f"no widget {ident!r} on {screen or view.current}"
    return w


# -- making screens ------------------------------------------------------------------


def test_every_screen_the_session_or_staff_mode_shows_has_its_class(make_view):
    from kiosk.core import staff
    from kiosk.core.session import SCREENS as SESSION_SCREENS
    from kiosk.screens.view import SCREEN_CLASSES, screen_class

    staff_screens = {staff.SIGNIN, staff.MENU, staff.STATUS, staff.REVIEW, staff.SELFTEST, staff.CONFIRM,
                     staff.REGISTER, staff.COUNTER, staff.IDENTIFY}
    from kiosk.core import account, returns

    assert set(SCREEN_CLASSES) == set(SESSION_SCREENS) | staff_screens | {account.SCREEN, returns.SCREEN}
    view, _ = make_view()
    for name in SCREEN_CLASSES:
        cls = screen_class(name)
        assert cls.screen in (name, "")         # "": one class for several screens (progress)
        made = view.screens[name]               # made as the view makes it, for this name
        assert type(made) is cls and made.screen == made.name == name


def test_a_screen_is_made_and_built_when_first_shown_once_at_the_views_real_size(kivy_window):
    """As in the app: the view is laid out into the window and shows idle at once."""
    from kiosk.screens.base import KioskScreen
    from kiosk.screens.view import KioskView, UiOptions

    builds: list[tuple[str, int]] = []
    original = KioskScreen.build

    def counting(self, ctx):
        builds.append((self.screen, ctx.theme.width))
        original(self, ctx)

    KioskScreen.build = counting
    view = KioskView(UiOptions(library_name="テスト"))
    kivy_window.Window.add_widget(view)
    try:
        assert set(view.screens) == set()
        view.show("idle", model("idle"))
        kivy_window.frames(2)
        width = kivy_window.Window.width
        assert set(view.screens) == {"idle"} and builds == [("idle", width)]
        assert all(w.fits for w in view.screens["idle"].walk() if hasattr(w, "fits"))
        show(view, kivy_window, "pin")
        show(view, kivy_window, "idle")
        assert set(view.screens) == {"idle", "pin"} and builds == [("idle", width), ("pin", width)]
    finally:
        KioskScreen.build = original
        view.close()
        kivy_window.Window.remove_widget(view)
        kivy_window.settle(2)


# -- layout --------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_every_screen_renders_every_string_in_every_language(make_view, kivy_window, lang):
    """strict_text: an untranslated string would raise instead of falling back."""
    view, _ = make_view(strict_text=True, demo=True)
    t = translator(lang, strict=True)
    for screen in SCREENS:
        s = show(view, kivy_window, screen, lang, **BUSY.get(screen, {}))
        assert view.manager.current == screen
        assert not layout_overflow(view, kivy_window.Window.size), (lang, screen)
        assert s.countdown.seconds == BUSY.get(screen, {}).get("countdown")
    show(view, kivy_window, "idle", lang, help=True)
    assert t("help.notification_card") in " ".join(view.texts())


@pytest.mark.parametrize("name, width, height, dpi", SIZES, ids=[s[0] for s in SIZES])
def test_layouts_fit_every_panel_and_pin_keys_are_at_least_12_mm(make_view, kivy_window, name, width, height, dpi):
    kivy_window.set_size(width, height, dpi)
    for large_text in (False, True):
        view, _ = make_view(large_text=large_text, demo=True)
        assert view.theme.width == width and view.theme.dpi == dpi
        # Japanese is the tallest script, Portuguese has the longest sentences; large text is
        # the harder case, so normal text is checked in Japanese only.
        for lang in ("ja", "pt-BR") if large_text else ("ja",):
            for screen in SCREENS:
                show(view, kivy_window, screen, lang, **BUSY.get(screen, {}))
                problems = layout_overflow(view, (width, height))
                assert not problems, (name, large_text, lang, screen, problems[:3])
        show(view, kivy_window, "pin")
        for key in "0123456789":
            button = find(view, f"digit:{key}")
            assert view.theme.px_to_mm(button.width) >= 12 - 1e-6, (name, button.width)
            assert view.theme.px_to_mm(button.height) >= 12 - 1e-6, (name, button.height)
        for ident in ("ok", "cancel", "clear", "delete"):
            assert view.theme.px_to_mm(find(view, ident).height) >= 12 - 1e-6, (name, ident)
        kivy_window.Window.remove_widget(view)
        view.close()


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_screenshots_of_every_screen(make_view, kivy_window, lang):
    kivy_window.set_size(1024, 600, 170)
    view, _ = make_view(demo=True)
    t = translator(lang)
    titles = {"idle": "idle.title", "pin": "pin.title.card", "last_try": "last_try.title",
              "reading_card": "reading.title", "authenticating": "auth.title.card", "take_card": "take_card.title",
              "library_card": "library_card.title", "card_number": "card_number.title", "scanning": "scan.title", "finishing": "finishing.title",
              "summary": "summary.title", "thank_you": "thanks.title", "error": "error.title",
              "out_of_service": "oos.title"}
    for screen in SCREENS:
        s = show(view, kivy_window, screen, lang, **BUSY.get(screen, {}))
        assert t(titles[screen]) in s.title.text
        path = kivy_window.screenshot(ARTIFACTS / lang / f"{screen}.png")
        assert path.stat().st_size > 5000
    show(view, kivy_window, "idle", lang, help=True)
    kivy_window.screenshot(ARTIFACTS / lang / "idle_help.png")
    view.toggle("high_contrast")
    kivy_window.settle()
    show(view, kivy_window, "pin", lang, **BUSY["pin"])
    kivy_window.screenshot(ARTIFACTS / lang / "pin_high_contrast.png")


# -- touches --------------------------------------------------------------------------


def test_language_buttons_post_the_session_codes(make_view, kivy_window):
    view, posted = make_view()
    show(view, kivy_window, "idle")
    for lang in LANGS:
        kivy_window.tap(find(view, f"language:{lang}"))
    show(view, kivy_window, "scanning")
    kivy_window.tap(find(view, "language:ko"))         # the compact bar in the header
    assert posted.presses() == [("language", x) for x in LANGS] + [("language", "ko")]


def test_the_current_language_is_marked_by_a_tick_not_only_by_colour(make_view, kivy_window):
    view, _ = make_view()
    show(view, kivy_window, "idle", "ko")
    ko, ja = find(view, "language:ko"), find(view, "language:ja")
    assert "✓" in ko.text and "✓" not in ja.text
    assert ko.text.endswith("한국어") and ja.text == "日本語"


def test_pin_pad_posts_digits_delete_clear_ok_cancel_and_shows_only_dots(make_view, kivy_window):
    view, posted = make_view()
    screen = show(view, kivy_window, "pin", digits=0, tries_left=3)
    for d in "1230":
        kivy_window.tap(find(view, f"digit:{d}"))
    for ident in ("delete", "clear", "ok", "cancel"):
        kivy_window.tap(find(view, ident))
    assert posted.presses() == [("digit", "1"), ("digit", "2"), ("digit", "3"), ("digit", "0"), ("delete", None),
                                ("clear", None), ("ok", None), ("cancel", None)]
    assert screen.dots.text == "○ ○ ○ ○"
    show(view, kivy_window, "pin", digits=3)
    assert screen.dots.text == "● ● ● ○"
    assert not any(ch.isdigit() for ch in screen.dots.text)
    assert "3" in screen.tries.text and "⚠" not in screen.tries.text
    show(view, kivy_window, "pin", digits=3, tries_left=2)
    assert "⚠" in screen.tries.text                    # a warning in words and icon, not colour alone


def test_library_password_uses_the_same_pad_without_tries(make_view, kivy_window):
    view, _ = make_view()
    screen = show(view, kivy_window, "pin", purpose="library", digits=6, max_digits=16, tries_left=None)
    assert screen.title.text == translator("ja")("pin.title.library")
    assert screen.dots.text == "●" * 6
    assert screen.tries.text == ""
    show(view, kivy_window, "pin", purpose="library", digits=0, notice="pin_incomplete")
    assert find(view, "notice:pin_incomplete").message.text == translator("ja")("notice.pin_incomplete.library")


def test_last_try_needs_an_explicit_confirmation(make_view, kivy_window):
    view, posted = make_view()
    screen = show(view, kivy_window, "last_try", "en")
    # the PIN (not the card) locks, and the patron's own municipality unlocks it (wording review #2, #3)
    assert "the PIN will be locked" in screen.body_text.text
    assert "city or town where you live" in screen.body_text.text
    assert view.find("digit:1", "last_try") is None    # no pad here: confirm first
    kivy_window.tap(find(view, "confirm_last_try"))
    kivy_window.tap(find(view, "cancel"))
    assert posted.presses() == [("confirm_last_try", None), ("cancel", None)]


def test_every_timed_screen_has_a_countdown_with_more_time(make_view, kivy_window):
    view, posted = make_view()
    for screen in SCREENS:
        if screen in ("idle", "out_of_service"):
            continue
        s = show(view, kivy_window, screen, countdown=7)
        button = find(view, "more_time")
        assert "7" in s.countdown.label.text
        kivy_window.tap(button)
        assert posted.presses()[-1] == ("more_time", None), screen
        show(view, kivy_window, screen, countdown=None)
        assert view.find("more_time") is None, screen


def test_receipt_choice_has_the_countdown_too_and_posts_receipt_or_done(make_view, kivy_window):
    view, posted = make_view()
    show(view, kivy_window, "summary", receipt_available=True, countdown=11)
    assert view.find("more_time") is not None
    kivy_window.tap(find(view, "receipt"))
    kivy_window.tap(find(view, "done"))
    assert posted.presses() == [("receipt", None), ("done", None)]
    show(view, kivy_window, "summary", receipt_available=True, notice="printing")
    assert find(view, "receipt").disabled and find(view, "done").disabled
    assert find(view, "notice:printing").kind == "info"
    show(view, kivy_window, "summary", receipt_available=False, notice="receipt_failed")
    assert view.find("receipt") is None
    assert not find(view, "done").disabled
    assert find(view, "notice:receipt_failed").kind == "warn"


@pytest.mark.parametrize("screen", [s for s in SCREENS if s not in ("reading_card", "authenticating")])
def test_card_reminder_banner_on_any_screen(make_view, kivy_window, screen):
    view, _ = make_view()
    show(view, kivy_window, screen, card_reminder=True)
    assert find(view, "card_reminder").message.text == translator("ja")("common.card_reminder")
    show(view, kivy_window, screen, card_reminder=False)
    assert view.find("card_reminder") is None


def test_a_site_shows_its_own_scanner_picture_and_the_drawing_stands_in_for_a_bad_one(make_view, kivy_window,
                                                                                     tmp_path):
    from kivy.uix.image import Image as KivyImage
    from PIL import Image

    from kiosk.screens.widgets.drawings import ScannerArt

    photo = tmp_path / "our-scanner.png"
    Image.new("RGB", (320, 200), (0, 160, 80)).save(photo)
    view, _ = make_view(scan_picture=str(photo))
    show(view, kivy_window, "scanning", rows=[])
    where = view.screens["scanning"].where
    assert isinstance(where, KivyImage) and tuple(where.texture.size) == (320, 200)
    assert where.get_root_window() is not None and where.height > 40
    shot = kivy_window.screenshot(ARTIFACTS / "scanning-site-picture.png")
    x, y = (int(c) for c in where.to_window(*where.center))
    with Image.open(shot) as drawn:                              # the photo itself is on screen
        assert drawn.convert("RGB").getpixel((x, drawn.height - 1 - y)) == (0, 160, 80)
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(photo.read_bytes()[:40])                 # broken after the configuration check
    view, _ = make_view(scan_picture=str(damaged))
    show(view, kivy_window, "scanning", rows=[])
    assert isinstance(view.screens["scanning"].where, ScannerArt)


def test_test_badge_follows_the_model_and_demo_badge_the_mode(make_view, kivy_window):
    view, _ = make_view()
    show(view, kivy_window, "take_card", test_pki=True)
    assert view.find("badge:test") is not None and view.find("badge:demo") is None
    show(view, kivy_window, "scanning", test_pki=False)
    assert view.find("badge:test") is None
    demo, _ = make_view(demo=True)
    demo.show("idle", model("idle"))
    kivy_window.settle()
    assert demo.find("badge:demo").text == "デモ"


@pytest.mark.parametrize("notice, screen", [
    ("sign_in_first", "idle"), ("bad_barcode", "idle"), ("not_a_library_card", "library_card"),
    ("not_an_item", "scanning"), ("pin_wrong", "pin"), ("password_wrong", "pin"), ("pin_wrong", "last_try"),
    ("not_confirmed", "summary"), ("printing", "summary"), ("receipt_failed", "summary"),
    ("barcode_isbn", "scanning"), ("barcode_partial", "idle"), ("barcode_doubled", "scanning"),
])
def test_notices_are_shown_in_words(make_view, kivy_window, notice, screen):
    view, _ = make_view()
    show(view, kivy_window, screen, "en", notice=notice)
    assert find(view, f"notice:{notice}").message.text == translator("en")(f"notice.{notice}")


def test_error_screen_has_friendly_words_for_every_code_and_counter_only_when_told(make_view, kivy_window):
    view, posted = make_view()
    t = translator("ja")
    seen = set()
    for code in [e.value for e in CardError] + [r.value for r in Refusal] + ["timeout"]:
        screen = show(view, kivy_window, "error", code=code, counter=False)
        assert screen.message.text == t(f"error.{code}")
        assert screen.counter.text == ""
        seen.add(screen.message.text)
    assert len(seen) >= 20                              # not one generic message
    screen = show(view, kivy_window, "error", code="not_registered", counter=True)
    assert t("common.go_to_counter") in screen.counter.text
    assert view.find("library_card") is None                 # offered only when the model says so
    kivy_window.tap(find(view, "ok"))
    assert posted.presses() == [("ok", None)]
    screen = show(view, kivy_window, "error", code="cert_expired", counter=True, library_card=True)
    assert find(view, "library_card").text == t("idle.library_card")
    kivy_window.tap(find(view, "library_card"))
    assert posted.presses()[-1] == ("library_card", None)
    show(view, kivy_window, "error", code="card_removed", counter=False, library_card=False)
    assert view.find("library_card") is None                 # and gone again for the next error


def test_idle_offers_library_card_and_help_and_says_when_the_reader_is_gone(make_view, kivy_window):
    view, posted = make_view()
    screen = show(view, kivy_window, "idle", "en")
    assert view.find("reader_unavailable") is None
    kivy_window.tap(find(view, "library_card"))
    kivy_window.tap(find(view, "help"))
    assert posted.presses() == [("library_card", None), ("help", None)]
    assert find(view, "card_number").text == translator("en")("idle.card_number")
    kivy_window.tap(find(view, "card_number"))
    assert posted.presses()[-1] == ("card_number", None)
    show(view, kivy_window, "idle", "en", help=True)
    assert screen.help_overlay is not None
    texts = " ".join(view.texts())
    assert "Notification Card (通知カード) and the Individual Number Notification (個人番号通知書) cannot be used" in texts
    assert "counter" in texts
    kivy_window.tap(find(view, "close_help"))
    assert posted.presses()[-1] == ("close_help", None)
    model_ = model("idle", "en", help=False, reader_ok=False, library_card=False)
    del model_["card_number"]                               # loans.manual_card_entry off, or no library cards
    view.show("idle", model_)
    kivy_window.settle()
    assert screen.help_overlay is None
    assert "go to the counter" in find(view, "reader_unavailable").message.text
    assert find(view, "library_card").disabled
    assert view.find("card_number") is None


def test_help_overlay_keeps_touches_off_the_buttons_under_it(make_view, kivy_window):
    view, posted = make_view()
    show(view, kivy_window, "idle", help=True)
    kivy_window.tap(find(view, "library_card"))          # covered by the overlay
    assert posted.presses() == []


def test_scanning_rows_update_in_place_with_reasons_and_due_dates(make_view, kivy_window):
    view, posted = make_view()
    screen = show(view, kivy_window, "scanning", "en", rows=rows(1)[:0] + [rows()[2]], lent=0, pending=1)
    pending = screen.list.rows["t3"]
    assert pending.detail.text == "Checking…" and CANARY_ITEM not in pending.heading.text
    done = dict(rows()[2], state="ok", title="こころ", due="2025-04-15")
    show(view, kivy_window, "scanning", "en", rows=[done, rows()[1]], lent=1, pending=0, allowance=0)
    assert screen.list.rows["t3"] is pending             # same widget, updated in place
    assert pending.heading.text == "こころ" and "Due Tue, Apr 15, 2025" in pending.detail.text
    refused = screen.list.rows["t2"]
    assert refused.kind == "refused" and "reserved" in refused.detail.text and "✕" in refused.mark.text
    # n = 0 is said in words, not "You can borrow 0 more"
    assert screen.counts.text.splitlines() == ["Borrowed: 1 book", "You have reached your loan limit"]
    assert screen.greeting.text == ""                     # no name unless the model has one
    show(view, kivy_window, "scanning", "en", rows=[], lent=0, pending=0, name="Maria", offline=True,
         holds_ready=1)
    assert screen.greeting.text == "Hello, Maria"
    assert view.find("offline") is not None and view.find("holds_ready") is not None
    assert screen.list.placeholder.text == "Books you scan appear here"
    kivy_window.tap(find(view, "finish"))
    assert posted.presses() == [("finish", None)]


def test_summary_sends_unconfirmed_books_to_the_counter(make_view, kivy_window):
    view, _ = make_view()
    screen = show(view, kivy_window, "summary", "en")
    assert screen.list.rows["t4"].kind == "unconfirmed"
    assert "counter" in screen.list.rows["t4"].detail.text
    assert "counter" in screen.note.text
    assert screen.count.text == "You borrowed 1 book"
    show(view, kivy_window, "summary", "en", rows=rows(1))
    assert screen.note.text == ""


def test_no_colour_alone_every_row_state_has_an_icon_and_words(make_view, kivy_window):
    from kiosk.screens.scanning import row_view

    t = translator("en")
    views = [row_view(r, t) for r in rows()]
    assert [v.mark for v in views] == ["✓", "✕", "…", "?"]
    assert [v.detail.split(" — ")[0] for v in views] == ["Borrowed", "Not borrowed", "Checking…", "Not confirmed"]


def test_titles_are_never_read_as_markup(make_view, kivy_window):
    view, _ = make_view()
    evil = dict(rows()[0], title="[b]x[/b] [color=ff0000]y")
    screen = show(view, kivy_window, "scanning", rows=[evil])
    heading = screen.list.rows["t1"].heading
    assert heading.text.startswith("&bl;b&br;x")


# -- privacy ---------------------------------------------------------------------------


def test_leaving_a_screen_and_reaching_idle_leaves_no_patron_data_anywhere(make_view, kivy_window):
    view, _ = make_view()
    for screen in ("pin", "scanning", "finishing", "error", "summary"):
        named = {"name": CANARY_NAME} if screen == "scanning" else {}     # only scanning's model has a name
        show(view, kivy_window, screen, card_reminder=True, countdown=4, **named)
    assert any(CANARY_TITLE in x for x in view.texts())
    show(view, kivy_window, "thank_you")
    show(view, kivy_window, "idle")
    texts = view.texts()
    for secret in (CANARY_TITLE, CANARY_ITEM, CANARY_NAME, "●", "2025"):
        assert not any(secret in x for x in texts), secret
    assert all(not s.list.rows for s in (view.screens["scanning"], view.screens["summary"]))
    assert view.screens["pin"].dots.text == ""


# -- accessibility modes ------------------------------------------------------------------


def test_large_text_and_high_contrast_toggles_reset_when_the_next_patron_starts(make_view, kivy_window):
    view, posted = make_view()
    screen = show(view, kivy_window, "idle", "en")
    normal = view.theme.font_body
    kivy_window.tap(find(view, "large_text"))
    kivy_window.settle()
    assert view.theme.large_text and view.theme.font_body > normal
    kivy_window.tap(find(view, "high_contrast"))
    kivy_window.settle()
    assert view.theme.high_contrast and view.theme.palette.bg == (0, 0, 0, 1)
    assert "On" in find(view, "high_contrast").text and "✓" in find(view, "high_contrast").text
    assert posted == []                                  # view-local: nothing goes to the session
    show(view, kivy_window, "pin", "en")
    assert view.theme.large_text                         # kept for this patron's session
    show(view, kivy_window, "scanning", "en", name=CANARY_NAME)
    show(view, kivy_window, "idle", "en")
    assert not view.theme.large_text and not view.theme.high_contrast
    assert not any(CANARY_TITLE in x or CANARY_NAME in x for x in view.texts())
    assert screen.title.text == translator("en")("idle.title")


def test_site_defaults_for_accessibility_come_from_the_config(make_view, kivy_window):
    view, _ = make_view(high_contrast=True, large_text=True)
    show(view, kivy_window, "pin")
    show(view, kivy_window, "idle")
    assert view.theme.high_contrast and view.theme.large_text


# -- keyboard wedge -------------------------------------------------------------------------


def test_a_wedge_scanner_posts_barcodes(make_view, kivy_window):
    from kiosk.core.events import Barcode

    view, posted = make_view()
    show(view, kivy_window, "scanning")
    kivy_window.type_keys("10000001")
    kivy_window.type_keys("A20000002B")
    assert [e for e in posted if isinstance(e, Barcode)] == [Barcode("10000001"), Barcode("A20000002B")]


def test_a_scan_on_the_pin_screen_never_becomes_pin_digits(make_view, kivy_window):
    view, posted = make_view()
    show(view, kivy_window, "pin", digits=0)
    kivy_window.type_keys("10000001")                    # a book scanned by mistake
    view._poll_wedge()
    assert posted.presses() == []


def test_digits_typed_slowly_on_the_pin_screen_are_key_presses(make_view, kivy_window):
    now = [100.0]
    from kiosk.screens.view import KioskView, UiOptions

    posted: list = []
    view = KioskView(UiOptions(), post=posted.append, clock=lambda: now[0])
    kivy_window.Window.add_widget(view)
    try:
        view.show("pin", model("pin", digits=0))
        for c in "12":
            kivy_window.Window.dispatch("on_textinput", c)
            now[0] += 0.3
            view._poll_wedge()
        kivy_window.key(8)                               # Backspace
        kivy_window.key(13)                              # Enter
        assert [(e.action, e.value) for e in posted] == [("digit", "1"), ("digit", "2"), ("delete", None),
                                                         ("ok", None)]
    finally:
        view.close()
        kivy_window.Window.remove_widget(view)


def test_keyboard_wedge_can_be_switched_off(make_view, kivy_window):
    view, posted = make_view(keyboard_wedge=False)
    show(view, kivy_window, "scanning")
    kivy_window.type_keys("10000001")
    assert posted == []
