"""Fixtures for the Kivy UI tests: one real window per pytest process (SDL offscreen).

Kivy can open only one Window per process, so the window is session-scoped and every
test puts its own KioskView into it and takes it out again. Frames are driven by
hand (`EventLoop.idle()`), never by App.run(), so tests stay deterministic; touches
are real MotionEvents dispatched through the event loop onto the real widgets.
Never run these under KIVY_GL_BACKEND=mock (kiosk-platform.md §3).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from kiosk_testing import artifacts_dir

# Kivy reads these when first imported; this plugin is loaded before any test module.
if "KIVY_HOME" not in os.environ:
    os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kiosk-kivy-home-")
    atexit.register(shutil.rmtree, os.environ["KIVY_HOME"], True)
os.environ.setdefault("KCFG_GRAPHICS_MAXFPS", "0")        # frames as fast as the test asks
# The offscreen driver never grows its GL surface after the window opens: open it at
# the largest size any test uses, then shrink it per test (screenshots read the corner).
os.environ.setdefault("KCFG_GRAPHICS_WIDTH", "1920")
os.environ.setdefault("KCFG_GRAPHICS_HEIGHT", "1920")
os.environ.setdefault("KCFG_KIVY_LOG_LEVEL", "warning")

ARTIFACTS = artifacts_dir() / "screens"
LIBRARY = "テスト市立図書館"


class KivyHarness:
    """Drives the one window: frames, layout, touches, keys, screenshots."""

    def __init__(self) -> None:
        from kivy.base import EventLoop, runTouchApp
        from kivy.core.window import Window

        from kiosk.screens import fonts

        self.Window = Window
        self.EventLoop = EventLoop
        runTouchApp(embedded=True)          # input providers + event loop, no blocking mainloop
        fonts.register_fonts(("ja", "en", "pt-BR", "zh-Hans", "ko", "vi"))
        Window.size = (1024, 600)
        from kivy.metrics import Metrics

        self.default_dpi = Metrics.dpi

    def reset(self) -> None:
        """The window's first size and density: what one test set (a panel's size and dpi)
        must not leak into the next, which would lay out larger and scroll. Clock events a
        test left behind (a ScrollView's delayed touch up, 0.2 s) run out here, not in the
        next test, where they would swallow its first tap."""
        self.set_size(1024, 600, self.default_dpi)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            time.sleep(0.02)
            self.settle(1)

    def frames(self, n: int = 3) -> None:
        """Whole frames, drawn. Only screenshots need them: SDL's offscreen driver leaks
        memory on every frame it draws (about 1 MB here; none under Xvfb), so layout and
        touch tests use settle()."""
        for _ in range(n):
            self.EventLoop.idle()

    def settle(self, n: int = 5) -> None:
        """Clock ticks for layouts, then text fitting, then layouts again; drawing is
        skipped (the expensive part at 1920x1080 under llvmpipe) until a frame is asked for."""
        from kivy.clock import Clock
        from kivy.lang import Builder

        for _ in range(n):
            Clock.tick()
            Builder.sync()
            Clock.tick_draw()
            Builder.sync()

    def set_size(self, width: int, height: int, dpi: float | None = None) -> None:
        from kivy.metrics import Metrics

        if dpi is not None:
            Metrics.dpi = dpi
        self.Window.size = (width, height)
        self.settle(2)

    def tap(self, widget, settle: bool = True) -> None:
        """A real touch down/up at the widget's centre, through the event loop."""
        from kivy.tests.common import UnitTestTouch

        self.settle(1)                      # the layout of the last change first, as a frame would
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        # A finger rests about 80 ms: a ScrollView decides within 55 ms (scroll_timeout)
        # whether a touch is a scroll or a tap, by the clock.
        deadline = time.monotonic() + 0.08
        while time.monotonic() < deadline:
            time.sleep(0.02)
            self.settle(1)
        touch.touch_up()
        if settle:
            self.settle(2)
        if _in_scroll_view(widget):
            # A ScrollView passes a quick tap on as a simulated touch down, and the touch up
            # 0.2 s later by the clock (Kivy's ScrollView.on_scroll_stop): a finger lifts in
            # real time, and the kiosk's loop keeps drawing frames meanwhile.
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                time.sleep(0.02)
                self.settle(1)

    def type_keys(self, text: str, enter: bool = True) -> None:
        """Keystrokes as a keyboard-wedge scanner sends them (no focus, straight to Window)."""
        for c in text:
            self.Window.dispatch("on_key_down", ord(c), 0, c, [])
            self.Window.dispatch("on_textinput", c)
        if enter:
            self.Window.dispatch("on_key_down", 13, 40, None, [])

    def key(self, code: int) -> bool:
        return bool(self.Window.dispatch("on_key_down", code, 0, None, []))

    def screenshot(self, path: Path, warm: int = 2) -> Path:
        """Window.screenshot from on_flip (before the swap), after forcing a redraw (trap 2).
        `warm` frames are drawn first (animations); a settled still screen needs none."""
        path.parent.mkdir(parents=True, exist_ok=True)
        taken: list[str] = []

        def grab(*_):
            taken.append(self.Window.screenshot(name=str(path)))
            return False

        self.frames(warm)
        self.Window.bind(on_flip=grab)
        try:
            for _ in range(5):
                self.Window.canvas.ask_update()
                self.EventLoop.idle()
                if taken:
                    break
        finally:
            self.Window.unbind(on_flip=grab)
        assert taken and taken[0], "no frame was drawn"
        numbered = Path(taken[0])          # Kivy appends 0001 to the name (trap 3)
        shutil.move(numbered, path)
        return path


def _in_scroll_view(widget) -> bool:
    from kivy.uix.scrollview import ScrollView

    w = widget.parent
    while w is not None and w is not w.parent:
        if isinstance(w, ScrollView):
            return True
        w = w.parent
    return False


_harness: KivyHarness | None = None


@pytest.fixture(scope="session")
def kivy_window() -> KivyHarness:
    global _harness
    if _harness is None:
        _harness = KivyHarness()
    return _harness


class Posted(list):
    """The events a view posted (the controller's inbox in view-only tests)."""

    def presses(self) -> list[tuple[str, str | None]]:
        from kiosk.core.events import Press

        return [(e.action, e.value) for e in self if isinstance(e, Press)]


@pytest.fixture
def make_view(kivy_window: KivyHarness) -> Iterator[Callable[..., tuple]]:
    """make_view(**UiOptions overrides) -> (view, posted): a KioskView filling the window.

    Text is strict by default: a string missing from a catalogue fails the test."""

    from kiosk.screens.view import KioskView, UiOptions

    made = []
    kivy_window.reset()

    def make(strict_text: bool = True, **overrides) -> tuple:
        overrides.setdefault("library_name", LIBRARY)
        posted = Posted()
        view = KioskView(UiOptions(**overrides), post=posted.append, strict_text=strict_text,
                         size=tuple(kivy_window.Window.size))
        kivy_window.Window.add_widget(view)
        made.append(view)
        kivy_window.settle()
        return view, posted

    yield make
    for view in made:
        view.close()
        kivy_window.Window.remove_widget(view)
    kivy_window.reset()


class UiKiosk:
    """The real demo kiosk (virtual card, local catalogue, outbox, controller) drawing on a
    real KioskView; the controller's Loop is pumped by the test, its clock is fake."""

    def __init__(self, harness: KivyHarness, services, controller, view, loop, clock) -> None:
        self.h = harness
        self.services = services
        self.controller = controller
        self.view = view
        self.loop = loop
        self.clock = clock

    @property
    def screen(self) -> str | None:
        return self.view.current

    @property
    def model(self) -> dict:
        return self.view._model or {}

    def pump(self, ticks: int = 2) -> None:
        self.loop.run_pending()
        self.h.settle(ticks)

    def until(self, screen: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while self.view.current != screen:
            self.loop.run_pending()
            if time.monotonic() > deadline:
                raise AssertionError(f"screen {screen!r} not reached; on {self.view.current!r}")
            time.sleep(0.005)
        self.h.settle(4)
        return self.model

    def until_model(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while not predicate(self.model):
            self.loop.run_pending()
            if time.monotonic() > deadline:
                raise AssertionError(f"model condition not reached on {self.view.current!r}")
            time.sleep(0.005)
        self.h.settle(3)
        return self.model

    def tap(self, ident: str) -> None:
        widget = self.view.find(ident)
        assert widget is not None, f"no {ident!r} on {self.view.current!r}"
        self.h.tap(widget)
        self.pump()

    def enter_pin(self, pin: str) -> None:
        for d in pin:
            self.tap(f"digit:{d}")
        self.tap("ok")

    def elapse(self, seconds: float, step: float = 1.0) -> None:
        """Let fake time pass, with the controller's ticks, like the real clock would."""
        end = self.clock.now + seconds
        while self.clock.now < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.now))
            self.loop.tick()
            self.loop.run_pending()
        self.h.settle(2)


@contextlib.contextmanager
def running_kiosk(kivy_window: KivyHarness, tmp_path: Path, demo_pki,
                  configure: Callable[[dict], None] = lambda config: None) -> Iterator[UiKiosk]:
    """The demo kiosk through the real launcher, controller and view in the test window,
    on a manual loop and fake clock; `configure` adjusts the demo config first."""
    from kiosk.screens.view import KioskView, UiOptions
    from kiosk.shell.launcher import build_controller, build_services, demo_config
    from kiosk_testing.manual_loop import FakeClock, ManualLoop

    data = tmp_path / "kiosk-data"
    shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(tmp_path / "ils" / "catalogue.json")
    configure(config)
    services = build_services(config, demo=True)
    view = KioskView(UiOptions.from_config(config["ui"], library_name=LIBRARY, demo=True), strict_text=True,
                     size=tuple(kivy_window.Window.size))
    kivy_window.Window.add_widget(view)
    loop, clock = ManualLoop(), FakeClock()
    controller = build_controller(services, view, loop)
    controller.clock = clock
    view.set_post(controller.post)
    controller.start()
    kiosk = UiKiosk(kivy_window, services, controller, view, loop, clock)
    kiosk.pump()
    kivy_window.settle()
    try:
        yield kiosk
    finally:
        controller.stop()
        services.close()
        view.close()
        kivy_window.Window.remove_widget(view)
        kivy_window.reset()


@pytest.fixture
def ui_kiosk(kivy_window: KivyHarness, tmp_path: Path, demo_pki) -> Iterator[UiKiosk]:
    with running_kiosk(kivy_window, tmp_path, demo_pki) as kiosk:
        yield kiosk
