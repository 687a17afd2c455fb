"""Loans the catalogue refused after they were lent offline, for staff to resolve.

The list holds library card numbers, so `clear_body` empties it when the screen is left.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.staff.base import StaffScreen, press_for
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_OK, Text, escape, icon


# Outbox reasons (kiosk/store/outbox.py Conflict.reason) that say more than "refused".
_REASONS = ("withdrawn_but_lent", "withdrawn_unanswered", "kiosk_error")
# A catalogue's own refusal words, as some catalogues send them, to the kiosk's refusal.
_ALIASES = {"blocked": "patron_blocked", "patron blocked": "patron_blocked", "hold": "on_hold",
            "on hold": "on_hold", "reserved": "on_hold", "limit": "limit_reached", "too many": "limit_reached",
            "checked out": "already_out", "charged": "already_out", "unknown item": "item_unknown",
            "not found": "item_unknown", "unknown patron": "patron_unknown"}


def conflict_reason(conflict: dict, t: Translator) -> str:
    """Why a loan waits for staff, in the staff's language: the refusal's words, the
    outbox's reason, or a catalogue's free text mapped to the refusal it means (its raw
    English never reaches the screen; anything unrecognised reads as "other")."""
    refusal = str(conflict.get("refusal") or "")
    if refusal and t.has(f"refusal.{refusal}"):
        return t(f"refusal.{refusal}")
    reason = str(conflict.get("reason") or "")
    if reason in _REASONS:
        return t(f"staff.review.why.{reason}")
    for text in (refusal, reason):
        word = text.rsplit(":", 1)[-1].strip().lower().replace("_", " ")
        mapped = _ALIASES.get(word) or word.replace(" ", "_")
        if word and t.has(f"refusal.{mapped}"):
            return t(f"refusal.{mapped}")
    return t("refusal.other")


class ConflictRow(BoxLayout):
    """One loan the catalogue refused after it was lent offline: what, whose, why, when."""

    def __init__(self, screen: KioskScreen, conflict: dict, t: Translator) -> None:
        th = screen.ctx.theme
        super().__init__(orientation="horizontal", size_hint_y=None, height=th.touch * 1.9, spacing=th.gap,
                         padding=(th.pad, th.gap))
        paint(self, th.palette.surface, radius=th.gap)
        self.conflict_id = str(conflict.get("id"))
        words = TextColumn()
        reason = conflict_reason(conflict, t)
        self.heading = Text(th, halign="left", bold=True, prefer_single=True,
                            text=t("staff.review.item", item_id=escape(str(conflict.get("item_id") or "—")))
                            + "   " + t("staff.review.patron", patron_id=escape(str(conflict.get("patron_id") or "—"))))
        self.reason = Text(th, halign="left", size=th.font_small, text=t("staff.review.reason", reason=reason))
        when = str(conflict.get("recorded_at") or "")
        detail = t("staff.review.recorded", time=escape(when.replace("T", " ")[:16]))
        if conflict.get("offline"):
            detail += "  ·  " + t("staff.review.offline")
        self.detail = Text(th, halign="left", size=th.font_small, color=th.palette.muted, text=detail,
                           prefer_single=True)
        for w in (self.heading, self.reason, self.detail):
            words.add_widget(w)
        self.add_widget(words)
        self.resolve = KButton(th, press_for(screen), "resolve", self.conflict_id, kind="ok",
                               size_hint_x=None, width=max(th.touch * 2.4, th.width * 0.2),
                               text=icon(ICON_OK) + " " + t("staff.review.resolve"))
        self.add_widget(self.resolve)
        # As tall as its words need at full size in the width they get (large text wraps them).
        least = th.touch * 1.9
        words.bind(width=lambda w, width: setattr(self, "height", max(least, w.natural_height(width) + 2 * th.gap)))


class StaffReviewScreen(StaffScreen):
    screen = "staff_review"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        self.scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap))
        self.scroll.least_room = th.touch * 2
        self.column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=th.gap)
        self.column.bind(minimum_height=self.column.setter("height"))
        self.scroll.add_widget(self.column)
        body.add_widget(self.scroll)
        self.rows: dict[str, ConflictRow] = {}
        self.placeholder = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=None,
                                height=th.touch)
        self.back = self.back_button()
        body.add_widget(self.back)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("staff.review.title")
        self.back.text = t("staff.back")
        conflicts = model.get("conflicts") or []
        self.column.clear_widgets()
        self.rows = {}
        if not conflicts:
            self.placeholder.text = t("staff.review.empty")
            self.column.add_widget(self.placeholder)
            return
        for c in conflicts:
            row = ConflictRow(self, c, t)
            self.rows[row.conflict_id] = row
            self.column.add_widget(row)

    def clear_body(self) -> None:
        self.column.clear_widgets()
        self.rows = {}
        self.placeholder.text = ""
