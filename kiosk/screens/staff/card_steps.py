"""What the counter's card screens (registration, identification) share: one screen whose
body follows the model's `step`. A title, a stage that holds the step's widgets and a row
of the step's buttons; the words, the card drawing, the spinner while the card is read and
the card PIN step (kiosk/screens/staff/pin_step.py) that several steps show.
"""

from __future__ import annotations

from typing import Collection

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.screens.base import side_by_side
from kiosk.screens.staff.base import BusySpinner, StaffScreen
from kiosk.screens.staff.pin_step import StaffPinStep
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.drawings import CardArt
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import Text


class CardStepScreen(StaffScreen):
    """A subclass builds its body on `card_step_body`, names its own stage widgets in
    `step_widgets` and puts each step on the stage in `place`."""

    busy_steps: Collection[str] = ()
    # Landscape: the buttons under the words, out of their scroll (else in it, below them).
    actions_out_of_scroll = False

    def card_step_body(self) -> TextColumn:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        self.stage = TextColumn(spacing=th.gap)
        body.add_widget(self.stage)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.action)
        if th.portrait or not self.actions_out_of_scroll:
            body.add_widget(self.actions)
        self.message = Text(th, size=th.font_body, prefer_single=True)
        self.detail = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        self.card_art = CardArt(th, "down")
        self.busy = BusySpinner(th)
        self.pin = StaffPinStep(self)
        self.dots, self.tries = self.pin.dots, self.pin.tries     # as on the other PIN screens
        self.step: str | None = None
        self._layout: tuple | None = None
        return body

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return super().compose()
        under = self.actions if self.actions_out_of_scroll else None
        return side_by_side(self, (self.banners, self.body), self.pin.side, self.footer, under_left=under)

    def step_widgets(self) -> tuple[Widget, ...]:
        """The subclass's own widgets that a step may put on the stage."""
        return ()

    def place(self, step: str, *shape) -> list[KButton]:
        """Put `step`'s widgets on the (empty) stage; its buttons, left to right."""
        raise NotImplementedError

    def arrange(self, step: str, *shape) -> None:
        """The step on the stage and its buttons in the row, once per step and shape."""
        key = (step, *shape)
        if key == self._layout:
            return
        self._layout = key
        self._empty()
        for button in self.place(step, *shape):
            self.actions.add_widget(button)

    def show_busy(self) -> None:
        """A busy step: what is happening, the spinner turning, the detail under it."""
        for w in (self.message, self.busy, self.detail):
            self.stage.add_widget(w)
        self.busy.start()

    def reset_words(self) -> None:
        """The message in plain text colour and weight, no detail: each step sets its own."""
        th = self.ctx.theme
        self.message.color = th.palette.text
        self.message.bold = False
        self.detail.text = ""

    def _empty(self) -> None:
        self.pin.hide()
        for w in (self.message, self.detail, self.card_art, self.busy, *self.step_widgets()):
            if w.parent is not None:
                w.parent.remove_widget(w)
        self.stage.clear_widgets()
        self.actions.clear_widgets()
        self.busy.stop()

    def clear_body(self) -> None:
        self.pin.clear()
        self.message.text = ""
        self.detail.text = ""
        self._layout = None
        self._empty()
        self.step = None

    def deactivate(self) -> None:
        self.busy.stop()

    def activate(self) -> None:
        if self.step in self.busy_steps:
            self.busy.start()
