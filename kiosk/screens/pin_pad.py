"""The PIN pad (card PIN, or the library-card password for purpose "library").

The model carries only how many digits were typed, never the digits: the view
cannot leak what it never had. Keys are at least 12 mm and laid out like a phone
(1-2-3 on top), not shuffled, so that patrons with low vision can rely on position.
"""

from __future__ import annotations

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen, side_by_side
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn, scroll_fit
from kiosk.screens.widgets.text import ICON_BACK, ICON_OK, ICON_WARN, Text, icon

FILLED = "●"
EMPTY = "○"


def masked(digits: int, max_digits: int, purpose: str) -> str:
    """● for each typed digit; the card PIN also shows its four places."""
    if purpose == "card":
        return " ".join([FILLED] * digits + [EMPTY] * max(0, max_digits - digits))
    return FILLED * digits


def keypad_title_size(th) -> float:
    """Beside a landscape keypad the column is narrow: a title a little above body size
    stays on one line there in large text, where the full title size would need two."""
    return th.font_body * 1.2 if not th.portrait and th.width < 1200 else th.font_title


class KeypadLayout:
    """Where a keypad screen puts its parts (`info`, `pad` in `pad_holder`, `actions`).

    Portrait: the words on top, under them the keypad with cancel and OK in a column to
    its right (as on Japanese bank ATMs), which leaves the words a row's more room.
    Landscape: the keypad takes the full height on the right; the countdown runs under
    both, so that the words keep the room for the smallest readable size."""

    def keypad_body(self) -> Widget:
        th = self.ctx.theme
        self.info.spacing = th.gap * 0.5
        if not th.portrait:
            return self.info
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(scroll_fit(self.info))
        row = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=self.pad.height)
        self.pad_holder.size_hint_x = None
        self.pad_holder.width = self.pad.width
        row.add_widget(self.pad_holder)
        self.actions.orientation = "vertical"
        self.actions.size_hint_y = 1
        for button in self.actions.children:
            button.prefer_single = False
        row.add_widget(self.actions)
        body.add_widget(row)
        return body

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return super().compose()
        self.pad_holder.size_hint_x = None
        self.pad_holder.width = self.pad.width
        return side_by_side(self, (self.banners, self.info, self.actions), self.pad_holder, self.footer)


class PinScreen(KeypadLayout, KioskScreen):
    screen = "pin"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        self.keys: dict[str, KButton] = {}
        self.pad = GridLayout(cols=3, spacing=th.gap, size_hint=(None, None),
                              width=th.key_width * 3 + th.gap * 2, height=th.key * 4 + th.gap * 3)
        for label in "1234567890":
            self.keys[label] = KButton(th, press, "digit", label, kind="key", size=th.font_key, text=label)
        self.keys["clear"] = KButton(th, press, "clear", size=th.font_small)
        self.keys["delete"] = KButton(th, press, "delete", size=th.font_small)
        for k in (self.keys["clear"], self.keys["delete"]):
            k.padding = (th.gap * 0.3, 0)        # two-line labels in a 12 mm key
        for name in list("123456789") + ["clear", "0", "delete"]:
            self.pad.add_widget(self.keys[name])
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)

        self.title = Text(th, size=keypad_title_size(th), bold=True)
        self.hint = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        self.dots = Text(th, size=th.font_title * 1.25, fixed_font=True, font_name=fonts.ICON_FONT_NAME,
                         prefer_single=True)
        self.tries = Text(th, size=th.font_body, prefer_single=True, size_hint_y=0.7)
        self.note = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
        self.cancel = KButton(th, press, "cancel")
        self.ok = KButton(th, press, "ok", kind="primary")
        self.actions.add_widget(self.cancel)
        self.actions.add_widget(self.ok)

        self.info = TextColumn(spacing=th.gap)
        for w in (self.title, self.hint, self.dots, self.tries, self.note):
            self.info.add_widget(w)
        return self.keypad_body()

    def render_body(self, model: dict, t: Translator) -> None:
        purpose = model.get("purpose", "card")
        digits = int(model.get("digits") or 0)
        self.title.text = t(f"pin.title.{purpose}")
        self.hint.text = t(f"pin.hint.{purpose}")
        self.dots.text = masked(digits, int(model.get("max_digits") or 4), purpose)
        tries = model.get("tries_left")
        if purpose == "card" and tries is not None:
            warn = tries <= 2
            self.tries.text = (icon(ICON_WARN) + " " if warn else "") + t.plural("pin.tries_left", tries)
            self.tries.color = self.ctx.theme.palette.warn if warn else self.ctx.theme.palette.text
            self.tries.bold = warn
        else:
            self.tries.text = ""
        self.note.text = t("pin.masked")
        self.keys["clear"].text = t("pin.clear")
        self.keys["delete"].text = icon(ICON_BACK) + "\n" + t("pin.delete")
        self.cancel.text = t("common.cancel")
        self.ok.text = icon(ICON_OK) + " " + t("pin.ok")

    def clear_body(self) -> None:
        self.dots.text = ""
        self.tries.text = ""
