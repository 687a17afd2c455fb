"""The Kivy app shell: wiring, kiosk hardening, the demo shell and the Clock-based loop."""

from __future__ import annotations

import threading
import time

import pytest

from kiosk.core.events import Press
from kiosk.screens.app import DemoShell, KioskApp
from kiosk.screens.kivy_loop import KivyLoop
from kiosk_testing.kivy_app import ARTIFACTS

pytestmark = pytest.mark.ui


class FakeController:
    def __init__(self, view, loop) -> None:
        self.view, self.loop = view, loop
        self.events: list = []
        self.started = 0
        self.stopped = 0

    def start(self) -> None:
        self.started += 1
        self.view.show("idle", {"language": "ja", "countdown": None, "card_reminder": False, "test_pki": False,
                                "notice": None, "reader_ok": True, "library_card": True, "help": False})

    def stop(self) -> None:
        self.stopped += 1

    def post(self, event) -> None:
        self.events.append(event)


class FakeDemo:
    def __init__(self) -> None:
        self.calls: list = []

    def card_names(self) -> list[str]:
        return ["registered-1", "pin-locked"]

    def insert_card(self, name: str) -> None:
        self.calls.append(("insert", name))

    def remove_card(self) -> None:
        self.calls.append(("remove",))

    def sample_barcodes(self) -> list[tuple[str, str]]:
        return [("吾輩は猫である", "10000001")]

    def scan(self, code: str) -> None:
        self.calls.append(("scan", code))


@pytest.fixture
def run_app(kivy_window):
    """Start a KioskApp the way App.run() does, without taking over the event loop."""
    from kivy.app import App

    started: list[KioskApp] = []

    def start(**kw) -> KioskApp:
        app = KioskApp(build_controller=FakeController, library_name="テスト市立図書館", **kw)
        app._run_prepare()
        started.append(app)
        kivy_window.settle()
        return app

    yield start
    w = kivy_window.Window
    for app in started:
        app.dispatch("on_stop")
        if app.root is not None and app.root.parent is w:
            w.remove_widget(app.root)
    App._running_app = None
    w.show_cursor, w.borderless = True, False
    kivy_window.settle(2)


def test_app_makes_view_and_loop_and_starts_the_controller_with_the_views_touches(run_app, kivy_window):
    app = run_app(ui_config={"kiosk_mode": False, "languages": ["ja", "en"]})
    c = app.controller
    assert c.started == 1 and c.view is app.view and isinstance(c.loop, KivyLoop)
    assert app.view.current == "idle"
    kivy_window.tap(app.view.find("language:en"))
    assert c.events == [Press("language", "en")]
    assert app.view.find("language:ko") is None              # only the configured languages


def test_kiosk_mode_leaves_no_way_out(run_app, kivy_window):
    from kivy.base import EventLoop

    w = kivy_window.Window
    app = run_app(ui_config={"kiosk_mode": True})
    assert w.show_cursor is False and w.borderless is True
    assert w.dispatch("on_request_close") is True            # Alt-F4, the window manager's close
    assert w.dispatch("on_keyboard", 27, 41, None, []) is True  # Esc
    assert EventLoop.status == "started"
    assert app.open_settings() is False                      # F1
    w.dispatch("on_keyboard", 282, 58, None, [])
    assert app._app_settings is None
    app.dispatch("on_stop")
    assert not w.dispatch("on_request_close")                # released when the app stops


def test_desktop_demo_may_run_windowed(run_app, kivy_window):
    app = run_app(ui_config={"kiosk_mode": False})
    assert app.hardening.applied is False
    assert kivy_window.Window.show_cursor is True


def test_on_stop_is_idempotent(run_app):
    app = run_app()
    app.dispatch("on_stop")
    app.dispatch("on_stop")
    assert app.controller.stopped == 1
    assert app.loop._closed and not app.view._keyboard_bound


def test_demo_mode_puts_the_control_panel_beside_the_kiosk(run_app, kivy_window):
    demo = FakeDemo()
    app = run_app(demo_controls=demo)
    assert isinstance(app.root, DemoShell)
    panel = app.root.panel
    assert panel.right <= kivy_window.Window.width + 1 and app.view.right <= panel.x + 1
    assert app.view.find("badge:demo") is not None
    kivy_window.tap(panel.card_buttons["pin-locked"])
    kivy_window.tap(panel.remove)
    kivy_window.tap(panel.barcode_buttons[0])
    assert demo.calls == [("insert", "pin-locked"), ("remove",), ("scan", "10000001")]
    app.view.lights("error")
    app.view.cue("refused")
    assert panel.lamps.states == (False, False, True)
    assert "エラー" in panel.lights_label.text and "注意" in panel.sound_label.text
    kivy_window.screenshot(ARTIFACTS / "demo_panel.png")


def test_kivy_loop_runs_calls_from_any_thread_on_the_ui_thread_in_order(kivy_window):
    loop = KivyLoop()
    seen: list[tuple[int, int, int]] = []
    ui = threading.get_ident()

    def worker(n: int) -> None:
        for i in range(50):
            loop.call_soon(lambda n=n, i=i: seen.append((n, i, threading.get_ident())))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kivy_window.frames(3)
    assert len(seen) == 400
    assert {tid for _, _, tid in seen} == {ui}
    for n in range(8):
        assert [i for m, i, _ in seen if m == n] == list(range(50))


def test_kivy_loop_intervals_stop_when_closed(kivy_window):
    import time

    loop = KivyLoop()
    ticks: list[float] = []
    loop.call_every(0.01, lambda: ticks.append(time.monotonic()))
    deadline = time.monotonic() + 1.0
    while len(ticks) < 3 and time.monotonic() < deadline:
        kivy_window.frames(1)
        time.sleep(0.005)
    assert len(ticks) >= 3
    loop.close()
    n = len(ticks)
    for _ in range(5):
        kivy_window.frames(1)
        time.sleep(0.01)
    loop.call_soon(lambda: ticks.append(0.0))
    kivy_window.frames(2)
    assert len(ticks) == n


def test_the_kiosk_app_draws_idle_first_then_connects_its_backends(kivy_window, tmp_path, demo_pki, monkeypatch):
    """kiosk.shell.launcher.make_app, as `kiosk run` starts it: the first frame shows idle
    from the session and the store alone; the reader, catalogue and outbox come after."""
    import os
    import shutil

    from kivy.app import App

    from kiosk.shell.launcher import demo_config, make_app

    for key in ("KIVY_NO_ARGS", "KIVY_NO_FILELOG", "KIVY_LOG_MODE", "KIVY_HOME", "KCFG_KIVY_KIVY_CLOCK",
                "SDL_VIDEODRIVER"):       # make_app sets Kivy's environment: leave the process's as it was
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    data = tmp_path / "kiosk-data"
    shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(tmp_path / "ils" / "catalogue.json")
    app, services = make_app(config, demo=True)
    try:
        app._run_prepare()
        assert app.view.current == "idle" and set(app.view.screens) == {"idle"}
        assert services.reader is None and services.worker is None and app.controller.staff is None
        kivy_window.tap(app.view.find("language:en"))        # before the backends: it waits
        kivy_window.frames(3)
        assert services.worker is not None and app.controller.card_reader is services.reader
        assert app.controller.staff is not None
        kivy_window.settle()
        assert app.view._model["language"] == "en"
        assert app.view.find("badge:demo") is None           # no demo panel: as a real kiosk
        services.demo.insert_card("registered-1")
        deadline = time.monotonic() + 10
        while app.view.current != "pin" and time.monotonic() < deadline:
            kivy_window.frames(1)
        assert app.view.current == "pin"
    finally:
        app.dispatch("on_stop")
        if app.root is not None and app.root.parent is kivy_window.Window:
            kivy_window.Window.remove_widget(app.root)
        App._running_app = None
        services.close()
        kivy_window.settle(2)
