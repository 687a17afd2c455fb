"""The REST catalogue backend against a real HTTPS server that enforces the contract.

Every request the client makes is validated by the server (kiosk_testing/rest_server.py)
against kiosk/sync/catalogue_api.yaml; a test that made an invalid one fails at teardown.
"""

from __future__ import annotations

import logging
import socket
import time
import unicodedata
from datetime import date, datetime, timedelta, timezone

import pytest
import requests
import yaml

from kiosk.config.load import ConfigError
from kiosk.config.settings import RestSettings
from kiosk.core.catalogue import (
    CatalogueUnavailable,
    LinkRefused,
    LoanRequest,
    PatronStatus,
    Refusal,
)
from kiosk.sync import rest_backend
from kiosk.sync.local_catalogue import LocalCatalogue
from kiosk.sync.rest_backend import MAX_BATCH, RestCatalogue, build_rest_catalogue
from kiosk_testing.rest_server import (
    BASE_PATH,
    CERT_A,
    CERT_B,
    GURI_NOTE,
    GURI_TITLE,
    ITEM_HELD,
    ITEM_NFD,
    ITEM_NEKO,
    ITEM_OUT,
    ITEM_SNOW,
    ITEM_VIDEO,
    ITEMS_FREE,
    NEKO_TITLE,
    PATRON_AT_LIMIT,
    PATRON_BIRTH,
    PATRON_BLOCKED,
    PATRON_NFD,
    PATRON_NFD_NAME,
    PATRON_OK,
    PATRON_OTHER,
    PATRON_PASSWORD,
    SNOW_TITLE,
    TOKEN,
    delay,
    drop,
    drop_after,
    fast_catalogue,
    lost_answer,
    raw,
    seed,
    status,
)

NOW = datetime(2025, 6, 2, 10, 30, tzinfo=timezone(timedelta(hours=9)))


def eventually(predicate, seconds: float = 3.0) -> bool:
    """For what the server records in its own thread after the client has already seen the result."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def loan(txn: str, patron: str = PATRON_OK, item: str = ITEM_NEKO, **kw) -> LoanRequest:
    return LoanRequest(txn_id=txn, patron_id=patron, item_id=item, created_at=kw.pop("created_at", NOW), **kw)


# --------------------------------------------------------------------------- the contract


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(rest_backend.API_SPEC.read_text(encoding="utf-8"))


def test_contract_is_a_valid_openapi_3_1_document(spec):
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator

    validate(spec, cls=OpenAPIV31SpecValidator)
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearer"]["description"]}


def test_every_operation_documents_its_errors_and_needs_the_token(spec):
    assert spec["security"] == [{"bearer": []}]
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert {p for p, _, _ in operations} == {
        "/identities/resolve", "/identities/link", "/identities/unlink", "/patrons/status",
        "/items/info", "/loans", "/loans/renew", "/sessions/end", "/patrons/account", "/loans/renew-all",
        "/returns"}
    for path, method, op in operations:
        assert method == "post", "identifiers go in bodies, never in URLs"
        codes = set(op["responses"])
        assert {"400", "401", "403", "429", "500", "502", "503", "504"} <= codes, path
        assert codes & {"200", "204"}, path
        for code, response in op["responses"].items():
            if code != "204":
                assert "content" in response or "$ref" in response, (path, code)


def test_client_identifier_checks_mirror_the_contract(spec):
    schemas = spec["components"]["schemas"]
    for name, regex in (("PatronId", rest_backend.IDENTIFIER), ("ItemId", rest_backend.IDENTIFIER),
                        ("IdempotencyKey", rest_backend.IDEMPOTENCY_KEY), ("CertHash", rest_backend.CERT_HASH)):
        s = schemas[name]
        body = s["pattern"].strip("^$").rstrip("+")
        if "{" in body:
            assert regex.pattern == body, name
        else:
            assert regex.pattern == f"{body}{{{s['minLength']},{s['maxLength']}}}", name
    assert schemas["LoanBatch"]["properties"]["loans"]["maxItems"] == MAX_BATCH
    api_refusals = set(schemas["Refusal"]["enum"])
    assert api_refusals <= {r.value for r in Refusal}
    renewal_refusals = set(schemas["RenewalRefusal"]["enum"])
    assert renewal_refusals <= {r.value for r in Refusal}
    # kiosk-side only, or renewal/return reasons (sent beside `refusal`, which older kiosks read)
    assert {r.value for r in Refusal} - api_refusals == {"offline", "wrong_password", "renewal_limit", "overdue",
                                                        "not_on_loan"}


def test_the_server_refuses_requests_that_break_the_contract(rest_server, rest_tls):
    url = rest_server.url + "/patrons/status"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    bad = [
        {"patron_id": PATRON_OK, "extra": 1},        # unknown field
        {"patron_id": ""},                          # empty id
        {"patron_id": "2000 0000"},                 # space
    ]
    for body in bad:
        r = requests.post(url, json=body, headers=auth, verify=rest_tls.ca, timeout=5)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_REQUEST"
    r = requests.post(url, data=b"{not json", headers={**auth, "Content-Type": "application/json"},
                      verify=rest_tls.ca, timeout=5)
    assert r.status_code == 400
    assert len(rest_server.invalid_requests) == 4
    rest_server.invalid_requests.clear()            # sent on purpose; the fixture would fail otherwise
    r = requests.post(url, json={"patron_id": PATRON_OK}, verify=rest_tls.ca, timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"


# --------------------------------------------------------------------------- patrons and items


def test_patron_status(rest_catalogue, rest_server):
    status_ = rest_catalogue.patron_status(PATRON_OK)
    assert status_ == PatronStatus(patron_id=PATRON_OK, valid=True, password_ok=None, blocked=(), limit=200,
                                   charged=0, holds_ready=1, overdue=0, name="図書 花子")
    assert status_.may_borrow
    blocked = rest_catalogue.patron_status(PATRON_BLOCKED)
    assert blocked.valid and blocked.blocked == ("too_many_overdue",) and not blocked.may_borrow
    assert rest_catalogue.patron_status(PATRON_AT_LIMIT).charged == 3


def test_patron_password_check(rest_catalogue):
    assert rest_catalogue.patron_status(PATRON_OK, PATRON_PASSWORD).password_ok is True
    wrong = rest_catalogue.patron_status(PATRON_OK, "pw-wrong")
    assert wrong.valid and wrong.password_ok is False and not wrong.may_borrow
    assert wrong.name is None                       # a wrong password reveals nothing else
    assert rest_catalogue.patron_status(PATRON_OK, "").password_ok is False


def test_a_password_check_the_server_skipped_fails_closed(rest_catalogue, rest_server):
    rest_server.inject(raw(200, b'{"patron_id": "%s", "valid": true}' % PATRON_OK.encode(), path="/patrons/status"))
    assert rest_catalogue.patron_status(PATRON_OK, PATRON_PASSWORD).password_ok is False


def test_unknown_or_unsendable_patron_is_not_valid(rest_catalogue, rest_server):
    assert rest_catalogue.patron_status("2999999999999") == PatronStatus("2999999999999", valid=False)
    before = len(rest_server.requests)
    for unsendable in ("", "2000 0001", "2" * 65, "図書カード"):
        assert rest_catalogue.patron_status(unsendable).valid is False
    assert len(rest_server.requests) == before      # refused here, never sent


def test_item_info(rest_catalogue):
    neko = rest_catalogue.item_info(ITEM_NEKO)
    assert (neko.title, neko.available, neko.counter_only, neko.media_type) == (NEKO_TITLE, True, False, "book")
    assert rest_catalogue.item_info(ITEM_OUT).available is False
    assert rest_catalogue.item_info(ITEM_HELD).available is False
    video = rest_catalogue.item_info(ITEM_VIDEO)
    assert video.counter_only and video.media_type == "dvd"
    unknown = rest_catalogue.item_info("1239999999")
    assert (unknown.title, unknown.available) == ("", False)


# --------------------------------------------------------------------------- loans


def test_checkout_lends_with_the_catalogue_due_date(rest_catalogue, rest_library):
    result = rest_catalogue.checkout(loan("txn-1"))
    assert result.ok and not result.replayed
    assert (result.txn_id, result.item_id, result.title) == ("txn-1", ITEM_NEKO, NEKO_TITLE)
    assert result.due_date == date(2025, 6, 16) and result.refusal is None
    assert rest_library.loans_of(PATRON_OK) == [ITEM_NEKO]


@pytest.mark.parametrize("patron, item, refusal", [
    ("2999999999999", ITEM_SNOW, Refusal.PATRON_UNKNOWN),
    (PATRON_OK, "1239999999", Refusal.ITEM_UNKNOWN),
    (PATRON_BLOCKED, ITEM_SNOW, Refusal.PATRON_BLOCKED),
    (PATRON_OK, ITEM_VIDEO, Refusal.COUNTER_ONLY),
    (PATRON_OK, ITEM_OUT, Refusal.ALREADY_OUT),
    (PATRON_OTHER, ITEM_OUT, Refusal.ALREADY_YOURS),
    (PATRON_OK, ITEM_HELD, Refusal.ON_HOLD),
    (PATRON_AT_LIMIT, ITEM_SNOW, Refusal.LIMIT_REACHED),
    ("", ITEM_SNOW, Refusal.PATRON_UNKNOWN),                # unsendable: refused locally
    (PATRON_OK, "1230 0001", Refusal.ITEM_UNKNOWN),
])
def test_checkout_refusals(rest_catalogue, rest_library, patron, item, refusal):
    result = rest_catalogue.checkout(loan("txn-r", patron, item))
    assert not result.ok and result.refusal == refusal and result.due_date is None
    assert result.txn_id == "txn-r" and result.item_id == item
    assert rest_library.lent == []


def test_offline_loan_is_recorded_with_its_own_due_date_despite_a_block(rest_catalogue, rest_library):
    result = rest_catalogue.checkout(loan("txn-off", PATRON_BLOCKED, ITEM_SNOW, offline=True,
                                          due_date=date(2025, 6, 9)))
    assert result.ok and result.due_date == date(2025, 6, 9)
    assert rest_library.loans_of(PATRON_BLOCKED) == [ITEM_SNOW]
    with pytest.raises(ValueError):
        rest_catalogue.checkout(loan("txn-off2", offline=True))   # an offline loan needs its due date


def test_naive_created_at_is_sent_as_local_time(rest_catalogue):
    result = rest_catalogue.checkout(loan("txn-naive", created_at=datetime(2025, 1, 31, 23, 59)))
    assert result.ok and result.due_date == date(2025, 2, 14)


def test_replayed_key_returns_the_original_result_and_lends_once(rest_catalogue, rest_library):
    first = rest_catalogue.checkout(loan("txn-once"))
    again = rest_catalogue.checkout(loan("txn-once", created_at=NOW + timedelta(hours=5)))
    assert first.ok and again.ok and again.replayed and not first.replayed
    assert again.due_date == first.due_date and again.title == first.title
    assert rest_library.lent == [("txn-once", PATRON_OK, ITEM_NEKO)]
    # a refusal replays as the same refusal, even when the item has since become free
    refused = rest_catalogue.checkout(loan("txn-held", item=ITEM_HELD))
    rest_library.items[ITEM_HELD]["on_hold_for"] = None
    replay = rest_catalogue.checkout(loan("txn-held", item=ITEM_HELD))
    assert refused.refusal == replay.refusal == Refusal.ON_HOLD and replay.replayed
    assert len(rest_library.lent) == 1


def test_a_key_reused_for_another_loan_lends_nothing(rest_catalogue, rest_library):
    assert rest_catalogue.checkout(loan("txn-k", item=ITEM_NEKO)).ok
    other = rest_catalogue.checkout(loan("txn-k", item=ITEM_SNOW))
    assert not other.ok and other.refusal == Refusal.OTHER and not other.replayed
    assert "idempotency key" in other.message
    assert rest_library.lent == [("txn-k", PATRON_OK, ITEM_NEKO)]


def test_checkout_many_uses_batches_and_keeps_order(rest_catalogue, rest_server, rest_library):
    loans = [loan(f"txn-b{n:03d}", item=item) for n, item in enumerate(ITEMS_FREE[:MAX_BATCH + 10])]
    loans.insert(3, loan("txn-bad", item="bad barcode"))         # refused locally, not sent
    loans.insert(7, loan("txn-out", item=ITEM_OUT))
    results = rest_catalogue.checkout_many(loans)
    assert [r.txn_id for r in results] == [l.txn_id for l in loans]
    assert rest_server.count("/loans") == 2                      # 61 sendable loans: 50 + 11
    assert results[3].refusal == Refusal.ITEM_UNKNOWN and results[7].refusal == Refusal.ALREADY_OUT
    assert sum(r.ok for r in results) == MAX_BATCH + 10 == len(rest_library.lent)
    assert rest_catalogue.checkout_many([]) == []


def test_a_whole_batch_sent_again_is_replayed_loan_by_loan(rest_catalogue, rest_library):
    loans = [loan(f"txn-a{n}", item=item) for n, item in enumerate(ITEMS_FREE[:5])]
    rest_catalogue.checkout_many(loans[:3])
    results = rest_catalogue.checkout_many(loans)
    assert [r.replayed for r in results] == [True, True, True, False, False]
    assert all(r.ok for r in results) and len(rest_library.lent) == 5


# --------------------------------------------------------------------------- renew, end, identities


def test_renew(rest_catalogue, rest_library):
    rest_catalogue.checkout(loan("txn-n", created_at=datetime.now(timezone.utc)))     # not overdue
    renewed = rest_catalogue.renew(PATRON_OK, ITEM_NEKO)
    assert renewed.ok and renewed.due_date == date.today() + timedelta(days=14) and not renewed.replayed
    not_mine = rest_catalogue.renew(PATRON_OK, ITEM_OUT)
    assert not not_mine.ok and not_mine.refusal == Refusal.NOT_ON_LOAN
    assert rest_catalogue.renew(PATRON_OK, "1239999999").refusal == Refusal.ITEM_UNKNOWN
    assert len(rest_library.renewed) == 1


def test_renew_whose_answer_was_lost_renews_once(rest_catalogue, rest_server, rest_library):
    rest_catalogue.checkout(loan("txn-n", created_at=datetime.now(timezone.utc)))
    rest_server.inject(lost_answer(504, path="/loans/renew"))
    renewed = rest_catalogue.renew(PATRON_OK, ITEM_NEKO)
    assert renewed.ok and renewed.replayed
    assert rest_server.count("/loans/renew") == 2 and len(rest_library.renewed) == 1


def test_end_session(rest_catalogue, rest_library):
    rest_catalogue.end_session(PATRON_OK)
    rest_catalogue.end_session("")                   # nothing to send
    assert rest_library.ended == [PATRON_OK]


def test_identity_links(rest_catalogue, rest_library):
    assert rest_catalogue.resolve_identity(CERT_A) is None
    rest_catalogue.link_identity(CERT_A, PATRON_OK)
    rest_catalogue.link_identity(CERT_A, PATRON_OK)          # repeating is harmless
    assert rest_catalogue.resolve_identity(CERT_A) == PATRON_OK
    assert rest_catalogue.resolve_identity(CERT_A.upper()) == PATRON_OK
    rest_catalogue.link_identity(CERT_B, PATRON_OK, PATRON_BIRTH)
    assert rest_catalogue.resolve_identity(CERT_B) == PATRON_OK
    rest_catalogue.unlink_identity(CERT_A)
    rest_catalogue.unlink_identity(CERT_A)                   # already gone: fine
    assert rest_catalogue.resolve_identity(CERT_A) is None
    assert rest_library.links == {CERT_B: PATRON_OK}


def test_link_refusals_link_nothing(rest_catalogue, rest_library):
    with pytest.raises(LinkRefused) as wrong_birth:
        rest_catalogue.link_identity(CERT_A, PATRON_OK, date(1990, 4, 2))
    assert wrong_birth.value.refusal == Refusal.WRONG_PASSWORD
    with pytest.raises(LinkRefused) as unknown:
        rest_catalogue.link_identity(CERT_A, "2999999999999")
    assert unknown.value.refusal == Refusal.PATRON_UNKNOWN
    with pytest.raises(LinkRefused):
        rest_catalogue.link_identity(CERT_A, "not a card")
    assert rest_library.links == {}
    with pytest.raises(ValueError):
        rest_catalogue.resolve_identity("abc")               # not a SHA-256 digest: a kiosk bug


# --------------------------------------------------------------------------- the connection


def test_one_keep_alive_connection_serves_many_calls(rest_catalogue, rest_server):
    for _ in range(5):
        rest_catalogue.item_info(ITEM_NEKO)
    rest_catalogue.patron_status(PATRON_OK)
    rest_catalogue.checkout(loan("txn-ka"))
    assert rest_server.connections == 1


@pytest.mark.parametrize("code", [502, 503, 504])
def test_retries_on_gateway_errors_then_succeeds(rest_catalogue, rest_server, code):
    rest_server.inject(status(code, path="/items/info"), status(code, path="/items/info"))
    assert rest_catalogue.item_info(ITEM_SNOW).title == SNOW_TITLE
    assert rest_server.count("/items/info") == 3


def test_retries_give_up_after_the_configured_number(rest_server, rest_tls, rest_library):
    catalogue = fast_catalogue(rest_server, rest_tls, retries=3)
    rest_server.inject(*[status(503, path="/loans")] * 10)
    started = time.monotonic()
    with pytest.raises(CatalogueUnavailable, match="HTTP 503"):
        catalogue.checkout(loan("txn-503"))
    assert time.monotonic() - started < 1.0
    assert rest_server.count("/loans") == 4 and rest_library.lent == []
    catalogue.close()


def test_no_retries_when_configured_off(rest_server, rest_tls):
    catalogue = fast_catalogue(rest_server, rest_tls, retries=0)
    rest_server.inject(status(503))
    with pytest.raises(CatalogueUnavailable):
        catalogue.item_info(ITEM_NEKO)
    assert rest_server.count("/items/info") == 1
    catalogue.close()


@pytest.mark.parametrize("code", [500, 429, 403])
def test_other_errors_are_not_retried(rest_catalogue, rest_server, code):
    rest_server.inject(status(code))
    with pytest.raises(CatalogueUnavailable, match=f"HTTP {code}"):
        rest_catalogue.patron_status(PATRON_OK)
    assert rest_server.count("/patrons/status") == 1


def test_retry_after_is_honoured_but_capped(rest_server, rest_tls):
    catalogue = fast_catalogue(rest_server, rest_tls, retries=1, backoff_max=1.0)
    rest_server.inject(status(503, retry_after=5))
    started = time.monotonic()
    assert catalogue.item_info(ITEM_NEKO).title == NEKO_TITLE
    assert 0.9 <= time.monotonic() - started < 2.5
    catalogue.close()


def test_a_loan_whose_answer_was_lost_is_replayed_not_doubled(rest_catalogue, rest_server, rest_library):
    rest_server.inject(lost_answer(504, path="/loans"))
    result = rest_catalogue.checkout(loan("txn-lost"))
    assert result.ok and result.replayed
    assert rest_server.count("/loans") == 2 and rest_library.lent == [("txn-lost", PATRON_OK, ITEM_NEKO)]


def test_a_dropped_connection_is_retried(rest_catalogue, rest_server, rest_library):
    rest_server.inject(drop(path="/loans"))
    result = rest_catalogue.checkout(loan("txn-drop"))
    assert result.ok and not result.replayed and rest_server.count("/loans") == 2
    rest_server.inject(drop_after(path="/loans"))             # lent, then the line went dead
    result = rest_catalogue.checkout(loan("txn-drop2", item=ITEM_SNOW))
    assert result.ok and result.replayed
    assert [key for key, _, _ in rest_library.lent] == ["txn-drop", "txn-drop2"]


def test_connections_that_keep_dropping_give_up(rest_catalogue, rest_server):
    rest_server.inject(*[drop()] * 5)
    with pytest.raises(CatalogueUnavailable, match="ConnectionError"):
        rest_catalogue.item_info(ITEM_NEKO)
    assert rest_server.count("/items/info") == 3


def test_a_slow_catalogue_times_out_once_and_the_loan_replays_later(rest_server, rest_tls, rest_library):
    catalogue = fast_catalogue(rest_server, rest_tls, timeout=0.3)
    rest_server.inject(delay(1.0, path="/loans"))
    started = time.monotonic()
    with pytest.raises(CatalogueUnavailable, match="ReadTimeout"):
        catalogue.checkout(loan("txn-slow"))
    assert time.monotonic() - started < 0.3 + 0.5              # one read timeout, not retried
    assert rest_server.count("/loans") == 1
    assert eventually(lambda: rest_library.lent)                  # the slow catalogue did lend it
    again = catalogue.checkout(loan("txn-slow"))
    assert again.ok and again.replayed and len(rest_library.lent) == 1
    catalogue.close()


def test_a_server_that_never_answers_the_handshake_times_out(rest_tls):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)                                       # accepts TCP, never speaks TLS
        host, port = listener.getsockname()
        catalogue = RestCatalogue(f"https://{host}:{port}{BASE_PATH}", token=TOKEN, ca_bundle=rest_tls.ca,
                                  timeout=0.4, retries=2, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(CatalogueUnavailable):
            catalogue.resolve_identity(CERT_A)
        assert time.monotonic() - started < 0.4 + 0.5         # a hung handshake is not retried
        catalogue.close()


def test_a_closed_port_fails_fast_after_bounded_retries(rest_tls):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                                # bound, never listening: refused
        catalogue = RestCatalogue(f"https://127.0.0.1:{port}{BASE_PATH}", token=TOKEN, ca_bundle=rest_tls.ca,
                                  timeout=0.5, retries=3, backoff=0.01)
        started = time.monotonic()
        with pytest.raises(CatalogueUnavailable, match="ConnectionError"):
            catalogue.item_info(ITEM_NEKO)
        assert time.monotonic() - started < 1.0
        catalogue.close()


# --------------------------------------------------------------------------- garbage answers


@pytest.mark.parametrize("fault", [
    raw(200, b"{not json", path="/items/info"),
    raw(200, b"", path="/items/info"),
    raw(200, b'{"item_id": "1230004567", "title": "x", "available": true}', "text/html", path="/items/info"),
    raw(200, b"<html>captive portal</html>", "text/html", path="/items/info"),
    raw(200, b'{"item_id": "1230004567", "title": 5, "available": true}', path="/items/info"),
    raw(200, b'{"item_id": "1230000001", "title": "x", "available": true}', path="/items/info"),  # another item
    raw(404, b"<html>Not Found</html>", "text/html", path="/items/info"),   # a proxy's 404, not ours
    raw(404, b'{"code": "PATRON_NOT_FOUND", "message": "x"}', path="/items/info"),   # wrong code
    raw(302, b"", headers=(("Location", "https://127.0.0.1:1/elsewhere"),), path="/items/info"),
])
def test_answers_that_break_the_contract_mean_unavailable(rest_catalogue, rest_server, fault):
    rest_server.inject(fault)
    with pytest.raises(CatalogueUnavailable):
        rest_catalogue.item_info(ITEM_NEKO)
    assert rest_server.count("/items/info") == 1


def test_a_proxy_404_is_not_an_unknown_patron(rest_catalogue, rest_server):
    rest_server.inject(raw(404, b"{}", path="/patrons/status"))
    with pytest.raises(CatalogueUnavailable):
        rest_catalogue.patron_status(PATRON_OK)


@pytest.mark.parametrize("body", [
    b'{"results": []}',
    b'{"results": [{"idempotency_key": "other-key", "item_id": "1230004567", "ok": true, "replayed": false}]}',
    b'{"results": [{"idempotency_key": "txn-g", "item_id": "1230004567", "ok": "yes", "replayed": false}]}',
    b'{"results": [{"idempotency_key": "txn-g", "item_id": "1230004567", "ok": false, "replayed": false,'
    b' "refusal": "gone_fishing"}]}',
])
def test_garbled_loan_results_mean_unavailable(rest_catalogue, rest_server, body):
    rest_server.inject(raw(200, body, path="/loans"))
    with pytest.raises(CatalogueUnavailable):
        rest_catalogue.checkout(loan("txn-g"))


def test_an_unreadable_due_date_is_kept_as_text(rest_catalogue, rest_server):
    rest_server.inject(raw(200, b'{"results": [{"idempotency_key": "txn-d", "item_id": "1230004567", "ok": true,'
                                b' "replayed": false, "title": "t", "due_date": "2025/06/16"}]}', path="/loans"))
    result = rest_catalogue.checkout(loan("txn-d"))
    assert result.ok and result.due_date is None and result.due_text == "2025/06/16"


def test_a_wrong_token_is_unavailable_not_a_refusal(make_rest_server, rest_tls):
    server = make_rest_server(token="tok-someone-else")
    catalogue = fast_catalogue(server, rest_tls)
    with pytest.raises(CatalogueUnavailable, match="UNAUTHORIZED"):
        catalogue.patron_status(PATRON_OK)
    assert server.count("/patrons/status") == 1
    tokenless = fast_catalogue(server, rest_tls, token="")
    with pytest.raises(CatalogueUnavailable, match="HTTP 401"):
        tokenless.item_info(ITEM_NEKO)
    catalogue.close()
    tokenless.close()


# --------------------------------------------------------------------------- TLS


def test_server_certificate_from_an_unknown_ca_is_refused(rest_server, rest_tls):
    catalogue = fast_catalogue(rest_server, rest_tls, ca_bundle=rest_tls.other_ca)
    with pytest.raises(CatalogueUnavailable, match="SSLError"):
        catalogue.item_info(ITEM_NEKO)
    assert eventually(lambda: rest_server.tls_failures) and rest_server.requests == []   # nothing reached HTTP
    catalogue.close()


def test_system_trust_store_does_not_know_the_test_ca(rest_server):
    catalogue = RestCatalogue(rest_server.url, token=TOKEN, timeout=1.0, retries=1, backoff=0.01)
    with pytest.raises(CatalogueUnavailable, match="SSLError"):
        catalogue.item_info(ITEM_NEKO)
    assert rest_server.requests == []
    catalogue.close()


def test_server_certificate_for_another_name_is_refused(make_rest_server, rest_tls):
    server = make_rest_server(wrong_name=True)
    catalogue = fast_catalogue(server, rest_tls)
    with pytest.raises(CatalogueUnavailable, match="SSLError"):
        catalogue.item_info(ITEM_NEKO)
    assert server.requests == []
    catalogue.close()


def test_mutual_tls(make_rest_server, rest_tls):
    server = make_rest_server(require_client=True)
    with_cert = fast_catalogue(server, rest_tls, client_cert=rest_tls.client_cert, client_key=rest_tls.client_key)
    assert with_cert.item_info(ITEM_NEKO).title == NEKO_TITLE
    without = fast_catalogue(server, rest_tls)
    with pytest.raises(CatalogueUnavailable):
        without.item_info(ITEM_NEKO)
    assert eventually(lambda: server.tls_failures) and server.requests == ["/items/info"]
    with_cert.close()
    without.close()


# --------------------------------------------------------------------------- secrets and reading records


def test_no_token_patron_title_or_card_identity_in_logs(rest_server, rest_tls, caplog):
    caplog.set_level(logging.DEBUG)
    catalogue = fast_catalogue(rest_server, rest_tls, timeout=0.3)
    catalogue.link_identity(CERT_A, PATRON_OK)
    catalogue.resolve_identity(CERT_A)
    catalogue.patron_status(PATRON_OK, PATRON_PASSWORD)
    catalogue.item_info(ITEM_NEKO)
    catalogue.checkout(loan("txn-log"))
    catalogue.renew(PATRON_OK, ITEM_NEKO)
    errors: list[str] = []
    for fault in (status(503), drop(), delay(0.6), raw(200, b"{bad"), status(500), raw(401, b"{}")):
        rest_server.inject(*[fault] * 3)
        try:
            catalogue.checkout(loan("txn-log2", item=ITEM_SNOW))
        except CatalogueUnavailable as exc:
            errors.append(str(exc))
        rest_server._faults.clear()
    assert len(errors) >= 4 and caplog.records
    secrets = [TOKEN, PATRON_OK, PATRON_PASSWORD, ITEM_NEKO, ITEM_SNOW, NEKO_TITLE, SNOW_TITLE, CERT_A]
    text = caplog.text + "\n".join(errors) + repr(catalogue) + repr(catalogue._session.auth)
    for secret in secrets:
        assert secret not in text
    assert "catalogue.rest.unavailable" in caplog.text
    catalogue.close()


# --------------------------------------------------------------------------- configuration


def _config(tmp_path, rest_server, rest_tls, **rest) -> dict:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    section = {"base_url": rest_server.url, "ca_bundle": str(rest_tls.ca), "client_cert": "", "client_key": "",
               "token_file": str(token_file), "retries": 1}
    section.update(rest)
    return {"catalogue": {"backend": "rest", "timeout": 2, "rest": section}}


def test_build_from_config(tmp_path, rest_server, rest_tls):
    catalogue = build_rest_catalogue(RestSettings.from_config(_config(tmp_path, rest_server, rest_tls)))
    assert catalogue.patron_status(PATRON_OK).valid
    assert catalogue._timeout == (2.0, 2.0)
    catalogue.close()


@pytest.mark.parametrize("rest, key", [
    ({"base_url": ""}, "catalogue.rest.base_url"),
    ({"ca_bundle": "/nonexistent/ca.pem"}, "catalogue.rest.ca_bundle"),
    ({"client_key": "/etc/hostname"}, "catalogue.rest.client_key"),
    ({"token_file": "/nonexistent/token"}, ""),
])
def test_build_refuses_unusable_settings(tmp_path, rest_server, rest_tls, rest, key):
    with pytest.raises(ConfigError) as err:
        build_rest_catalogue(RestSettings.from_config(_config(tmp_path, rest_server, rest_tls, **rest)))
    if key:
        assert err.value.key == key


def test_a_token_that_cannot_be_a_header_is_a_config_error(tmp_path, rest_server, rest_tls):
    bad = tmp_path / "bad-token"
    bad.write_text("two words")
    with pytest.raises(ConfigError) as err:
        build_rest_catalogue(RestSettings.from_config(_config(tmp_path, rest_server, rest_tls, token_file=str(bad))))
    assert err.value.key == "catalogue.rest.token_file" and "two words" not in str(err.value)


# --------------------------------------------------------------------------- same answers as the reference


def test_same_answers_as_the_local_reference_catalogue(tmp_path, rest_catalogue):
    local = LocalCatalogue(tmp_path / "catalogue.json")
    local.seed(seed())
    try:
        for pid in (PATRON_OK, PATRON_BLOCKED, PATRON_AT_LIMIT, "2999999999999"):
            a, b = local.patron_status(pid), rest_catalogue.patron_status(pid)
            assert (a.valid, a.blocked, a.limit, a.charged, a.holds_ready, a.name) == \
                   (b.valid, b.blocked, b.limit, b.charged, b.holds_ready, b.name), pid
            for password in (PATRON_PASSWORD, "pw-wrong"):
                assert local.patron_status(pid, password).password_ok == \
                       rest_catalogue.patron_status(pid, password).password_ok
        for iid in (ITEM_NEKO, ITEM_OUT, ITEM_VIDEO, "1239999999"):
            a, b = local.item_info(iid), rest_catalogue.item_info(iid)
            assert (a.title, a.available, a.counter_only) == (b.title, b.available, b.counter_only), iid
        journey = [
            loan("p1"), loan("p1"), loan("p2", item=ITEM_NEKO), loan("p3", item=ITEM_OUT),
            loan("p4", item=ITEM_HELD), loan("p5", item=ITEM_VIDEO), loan("p6", PATRON_BLOCKED, ITEM_SNOW),
            loan("p7", PATRON_AT_LIMIT, ITEM_SNOW), loan("p8", "2999999999999", ITEM_SNOW),
            loan("p9", item="1239999999"), loan("p10", PATRON_OTHER, ITEM_HELD),
            loan("p11", PATRON_BLOCKED, ITEMS_FREE[0], offline=True, due_date=date(2025, 6, 5)),
            loan("p12", PATRON_OTHER, ITEM_OUT),
        ]
        for request in journey:
            a, b = local.checkout(request), rest_catalogue.checkout(request)
            assert (a.ok, a.refusal, a.title if a.ok else "", a.due_date, a.replayed) == \
                   (b.ok, b.refusal, b.title if b.ok else "", b.due_date, b.replayed), request.txn_id
        for pid, iid in ((PATRON_OK, ITEM_NEKO), (PATRON_OK, ITEM_OUT)):
            a, b = local.renew(pid, iid), rest_catalogue.renew(pid, iid)
            assert (a.ok, a.refusal, a.due_date) == (b.ok, b.refusal, b.due_date)
        for catalogue in (local, rest_catalogue):
            catalogue.link_identity(CERT_A, PATRON_OK)
            catalogue.unlink_identity(CERT_B)
        assert local.resolve_identity(CERT_A) == rest_catalogue.resolve_identity(CERT_A) == PATRON_OK
        assert local.resolve_identity(CERT_B) is rest_catalogue.resolve_identity(CERT_B) is None
    finally:
        local.close()


# --------------------------------------------------------------------------- Unicode from the catalogue


def test_decomposed_text_from_the_catalogue_is_normalised_to_nfc(rest_catalogue, rest_library):
    """A catalogue fed from MARC records answers in NFD (ぐりとぐら as 7 code points): kept as NFC."""
    assert len(rest_library.items[ITEM_NFD]["title"]) == 7                # what the server sends
    nfc = unicodedata.normalize("NFC", GURI_TITLE)
    item = rest_catalogue.item_info(ITEM_NFD)
    assert item.title == nfc and len(item.title) == 5
    assert rest_catalogue.patron_status(PATRON_NFD).name == unicodedata.normalize("NFC", PATRON_NFD_NAME)
    result = rest_catalogue.checkout(loan("txn-nfd", PATRON_NFD, ITEM_NFD))
    assert result.ok and result.title == nfc and result.message == unicodedata.normalize("NFC", GURI_NOTE)
    assert rest_catalogue.checkout(loan("txn-nfd", PATRON_NFD, ITEM_NFD)).title == nfc     # the replay too
    assert rest_catalogue.renew(PATRON_NFD, ITEM_NFD).title == nfc


def test_decomposed_text_in_the_local_catalogue_is_normalised_to_nfc(tmp_path):
    local = LocalCatalogue(tmp_path / "catalogue.json")
    local.seed(seed())                                                     # the same NFD title and name
    try:
        nfc = unicodedata.normalize("NFC", GURI_TITLE)
        assert local.item_info(ITEM_NFD).title == nfc
        assert local.patron_status(PATRON_NFD).name == unicodedata.normalize("NFC", PATRON_NFD_NAME)
        request = loan("txn-nfd", PATRON_NFD, ITEM_NFD)
        assert local.checkout(request).title == nfc
        assert local.checkout(request).title == nfc                        # replayed from the stored result
        assert local.renew(PATRON_NFD, ITEM_NFD).title == nfc
    finally:
        local.close()
