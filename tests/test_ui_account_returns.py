"""My account, renewals and returns through the whole demo kiosk in a real Kivy window:
real touches on the real buttons, barcodes as keyboard-wedge keystrokes, the local
catalogue, the encrypted outbox and its worker (kiosk_testing.kivy_app.running_kiosk)."""

from __future__ import annotations

import time

import pytest

from kiosk_testing.kivy_app import running_kiosk

pytestmark = pytest.mark.ui

PATRON, PASSWORD = "20000005", "2468"           # the demo patron with a bit of everything


def type_code(k, code: str) -> None:
    k.h.type_keys(code)
    k.pump()


def line_for(k, item_id: str):
    screen = k.view.screens["account"]
    return next(line for line in screen._line_widgets if line.renew.value == item_id and line.opacity)


def tap_renew(k, item_id: str) -> None:
    """Scroll the loan into view as a patron would, then touch its renew button."""
    k.view.screens["account"].scroll.scroll_to(line_for(k, item_id), animate=False)
    k.h.settle(3)
    k.tap(f"renew:{item_id}")


def test_my_account_renewals_accepted_and_refused_then_wiped(kivy_window, tmp_path, demo_pki):
    with running_kiosk(kivy_window, tmp_path, demo_pki) as k:
        k.tap("library_card")
        k.until("library_card")
        type_code(k, PATRON)
        k.until("pin")
        k.enter_pin(PASSWORD)
        k.until("scanning")
        k.tap("my_account")
        model = k.until_model(lambda m: k.screen == "account" and not m.get("loading"))
        assert model["loan_count"] == 5 and model["holds_ready"] == ["檸檬"]
        overdue = line_for(k, "10000013")
        assert "返却期限を過ぎています" in overdue.detail.text and "⚠" in overdue.mark.text   # text and icon
        summary = "\n".join(x.text for x in k.view.screens["account"].info)
        assert "受け取れる予約：1件" in summary and "準備中の予約：1件" in summary and "山月記" in summary
        assert "カウンターでお支払いください" in k.view.find("fines").message.text
        tap_renew(k, "10000015")
        k.until_model(lambda m: any(x["item_id"] == "10000015" and x["state"] == "renewed" for x in m["loans"]))
        assert line_for(k, "10000015").detail.text.startswith("延長しました")
        assert line_for(k, "10000015").renew.disabled                 # renewed: no second tap
        for item, words in (("10000013", "返却期限を過ぎています"), ("10000014", "延長できる回数"),
                            ("10000016", "ほかの方が予約")):
            tap_renew(k, item)
            k.until_model(lambda m: any(x["item_id"] == item and x["state"] == "refused" for x in m["loans"]))
            assert words in line_for(k, item).detail.text
        k.tap("close")
        k.until("scanning")
        k.tap("finish")                                            # nothing borrowed: straight to goodbye
        k.until("thank_you")
        k.elapse(9)
        k.until("idle")
        assert not any(secret in text for text in k.view.texts() for secret in ("舞姫", "檸檬", PATRON))
        assert k.controller.account is not None and k.controller.account.account is None


def test_return_button_hold_shelf_unknown_offline_then_drained(kivy_window, tmp_path, demo_pki):
    def configure(config: dict) -> None:
        config["loans"]["return_button"] = True

    with running_kiosk(kivy_window, tmp_path, demo_pki, configure) as k:
        catalogue = k.services.catalogue
        k.tap("return_books")
        k.until("returns")
        type_code(k, "10000017")                                   # reserved by 20000001
        k.until_model(lambda m: m["rows"] and m["rows"][-1]["state"] == "hold_shelf")
        type_code(k, "19999999")                                   # not in the catalogue
        k.until_model(lambda m: m["rows"][-1]["state"] == "counter")
        texts = " ".join(k.view.texts())
        assert "予約棚に置いてください" in texts and "カウンターへお持ちください" in texts
        catalogue.available = False                                # the library system goes away
        type_code(k, "10000013")
        k.elapse(8)                                                # unanswered: received, recorded later
        k.until_model(lambda m: m["rows"][-1]["state"] == "returned" and m["rows"][-1]["queued"])
        assert "図書館システムの復旧後に記録" in " ".join(k.view.texts())
        deadline = time.monotonic() + 10                           # the worker has seen the catalogue fail
        while not k.services.worker.status.failures and time.monotonic() < deadline:
            time.sleep(0.02)
        k.elapse(2)                                                # ... and the shell has told the desk
        assert k.model["offline"] and k.view.find("offline") is not None
        type_code(k, "10000015")                                   # now known offline: no-block
        k.until_model(lambda m: m["rows"][-1]["item_id"] == "10000015" and m["rows"][-1]["queued"])
        k.tap("finish")
        k.until_model(lambda m: m.get("summary") is True)
        k.tap("finish")                                            # "OK" (no printer): back to idle
        k.until("idle")
        assert "10000013" in catalogue.loans_of(PATRON)            # not yet recorded ...
        catalogue.available = True
        k.services.worker.notify()                                 # "sync now": the queue drains
        deadline = time.monotonic() + 10
        while k.services.outbox.count() and time.monotonic() < deadline:
            k.pump()
            time.sleep(0.02)
        assert catalogue.loans_of(PATRON) == ["10000014", "10000016"]
        returns = {r["result"]["item_id"]: r for r in catalogue._db.table("returns").all()}
        assert returns["10000015"]["offline"] is True and returns["10000013"]["offline"] is False
        assert k.services.outbox.count() == 0


def test_return_station_needs_no_sign_in(kivy_window, tmp_path, demo_pki):
    def configure(config: dict) -> None:
        config["kiosk"]["mode"] = "return"

    with running_kiosk(kivy_window, tmp_path, demo_pki, configure) as k:
        k.until("returns")
        k.tap("language:en")
        type_code(k, "10000015")
        k.until_model(lambda m: m["rows"] and m["rows"][-1]["state"] == "returned")
        assert "Returned" in " ".join(k.view.texts())
        assert "10000015" not in k.services.catalogue.loans_of(PATRON)


# --------------------------------------------------------------------------- every panel, every rule

SIZES = [                                    # the panels of tests/test_screens.py
    ("pi7-800x480", 800, 480, 131), ("hdmi7-1024x600", 1024, 600, 170), ("10in-1280x800", 1280, 800, 149),
    ("monitor-1920x1080", 1920, 1080, 102), ("pi7-portrait-480x800", 480, 800, 131),
    ("pi-touch2-720x1280", 720, 1280, 210), ("monitor-portrait-1080x1920", 1080, 1920, 102),
]


def account_model(lang: str) -> dict:
    loans = [dict(item_id=f"1000001{i}", title=t, due="2026-08-1" + str(i), overdue=i == 0, state=s, reason=r)
             for i, (t, s, r) in enumerate((("舞姫", "refused", "overdue"), ("三四郎", "refused", "renewal_limit"),
                                            ("風の又三郎", "renewed", ""), ("たけくらべ", "refused", "on_hold"),
                                            ("智恵子抄", "", "")))]
    return dict(language=lang, loading=False, unavailable=False, loans=loans, loan_count=12,
                holds_ready=["檸檬"], holds_pending=["山月記", "高瀬舟"], fines=["300 延滞料"], fee_amount="300",
                currency="JPY", blocks=["excessive_outstanding_fines"], page=0, pages=3, renew_all="done",
                renew_all_result={"renewed": 1, "unrenewed": 3}, can_renew=False, why_not="blocked")


def returns_model(lang: str) -> dict:
    rows = [dict(txn_id=f"r{i}", item_id=f"1000001{i}", title=t, state=s, queued=q)
            for i, (t, s, q) in enumerate((("智恵子抄", "hold_shelf", False), ("", "counter", False),
                                           ("舞姫", "returned", True), ("三四郎", "pending", False)))]
    return dict(rows=rows, returned=2, notice="already_returned", language=lang, countdown=9, station=False,
                summary=False, receipt_available=True, printing=False, offline=True)


@pytest.mark.parametrize("name, width, height, dpi", SIZES, ids=[s[0] for s in SIZES])
def test_account_and_return_screens_fit_every_panel_in_large_text_and_high_contrast(
        make_view, kivy_window, name, width, height, dpi):
    from kiosk.screens.widgets.layout import layout_overflow

    kivy_window.set_size(width, height, dpi)
    for large_text, contrast in ((False, False), (True, True)):
        view, _ = make_view(large_text=large_text, high_contrast=contrast, demo=True)
        for lang in ("ja", "pt-BR", "vi") if large_text else ("ja",):
            for screen, model in (("account", account_model(lang)), ("returns", returns_model(lang)),
                                  ("returns", returns_model(lang) | {"summary": True, "countdown": None})):
                view.show(screen, model)
                kivy_window.settle()
                problems = layout_overflow(view, (width, height))
                assert not problems, (name, large_text, lang, screen, problems[:3])
