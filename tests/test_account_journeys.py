"""My account, renewals and returns through the real launcher, controller, outbox and
worker, against each catalogue: the pysip2 ACS, the REST test server (contract-checked)
and the demo's local catalogue. The window is left out (tests/test_ui_account_returns.py
draws the same journeys); every model is checked against its screen type."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

from kiosk.config.load import load_config
from kiosk.core.events import Barcode, Press
from kiosk.shell.launcher import build_controller, build_services, session_settings
from kiosk_testing.manual_loop import ManualLoop, RecordingView
from kiosk_testing.testbed_accounts import (
    ITEM_GINGA,
    ITEM_KOKORO,
    ITEM_RASHOMON,
    PATRON_ACCOUNT,
    account_seed,
    seeded_library,
)

# (patron, renewable, reserved by someone else, returned to the hold shelf) per catalogue
DEMO = ("20000005", "10000015", "10000016", "10000017")
TESTBED = (PATRON_ACCOUNT, ITEM_KOKORO, ITEM_GINGA, ITEM_RASHOMON)


@contextlib.contextmanager
def catalogue_layer(kind: str, tmp_path: Path) -> Iterator[tuple[dict, tuple[str, str, str, str]]]:
    if kind == "local":
        yield {"backend": "local", "local": {"path": str(tmp_path / "ils.json"), "seed_demo": True}}, DEMO
        return
    secret = tmp_path / "secret"
    if kind == "sip2":
        from kiosk_testing.sip2_server import INSTITUTION, SIP_PASSWORD, SIP_USER, run_pysip2_acs

        secret.write_text(SIP_PASSWORD)
        secret.chmod(0o600)
        with run_pysip2_acs(seeded_library()) as acs:
            yield {"backend": "sip2", "timeout": 2, "sip2": {
                "host": acs.host, "port": acs.port, "tls": False, "login_user": SIP_USER, "password_file": str(secret),
                "institution": INSTITUTION, "location": "MAIN", "charset": "utf-8"}}, TESTBED
        return
    from kiosk_testing.rest_server import TOKEN, CatalogueServer, RestLibrary

    secret.write_text(TOKEN)
    secret.chmod(0o600)
    server = CatalogueServer(RestLibrary(account_seed()))
    try:
        yield {"backend": "rest", "rest": {"base_url": server.url, "token_file": str(secret)}}, TESTBED
    finally:
        server.stop()
    assert not server.contract_violations()


@pytest.mark.parametrize("kind", ["sip2", "rest", "local"])
def test_account_renewals_and_returns_against_every_catalogue(kind, tmp_path):
    with catalogue_layer(kind, tmp_path) as (catalogue, (patron, renewable, reserved, held)):
        layer = {"kiosk": {"data_dir": str(tmp_path / "kiosk"), "id": "journey"}, "card": {"backend": "none"},
                 "catalogue": catalogue, "loans": {"return_button": True},
                 "logging": {"format": "text", "level": "WARNING"}}
        services = build_services(load_config(None, [("journey", layer)]))
        view, loop = RecordingView(), ManualLoop()
        controller = build_controller(services, view, loop)
        controller.start()
        try:
            def until(predicate) -> dict:
                loop.pump_until(lambda: predicate(view.shown[-1][1]) if view.shown else False)
                return view.shown[-1][1]

            def at(screen: str) -> dict:
                return until(lambda m: view.screen == screen)

            def post(event) -> None:
                controller.post(event)
                loop.run_pending()

            at("idle")
            post(Barcode(patron))
            at("pin")
            for digit in "2468":
                post(Press("digit", digit))
            post(Press("ok"))
            at("scanning")
            post(Press("my_account"))
            account = until(lambda m: view.screen == "account" and not m["loading"])
            assert account["loan_count"] >= 4 and account["holds_ready"] and account["fee_amount"] == "300"
            assert any(x["overdue"] for x in account["loans"])
            post(Press("renew", renewable))
            until(lambda m: any(x["item_id"] == renewable and x["state"] == "renewed" for x in m["loans"]))
            post(Press("renew", reserved))
            model = until(lambda m: any(x["item_id"] == reserved and x["state"] == "refused" for x in m["loans"]))
            assert next(x for x in model["loans"] if x["item_id"] == reserved)["reason"] == "on_hold"
            post(Press("renew_all"))
            model = until(lambda m: m["renew_all"] == "done" and not m["loading"])
            result = model["renew_all_result"]                   # the renewable one once more; the rest refused
            assert result["renewed"] == 1 and result["unrenewed"] >= 3
            post(Press("close"))
            at("scanning")
            post(Press("finish"))
            at("thank_you")
            post(Press("done"))
            at("idle")
            post(Press("return_books"))
            at("returns")
            post(Barcode(held))
            until(lambda m: m["rows"] and m["rows"][-1]["state"] == "hold_shelf")
            post(Barcode("19999999"))
            until(lambda m: m["rows"][-1]["item_id"] == "19999999" and m["rows"][-1]["state"] == "counter")
            post(Barcode(renewable))
            until(lambda m: m["rows"][-1]["item_id"] == renewable and m["rows"][-1]["state"] == "returned")
            post(Press("finish"))
            until(lambda m: m["summary"])
            post(Press("no_receipt"))
            at("idle")
            loop.pump_until(lambda: services.outbox.stats().pending == 0)
            account_after = services.catalogue.patron_account(patron)
            assert renewable not in {x.item_id for x in account_after.loans}
        finally:
            controller.stop()
            services.close()


@pytest.mark.parametrize("mode", ["kiosk", "return"])
def test_the_return_desk_gives_way_to_out_of_service_and_comes_back(mode, tmp_path):
    from kiosk.core.events import SetOutOfService

    layer = {"kiosk": {"data_dir": str(tmp_path / "kiosk"), "id": "journey", "mode": mode},
             "card": {"backend": "none"}, "loans": {"return_button": True},
             "catalogue": {"backend": "local", "local": {"path": str(tmp_path / "ils.json"), "seed_demo": True}},
             "logging": {"format": "text", "level": "WARNING"}}
    services = build_services(load_config(None, [("journey", layer)]))
    view, loop = RecordingView(), ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    try:
        def post(event) -> None:
            controller.post(event)
            loop.run_pending()

        loop.run_pending()
        if mode == "kiosk":
            post(Press("return_books"))
        loop.pump_until(lambda: view.screen == "returns")
        post(Barcode("10000013"))
        loop.pump_until(lambda: view.shown[-1][1]["rows"] and view.shown[-1][1]["rows"][-1]["state"] == "returned")
        post(SetOutOfService(True))
        loop.pump_until(lambda: view.screen == "out_of_service")
        post(Barcode("10000014"))                                 # out of service: no return is taken
        assert view.screen == "out_of_service" and services.outbox.count() == 0
        assert "10000014" in services.catalogue.loans_of("20000005")
        post(SetOutOfService(False))
        loop.pump_until(lambda: view.screen == ("returns" if mode == "return" else "idle"))
        assert "rows" not in view.shown[-1][1] or view.shown[-1][1]["rows"] == []    # wiped
    finally:
        controller.stop()
        services.close()


def test_new_configuration_waits_for_the_patron_at_the_return_desk(tmp_path):
    """A live switch or a restart lands at idle: not while a patron is returning books, and a
    return station keeps its desk on screen afterwards (never the lending idle screen)."""
    layer = {"kiosk": {"data_dir": str(tmp_path / "kiosk"), "id": "journey", "mode": "return"},
             "card": {"backend": "none"},
             "catalogue": {"backend": "local", "local": {"path": str(tmp_path / "ils.json"), "seed_demo": True}},
             "logging": {"format": "text", "level": "WARNING"}}
    config = load_config(None, [("journey", layer)])
    services = build_services(config)
    view, loop = RecordingView(), ManualLoop()
    controller = build_controller(services, view, loop)
    controller.start()
    ran: list[str] = []
    try:
        loop.pump_until(lambda: view.screen == "returns")
        controller.post(Barcode("10000013"))
        loop.pump_until(lambda: view.shown[-1][1]["rows"] and view.shown[-1][1]["rows"][-1]["state"] == "returned")
        controller.when_idle(lambda: ran.append("switch"))
        loop.run_pending()
        loop.tick()
        loop.run_pending()
        assert ran == []                                        # a patron is at the desk
        controller.post(Press("done"))
        loop.run_pending()
        loop.tick()
        loop.run_pending()
        assert ran == ["switch"]
        controller.apply_settings(session_settings(config))     # what a live layer does
        loop.run_pending()
        assert view.screen == "returns" and view.shown[-1][1]["rows"] == []
    finally:
        controller.stop()
        services.close()
