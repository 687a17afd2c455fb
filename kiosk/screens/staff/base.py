"""What every staff screen shares: no language bar, staff notices, a title row, the
back button, the menus' button grid, the PIN pad of the sign-in and card screens and the
card screens' spinner.

Staff screens draw kiosk/core/staff.py's plain models exactly as the patron screens draw
the session's: touches go back only as kiosk.core.events.Press, nothing is kept once a
screen is left. Staff screens have no language bar: staff use the site's default language.
"""

from __future__ import annotations

from typing import Callable

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.gridlayout import GridLayout

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.theme import Theme
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.drawings import Spinner
from kiosk.screens.widgets.text import ICON_BACK, Text, icon

# Notices that report progress rather than a problem.
STAFF_INFO_NOTICES = {"reset_done", "sync_started"}


def press_for(screen: KioskScreen) -> Callable[[str, str | None], None]:
    return lambda a, v: screen.ctx.press(a, v)


def staff_pin_pad(screen: KioskScreen) -> tuple[GridLayout, dict[str, KButton]]:
    """The phone-layout pad of the patron PIN screen (same sizes: keys >= 12 mm)."""
    th = screen.ctx.theme
    press = press_for(screen)
    keys: dict[str, KButton] = {}
    pad = GridLayout(cols=3, spacing=th.gap, size_hint=(None, None),
                     width=th.key_width * 3 + th.gap * 2, height=th.key * 4 + th.gap * 3)
    for label in "1234567890":
        keys[label] = KButton(th, press, "digit", label, kind="key", size=th.font_key, text=label)
    keys["clear"] = KButton(th, press, "clear", size=th.font_small)
    keys["delete"] = KButton(th, press, "delete", size=th.font_small)
    for k in (keys["clear"], keys["delete"]):
        k.padding = (th.gap * 0.3, 0)        # two-line labels in a 12 mm key
    for name in list("123456789") + ["clear", "0", "delete"]:
        pad.add_widget(keys[name])
    return pad, keys


def button_grid(screen: KioskScreen, actions: tuple[str, ...], cols: int,
                kinds: dict[str, str]) -> tuple[GridLayout, dict[str, KButton]]:
    """The menus' grid, a button for each action (`kinds` names those not "secondary").
    Its rows keep room for two-line labels: on a small panel in large text the screen
    scrolls (ScrollFit) rather than squeezing them."""
    th = screen.ctx.theme
    rows = -(-len(actions) // cols)
    grid = GridLayout(cols=cols, rows=rows, spacing=th.gap)
    grid.least_room = rows * th.two_line_touch + (rows - 1) * th.gap
    buttons: dict[str, KButton] = {}
    for action in actions:
        buttons[action] = KButton(th, press_for(screen), action, kind=kinds.get(action, "secondary"))
        grid.add_widget(buttons[action])
    return grid, buttons


def label_pad_keys(keys: dict[str, KButton], t: Translator) -> None:
    keys["clear"].text = t("pin.clear")
    keys["delete"].text = icon(ICON_BACK) + "\n" + t("pin.delete")


class BusySpinner(AnchorLayout):
    """The card screens' spinner while the card is read: a square in the middle of the
    room it gets, at most a large touch target across."""

    def __init__(self, th: Theme) -> None:
        super().__init__()
        self.spinner = Spinner(th, size_hint=(None, None), size=(0, 0))
        self.add_widget(self.spinner)

        def follow(_w, size) -> None:
            edge = max(0.0, min(size[0], size[1], th.touch * 1.6) * 0.9)
            self.spinner.size = (edge, edge)

        self.bind(size=follow)

    def start(self) -> None:
        self.spinner.start()

    def stop(self) -> None:
        self.spinner.stop()


class StaffScreen(KioskScreen):
    language_bar = False

    def after_build(self) -> None:
        # An empty banner strip keeps Kivy's default 100 px until its first banner
        # (minimum_height never changes from 0): give that room to the body.
        self.banners.height = self.banners.minimum_height

    def notice_text(self, notice: str, model: dict, t: Translator) -> str:
        msgid = "staff.notice." + notice
        return t(msgid) if t.has(msgid) else super().notice_text(notice, model, t)

    def banner_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        info = "notice:" + str(model.get("notice")) if model.get("notice") in STAFF_INFO_NOTICES else None
        return [("info" if ident == info else kind, text, ident) for kind, text, ident in super().banner_specs(model, t)]

    def title_row(self, fixed: bool = True) -> Text:
        """The screen's title; `fixed=False` leaves its height to a TextColumn."""
        th = self.ctx.theme
        self.title = Text(th, size=th.font_title, bold=True, halign="left", prefer_single=True)
        if fixed:
            self.title.size_hint_y = None
            self.title.height = th.font_title * 1.7
        return self.title

    def back_button(self, **kw) -> KButton:
        th = self.ctx.theme
        kw.setdefault("size_hint_y", None)
        kw.setdefault("height", th.touch)
        return KButton(th, press_for(self), "back", **kw)
