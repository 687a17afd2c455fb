"""A counter terminal through the real launcher, controller, store and backends (no window):
sign-in comes first and comes back, registration ends on the counter screen, and with the
local catalogue (which cannot check a birth date) registration never reads one."""

from __future__ import annotations

import logging

import pytest

import test_staff_journey
from kiosk.core.events import Press
from kiosk.core.staff import COUNTER, REGISTER, SIGNIN
from test_staff_journey import STAFF_PIN, make_kiosk, post


@pytest.fixture
def counter_mode(monkeypatch):
    real = test_staff_journey.demo_config

    def counter_config(*a, **kw):
        config = real(*a, **kw)
        config["kiosk"]["mode"] = "counter"
        return config

    monkeypatch.setattr(test_staff_journey, "demo_config", counter_config)


def test_sign_in_first_registration_without_a_birth_date_nobody_can_check_and_never_the_patron_screen(
        tmp_path, demo_pki, counter_mode, caplog):
    caplog.set_level(logging.INFO)
    services, controller, view, loop = make_kiosk(tmp_path, demo_pki, registration_birth_date=True)
    try:
        assert view.screen == SIGNIN
        from kiosk.shell.launcher import session_settings

        controller.apply_settings(session_settings(services.config))     # central IT's live layer
        loop.run_pending()
        assert view.screen == SIGNIN                                    # no patron screen drawn over it
        assert not controller.staff.settings.birth_date          # the local catalogue cannot check it
        assert any("registration.birth_date_not_read" in r.getMessage() for r in caplog.records)
        for d in STAFF_PIN:
            post(controller, loop, Press("digit", d))
        post(controller, loop, Press("ok"))
        assert view.screen == COUNTER
        post(controller, loop, Press("register"))
        assert view.screen == REGISTER
        services.demo.insert_card("unregistered")
        loop.pump_until(lambda: view.model.get("step") == "pin")
        for d in "1234":
            post(controller, loop, Press("digit", d))
        post(controller, loop, Press("ok"))
        loop.pump_until(lambda: view.model.get("step") not in ("authenticating", "reading"))
        assert view.model["step"] == "scan", view.model                 # no 券面事項入力補助 PIN asked
        post(controller, loop, Press("cancel"))
        assert view.screen == COUNTER
        services.demo.remove_card()
        post(controller, loop, Press("exit"))
        assert view.screen == SIGNIN                                    # never the patron's idle screen
        assert services.outbox.stats().pending == 0
    finally:
        controller.stop()
        services.close()
