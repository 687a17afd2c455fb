"""A signed bundle pushed to a running kiosk lands at the next idle moment, never mid-session.

The whole chain runs for real: launcher-built services, the management endpoint over
TLS with a client certificate on loopback, the applier, the controller and session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.core.events import Barcode, Press
from kiosk_testing.fleet import https, make_bundle, running_kiosk_with_management


@pytest.fixture
def running_kiosk(tmp_path: Path, fleet_keys, fleet_pki):
    with running_kiosk_with_management(tmp_path, fleet_keys, fleet_pki) as kiosk:
        yield kiosk


def push(url: str, pki, body: bytes):
    with https(pki) as s:
        return s.put(url + "/config", data=body, timeout=10)


def tick(controller, loop, n=3):
    for _ in range(n):
        loop.tick()
        loop.run_pending()


def test_live_key_waits_for_idle_then_applies(running_kiosk, fleet_keys, fleet_pki):
    services, controller, view, loop, url = running_kiosk
    assert controller.session.settings.timeouts.per_screen["scanning"] == 120
    controller.post(Barcode("20000001"))
    loop.pump_until(lambda: view.screen == "scanning")

    reply = push(url, fleet_pki, make_bundle(fleet_keys.private, {"timeouts": {"scanning": 240}}, 1,
                                            now=_now()))
    assert reply.status_code == 200, reply.text
    tick(controller, loop)
    assert view.screen == "scanning"
    assert controller.session.settings.timeouts.per_screen["scanning"] == 120   # not mid-session

    controller.post(Press("finish"))
    loop.pump_until(lambda: view.screen == "thank_you")
    controller.post(Press("ok"))
    loop.run_pending()
    tick(controller, loop)
    assert view.screen == "idle"
    assert controller.session.settings.timeouts.per_screen["scanning"] == 240
    assert services.exit_how is None

    with https(fleet_pki) as s:
        health = s.get(url + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["config_version"] == 1
    from kiosk import __version__

    release = health.json()["release"]          # the running version and the last rollback
    assert release["running"] == __version__ and release["last_rollback"] is None
    # READY was marked for the release guard (kiosk/release/guard.py keeps a release on trial by it).
    assert (services.data_dir / "release-ready").read_text().strip() == __version__


def test_restart_only_key_restarts_at_idle(running_kiosk, fleet_keys, fleet_pki):
    services, controller, view, loop, url = running_kiosk
    reply = push(url, fleet_pki, make_bundle(fleet_keys.private, {"ui": {"fullscreen": False}}, 1, now=_now()))
    assert reply.status_code == 200, reply.text
    tick(controller, loop)
    assert services.exit_how == "restart"


def test_refused_bundle_leaves_the_kiosk_as_it_was(running_kiosk, fleet_keys, fleet_pki):
    services, controller, view, loop, url = running_kiosk
    reply = push(url, fleet_pki, make_bundle(fleet_keys.other, {"timeouts": {"scanning": 240}}, 1, now=_now()))
    assert reply.status_code == 403 and reply.json()["code"] == "wrong_key"
    tick(controller, loop)
    assert controller.session.settings.timeouts.per_screen["scanning"] == 120
    assert services.exit_how is None


def _now():
    from datetime import datetime

    return datetime.now().astimezone()
