"""The loans of this visit with their due dates, and the receipt choice.

Borrowed books come first, then the refused and unconfirmed ones (the core orders them);
when every borrowed book is due back the same day the date is said once, above the list.

Shown only when every loan has an answer (or was given up as "not confirmed"), so
"done" never appears while a book is still unregistered. The receipt question has
the same countdown as every other screen: a walked-away patron is logged out.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen, list_below, list_beside
from kiosk.screens.scanning import RowList, RowView, row_view
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_OK, Text, escape, icon


def _without_due(row: dict, t: Translator) -> RowView:
    """A row's words without its due date, said once above the list (one function, so
    the list knows the rows' words are unchanged between redraws)."""
    return row_view({**row, "due": ""}, t)


class SummaryScreen(KioskScreen):
    screen = "summary"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        self.title = Text(th, size=th.font_title, bold=True, halign="left", prefer_single=True,
                          size_hint_y=None, height=th.font_title * 1.6)
        self.count = Text(th, size=th.font_body, halign="left", size_hint_y=None, height=th.font_body * 1.6)
        self.due = Text(th, size=th.font_body, bold=True, halign="left", size_hint_y=None, height=0)
        self.list = RowList(th, newest_first=False)
        self.note = Text(th, size=th.font_body, bold=True, color=th.palette.warn, halign="left",
                         size_hint_y=None, height=0)
        self.question = Text(th, size=th.font_body, size_hint_y=None, height=0)
        self.receipt = KButton(th, press, "receipt", kind="primary")
        self.no_receipt = KButton(th, press, "done", kind="secondary")
        self.done = KButton(th, press, "done", kind="primary")
        # The column gives each text the room its words need (TextColumn), so a long note
        # wraps instead of shrinking below a readable size; the list takes the rest.
        column = TextColumn(spacing=th.gap, size_hint_x=1 if th.portrait else 0.4)
        for w in (self.title, self.count, self.due, self.note, self.question):
            w.size_hint_y = 1
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
        if th.portrait:
            # The list between the words, the receipt choice in view below (list_below).
            for w in (self.title, self.count, self.due, self.list, self.note, self.question):
                column.add_widget(w)
            return column
        # The receipt choice goes under the list (list_beside), where two buttons side by side
        # have room for two-line labels; the side column keeps the words.
        for w in (self.title, self.count, self.due, self.note, Widget(size_hint_y=0.05), self.question):
            column.add_widget(w)
        return column

    def compose(self) -> Widget:
        """Notices above the list; the receipt choice always in view."""
        if self.ctx.theme.portrait:
            return list_below(self, self.actions)
        return list_beside(self, under_list=self.actions)

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        rows = list(model.get("rows") or [])
        lent = sum(r.get("state") == "ok" for r in rows)
        self.title.text = t("summary.title")
        self.count.text = t.plural("summary.count", lent)
        shared = model.get("due")
        portrait = th.portrait
        if shared:      # said once here, so the rows leave it out
            self.due.text = t("summary.due_all", date=escape(format_due(str(shared), t.lang)))
            view = _without_due
        else:
            self.due.text = ""
            view = row_view
        self.list.render(rows, t, fonts.registered(t.lang), "", view_of=view)
        if any(r.get("state") == "unconfirmed" for r in rows):
            self.note.text = t("summary.counter_note")
        else:
            self.note.text = ""
        self.actions.clear_widgets()
        printing = model.get("notice") == "printing"     # the session waits for the printer
        for button in (self.receipt, self.no_receipt, self.done):
            button.disabled = printing
        if model.get("receipt_available"):
            self.question.text = t("summary.receipt_question")
            self.receipt.text = t("summary.receipt")
            self.no_receipt.text = t("summary.no_receipt")
            vertical = self.actions.orientation == "vertical"
            self.actions.height = th.touch * 2 + th.gap if vertical else (th.action if portrait else th.two_line_touch)
            self.actions.add_widget(self.receipt if vertical else self.no_receipt)
            self.actions.add_widget(self.no_receipt if vertical else self.receipt)
        else:
            self.question.text = ""
            self.done.text = icon(ICON_OK) + " " + t("summary.done")
            self.actions.height = th.touch
            self.actions.add_widget(self.done)

    def clear_body(self) -> None:
        self.count.text = ""
        self.due.text = ""
        self.note.text = ""
        self.list.clear()
