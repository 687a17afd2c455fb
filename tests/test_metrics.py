"""GET /metrics: the kiosk's Prometheus metrics, counts and states only, over the management port."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from kiosk import __version__
from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.card import AuthOutcome, CardError, CardKind, CardProbe
from kiosk.core.catalogue import Refusal
from kiosk.shell.metrics import KioskMetrics
from kiosk_testing.fleet import https, running_kiosk_with_management

NOW = datetime(2025, 4, 1, 12, 0, tzinfo=timezone.utc)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the exposition text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_sessions_and_signin_failures_by_reason_and_nothing_personal():
    stats = SimpleNamespace(pending=3, oldest_created=NOW - timedelta(minutes=45), damaged=1, conflicts=0,
                            last_success=NOW - timedelta(minutes=50))
    m = KioskMetrics(outbox_stats=lambda: stats, config_version=lambda: 7, layer_rollbacks=lambda: (2, None),
                     release_rollback=lambda: 1_700_000_000.0, wall=lambda: NOW)
    for item in [
        fx.EndSession("20000001", "finished"), fx.EndSession("20000002", "finished"),
        fx.EndSession(None, "timeout"), fx.EndSession("20000003", "20000003"),     # not a reason: "other"
        ev.AuthDone(AuthOutcome(error=CardError.PIN_WRONG, tries_left=2)),
        ev.CardProbed(CardProbe(kind=CardKind.NOT_JPKI, error=CardError.NOT_JPKI)),
        ev.PatronResolved(None), ev.PatronResolved(None, unavailable=True),
        ev.PatronLoaded(None, Refusal.PATRON_BLOCKED), ev.PatronLoaded(None, Refusal.OFFLINE),
        ev.ReaderChanged(False, "pcscd_gone"), ev.ReceiptDone(False), ev.Tick(),
    ]:
        m.observe(item)
    content_type, body = m.render()
    text = body.decode()
    s = samples(text)
    assert content_type.startswith("text/plain; version=")
    assert s[("kiosk_sessions_total", (("reason", "finished"),))] == 2
    assert s[("kiosk_sessions_total", (("reason", "timeout"),))] == 1
    assert s[("kiosk_sessions_total", (("reason", "other"),))] == 1
    assert s[("kiosk_sessions_total", (("reason", "cancelled"),))] == 0      # exists before it happens
    fails = {dict(k[1])["reason"]: v for k, v in s.items() if k[0] == "kiosk_signin_failures_total"}
    assert fails == {"pin_wrong": 1, "not_jpki": 1, "not_registered": 1, "catalogue_unavailable": 1,
                     "patron_blocked": 1, "offline": 1}
    assert s[("kiosk_outbox_pending", ())] == 3
    assert s[("kiosk_outbox_oldest_age_seconds", ())] == 45 * 60
    assert s[("kiosk_outbox_damaged", ())] == 1
    assert s[("kiosk_catalogue_seconds_since_success", ())] == 50 * 60
    assert s[("kiosk_config_version", ())] == 7 and s[("kiosk_rollbacks", ())] == 2
    assert s[("kiosk_release_last_rollback_timestamp_seconds", ())] == 1_700_000_000.0
    assert s[("kiosk_device_up", (("device", "reader"),))] == 0
    assert s[("kiosk_device_up", (("device", "pcscd"),))] == 0
    assert s[("kiosk_device_up", (("device", "printer"),))] == 0
    assert ("kiosk_device_up", (("device", "scanner"),)) not in s            # not fitted: absent
    assert s[("kiosk_build_info", (("group", ""), ("kiosk", ""), ("version", __version__)))] == 1
    assert "2000000" not in text                                           # no patron number anywhere


def test_a_broken_source_leaves_its_metrics_out_and_the_rest_in():
    def broken():
        raise OSError("disk")

    m = KioskMetrics(outbox_stats=broken, config_version=broken, layer_rollbacks=lambda: (0, None))
    m.observe(ev.ReaderChanged(False, "no_reader"))
    s = samples(m.render()[1].decode())
    assert ("kiosk_outbox_pending", ()) not in s and ("kiosk_config_version", ()) not in s
    assert s[("kiosk_device_up", (("device", "reader"),))] == 0
    assert s[("kiosk_device_up", (("device", "pcscd"),))] == 1             # pcscd answers; no reader on it
    assert s[("kiosk_rollbacks", ())] == 0 and s[("kiosk_last_rollback_timestamp_seconds", ())] == 0
    m.layer_rollbacks = broken                      # an unreadable layer state: both of its gauges go
    s = samples(m.render()[1].decode())
    assert ("kiosk_rollbacks", ()) not in s and ("kiosk_last_rollback_timestamp_seconds", ()) not in s


class Reads:
    """A scrape-time source that counts how often it is read."""

    def __init__(self, value: object) -> None:
        self.value, self.count = value, 0

    def __call__(self) -> object:
        self.count += 1
        return self.value


def test_a_scrape_reads_each_source_once():
    stats = SimpleNamespace(pending=0, oldest_created=None, damaged=0, conflicts=0, last_success=NOW)
    sources = dict(outbox_stats=Reads(stats), config_version=Reads(3), scanner_ok=Reads(True),
                   layer_rollbacks=Reads((2, 1.0e9)), release_rollback=Reads(1.1e9))
    m = KioskMetrics(wall=lambda: NOW, **sources)
    for scrape in (1, 2, 3):
        s = samples(m.render()[1].decode())
        assert {name: read.count for name, read in sources.items()} == dict.fromkeys(sources, scrape)
    assert s[("kiosk_rollbacks", ())] == 2 and s[("kiosk_last_rollback_timestamp_seconds", ())] == 1.0e9
    assert s[("kiosk_release_last_rollback_timestamp_seconds", ())] == 1.1e9


def test_the_registry_is_private():
    from prometheus_client import REGISTRY

    KioskMetrics()
    assert not any(name.startswith("kiosk_") for name in REGISTRY._names_to_collectors)


# -- the running kiosk ---------------------------------------------------------------------------

@pytest.fixture
def running_kiosk(tmp_path: Path, fleet_keys, fleet_pki):
    with running_kiosk_with_management(tmp_path, fleet_keys, fleet_pki) as kiosk:
        yield kiosk


def test_metrics_of_a_running_kiosk_over_mtls(running_kiosk, fleet_pki, monkeypatch):
    import kiosk.release.status

    services, controller, view, loop, url = running_kiosk
    controller.post(ev.Barcode("20000001"))
    loop.pump_until(lambda: view.screen == "scanning")
    controller.post(ev.Barcode("10000002"))
    loop.pump_until(lambda: any(r["state"] == "ok" for r in view.model.get("rows", [])))
    controller.post(ev.Press("finish"))
    loop.pump_until(lambda: view.screen in ("thank_you", "summary"))
    if view.screen == "summary":
        controller.post(ev.Press("done"))
    loop.pump_until(lambda: view.screen in ("thank_you", "idle"))
    # One scrape reads the layer state once and the release state once (counted on the real reads).
    layer_state, release_status = services.applier.layer_state, kiosk.release.status.release_status
    reads = {"layer": 0, "release": 0}

    def counted(key, read):
        def wrapper(*args, **kwargs):
            reads[key] += 1
            return read(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(services.applier, "layer_state", counted("layer", layer_state))
    monkeypatch.setattr(kiosk.release.status, "release_status", counted("release", release_status))
    with https(fleet_pki) as s:
        assert s.get(url + "/metrics", timeout=10).status_code == 200
    assert reads == {"layer": 1, "release": 1}
    services.metrics.layer_rollbacks = lambda: (1, None)    # the hook whoever records rollbacks sets

    with https(fleet_pki) as s:
        r = s.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=")
    got = samples(r.text)
    assert got[("kiosk_sessions_total", (("reason", "finished"),))] == 1
    assert got[("kiosk_build_info", (("group", "chuo"), ("kiosk", "kiosk-01"), ("version", __version__)))] == 1
    assert got[("kiosk_loans_journaled_total", ())] == 1
    assert got[("kiosk_outbox_pending", ())] == 0 and got[("kiosk_outbox_damaged", ())] == 0
    assert 0 <= got[("kiosk_catalogue_seconds_since_success", ())] < 60
    assert got[("kiosk_config_version", ())] == 0 and got[("kiosk_rollbacks", ())] == 1
    assert got[("kiosk_device_up", (("device", "reader"),))] == 0          # backend "none": no reader
    assert "20000001" not in r.text and "10000002" not in r.text
    with pytest.raises(requests.exceptions.RequestException):               # same mTLS rule as /health
        https(fleet_pki, client=False).get(url + "/metrics", timeout=10)
