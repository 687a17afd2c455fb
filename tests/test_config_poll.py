"""Polling the signed bundle from central IT's HTTPS server (a real one, with the test CA)."""

from __future__ import annotations

import random
import time

from kiosk.config.load import load_config
from kiosk.sync.config_poll import ConfigPoller, next_delay, poll_url
from kiosk_testing.fleet import free_port, make_bundle
from kiosk_testing.store import wait_until

LAYER = {"timeouts": {"scanning": 90}}


def poller(kiosk, url: str, ca, **kw) -> ConfigPoller:
    kw.setdefault("jitter", 0.0)
    return ConfigPoller(url, kiosk.applier.apply, interval=kw.pop("interval", 60), ca_bundle=str(ca),
                        known_digest=kiosk.applier.digest, **kw)


def refusals(kiosk) -> list[str]:
    return [f["code"] for a, f in kiosk.actions() if a == "config.refused"]


def test_a_new_bundle_is_applied_then_304_keeps_it_quiet(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    p = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca)
    assert p.poll_once().state == "applied"
    assert kiosk.applier.config["timeouts"]["scanning"] == 90
    assert p.poll_once().state == "unchanged"
    assert "If-None-Match" not in fleet_bundle_server.requests[0]
    assert fleet_bundle_server.requests[1]["If-None-Match"].startswith('"')
    assert [a for a, _ in kiosk.actions()] == ["config.applied"]
    assert kiosk.actions()[0][1]["source"] == "poll" and kiosk.actions()[0][1]["client"] == "127.0.0.1"
    fleet_bundle_server.body = make_bundle(fleet_keys.private, {"timeouts": {"scanning": 100}}, 2)
    assert p.poll_once().state == "applied" and kiosk.applier.version == 2


def test_without_etags_an_unchanged_body_is_not_reapplied(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.etag = False
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    p = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca)
    assert [p.poll_once().state for _ in range(3)] == ["applied", "unchanged", "unchanged"]
    assert len(kiosk.switched) == 1 and refusals(kiosk) == []


def test_after_a_restart_the_bundle_in_force_is_not_replayed(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    assert poller(kiosk, fleet_bundle_server.url, fleet_pki.ca).poll_once().state == "applied"
    kiosk.close()
    again = fleet_kiosk(serve=False, site=kiosk.site)
    assert poller(again, fleet_bundle_server.url, fleet_pki.ca).poll_once().state == "unchanged"
    assert refusals(again) == []


def test_a_bad_bundle_is_refused_once_and_audited_once(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.etag = False
    fleet_bundle_server.body = make_bundle(fleet_keys.other, LAYER, 1)
    p = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca)
    first = p.poll_once()
    assert (first.state, first.code) == ("refused", "wrong_key") and "does not trust" in first.reason
    assert p.poll_once().state == "unchanged"
    assert refusals(kiosk) == ["wrong_key"] and kiosk.applier.version is None
    assert p.failures == 0                          # the server answered: no back-off


def test_an_oversized_bundle_is_refused_as_too_large(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False, max_body=4096)
    fleet_bundle_server.body = make_bundle(fleet_keys.private, {"ui": {"help_text": "x" * 100000}}, 1)
    result = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca, max_bytes=4096).poll_once()
    assert (result.state, result.code) == ("refused", "too_large")
    assert refusals(kiosk) == ["too_large"]


def test_nothing_published_is_not_a_failure(fleet_kiosk, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    p = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca)
    assert p.poll_once().state == "none" and p.failures == 0


def test_failures_back_off_and_recover(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    p = poller(kiosk, f"https://127.0.0.1:{free_port()}/bundle.json", fleet_pki.ca, interval=100)
    delays = []
    for _ in range(5):
        assert p.poll_once().state == "unreachable"
        delays.append(p.next_delay())
    assert delays == [200, 400, 800, 800, 800]
    p.url = fleet_bundle_server.url
    fleet_bundle_server.status = 500
    assert p.poll_once().code == "http_500" and p.failures == 6
    fleet_bundle_server.status = None
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    assert p.poll_once().state == "applied" and p.failures == 0 and p.next_delay() == 100


def test_a_server_the_kiosk_does_not_trust_is_not_polled(fleet_kiosk, fleet_keys, fleet_bundle_server):
    """Without poll_ca the system's CAs decide, and they do not know the test CA."""
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    p = ConfigPoller(fleet_bundle_server.url, kiosk.applier.apply, interval=60)
    result = p.poll_once()
    assert (result.state, result.code) == ("unreachable", "SSLError")
    assert kiosk.applier.version is None


def test_jitter_spreads_kiosks():
    rng = random.Random(7)
    delays = [next_delay(900, 0, rng, jitter=0.1) for _ in range(200)]
    assert 810 <= min(delays) < 830 and 970 < max(delays) <= 990
    assert next_delay(900, 50, random.Random(1), jitter=0.0, max_factor=8) == 7200


def test_the_thread_polls_and_stops(fleet_kiosk, fleet_keys, fleet_pki, fleet_bundle_server):
    kiosk = fleet_kiosk(serve=False)
    fleet_bundle_server.body = make_bundle(fleet_keys.private, LAYER, 1)
    p = poller(kiosk, fleet_bundle_server.url, fleet_pki.ca, interval=0.05, first_delay=0.0)
    p.start()
    try:
        assert wait_until(lambda: kiosk.applier.version == 1, timeout=5)
        fleet_bundle_server.body = make_bundle(fleet_keys.private, {"timeouts": {"scanning": 95}}, 2)
        assert wait_until(lambda: kiosk.applier.version == 2, timeout=5)
    finally:
        started = time.monotonic()
        p.stop()
        assert time.monotonic() - started < 2
    count = len(fleet_bundle_server.requests)
    time.sleep(0.2)
    assert len(fleet_bundle_server.requests) == count
    assert p.status()["last_result"] in ("applied", "unchanged") and p.status()["failures"] == 0


def test_poll_url_names_the_kiosk_and_from_config_uses_the_settings(fleet_keys, fleet_pki):
    config = load_config(None, [("t", {"kiosk": {"id": "chuo-03", "group": "chuo"},
                                       "management": {"poll_url": "https://cit.example/{group}/{kiosk}.json",
                                                      "poll_interval": 300, "poll_ca": str(fleet_pki.ca)}})])
    assert poll_url(config) == "https://cit.example/chuo/chuo-03.json"
    p = ConfigPoller.from_config(config, lambda raw, source, client: None)
    assert (p.url, p.interval, p._verify, p._max_bytes) == ("https://cit.example/chuo/chuo-03.json", 300.0,
                                                              str(fleet_pki.ca), 65536)
