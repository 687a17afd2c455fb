"""My account: loans with due dates (overdue marked with text and an icon), renewals,
holds ready apart from holds still on the way, charges to pay at the counter, and
blocks in plain words. Drawn from kiosk/core/account.py's model, a page of loans at a
time; wiped with the session like every screen.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.layout import TextColumn, scroll_fit
from kiosk.screens.widgets.text import ICON_NO, ICON_OK, ICON_WAIT, ICON_WARN, Text, escape, icon

#: Patron-status flags grouped into the few plain reasons the screen words.
BLOCK_WORDS = {
    "excessive_outstanding_fines": "fines", "excessive_outstanding_fees": "fines", "too_many_items_billed": "fines",
    "too_many_items_overdue": "overdue", "recall_overdue": "overdue", "card_reported_lost": "lost",
    "too_many_items_charged": "limit", "too_many_renewals": "limit",
}


def loan_text(row: dict, t: Translator) -> tuple[str, str]:
    """(icon, words) for one loan: due date, overdue, and the renewal's answer."""
    due = str(row.get("due") or "")
    words = t("row.due", date=escape(format_due(due, t.lang))) if due else ""
    mark = ICON_OK
    if row.get("overdue"):
        mark, words = ICON_WARN, t("account.overdue") + " — " + words
    state, reason = row.get("state"), str(row.get("reason") or "")
    if state == "renewing":
        return ICON_WAIT, t("account.renewing")
    if state == "renewed":
        return ICON_OK, t("account.renewed", date=escape(format_due(due, t.lang)))
    if state == "refused" or reason:
        msgid = "account.reason." + (reason or "other")
        return ICON_NO, t(msgid) if t.has(msgid) else t("account.reason.other")
    return mark, words


class AccountLine(BoxLayout):
    """One loan: icon, title, due date or the renewal's answer, and its renew button."""

    def __init__(self, screen: KioskScreen) -> None:
        th = screen.ctx.theme
        super().__init__(orientation="horizontal", size_hint_y=None, height=th.touch * 1.3, spacing=th.gap,
                         padding=(th.pad * 0.5, th.pad * 0.2))
        paint(self, th.palette.surface, radius=th.gap)
        self.mark = Text(th, size=th.font_title, bold=True, size_hint_x=None, width=th.font_title * 1.4,
                         fixed_font=True)
        words = TextColumn()
        self.heading = Text(th, halign="left", bold=True, size=th.font_body, prefer_single=True)
        self.detail = Text(th, halign="left", size=th.font_small)
        words.add_widget(self.heading)
        words.add_widget(self.detail)
        self.renew = KButton(th, lambda a, v: screen.ctx.press(a, v), "renew", size_hint_x=0.3)
        for w in (self.mark, words, self.renew):
            self.add_widget(w)
        self.least = th.touch * 1.3

    def fit(self, width: float) -> None:
        """As tall as its words need in `width` (a long renewal answer wraps), at least a row."""
        pl, pt, pr, pb = self.padding
        inner = width - pl - pr - self.spacing * 2 - self.mark.width
        words = inner / (1 + self.renew.size_hint_x)
        need = self.heading.natural_height(words) + self.detail.natural_height(words) + pt + pb
        self.height = max(self.least, need)

    def show(self, row: dict, t: Translator, can_renew: bool) -> None:
        mark, words = loan_text(row, t)
        self.mark.text = icon(mark)
        self.heading.text = escape(str(row.get("title") or row.get("item_id") or ""))
        self.detail.text = words
        self.renew.value = str(row.get("item_id"))
        self.renew.ident = f"renew:{row.get('item_id')}"
        self.renew.text = t("account.renew")
        usable = can_renew and row.get("state") in ("", None)
        self.renew.disabled = not usable
        self.renew.opacity = 1 if usable else 0.4


class AccountScreen(KioskScreen):
    screen = "account"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        # The account's words: title, standing notices (blocks, charges) and the counts,
        # holds and fines. Beside the loans in landscape, heading their list in portrait, so the
        # notices never take the list's room on a small panel (they scroll instead).
        self.words = TextColumn(spacing=th.gap, size_hint_x=0.4)
        self.title = Text(th, size=th.font_body * 1.15, bold=True, halign="left")
        self.page = Text(th, size=th.font_body, halign="left")
        for w in (self.title, self.page, self.notes):
            self.words.add_widget(w)
        self.info: list[Text] = []
        # The loans scroll: a long account never pushes the buttons off.
        self.scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap), scroll_type=["bars", "content"])
        self.scroll.least_room = th.touch * 1.5         # a TextColumn leaves it at least a row
        self.column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=th.gap * 0.5)
        self.column.bind(minimum_height=self.column.setter("height"), width=lambda *_: self._fit_lines())
        self.scroll.add_widget(self.column)
        # One row of buttons: page back, renew all, back to borrowing, page on.
        # Room for two-line labels (large text on a narrow panel).
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.action)
        self.prev = KButton(th, press, "page", size_hint_x=0.6)
        self.renew_all = KButton(th, press, "renew_all", kind="primary")
        self.back = KButton(th, press, "close")
        self.next = KButton(th, press, "page", size_hint_x=0.6)
        for w in (self.prev, self.renew_all, self.back, self.next):
            self.actions.add_widget(w)
        self._line_widgets: list[AccountLine] = []
        if not th.portrait:
            return self.words
        # Portrait: the words head the scrolling list, the buttons stay in view below.
        self.words.size_hint = (1, None)
        self.words.bind(width=self._fit_words, need_changed=self._fit_words)
        self.column.add_widget(self.words)
        body = TextColumn(spacing=th.gap)
        for w in (self.scroll, self.actions):
            body.add_widget(w)
        return body

    def _fit_words(self, *_) -> None:
        if self.words.width > 4:
            self.words.height = self.words.natural_height(self.words.width)

    def compose(self) -> Widget:
        """Landscape: the words on the left (scrolling on a small panel in large text), the
        loans on the right below any passing notice, the buttons across the bottom."""
        th = self.ctx.theme
        if th.portrait:
            return super().compose()
        frame = BoxLayout(orientation="vertical", padding=th.pad, spacing=th.gap)
        frame.add_widget(self.header)
        row = BoxLayout(orientation="horizontal", spacing=th.pad)
        row.add_widget(scroll_fit(self.words))
        right = TextColumn(spacing=th.gap)
        right.add_widget(self.banners)
        right.add_widget(self.scroll)
        row.add_widget(scroll_fit(right))
        for w in (row, self.actions, self.footer):
            frame.add_widget(w)
        return frame

    def _info_lines(self, lines: list[str]) -> None:
        th = self.ctx.theme
        while len(self.info) < len(lines):
            text = Text(th, size=th.font_small, halign="left")
            self.info.append(text)
            self.words.add_widget(text)
        for i, text in enumerate(self.info):
            text.text = lines[i] if i < len(lines) else ""

    def banner_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        """Passing notices; the account's standing ones are among its words (note_specs)."""
        specs = super().banner_specs(model, t)
        if model.get("loading"):
            specs.append(("info", t("account.loading"), "loading"))
        if model.get("unavailable"):
            specs.append(("warn", t("account.unavailable"), "unavailable"))
        return specs

    def note_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        """Why the patron cannot renew or borrow, and what they owe."""
        specs = super().note_specs(model, t)
        why = model.get("why_not")
        if why and model.get("loan_count") and not (why == "blocked" and model.get("blocks")):
            specs.append(("warn", t("account.why_not." + str(why)), "why_not"))
        blocks = sorted({BLOCK_WORDS.get(b, "other") for b in model.get("blocks") or []})
        if blocks:
            reasons = ", ".join(t("account.block." + b) for b in blocks)
            specs.append(("error", t("account.blocked", reasons=reasons), "blocked"))
        if model.get("fee_amount"):
            specs.append(("warn", t("account.fines", amount=escape(str(model["fee_amount"])),
                                    currency=escape(str(model.get("currency") or ""))), "fines"))
        return specs

    def render_body(self, model: dict, t: Translator) -> None:
        font = fonts.registered(t.lang)
        self.title.text = t("account.title")
        parts = []
        result = model.get("renew_all_result") or {}
        if result:
            parts.append(t("account.renew_all_result", renewed=result.get("renewed", 0),
                           unrenewed=result.get("unrenewed", 0)))
        parts.append(t.plural("account.loans", int(model.get("loan_count") or 0)))
        if not model.get("loans") and not model.get("loading"):
            parts.append(t("account.no_loans"))
        ready, pending = list(model.get("holds_ready") or []), list(model.get("holds_pending") or [])
        if ready:
            parts.append(icon(ICON_OK) + " " + t.plural("account.holds_ready", len(ready)) + ": "
                         + "、".join(escape(x) for x in ready))
        if pending:
            parts.append(t.plural("account.holds_pending", len(pending)) + ": " + "、".join(escape(x) for x in pending))
        for fine in model.get("fines") or []:
            parts.append(icon(ICON_WARN) + " " + escape(str(fine)))
        self._info_lines(parts)
        loans = list(model.get("loans") or [])
        while len(self._line_widgets) < len(loans):
            line = AccountLine(self)
            self._line_widgets.append(line)
            self.column.add_widget(line)
        th = self.ctx.theme
        for i, line in enumerate(self._line_widgets):
            if i < len(loans):
                line.opacity, line.disabled, line.height = 1, False, th.touch * 1.3
                line.show(loans[i], t, bool(model.get("can_renew")))
                for w in (line.heading, line.detail, line.renew):
                    w.font_name = font
            else:
                line.opacity, line.disabled, line.height = 0, True, 0
        page, pages = int(model.get("page") or 0), int(model.get("pages") or 1)
        self.prev.value, self.next.value = str(max(0, page - 1)), str(min(pages - 1, page + 1))
        self.prev.ident, self.next.ident = "page:prev", "page:next"
        self.prev.text, self.next.text = "◀", "▶"
        self.prev.disabled, self.next.disabled = page == 0, page >= pages - 1
        for b in (self.prev, self.next):
            b.opacity = 1 if pages > 1 else 0
            b.size_hint_x = 0.6 if pages > 1 else 0.001
        self.page.text = t("account.page", page=page + 1, pages=pages) if pages > 1 else ""
        self.renew_all.text = t("account.renewing") if model.get("renew_all") == "renewing" else t("account.renew_all")
        self.renew_all.disabled = not model.get("can_renew") or model.get("renew_all") == "renewing"
        self.back.text = t("account.back")
        self._fit_lines()
        self.scroll.scroll_y = 1

    def _fit_lines(self) -> None:
        """Each loan as tall as its words need at full size (the list scrolls rather than
        shrinking them)."""
        width = self.column.width
        if width <= 4:
            return
        for line in self._line_widgets:
            if line.opacity:
                line.fit(width)

    def clear_body(self) -> None:
        for text in self.info:
            text.text = ""
        self.page.text = ""
        for line in self._line_widgets:
            line.heading.text = line.detail.text = ""
