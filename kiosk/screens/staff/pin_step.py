"""The card PIN step of the counter's card screens (registration, identification).

The screen's own words (what to do, a hint) stand over the dots and tries-left; the staff
pad goes under them in portrait and, in landscape, into `side`: a column beside the words
as tall as the screen below the header (as on the patron PIN screen), empty and 0 wide on
the other steps. The sizes were tuned for every display of the matrix
(tests/test_display_matrix.py): both screens lay the step out alike.
"""

from __future__ import annotations

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen
from kiosk.screens.pin_pad import masked
from kiosk.screens.staff.base import label_pad_keys, staff_pin_pad
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_WARN, Text, icon


class StaffPinStep(TextColumn):
    """The step's column for the screen's stage: the words, then (portrait) the pad."""

    def __init__(self, screen: KioskScreen) -> None:
        th = screen.ctx.theme
        super().__init__(spacing=th.pad)
        self._th = th
        self.pad, self.keys = staff_pin_pad(screen)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.dots = Text(th, size=th.font_title * 1.25, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.tries = Text(th, size=th.font_body, prefer_single=True, size_hint_y=0.7)
        self.words = TextColumn(spacing=th.gap)
        self.add_widget(self.words)
        self.side = BoxLayout(orientation="vertical", size_hint_x=None, width=0)
        if th.portrait:
            self.pad_holder.size_hint_y = None
            self.pad_holder.height = self.pad.height
            self.add_widget(self.pad_holder)
        else:
            self.pad_holder.size_hint_x = None
            self.pad_holder.width = self.pad.width

    def show(self, stage: Widget, message: Widget, hint: Widget) -> None:
        """Put the step on `stage`: `message`, the dots, tries left, `hint`; the pad beside."""
        for w in (message, self.dots, self.tries, hint):
            self.words.add_widget(w)
        stage.add_widget(self)
        if not self._th.portrait:
            self.side.add_widget(self.pad_holder)
            self.side.width = self.pad.width

    def hide(self) -> None:
        """Take the step off the screen and hand the screen's words back (empty side column)."""
        self.words.clear_widgets()
        if self.parent is not None:
            self.parent.remove_widget(self)
        self.side.clear_widgets()
        self.side.width = 0

    def render(self, model: dict, t: Translator) -> None:
        """The dots for the digits typed (never the digits), the tries left, the keys' words."""
        th = self._th
        self.dots.text = masked(int(model.get("digits") or 0), 4, "card")
        tries = model.get("tries_left")
        if tries is not None:
            warn = tries <= 2
            self.tries.text = (icon(ICON_WARN) + " " if warn else "") + t.plural("pin.tries_left", tries)
            self.tries.color = th.palette.warn if warn else th.palette.text
        else:
            self.tries.text = ""
        label_pad_keys(self.keys, t)

    def clear(self) -> None:
        self.dots.text = ""
        self.tries.text = ""
