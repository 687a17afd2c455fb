"""Staff mode through the real controller, store and backends (no window)."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest

from kiosk.core.catalogue import LoanRequest, LoanResult, Refusal
from kiosk.core.events import Barcode, Press, StaffOpen
from kiosk.core.staff_pins import hash_pin
from kiosk.shell.launcher import build_controller, build_services, demo_config
from kiosk_testing.manual_loop import ManualLoop, RecordingView

STAFF_PIN = "2468"


def make_kiosk(tmp_path: Path, demo_pki, **staff):
    data = tmp_path / "kiosk-data"
    if not (data / "demo-pki").exists():
        shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"]["local"]["path"] = str(tmp_path / "ils.json")
    config["staff"].update({"accounts": [{"id": "s01", "badge": "S00001",
                                          "pin_hash": hash_pin(STAFF_PIN.encode(), log2_n=10)}],
                            "max_failures": 3, **staff})
    services = build_services(config, demo=True)
    view, loop = RecordingView(), ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    loop.run_pending()
    return services, controller, view, loop


@pytest.fixture
def kiosk(tmp_path, demo_pki):
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki)
    yield services, controller, view, loop
    controller.stop()
    services.close()


def post(controller, loop, event):
    controller.post(event)
    loop.run_pending()


def sign_in(controller, loop, pin=STAFF_PIN):
    post(controller, loop, StaffOpen())
    for d in pin:
        post(controller, loop, Press("digit", d))
    post(controller, loop, Press("ok"))


def test_sign_in_menu_and_leave(kiosk):
    services, controller, view, loop = kiosk
    sign_in(controller, loop)
    assert view.screen == "staff_menu" and view.model["staff_id"] == "s01"
    post(controller, loop, Press("out_of_service"))
    assert view.model["out_of_service"] is True
    post(controller, loop, Press("exit"))
    assert view.screen == "out_of_service"            # the patron screen, as staff left it
    actions = [e["action"] for e in services.audit.entries()]
    assert actions[:4] == ["staff.signin_opened", "staff.signed_in", "staff.out_of_service", "staff.signed_out"]
    assert services.store.get_setting("staff.out_of_service") is True


def test_out_of_service_survives_a_restart(tmp_path, demo_pki):
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki)
    sign_in(controller, loop)
    post(controller, loop, Press("out_of_service"))
    post(controller, loop, Press("exit"))
    controller.stop()
    services.close()
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki)
    try:
        assert view.screen == "out_of_service"
    finally:
        controller.stop()
        services.close()


def test_badge_scan_opens_sign_in_and_wrong_pins_lock(kiosk):
    services, controller, view, loop = kiosk
    post(controller, loop, Barcode("S00001"))
    assert view.screen == "staff_signin" and view.model["badge"] is True
    for _ in range(3):
        for d in "1111":
            post(controller, loop, Press("digit", d))
        post(controller, loop, Press("ok"))
    assert view.model["notice"] == "locked" and view.model["locked_for"] > 0
    for d in STAFF_PIN:
        post(controller, loop, Press("digit", d))
    post(controller, loop, Press("ok"))
    assert view.screen == "staff_signin"               # even the right PIN waits out the lockout
    assert services.store.get_setting("staff_signin_locked_until")
    assert all("1111" not in str(e) for e in services.audit.entries())


def test_staff_sign_in_ends_a_patron_session(kiosk):
    services, controller, view, loop = kiosk
    services.demo.scan("20000001")
    loop.pump_until(lambda: view.screen == "pin")
    post(controller, loop, Press("digit", "1"))
    sign_in(controller, loop)
    assert view.screen == "staff_menu"
    assert controller.session.screen == "idle" and controller.session.p.method is None
    post(controller, loop, Press("exit"))
    assert view.screen == "idle"


def test_status_review_and_resolve(kiosk):
    services, controller, view, loop = kiosk
    loan = LoanRequest(txn_id="t-offline", patron_id="20000001", item_id="10000007",
                       created_at=datetime.now().astimezone(), offline=True)
    services.outbox.append(loan)
    services.outbox.conflict("t-offline", LoanResult("t-offline", ok=False, item_id="10000007",
                                                     refusal=Refusal.ON_HOLD))
    sign_in(controller, loop)
    post(controller, loop, Press("status"))
    loop.pump_until(lambda: view.model.get("status"))
    status = view.model["status"]
    assert status["reader"] == "ok" and status["conflicts"] == 1 and status["disk_free_mb"] > 0
    post(controller, loop, Press("back"))
    post(controller, loop, Press("review"))
    loop.pump_until(lambda: view.model.get("conflicts"))
    (conflict,) = view.model["conflicts"]
    assert conflict["item_id"] == "10000007" and conflict["refusal"] == "on_hold"
    post(controller, loop, Press("resolve", conflict["id"]))
    loop.pump_until(lambda: view.model.get("conflicts") == [])
    assert services.outbox.stats().conflicts == 0


def test_staff_mode_leaves_by_itself(kiosk):
    services, controller, view, loop = kiosk
    sign_in(controller, loop)
    controller.clock = lambda: 10 ** 9                  # far past the staff idle timeout
    loop.tick()
    loop.run_pending()
    assert view.screen == "idle"
    assert services.audit.entries()[-1]["action"] == "staff.timed_out"


def register(services, controller, view, loop, card: str, pins: list[str], library_card: str,
             card_first: bool = False):
    sign_in(controller, loop)
    if card_first:                              # the card already lies on the reader
        services.demo.insert_card(card)
        loop.pump_until(lambda: controller.card_present)
    post(controller, loop, Press("register"))
    if not card_first:
        loop.pump_until(lambda: view.model.get("step") == "insert")
        services.demo.insert_card(card)
    loop.pump_until(lambda: view.model.get("step") in ("pin", "last_try"))
    for pin in pins:
        for d in pin:
            post(controller, loop, Press("digit", d))
        post(controller, loop, Press("ok"))
        loop.pump_until(lambda: view.model.get("step") not in ("authenticating", "reading"))
    assert view.model["step"] == "scan", view.model
    post(controller, loop, Barcode(library_card))
    assert view.model["step"] == "confirm" and view.model["patron_id"] == library_card
    assert view.model["valid_until"]
    post(controller, loop, Press("link"))
    loop.pump_until(lambda: view.model.get("step") == "done")
    services.demo.remove_card()
    post(controller, loop, Press("ok"))
    post(controller, loop, Press("exit"))
    loop.pump_until(lambda: view.screen == "idle")


@pytest.mark.parametrize("card, pins", [
    ("unregistered", ["1234"]),                      # same PIN on both applications
    ("second-pin-differs", ["1234", "5678"]),        # the patron is asked for the second PIN
    ("second-pin-1-try", ["1234", "1234"]),          # one try left: asked, never tried for them
])
def test_registration_then_the_card_signs_in(tmp_path, demo_pki, card, pins):
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki, registration_birth_date=True)
    try:
        cert_hash = services.demo.pki.cards[card].cert_hash
        assert services.catalogue.resolve_identity(cert_hash) is None
        register(services, controller, view, loop, card, pins, "20000003")
        assert services.catalogue.resolve_identity(cert_hash) == "20000003"
        assert services.card.mode == "kiosk"                 # back to the patron allowlist
        actions = [e["action"] for e in services.audit.entries()]
        assert "staff.card_linked" in actions
        assert all("20000003" not in str(e) for e in services.audit.entries())
        # The patron now signs in with that card at the kiosk.
        services.demo.insert_card(card)
        loop.pump_until(lambda: view.screen == "pin")
        for d in "1234":
            post(controller, loop, Press("digit", d))
        post(controller, loop, Press("ok"))
        loop.pump_until(lambda: view.screen == "take_card")
    finally:
        controller.stop()
        services.close()


def test_registration_starts_with_a_card_already_on_the_reader(tmp_path, demo_pki):
    """Staff often put the card down first: it is read as soon as registration starts."""
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki)
    try:
        cert_hash = services.demo.pki.cards["unregistered"].cert_hash
        register(services, controller, view, loop, "unregistered", ["1234"], "20000003", card_first=True)
        assert services.catalogue.resolve_identity(cert_hash) == "20000003"
        assert services.card.mode == "kiosk"
    finally:
        controller.stop()
        services.close()


def test_registration_needs_staff_sign_in(kiosk):
    services, controller, view, loop = kiosk
    post(controller, loop, Press("register"))
    services.demo.insert_card("unregistered")
    loop.pump_until(lambda: view.screen == "pin")          # a patron sign-in, nothing else
    assert services.card.mode == "kiosk"


@pytest.mark.parametrize("birth, linked", [("1999-02-28", True), ("1970-01-01", False)])
def test_registration_against_the_rest_catalogue(tmp_path, demo_pki, make_rest_server, rest_tls,
                                                 birth, linked):
    """The link goes to the central catalogue over HTTPS with the birth date read from the card;
    a birth date the catalogue does not match links nothing."""
    from kiosk_testing.rest_server import PATRON_OK, TOKEN, RestLibrary

    library = RestLibrary.seeded()
    library.patrons[PATRON_OK]["birth_date"] = birth
    server = make_rest_server(library)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    data = tmp_path / "kiosk-data"
    shutil.copytree(demo_pki.directory, data / "demo-pki")
    config = demo_config(str(data))
    config["catalogue"].update(backend="rest")
    config["catalogue"]["rest"].update(base_url=server.url, ca_bundle=str(rest_tls.ca), token_file=str(token))
    config["staff"].update({"accounts": [{"id": "s01", "badge": "",
                                          "pin_hash": hash_pin(STAFF_PIN.encode(), log2_n=10)}],
                            "registration_birth_date": True})
    services = build_services(config, demo=True)
    view, loop = RecordingView(), ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    loop.run_pending()
    try:
        cert_hash = demo_pki.cards["unregistered"].cert_hash
        if linked:
            register(services, controller, view, loop, "unregistered", ["1234"], PATRON_OK)
            assert library.links[cert_hash] == PATRON_OK
        else:
            with pytest.raises(AssertionError):
                register(services, controller, view, loop, "unregistered", ["1234"], PATRON_OK)
            assert view.model["step"] == "error" and view.model["error"] == "wrong_password"
            assert cert_hash not in library.links
    finally:
        controller.stop()
        services.close()
