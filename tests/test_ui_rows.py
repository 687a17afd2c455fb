"""The scanning list words each row once: a new scan or a countdown tick redraws the
screen, but earlier rows keep their words and their drawn text (issue 16, Build 4).

Real KioskView in the real test window; format_due is the real function, counted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.ui


def loan(n: int) -> dict:
    return dict(txn_id=f"t{n}", item_id=f"1{n:07d}", state="ok", title=f"本 第{n}巻",
                due=f"2025-04-{n % 28 + 1:02d}", refusal=None, offline=False)


def scanning(rows: list[dict], lang: str = "en", countdown: int | None = None) -> dict:
    return dict(language=lang, countdown=countdown, card_reminder=False, test_pki=False, notice=None,
                rows=rows, lent=sum(r["state"] == "ok" for r in rows), pending=0, allowance=20, name=None,
                holds_ready=0, offline=False)


@pytest.fixture
def due_formats(monkeypatch) -> list[tuple[str, str]]:
    """Every call of format_due the scanning screen makes, with its arguments."""
    import kiosk.screens.scanning as scanning_module

    calls: list[tuple[str, str]] = []
    real = scanning_module.format_due

    def counted(date: str, lang: str) -> str:
        calls.append((date, lang))
        return real(date, lang)

    monkeypatch.setattr(scanning_module, "format_due", counted)
    return calls


def test_each_row_is_worded_once_and_unchanged_rows_keep_their_drawn_text(make_view, kivy_window, due_formats):
    view, _ = make_view()
    n = 6
    rows = [loan(i) for i in range(n, 0, -1)]               # newest first, as the session sends them
    view.show("scanning", scanning(rows))
    kivy_window.settle()
    screen = view.screens["scanning"]
    assert sorted(due_formats) == sorted((r["due"], "en") for r in rows)
    oldest = screen.list.rows["t1"]
    assert "Due" in oldest.detail.text
    drawn = (oldest.heading.texture, oldest.detail.texture, oldest.mark.texture)
    assert all(tex is not None for tex in drawn)

    # A new scan: only the new row is worded; the others are not touched.
    pending = dict(txn_id=f"t{n + 1}", item_id=f"1{n + 1:07d}", state="pending", title="", due="",
                   refusal=None, offline=False)
    view.show("scanning", scanning([pending] + rows))
    kivy_window.settle()
    assert len(due_formats) == n
    # The catalogue answers: that row (and only it) is worded again, with its due date.
    rows = [loan(n + 1)] + rows
    view.show("scanning", scanning(rows, countdown=9))
    kivy_window.settle()
    assert len(due_formats) == n + 1 and due_formats[-1] == (loan(n + 1)["due"], "en")
    assert screen.list.rows[f"t{n + 1}"].kind == "ok"

    # Redraws of the same rows (a countdown tick) word nothing again.
    for tick in (8, 7, None):
        view.show("scanning", scanning([dict(r) for r in rows], countdown=tick))
        kivy_window.settle()
    assert len(due_formats) == n + 1
    assert screen.list.rows["t1"] is oldest
    assert (oldest.heading.texture, oldest.detail.texture, oldest.mark.texture) == drawn
    assert all(a is b for a, b in zip((oldest.heading.texture, oldest.detail.texture, oldest.mark.texture), drawn))

    # Another language words every row again, in that language.
    english = oldest.detail.text
    view.show("scanning", scanning(rows, lang="ja"))
    kivy_window.settle()
    assert len(due_formats) == 2 * (n + 1) and {lang for _, lang in due_formats[n + 1:]} == {"ja"}
    assert oldest.detail.text != english and "返却" in oldest.detail.text

    # The words go with the session: back at idle, the same rows are worded afresh.
    view.show("idle", dict(language="ja", countdown=None, card_reminder=False, test_pki=False, notice=None,
                           reader_ok=True, library_card=True, help=False, card_number=True))
    kivy_window.settle()
    assert not screen.list.rows
    view.show("scanning", scanning(rows, lang="ja"))
    kivy_window.settle()
    assert len(due_formats) == 3 * (n + 1)
