"""The hidden gesture that opens staff sign-in: holding the top-left corner.

Its own module because every view has one from the start, while the staff screens
are imported only when first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kivy.clock import Clock
from kivy.uix.widget import Widget

from kiosk.core import events as ev

if TYPE_CHECKING:
    from kiosk.screens.view import KioskView

HOLD_SECONDS = 3.0           # the hidden gesture: a press this long in the top-left corner


class StaffCorner(Widget):
    """Holding the top-left corner for HOLD_SECONDS opens staff sign-in.

    It never takes a touch for itself (it only watches, through a grab), so whatever
    lies under the corner works as usual; when the hold fires, widgets that took the
    same touch are let go of, so the press does not also act on the patron screen.
    """

    def __init__(self, view: KioskView, hold: float = HOLD_SECONDS) -> None:
        super().__init__(size_hint=(None, None), size=(0, 0), opacity=0)
        self.view = view
        self.hold = hold
        self._pending: dict[object, object] = {}     # touch uid -> scheduled event
        self.opened = 0

    def zone(self) -> tuple[float, float, float, float]:
        v = self.view
        edge = v.theme.touch
        return v.x, v.top - edge, edge, edge

    def _in_zone(self, pos: tuple[float, float], slack: float = 0.0) -> bool:
        x, y, w, h = self.zone()
        return x - slack <= pos[0] <= x + w + slack and y - slack <= pos[1] <= y + h + slack

    def _armed(self) -> bool:
        current = self.view.current
        return current is not None and not current.startswith("staff_")

    def on_touch_down(self, touch) -> bool:
        if self._armed() and self._in_zone(touch.pos):
            touch.grab(self)
            self._pending[touch.uid] = Clock.schedule_once(lambda _dt: self._fire(touch), self.hold)
        return False

    def on_touch_move(self, touch) -> bool:
        if touch.grab_current is self and not self._in_zone(touch.pos, slack=self.view.theme.gap * 2):
            self._cancel(touch)
        return False

    def on_touch_up(self, touch) -> bool:
        if touch.grab_current is self:
            touch.ungrab(self)
            self._cancel(touch)
        return False

    def _cancel(self, touch) -> None:
        event = self._pending.pop(touch.uid, None)
        if event is not None:
            event.cancel()

    def _fire(self, touch) -> None:
        if self._pending.pop(touch.uid, None) is None or not self._armed():
            return
        for ref in list(touch.grab_list):
            w = ref() if callable(ref) else ref
            if w is None or w is self:
                continue
            touch.ungrab(w)
            if getattr(w, "state", None) == "down":
                w.state = "normal"
        self.opened += 1
        self.view.post(ev.StaffOpen())
