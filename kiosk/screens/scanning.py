"""Scanning books: one row per scan, newest on top, with the outcome in words.

Until the first scan the list's room shows a drawing of where to scan and a cancel
that borrows nothing (once anything is borrowed, Finish is the only way out).

A row appears the moment the barcode is read ("Checking…") and is updated in place
when the catalogue answers, so a fast scanner never waits for the screen. Refusals
are shown with the friendly reason, never the catalogue's raw text. Rows are also
the summary screen's list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen, list_below, list_beside
from kiosk.screens.theme import Theme
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.drawings import where_to_scan
from kiosk.screens.widgets.layout import ScrollFit, TextColumn, WordsAboveList
from kiosk.screens.widgets.text import ICON_INFO, ICON_NO, ICON_OK, ICON_UNKNOWN, ICON_WAIT, Text, escape, icon


@dataclass(frozen=True)
class RowView:
    kind: str           # pending, ok, refused, unconfirmed
    mark: str
    heading: str
    detail: str


def row_view(row: dict, t: Translator) -> RowView:
    """What one loan row says, in words and an icon (never colour alone)."""
    state = row.get("state", "pending")
    title = row.get("title") or ""
    heading = escape(title) if title else t("row.item", item_id=escape(str(row.get("item_id", ""))))
    if state == "ok":
        detail = t("row.ok")
        if row.get("due"):
            detail += " — " + t("row.due", date=escape(format_due(str(row["due"]), t.lang)))
        if row.get("offline"):
            detail += " (" + t("row.offline") + ")"
        return RowView("ok", ICON_OK, heading, detail)
    if state == "refused":
        msgid = "refusal." + str(row.get("refusal") or "other")
        reason = t(msgid) if t.has(msgid) else t("refusal.other")
        return RowView("refused", ICON_NO, heading, t("row.refused") + " — " + reason)
    if state == "unconfirmed":
        return RowView("unconfirmed", ICON_UNKNOWN, heading,
                       t("row.unconfirmed") + " — " + t("row.unconfirmed_detail"))
    return RowView("pending", ICON_WAIT, heading, t("row.pending"))


class LoanRow(BoxLayout):
    @staticmethod
    def least_height(theme: Theme) -> float:
        """A row's usual height: a title line and two lines of outcome."""
        return theme.font_body * 1.6 + theme.font_small * 2.9 + theme.pad

    def __init__(self, theme: Theme, txn_id: str) -> None:
        height = self.least_height(theme)
        super().__init__(orientation="horizontal", size_hint_y=None, height=height,
                         padding=(theme.pad * 0.6, theme.pad * 0.3), spacing=theme.pad * 0.6)
        self.theme = theme
        self.txn_id = txn_id
        self.kind = ""
        self._shown: tuple[RowView, str] | None = None
        paint(self, theme.palette.surface, radius=theme.gap)
        self.mark = Text(theme, size=theme.font_title, bold=True, size_hint_x=None,
                         width=theme.font_title * 1.6, fixed_font=True)
        self._mark_bg = paint(self.mark, theme.palette.secondary, radius=theme.gap)
        self.words = words = TextColumn()
        self.heading = Text(theme, halign="left", bold=True, size=theme.font_body, prefer_single=True)
        self.detail = Text(theme, halign="left", size=theme.font_small)
        words.add_widget(self.heading)
        words.add_widget(self.detail)
        self.add_widget(self.mark)
        self.add_widget(words)
        # At least its usual height; taller when the words need it (large text, a long reason).
        self._least = height
        words.bind(width=self._grow, need_changed=self._grow)

    def _grow(self, *_) -> None:
        if self.words.width > 4:
            self.height = max(self._least, self.words.natural_height(self.words.width) + self.padding[1] * 2)

    def show(self, view: RowView, font: str) -> None:
        """Words and colours for `view`; a row already showing it is left alone, so a new
        scan does not set, typeset and lay out every earlier row again."""
        if (view, font) == self._shown:
            return
        self._shown = (view, font)
        p = self.theme.palette
        bg, fg = {"ok": (p.ok, p.on_ok), "refused": (p.error, p.on_error),
                  "unconfirmed": (p.warn, p.on_warn)}.get(view.kind, (p.secondary, p.on_secondary))
        self.kind = view.kind
        self._mark_bg.rgba = bg
        self.mark.color = fg
        self.mark.text = icon(view.mark)
        self.heading.font_name = font
        self.detail.font_name = font
        self.heading.text = view.heading
        self.detail.text = view.detail
        self.detail.color = p.error if view.kind == "refused" else p.text


class RowList(BoxLayout):
    """Rows in a scroll view, updated in place by txn_id; a hint while empty.

    Each row is worded once per (row, language, wording): the screen is redrawn on every
    scan and every countdown tick, and formatting every due date and resetting every
    row's text each time made a long list slower with every book. The words hold titles,
    so they go with the rows in `clear` (the session's wipe)."""

    def __init__(self, theme: Theme, newest_first: bool = True, empty: Widget | None = None,
                 placeholder: Text | None = None, **kw) -> None:
        super().__init__(orientation="vertical", **kw)
        self.theme = theme
        self.newest_first = newest_first     # scanning: newest on top; summary: in the model's order
        # A TextColumn leaves it at least a whole row: the newest book's outcome in full.
        self.least_room = LoanRow.least_height(theme)
        self.rows: dict[str, LoanRow] = {}
        # txn_id -> (the row as worded, language, view_of, its words)
        self._worded: dict[str, tuple[dict, str, Callable[[dict, Translator], RowView], RowView]] = {}
        self.placeholder = placeholder or Text(theme, color=theme.palette.muted, size=theme.font_body)
        # What stands in for the rows while there are none: the hint, or a panel holding it.
        self.empty = empty if empty is not None else self.placeholder
        self.scroll = ScrollView(do_scroll_x=False, bar_width=max(4, theme.gap), scroll_type=["bars", "content"])
        self.column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=theme.gap)
        self.column.bind(minimum_height=self.column.setter("height"))
        self.scroll.add_widget(self.column)
        self.add_widget(self.empty)

    def render(self, rows: list[dict], t: Translator, font: str, empty_text: str,
               view_of: Callable[[dict, Translator], RowView] | None = None) -> None:
        """`view_of` words each row (default: a loan's `row_view`; the return desk has its own)."""
        view_of = view_of or row_view
        seen = set()
        added = False
        for row in rows:
            txn = str(row.get("txn_id"))
            seen.add(txn)
            widget = self.rows.get(txn)
            if widget is None:
                # Laid out at the list's width before its words are set: typeset once at
                # its real width, not again at each size the layout passes through.
                widget = LoanRow(self.theme, txn)
                if self.column.width > 4:
                    widget.width = self.column.width
                    widget.do_layout()
                widget.show(self._words(txn, row, t, view_of), font)
                self.rows[txn] = widget
                self.column.add_widget(widget, index=len(self.column.children))
                added = True
            else:
                widget.show(self._words(txn, row, t, view_of), font)
        for txn in [x for x in self.rows if x not in seen]:
            self.column.remove_widget(self.rows.pop(txn))
            self._worded.pop(txn, None)
        if not self.newest_first:
            wanted = [self.rows[str(r.get("txn_id"))] for r in rows]
            if list(reversed(self.column.children)) != wanted:
                self.column.clear_widgets()
                for widget in wanted:
                    self.column.add_widget(widget)
        if self.rows:
            if self.empty.parent is not None:
                self.remove_widget(self.empty)
                self.add_widget(self.scroll)
        else:
            self.placeholder.text = empty_text
            if self.scroll.parent is not None:
                self.remove_widget(self.scroll)
                self.add_widget(self.empty)
        if added:
            self.scroll.scroll_y = 1

    def _words(self, txn: str, row: dict, t: Translator,
               view_of: Callable[[dict, Translator], RowView]) -> RowView:
        known = self._worded.get(txn)
        if known is not None and known[1] == t.lang and known[2] is view_of and known[0] == row:
            return known[3]
        view = view_of(row, t)
        self._worded[txn] = (dict(row), t.lang, view_of, view)
        return view

    def clear(self) -> None:
        self.rows.clear()
        self._worded.clear()
        self.column.clear_widgets()
        self.placeholder.text = ""
        if self.scroll.parent is not None:
            self.remove_widget(self.scroll)
            self.add_widget(self.empty)


class ScanningScreen(KioskScreen):
    screen = "scanning"
    offline_msgid = "scan.offline"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        self.greeting = Text(th, size=th.font_body, bold=True, halign="left")
        self.title = Text(th, size=th.font_body * 1.15, bold=True, halign="left")
        self.counts = Text(th, size=th.font_body, halign="left", size_hint_y=0.9)
        self.finish = KButton(th, lambda a, v: ctx.press(a, v), "finish", kind="primary",
                              size_hint_y=None, height=th.action if th.portrait else th.two_line_touch)
        self.my_account = KButton(th, lambda a, v: ctx.press(a, v), "my_account", kind="secondary",
                                  size_hint_y=None, height=self.finish.height)
        # Before the first book the list's room shows where to scan, and a way out that
        # borrows nothing; the first scan replaces both with the rows (the core refuses a
        # cancel once anything is borrowed or being checked: loans are never undone).
        self.where = where_to_scan(th, ctx.scan_picture)
        self.cancel = KButton(th, lambda a, v: ctx.press(a, v), "cancel", kind="secondary", size_hint=(None, None),
                              width=max(th.touch * 3.5, th.width * 0.36), height=th.two_line_touch,
                              pos_hint={"center_x": 0.5})
        # Words as tall as they need, the drawing takes what is left; on a crowded small
        # panel the whole panel scrolls rather than spilling over the notices.
        empty = TextColumn(spacing=th.gap)
        placeholder = Text(th, color=th.palette.muted, size=th.font_body)
        for w in (self.where, placeholder, self.cancel):
            empty.add_widget(w)
        self.list = RowList(th, empty=ScrollFit(empty), placeholder=placeholder)
        if th.portrait:
            # Texts as tall as their words; the list takes the rest, a whole row at least.
            words = TextColumn(spacing=th.gap)
            for w in (self.greeting, self.title, self.notes, self.counts):
                words.add_widget(w)
            body = WordsAboveList(words, self.list, spacing=th.gap)
            self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.action)
            self.my_account.size_hint_x, self.finish.size_hint_x = 0.45, 0.55
            self.actions.add_widget(self.my_account)
            self.actions.add_widget(self.finish)
        else:
            body = TextColumn(spacing=th.gap, size_hint_x=0.38)
            for w in (self.greeting, self.title, self.notes, self.counts):
                body.add_widget(w)
            # Both buttons stay in view under the words (which scroll on a small panel).
            self.actions = BoxLayout(orientation="vertical", spacing=th.gap, size_hint_y=None,
                                     height=self.my_account.height + th.gap + self.finish.height)
            self.actions.add_widget(self.my_account)
            self.actions.add_widget(self.finish)
        return body

    def compose(self) -> Widget:
        """Landscape: passing notices sit above the list and standing ones (holds ready,
        offline) right under the instruction, so neither takes the list's room and both are
        read before the counts."""
        if self.ctx.theme.portrait:
            return list_below(self, self.actions)
        return list_beside(self, under_words=self.actions)

    def note_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        specs = super().note_specs(model, t)
        holds = int(model.get("holds_ready") or 0)
        if holds:
            specs.append(("info", t.plural("scan.holds_ready", holds), "holds_ready"))
        return specs

    def render_body(self, model: dict, t: Translator) -> None:
        name = model.get("name")
        if name:
            self.greeting.text = t("scan.greeting", name=escape(str(name)))
        else:
            self.greeting.text = ""
        self.title.text = t("scan.title")
        parts = [t.plural("scan.lent", int(model.get("lent") or 0))]
        if model.get("allowance") is not None:
            parts.append(t.plural("scan.allowance", int(model["allowance"])))
        if model.get("pending"):
            parts.append(t.plural("scan.pending", int(model["pending"])))
        self.counts.text = "\n".join(parts)
        self.finish.text = icon(ICON_OK) + " " + t("scan.finish")
        self.my_account.text = icon(ICON_INFO) + " " + t("account.open")
        self.cancel.text = t("scan.cancel")
        self.list.render(list(model.get("rows") or []), t, fonts.registered(t.lang), t("scan.empty"))

    def clear_body(self) -> None:
        self.greeting.text = ""
        self.counts.text = ""
        self.list.clear()
