"""Returning books: one row per book, what to do with it in words and an icon.

Drawn from kiosk/core/returns.py's model: "returned", "please put it on the hold shelf",
"please take it to the counter", or "checking…" while the catalogue answers. A return
received while the catalogue was away says so (it is recorded later). Done shows the
receipt choice when there is a printer.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen, list_below, list_beside
from kiosk.screens.scanning import RowList, RowView
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn, WordsAboveList
from kiosk.screens.widgets.text import ICON_NO, ICON_OK, ICON_WAIT, ICON_WARN, Text, escape, icon


def return_row_view(row: dict, t: Translator) -> RowView:
    """What one returned book says (never colour alone: an icon and words)."""
    title = row.get("title") or ""
    heading = escape(title) if title else t("row.item", item_id=escape(str(row.get("item_id", ""))))
    state = row.get("state", "pending")
    if state == "returned":
        detail = t("returns.queued") if row.get("queued") else t("returns.returned")
        return RowView("ok", ICON_OK, heading, detail)
    if state == "hold_shelf":
        return RowView("unconfirmed", ICON_WARN, heading, t("returns.hold_shelf"))
    if state == "counter":
        return RowView("refused", ICON_NO, heading, t("returns.counter"))
    return RowView("pending", ICON_WAIT, heading, t("row.pending"))


class ReturnsScreen(KioskScreen):
    screen = "returns"
    offline_msgid = "returns.offline"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        self.title = Text(th, size=th.font_body * 1.15, bold=True, halign="left")
        self.counts = Text(th, size=th.font_body, halign="left", size_hint_y=0.9)
        # Buttons with room for two-line labels (large text on a narrow column).
        self.button_height = th.action if th.portrait else th.two_line_touch
        self.finish = KButton(th, press, "finish", kind="primary")
        self.receipt = KButton(th, press, "receipt", kind="primary")
        self.no_receipt = KButton(th, press, "no_receipt", kind="secondary")
        self.list = RowList(th)
        self.actions = BoxLayout(orientation="vertical", spacing=th.gap, size_hint_y=None,
                                 height=self.button_height)
        if th.portrait:
            # Texts as tall as their words; the list takes the rest, a whole row at least.
            words = TextColumn(spacing=th.gap)
            for w in (self.title, self.notes, self.counts):
                words.add_widget(w)
            body = WordsAboveList(words, self.list, spacing=th.gap)
        else:
            # The words scroll on a small panel; the buttons stay in view under them (list_beside).
            body = TextColumn(spacing=th.gap, size_hint_x=0.38)
            for w in (self.title, self.notes, self.counts):
                body.add_widget(w)
        return body

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return list_below(self, self.actions)
        return list_beside(self, under_words=self.actions)

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        summary = bool(model.get("summary"))
        self.title.text = t("returns.done_title") if summary else t("returns.title")
        self.counts.text = t.plural("returns.count", int(model.get("returned") or 0))
        self.list.render(list(model.get("rows") or []), t, fonts.registered(t.lang), t("returns.empty"),
                         view_of=return_row_view)
        self.actions.clear_widgets()
        if summary and model.get("receipt_available"):
            self.receipt.text = t("summary.receipt")
            self.no_receipt.text = t("summary.no_receipt")
            for b in (self.receipt, self.no_receipt):
                b.disabled = bool(model.get("printing"))
                self.actions.add_widget(b)
            self.actions.height = self.button_height * 2 + th.gap
        else:
            self.finish.action = "no_receipt" if summary else "finish"
            self.finish.text = icon(ICON_OK) + " " + (t("common.ok") if summary else t("returns.finish"))
            self.actions.add_widget(self.finish)
            self.actions.height = self.button_height

    def clear_body(self) -> None:
        self.counts.text = ""
        self.list.clear()
