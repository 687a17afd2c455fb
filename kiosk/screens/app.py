"""The Kivy application: window hardening, fonts, the view, the loop, the controller.

`KioskApp(build_controller=...)` is all the launcher needs: the app makes the View
and a Clock-based Loop, asks the factory for the controller (anything with
start/stop/post, kiosk.shell.controller.Controller in practice), wires the view's touches
to `controller.post` and starts it; `after_first_frame(controller)` runs once the
first screen is on the display (the launcher builds the backends then). In kiosk
mode there is no way out by keyboard or window manager; a desktop demo may run
windowed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Protocol

from kivy.app import App
from kivy.clock import Clock
from kivy.config import Config
from kivy.core.window import Window
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.core import events as ev
from kiosk.core.interfaces import Loop, View
from kiosk.screens import fonts
from kiosk.screens.kivy_loop import KivyLoop
from kiosk.screens.view import KioskView, UiOptions

if TYPE_CHECKING:
    from kiosk.screens.demo_panel import DemoControls, DemoPanel

log = logging.getLogger("kiosk.screens.app")


class ControllerLike(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def post(self, event: ev.Event) -> None: ...


def _refuse(*_args, **_kwargs) -> bool:
    return True


def _swallow_escape(_window, key, *_args, **_kwargs) -> bool:
    return key == 27        # Esc (and Android back): never leave the kiosk


class Hardening:
    """No cursor, no decorations, no exit by Esc / Alt-F4 / window close (kiosk mode only)."""

    def __init__(self, options: UiOptions, window=Window) -> None:
        self.window = window
        self.kiosk_mode = options.kiosk_mode
        self.fullscreen = options.fullscreen
        self.applied = False

    def apply(self) -> None:
        w = self.window
        if self.kiosk_mode:
            Config.set("kivy", "exit_on_escape", "0")
            w.show_cursor = False
            w.borderless = True
            w.allow_screensaver = False
            w.bind(on_request_close=_refuse, on_keyboard=_swallow_escape)
            self.applied = True
        if self.fullscreen and w.fullscreen not in ("auto", True):
            w.fullscreen = "auto"

    def undo(self) -> None:
        if self.applied:
            self.window.unbind(on_request_close=_refuse, on_keyboard=_swallow_escape)
            self.applied = False


class DemoShell(BoxLayout):
    """The kiosk screen with the demo control panel on its right."""

    def __init__(self, view: KioskView, panel: DemoPanel, **kw) -> None:
        super().__init__(orientation="horizontal", **kw)
        self.view = view
        self.panel = panel
        self.add_widget(view)
        self.add_widget(panel)


class KioskApp(App):
    def __init__(
        self,
        build_controller: Callable[[View, Loop], ControllerLike],
        ui_config: dict | None = None,
        library_name: str = "",
        demo_controls: DemoControls | None = None,
        keyboard_wedge: bool = True,
        options: UiOptions | None = None,
        after_first_frame: Callable[[ControllerLike], None] | None = None,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self._build_controller = build_controller
        self._after_first_frame = after_first_frame
        self.ui_options = options or UiOptions.from_config(
            ui_config, library_name=library_name, demo=demo_controls is not None, keyboard_wedge=keyboard_wedge)
        self.demo_controls = demo_controls
        self.title = library_name or "Library kiosk"
        self.view: KioskView | None = None
        self.loop: KivyLoop | None = None
        self.controller: ControllerLike | None = None
        self.hardening = Hardening(self.ui_options)
        self._stopped = False

    def build(self) -> Widget:
        self.hardening.apply()
        fonts.register_fonts(self.ui_options.languages, self.ui_options.font)
        self.loop = KivyLoop()
        self.view = KioskView(self.ui_options)
        if self.demo_controls is None:
            return self.view
        from kiosk.screens.demo_panel import DemoPanel

        panel_width = max(self.view.theme.mm(60), Window.width * 0.24)
        panel = DemoPanel(self.demo_controls, self.view.theme, self.ui_options.default_language,
                          size_hint_x=None, width=panel_width)
        self.view.add_listener(panel.on_view_event)
        return DemoShell(self.view, panel)

    def on_start(self) -> None:
        assert self.view is not None and self.loop is not None
        self.root.do_layout()       # the view's real size now, so the first screen is built once
        self.controller = self._build_controller(self.view, self.loop)
        self.view.set_post(self.controller.post)
        self.controller.start()
        Window.bind(on_flip=self._first_flip)

    def _first_flip(self, *_args) -> None:
        Window.unbind(on_flip=self._first_flip)
        # on_flip comes just before the buffers are swapped. The backends were built beside
        # the first frame, so connecting them is short: done now, the reader's first state
        # is handled at the very next tick instead of one frame later (bench/bench_ui.py).
        self._after_first_frame_tick(0)

    def _after_first_frame_tick(self, _dt) -> None:
        if self._stopped:
            return
        if self._after_first_frame is not None:
            self._after_first_frame(self.controller)
        Clock.schedule_once(lambda _dt: self._stopped or self.view.warm_up(), 0)

    def on_stop(self) -> None:
        """Idempotent: Kivy dispatches on_stop twice on exit."""
        if self._stopped:
            return
        self._stopped = True
        Window.unbind(on_flip=self._first_flip)
        if self.controller is not None:
            self.controller.stop()
        if self.loop is not None:
            self.loop.close()
        if self.view is not None:
            self.view.close()
        self.hardening.undo()

    def open_settings(self, *args) -> bool:
        if self.ui_options.kiosk_mode:
            return False            # F1 must not open Kivy's settings panel on a kiosk
        return super().open_settings(*args)
