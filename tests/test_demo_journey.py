"""The whole demo journey through the real controller and backends, without a window.

Virtual My Number Card in the virtual reader, the JPKI protocol, the demo PKI,
the local catalogue, the crash-safe store, the encrypted outbox and its worker all
run for real; only Kivy's Clock is replaced by a loop the test pumps.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from kiosk.core.events import Barcode, Press
from kiosk.logs import setup_logging
from kiosk.shell.launcher import build_controller, build_services, demo_config
from kiosk.sync.local_catalogue import LocalCatalogue
from kiosk_testing.manual_loop import ManualLoop, RecordingView

CANARY_TITLE = "秘密のカナリア本・第七巻"
CANARY_PATRON = "29876543210"
CANARY_ITEM = "19182736450"
CANARY_PIN = "4826"


@pytest.fixture
def demo_kiosk(tmp_path: Path, demo_pki):
    """A demo kiosk in tmp_path; the ILS's own database lives outside the kiosk's data dir."""
    data = tmp_path / "kiosk-data"
    shutil.copytree(demo_pki.directory, data / "demo-pki")
    ils = tmp_path / "ils" / "catalogue.json"
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(ils)
    log_buffer = io.StringIO()
    setup_logging("DEBUG", "json", stream=log_buffer)
    services = build_services(config, demo=True)
    view = RecordingView()
    loop = ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    loop.run_pending()
    yield services, controller, view, loop, log_buffer
    controller.stop()
    services.close()
    logging.getLogger().handlers.clear()


def until(loop: ManualLoop, view: RecordingView, screen: str) -> dict:
    loop.pump_until(lambda: view.screen == screen)
    return view.model


def press(controller, loop, action, value=None):
    controller.post(Press(action, value))
    loop.run_pending()


def enter_pin(controller, loop, pin: str) -> None:
    for d in pin:
        press(controller, loop, "digit", d)
    press(controller, loop, "ok")


def test_my_number_card_journey(demo_kiosk):
    services, controller, view, loop, logs = demo_kiosk
    assert view.screen == "idle"
    services.demo.insert_card("registered-1")
    model = until(loop, view, "pin")
    assert model["tries_left"] == 3 and model["purpose"] == "card"
    enter_pin(controller, loop, "1234")
    model = until(loop, view, "take_card")
    assert model["test_pki"] is True                  # demo PKI: the screen shows TEST
    services.demo.remove_card()
    until(loop, view, "scanning")
    services.demo.scan("10000001")
    loop.pump_until(lambda: view.model.get("rows") and view.model["rows"][0]["state"] == "ok")
    row = view.model["rows"][0]
    assert row["title"] == "吾輩は猫である" and row["due"]
    press(controller, loop, "finish")
    until(loop, view, "summary")
    press(controller, loop, "done")
    model = until(loop, view, "thank_you")
    assert "rows" not in model
    # The catalogue holds the loan once, and the kiosk keeps nothing of it.
    assert services.catalogue.loans_of("20000001") == ["10000001"]
    loop.pump_until(lambda: services.outbox.stats().pending == 0)


def test_wrong_pin_then_right_pin(demo_kiosk):
    services, controller, view, loop, _ = demo_kiosk
    services.demo.insert_card("registered-2")
    until(loop, view, "pin")
    enter_pin(controller, loop, "9999")
    loop.pump_until(lambda: view.screen == "pin" and view.model.get("notice") == "pin_wrong")
    assert view.model["tries_left"] == 2
    enter_pin(controller, loop, "1234")
    until(loop, view, "take_card")


def test_unregistered_and_locked_and_transit_cards(demo_kiosk):
    services, controller, view, loop, _ = demo_kiosk
    for name, code in [("pin-locked", "pin_locked"), ("transit-card", "not_jpki"),
                       ("juki-card", "juki_card")]:
        services.demo.insert_card(name)
        model = until(loop, view, "error")
        assert model["code"] == code
        services.demo.remove_card()
        press(controller, loop, "ok")
        until(loop, view, "idle")
    services.demo.insert_card("unregistered")
    until(loop, view, "pin")
    enter_pin(controller, loop, "1234")
    model = until(loop, view, "error")
    assert model["code"] == "not_registered" and model["counter"] is True


def test_library_card_journey_and_refusals(demo_kiosk):
    services, controller, view, loop, _ = demo_kiosk
    services.demo.scan("20000002")                  # 8 of 10 already on loan
    until(loop, view, "pin")
    enter_pin(controller, loop, "5678")
    model = until(loop, view, "scanning")
    assert model["allowance"] == 2
    for n, code in enumerate(("10000007", "10000008", "10000002", "10000003", "10000004"), 1):
        services.demo.scan(code)        # one at a time, as a person scans: a pending loan holds a place
        loop.pump_until(lambda: len(view.model.get("rows", [])) == n
                        and all(r["state"] != "pending" for r in view.model["rows"]))
    states = [(r["item_id"], r["state"], r["refusal"]) for r in view.model["rows"]]
    assert states[0] == ("10000007", "refused", "on_hold")
    assert states[1] == ("10000008", "refused", "counter_only")
    assert states[2][1] == "ok" and states[3][1] == "ok"
    assert states[4] == ("10000004", "refused", "limit_reached")


def test_no_canary_reaches_logs_or_kiosk_files(demo_kiosk):
    """PIN, title, patron number and item number never appear in a log line or a kiosk file."""
    services, controller, view, loop, logs = demo_kiosk
    cat: LocalCatalogue = services.catalogue
    cat._db.table("patrons").insert({"id": CANARY_PATRON, "name": "カナリア", "password": CANARY_PIN,
                                     "limit": 10, "charged": 0, "blocked": [], "loans": [],
                                     "holds_ready": 0})
    cat._db.table("items").insert({"id": CANARY_ITEM, "title": CANARY_TITLE, "on_loan_to": None,
                                   "on_hold_for": None, "counter_only": False})
    services.demo.scan(CANARY_PATRON)
    until(loop, view, "pin")
    enter_pin(controller, loop, CANARY_PIN)
    until(loop, view, "scanning")
    services.demo.scan(CANARY_ITEM)
    loop.pump_until(lambda: view.model.get("rows") and view.model["rows"][0]["title"] == CANARY_TITLE)
    press(controller, loop, "finish")
    until(loop, view, "summary")
    press(controller, loop, "done")
    until(loop, view, "thank_you")
    loop.pump_until(lambda: services.outbox.stats().pending == 0)

    text = logs.getvalue()
    assert "loan.journaled" in text and "screen" in text      # the log did record the journey
    for canary in (CANARY_TITLE, CANARY_PATRON, CANARY_ITEM):
        assert canary not in text
    assert not re.search(rf"(?<!\d){CANARY_PIN}(?!\d)", text)

    for path in services.data_dir.rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        for canary in (CANARY_TITLE, CANARY_PATRON, CANARY_ITEM):
            assert canary.encode() not in raw, path
            assert json.dumps(canary).encode() not in raw, path        # \\u-escaped JSON too
        for leaf in _json_leaves(raw):
            if _looks_sealed(leaf):
                continue
            assert not re.search(rf"(?<!\d){CANARY_PIN}(?!\d)", leaf), path


def _json_leaves(raw: bytes):
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
            stack.extend(node.keys())
        elif isinstance(node, list):
            stack.extend(node)
        else:
            yield str(node)


def _looks_sealed(s: str) -> bool:
    """AES-GCM tokens are long base64; a 4-digit run inside one is chance, not a leak."""
    if len(s) < 40:
        return False
    try:
        base64.b64decode(s, validate=True)
        return True
    except ValueError:
        try:
            base64.urlsafe_b64decode(s)
            return True
        except ValueError:
            return False


def test_the_first_screen_comes_before_the_backends_and_nothing_done_meanwhile_is_lost(tmp_path, demo_pki):
    """The app's start (kiosk.shell.launcher.make_app): the session draws idle from the store
    alone; touches and scans wait until the backends are connected, then count."""
    from kiosk.shell.launcher import build_backends, connect_controller, first_controller, open_services

    data = tmp_path / "kiosk-data"
    shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(tmp_path / "ils" / "catalogue.json")
    services = open_services(config)
    view, loop = RecordingView(), ManualLoop()
    controller = first_controller(services, view, loop)
    controller.start()
    loop.run_pending()
    assert view.shown == [("idle", view.model)] and view.model["reader_ok"] is True
    assert services.outbox is None and services.reader is None and controller.staff is None
    press(controller, loop, "language", "en")
    controller.post(Barcode("20000001"))                 # a library card, scanned at once
    loop.tick()
    loop.run_pending()
    assert [s for s, _ in view.shown] == ["idle"]        # waiting for the backends

    build_backends(services, demo=True)
    connect_controller(services, controller)
    try:
        model = until(loop, view, "pin")
        assert model["purpose"] == "library" and model["language"] == "en"
        assert controller.staff is not None and services.worker is not None
    finally:
        controller.stop()
        services.close()


def test_the_first_screen_already_shows_the_remembered_switches_and_a_missing_reader(tmp_path):
    from kiosk.shell.launcher import first_controller, open_services

    config = demo_config(str(tmp_path / "kiosk-data"))
    config["card"]["backend"] = "none"
    services = open_services(config)
    view, loop = RecordingView(), ManualLoop()
    controllers = []
    try:
        for out_of_service, screen in ((False, "idle"), (True, "out_of_service")):
            services.store.set_setting("staff.out_of_service", out_of_service)
            controllers.append(first_controller(services, view, loop))
            controllers[-1].start()
            assert view.screen == screen and view.model.get("reader_ok", False) is False
    finally:
        for c in controllers:
            c.stop()
        services.close()
