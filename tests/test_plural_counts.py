"""Counts on the real screens read right for none, one and two, in Japanese and English:
the screens take the catalogue's plural forms (and its words for zero), never "0 more" or
"1 tries"."""

from __future__ import annotations

import pytest


def show(view, h, screen: str, lang: str, **extra):
    model = dict(language=lang, countdown=None, card_reminder=False, test_pki=False, notice=None)
    model.update(extra)
    view.show(screen, model)
    h.settle()
    return view.screens[screen]


def lent_rows(n: int) -> list[dict]:
    return [dict(txn_id=f"t{i}", item_id=f"1000000{i}", state="ok", title="こころ", due="2025-04-15", refusal=None,
                 offline=False) for i in range(n)]


COUNTS = [
    # lang, n, scanning counts (lent, allowance), summary count, PIN tries, countdown
    ("ja", 0, ["貸出：0冊", "貸出冊数の上限に達しました"], "借りた本はありません", "入力できるのはあと0回です",
     "あと0秒で最初の画面に戻ります"),
    ("ja", 1, ["貸出：1冊", "あと1冊借りられます"], "借りた本：1冊", "入力できるのはあと1回です",
     "あと1秒で最初の画面に戻ります"),
    ("ja", 2, ["貸出：2冊", "あと2冊借りられます"], "借りた本：2冊", "入力できるのはあと2回です",
     "あと2秒で最初の画面に戻ります"),
    ("en", 0, ["Borrowed: 0 books", "You have reached your loan limit"], "No books were borrowed", "0 tries left",
     "Returning to the start in 0 seconds"),
    ("en", 1, ["Borrowed: 1 book", "You can borrow 1 more book"], "You borrowed 1 book", "1 try left",
     "Returning to the start in 1 second"),
    ("en", 2, ["Borrowed: 2 books", "You can borrow 2 more books"], "You borrowed 2 books", "2 tries left",
     "Returning to the start in 2 seconds"),
]


@pytest.mark.parametrize("lang, n, counts, summary, tries, countdown", COUNTS,
                         ids=[f"{c[0]}-{c[1]}" for c in COUNTS])
def test_counts_read_right_on_the_screens(make_view, kivy_window, lang, n, counts, summary, tries, countdown):
    view, _ = make_view()
    scanning = show(view, kivy_window, "scanning", lang, rows=lent_rows(n), lent=n, pending=0, allowance=n,
                    name=None, holds_ready=0, offline=False, countdown=n)
    assert scanning.counts.text.splitlines() == counts
    assert scanning.countdown.label.text == countdown
    summary_screen = show(view, kivy_window, "summary", lang, rows=lent_rows(n), receipt_available=False, due=None)
    assert summary_screen.count.text == summary
    pin = show(view, kivy_window, "pin", lang, purpose="card", digits=0, max_digits=4, tries_left=n)
    assert pin.tries.text.endswith(tries)


def test_pending_and_reserved_counts_take_the_plural_forms(make_view, kivy_window):
    view, _ = make_view()
    scanning = show(view, kivy_window, "scanning", "en", rows=[], lent=0, pending=1, allowance=None, name=None,
                    holds_ready=1, offline=False)
    assert scanning.counts.text.splitlines() == ["Borrowed: 0 books", "Checking 1 book"]
    assert "1 reserved book is waiting for you at the counter." in " ".join(view.texts())
    show(view, kivy_window, "finishing", "ja", pending=2)
    assert "確認中：2冊" in " ".join(view.texts())
