"""The management endpoint, run for real over TLS on 127.0.0.1 with a test CA made here."""

from __future__ import annotations

import json
import socket
import ssl
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kiosk.config.layer_store import SignedLayerStore
from kiosk.config.load import ConfigError, load_config
from kiosk.sync.management_server import (
    TokenBuckets,
    health_document,
    health_response,
    settings_from_config,
)
from kiosk_testing.fleet import FLEET_NOW, https, make_bundle, raw_exchange, tls_client_context

LAYER = {"timeouts": {"scanning": 90}}


def status_line(answer: bytes) -> int:
    head = answer.split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1."), answer[:200]
    return int(head.split()[1])


def body_of(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# -- health --------------------------------------------------------------------------------

def test_health_is_200_when_every_check_passes(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk()
    kiosk.health = {"checks": {"reader": True, "scanner": None, "catalogue": True}, "outbox_pending": 0}
    r = https(fleet_pki).get(kiosk.url + "/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["failing"] == [] and r.json()["outbox_pending"] == 0
    assert r.headers["Cache-Control"] == "no-store"


def test_health_is_503_when_a_check_fails_or_the_probe_breaks(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk()
    kiosk.health = {"checks": {"reader": False, "catalogue": True, "outbox_age": False}}
    r = https(fleet_pki).get(kiosk.url + "/health")
    assert r.status_code == 503 and r.json()["status"] == "degraded"
    assert r.json()["failing"] == ["outbox_age", "reader"]
    kiosk.health = None                        # dict(None) raises inside the probe
    r = https(fleet_pki).get(kiosk.url + "/health")
    assert r.status_code == 503 and r.json() == {"status": "error", "error": "TypeError"}


def test_head_health_has_the_status_and_no_body(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk()
    kiosk.health = {"checks": {"reader": False}}
    r = https(fleet_pki).head(kiosk.url + "/health")
    assert r.status_code == 503 and r.content == b""


def test_health_document_flags_an_old_pending_loan():
    now = datetime(2025, 4, 1, 12, 0, tzinfo=timezone.utc)
    doc = health_document(reader_ok=True, scanner_ok=None, catalogue_ok=True, outbox_pending=3,
                          oldest_pending=now - timedelta(hours=5), last_sync=now - timedelta(hours=5),
                          app_version="0.1.0", config_version=7, uptime_s=3600.4, now=now)
    assert doc["checks"] == {"reader": True, "scanner": None, "catalogue": True, "outbox_age": False}
    assert doc["oldest_pending_age_s"] == 18000 and doc["config_version"] == 7 and doc["uptime_s"] == 3600
    assert health_response(lambda: doc)[0] == 503
    fresh = health_document(reader_ok=True, scanner_ok=True, catalogue_ok=True, outbox_pending=0,
                            oldest_pending=None, last_sync=None, app_version="0.1.0", config_version=None,
                            uptime_s=1, now=now)
    assert fresh["checks"]["outbox_age"] is None and health_response(lambda: fresh)[0] == 200


# -- PUT /config ---------------------------------------------------------------------------

def test_put_applies_and_status_reports_it(fleet_kiosk, fleet_pki, fleet_keys):
    kiosk = fleet_kiosk()
    s = https(fleet_pki)
    r = s.put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, {"ui": {"fullscreen": False}, **LAYER}, 3))
    assert r.status_code == 200
    assert r.json() == {"result": "applied", "code": "applied", "version": 3, "current_version": 3,
                        "live_keys": ["timeouts.scanning"], "restart_keys": ["ui.fullscreen"],
                        "restart_needed": True}
    assert kiosk.switched[-1][0]["timeouts"]["scanning"] == 90
    status = s.get(kiosk.url + "/status").json()
    assert status["config_version"] == 3 and status["restart_pending"] is True
    assert status["health"]["status"] == "ok" and status["last_refusal"] is None
    assert kiosk.actions()[-1][1]["client"] == "127.0.0.1 (central-it-push)"


@pytest.mark.parametrize("make, status, code", [
    (lambda k: b"{]", 400, "malformed"),
    (lambda k: json.dumps(LAYER).encode(), 403, "unsigned"),
    (lambda k: make_bundle(k.other, LAYER, 9), 403, "wrong_key"),
    (lambda k: make_bundle(k.private, LAYER, 9).replace(b'"scanning": 90', b'"scanning": 91'), 403, "bad_signature"),
    (lambda k: make_bundle(k.private, LAYER, 9, now=FLEET_NOW - timedelta(days=8)), 422, "expired"),
    (lambda k: make_bundle(k.private, LAYER, 9, target_group="kita"), 422, "other_target"),
    (lambda k: make_bundle(k.private, LAYER, 5), 409, "replayed"),
    (lambda k: make_bundle(k.private, LAYER, 4), 409, "older_version"),
    (lambda k: make_bundle(k.private, {"timeouts": {"scanning": 1}}, 9), 422, "schema"),
    (lambda k: make_bundle(k.private, {"ui": {"nonsense": 1}}, 9), 422, "schema"),
    (lambda k: make_bundle(k.private, {"management": {"require_client_cert": False}}, 9), 422, "protected_key"),
])
def test_bad_bundles_are_refused_audited_and_change_nothing(fleet_kiosk, fleet_pki, fleet_keys, make, status, code):
    kiosk = fleet_kiosk()
    s = https(fleet_pki)
    assert s.put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, {"timeouts": {"scanning": 60}}, 5)).ok
    layer_before = (kiosk.data_dir / "signed_config.json").read_bytes()
    r = s.put(kiosk.url + "/config", data=make(fleet_keys))
    assert (r.status_code, r.json()["result"], r.json()["code"]) == (status, "refused", code)
    assert r.json()["reason"] and r.json()["current_version"] == 5
    assert (kiosk.data_dir / "signed_config.json").read_bytes() == layer_before
    assert kiosk.applier.config["timeouts"]["scanning"] == 60 and len(kiosk.switched) == 1
    action, fields = kiosk.actions()[-1]
    assert action == "config.refused" and fields["code"] == code and fields["source"] == "push"


def test_oversized_body_is_refused_before_it_is_read(fleet_kiosk, fleet_pki):
    """Headers only, claiming 100 MB: the 413 comes at once. A server that tried to read the
    body first would wait for bytes that never come, and this exchange would time out."""
    kiosk = fleet_kiosk(max_body=4096)
    started = time.monotonic()
    answer = raw_exchange(kiosk.server.port, fleet_pki,
                          b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", timeout=3)
    assert time.monotonic() - started < 2.5
    assert status_line(answer) == 413
    assert body_of(answer) == {"result": "refused", "code": "too_large",
                               "reason": "100000000 bytes; at most 4096 are accepted"}
    assert kiosk.actions()[-1] == ("config.refused", {"code": "too_large", "reason": "100000000 bytes; at most 4096",
                                                      "source": "push", "client": "127.0.0.1 (central-it-push)"})


def test_expect_100_continue_gets_413_instead_of_continue(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk(max_body=4096)
    answer = raw_exchange(kiosk.server.port, fleet_pki, b"PUT /config HTTP/1.1\r\nHost: x\r\n"
                          b"Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n", timeout=3)
    assert status_line(answer) == 413 and b"100 Continue" not in answer
    ok = raw_exchange(kiosk.server.port, fleet_pki, b"PUT /config HTTP/1.1\r\nHost: x\r\n"
                      b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n{]}", timeout=3)
    assert ok.startswith(b"HTTP/1.1 100 Continue") and b"HTTP/1.1 400" in ok


def test_oversized_bundle_from_a_real_client_gets_413(fleet_kiosk, fleet_pki, fleet_keys):
    kiosk = fleet_kiosk(max_body=2048)
    raw = make_bundle(fleet_keys.private, {"ui": {"help_text": "あ" * 2000}}, 1)
    r = https(fleet_pki).put(kiosk.url + "/config", data=raw)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert SignedLayerStore(kiosk.data_dir).highest_version() is None


def test_a_compressed_body_is_read_as_sent_never_inflated(fleet_kiosk, fleet_pki, fleet_keys):
    """Content-Encoding: gzip is not honoured: the signature is checked on the bytes sent. (An
    inflating server would read a signed bundle out of this and apply it; a bomb would fill memory.)"""
    import gzip

    kiosk = fleet_kiosk()
    bundle = make_bundle(fleet_keys.private, LAYER, 1)
    packed = gzip.compress(bundle + b" " * 1_000_000)
    assert len(bundle) < len(packed) < 64 * 1024
    r = https(fleet_pki).put(kiosk.url + "/config", data=packed, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["code"] == "malformed"
    assert kiosk.applier.version is None


@pytest.mark.parametrize("request_bytes, status", [
    (b"PUT /config HTTP/1.1\r\nHost: x\r\n\r\n", 411),
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    (b"PUT /config HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 404),
    (b"GET /config HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"POST /config HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"BREW /pot HTCPCP/1.0\r\n\r\n", 400),
    (b"GET /health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),                  # request line too long
    (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 400),            # header too long
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40)) + b"\r\n", 400),
])
def test_http_edge_cases_get_clear_json_answers(fleet_kiosk, fleet_pki, request_bytes, status):
    kiosk = fleet_kiosk()
    answer = raw_exchange(kiosk.server.port, fleet_pki, request_bytes)
    assert status_line(answer) == status
    doc = body_of(answer)
    assert doc.get("code") or doc.get("status")


# -- TLS and mTLS ------------------------------------------------------------------------------

def test_mtls_refuses_a_client_without_a_certificate(fleet_kiosk, fleet_pki, fleet_keys):
    kiosk = fleet_kiosk(require_client_cert=True)
    with pytest.raises(requests.exceptions.RequestException):
        https(fleet_pki, client=False).put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, LAYER, 1))
    assert SignedLayerStore(kiosk.data_dir).highest_version() is None
    assert https(fleet_pki).get(kiosk.url + "/health").status_code == 200


def test_mtls_refuses_a_certificate_from_another_ca(fleet_kiosk, fleet_pki, fleet_keys):
    kiosk = fleet_kiosk(require_client_cert=True)
    s = https(fleet_pki, client=False)
    s.cert = (str(fleet_pki.rogue_cert), str(fleet_pki.rogue_key))
    with pytest.raises(requests.exceptions.RequestException):
        s.put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, LAYER, 1))
    assert SignedLayerStore(kiosk.data_dir).highest_version() is None


def test_without_mtls_the_signature_alone_decides(fleet_kiosk, fleet_pki, fleet_keys):
    kiosk = fleet_kiosk(require_client_cert=False)
    s = https(fleet_pki, client=False)
    assert s.put(kiosk.url + "/config", data=make_bundle(fleet_keys.other, LAYER, 1)).json()["code"] == "wrong_key"
    assert s.put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, LAYER, 1)).status_code == 200
    assert kiosk.actions()[-1][1]["client"] == "127.0.0.1"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk()
    ctx = tls_client_context(fleet_pki)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", kiosk.server.port), timeout=3) as sock:
        with pytest.raises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(sock, server_hostname="127.0.0.1"):
                pass
    ok = tls_client_context(fleet_pki)
    ok.minimum_version = ok.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", kiosk.server.port), timeout=3) as sock:
        with ok.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"


def test_a_silent_connection_does_not_block_others(fleet_kiosk, fleet_pki):
    """The TLS handshake runs on the connection's own thread, with a timeout."""
    kiosk = fleet_kiosk()
    silent = [socket.create_connection(("127.0.0.1", kiosk.server.port)) for _ in range(3)]
    try:
        started = time.monotonic()
        assert https(fleet_pki).get(kiosk.url + "/health", timeout=3).status_code == 200
        assert time.monotonic() - started < 1.5
    finally:
        for s in silent:
            s.close()


# -- rate limiting --------------------------------------------------------------------------------

def _get_health_from(source: str, port: int, pki) -> int:
    ctx = tls_client_context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=3, source_address=(source, 0)) as sock:
        with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return status_line(data)


def test_rate_limit_per_client_address_gives_429_and_is_audited_once(fleet_kiosk, fleet_pki):
    kiosk = fleet_kiosk(rate=3)
    codes = [_get_health_from("127.0.0.1", kiosk.server.port, fleet_pki) for _ in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]
    assert _get_health_from("127.0.0.2", kiosk.server.port, fleet_pki) == 200    # another address, its own bucket
    r = https(fleet_pki).get(kiosk.url + "/health")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and r.headers["Retry-After"] == "20"
    limited = [f for a, f in kiosk.actions() if a == "management.rate_limited"]
    assert limited == [{"client": "127.0.0.1 (central-it-push)"}]


def test_token_buckets_refill_with_time():
    now = [0.0]
    buckets = TokenBuckets(60, clock=lambda: now[0])
    assert all(buckets.allow("a") for _ in range(60)) and not buckets.allow("a")
    now[0] += 1.0
    assert buckets.allow("a") and not buckets.allow("a")
    now[0] += 600
    assert sum(buckets.allow("a") for _ in range(100)) == 60


def test_token_buckets_stay_bounded():
    buckets = TokenBuckets(1, clock=lambda: 0.0, max_clients=10)
    for i in range(100):
        assert buckets.allow(f"10.0.0.{i}")
    assert len(buckets._buckets) == 10


# -- settings ------------------------------------------------------------------------------------

def test_settings_need_tls_keys_and_a_client_ca(tmp_path, fleet_keys):
    base = {"management": {"enabled": True, "trusted_keys": [str(fleet_keys.public_pem)]}}
    with pytest.raises(ConfigError, match="management.tls_cert"):
        settings_from_config(load_config(None, [("t", base)]))
    base["management"].update(tls_cert="/x.pem", tls_key="/x.key")
    with pytest.raises(ConfigError, match="management.client_ca"):
        settings_from_config(load_config(None, [("t", base)]))
    base["management"].update(require_client_cert=False, trusted_keys=[])
    with pytest.raises(ConfigError, match="management.trusted_keys"):
        settings_from_config(load_config(None, [("t", base)]))
    base["management"].update(trusted_keys=[str(fleet_keys.public_pem)], port=9443, rate_per_minute=12)
    s = settings_from_config(load_config(None, [("t", base)]))
    assert (s.port, s.rate_per_minute, s.require_client_cert, s.bind) == (9443, 12, False, "127.0.0.1")


def test_management_bind_must_be_an_address():
    with pytest.raises(ConfigError, match="management.bind"):
        load_config(None, [("t", {"management": {"bind": "eth0"}})])
    with pytest.raises(ConfigError, match="management.poll_url"):
        load_config(None, [("t", {"management": {"poll_url": "http://central.example/bundle"}})])


# -- fuzz ---------------------------------------------------------------------------------------

methods = st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE", "PUT", "PUT", "X" * 3, ""])
paths = st.sampled_from(["/config", "/health", "/status", "/", "/config/../health", "//config", "/%00",
                         "/" + "a" * 300, "*"])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, headers=st.lists(st.tuples(st.sampled_from(
    ["Content-Length", "Transfer-Encoding", "Content-Type", "Expect", "X-Any", "Host"]), header_values), max_size=4),
    body=st.binary(max_size=600), raw_tail=st.binary(max_size=60))
def test_fuzz_the_endpoint_never_breaks_it(fleet_kiosk, fleet_pki, fleet_keys, method, path, headers, body,
                                           raw_tail):
    kiosk = FUZZ_KIOSK.get("k")
    if kiosk is None or kiosk.server is None:
        kiosk = FUZZ_KIOSK["k"] = fleet_kiosk(name="fuzz", rate=600, timeout=0.5)
        assert https(fleet_pki).put(kiosk.url + "/config", data=make_bundle(fleet_keys.private, LAYER, 5)).ok
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: kiosk"]
    lines += [f"{k}: {v}".encode() for k, v in headers]
    if not any(k == "Content-Length" for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}".encode())
    answer = raw_exchange(kiosk.server.port, fleet_pki, b"\r\n".join(lines) + b"\r\n\r\n" + body + raw_tail,
                          timeout=6)
    if answer:
        assert status_line(answer) in (200, 400, 403, 404, 405, 409, 411, 413, 414, 422, 429, 431, 501, 503)
    assert kiosk.applier.version == 5 and kiosk.applier.config["timeouts"]["scanning"] == 90
    assert https(fleet_pki).get(kiosk.url + "/health", timeout=5).status_code == 200


FUZZ_KIOSK: dict = {}


@pytest.fixture(autouse=True)
def _forget_fuzz_kiosk():
    yield
    FUZZ_KIOSK.clear()
