"""Why the catalogue failed, in a few words staff can read: `outage_of` over the exceptions the
real SIP2 and REST clients raise against real peers on loopback, the outbox worker keeping the
code next to its last error, and the staff status screen saying it in the staff's language in a
real window (never the exception's name or text)."""

from __future__ import annotations

import socket
from dataclasses import replace
from typing import Callable

import pytest

from kiosk.core.catalogue import CatalogueUnavailable, Outage
from kiosk.i18n import translator
from kiosk.store.audit import Audit
from kiosk.store.outbox import Outbox
from kiosk.sync.outage import outage_of
from kiosk.sync.outbox_worker import OutboxWorker
from kiosk.sync.rest_backend import RestCatalogue
from kiosk.sync.sip2_backend import Sip2Catalogue
from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_client import Sip2Client
from kiosk_testing import rest_server as rest
from kiosk_testing.sip2_server import (
    INSTITUTION,
    ITEM_NEKO,
    PATRON_OK,
    TERMINAL_PASSWORD,
    KohaQuirksAcs,
    sip2_config,
)
from kiosk_testing.store import make_loan

LANGS = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
WHEN = "20260801    103000"


def closed_port() -> int:
    with socket.socket() as s:                      # bound, never listening, closed: nobody is there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sip2_failure(host: str, port: int, then: Callable[[], object] | None = None,
                 **overrides) -> CatalogueUnavailable:
    """The client's exception for one item request (after `then`, on a live connection, if given)."""
    client = Sip2Client(sip2_config(host, port, **overrides), sleep=lambda s: None)
    try:
        if then is not None:
            client.connect()
            then()
        with pytest.raises(CatalogueUnavailable) as caught:
            client.request(codec.item_information(INSTITUTION, ITEM_NEKO, WHEN, terminal_password="term-pass"))
        return caught.value
    finally:
        client.close()


def rest_failure(catalogue: RestCatalogue) -> CatalogueUnavailable:
    try:
        with pytest.raises(CatalogueUnavailable) as caught:
            catalogue.item_info(rest.ITEM_NEKO)
        return caught.value
    finally:
        catalogue.close()


# -- SIP2 ----------------------------------------------------------------------------------------

def test_sip2_nobody_listening_is_unreachable():
    assert outage_of(sip2_failure("127.0.0.1", closed_port(), attempts=2)) == Outage.UNREACHABLE


def test_sip2_certificate_from_another_ca_is_tls(sip2_library, sip2_tls):
    server = KohaQuirksAcs(sip2_library, ssl_context=sip2_tls.server_context())
    try:
        exc = sip2_failure(server.host, server.port, tls=True, ca_file=str(sip2_tls.other_ca), attempts=1)
    finally:
        server.stop()
    assert outage_of(exc) == Outage.TLS


def test_sip2_wrong_password_is_login_refused(pysip2_acs):
    assert outage_of(sip2_failure(pysip2_acs.host, pysip2_acs.port, login_password="wrong")) \
        == Outage.LOGIN_REFUSED


def test_sip2_answer_too_late_is_timeout(pysip2_acs, sip2_proxy):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port), delay=1.5)
    proxy.fail_responses("delay")                   # the login's 94 comes after the client gave up
    assert outage_of(sip2_failure(proxy.host, proxy.port, timeout=0.3, attempts=1)) == Outage.TIMEOUT


def test_sip2_answers_with_bad_checksums_are_protocol(pysip2_acs, sip2_proxy):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port))
    exc = sip2_failure(proxy.host, proxy.port, attempts=1,   # the 18, then every 97 replay of it
                       then=lambda: proxy.fail_responses(*["corrupt"] * 4))
    assert outage_of(exc) == Outage.PROTOCOL


def test_sip2_connection_dropped_is_unreachable(pysip2_acs, sip2_proxy):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port))
    proxy.fail_requests("drop")
    assert outage_of(sip2_failure(proxy.host, proxy.port, attempts=1)) == Outage.UNREACHABLE


# -- REST ----------------------------------------------------------------------------------------

def test_rest_nobody_listening_is_unreachable(rest_tls):
    catalogue = RestCatalogue(f"https://127.0.0.1:{closed_port()}{rest.BASE_PATH}", token=rest.TOKEN,
                              ca_bundle=rest_tls.ca, retries=0, timeout=2.0)
    assert outage_of(rest_failure(catalogue)) == Outage.UNREACHABLE


def test_rest_certificate_for_another_name_is_tls(make_rest_server, rest_tls):
    server = make_rest_server(wrong_name=True)
    assert outage_of(rest_failure(rest.fast_catalogue(server, rest_tls))) == Outage.TLS


def test_rest_unknown_token_is_login_refused(rest_server, rest_tls):
    exc = rest_failure(rest.fast_catalogue(rest_server, rest_tls, token="tok-Wrong.0000000000"))
    assert outage_of(exc) == Outage.LOGIN_REFUSED


def test_rest_error_answer_is_refused_by_server(rest_server, rest_tls):
    rest_server.inject(rest.status(500))
    assert outage_of(rest_failure(rest.fast_catalogue(rest_server, rest_tls))) == Outage.REFUSED_BY_SERVER


def test_rest_garbled_answer_is_protocol(rest_server, rest_tls):
    rest_server.inject(rest.raw(200, b"<html>captive portal</html>", "text/html"))
    assert outage_of(rest_failure(rest.fast_catalogue(rest_server, rest_tls))) == Outage.PROTOCOL


def test_rest_slow_answer_is_timeout(rest_server, rest_tls):
    rest_server.inject(rest.delay(1.5))
    assert outage_of(rest_failure(rest.fast_catalogue(rest_server, rest_tls, timeout=0.3))) == Outage.TIMEOUT


def test_anything_else_is_other():
    assert outage_of(ValueError("catalogue answered txns ['x'] for ['y']")) == Outage.OTHER
    assert outage_of(CatalogueUnavailable("no reason given")) == Outage.OTHER


# -- the worker, the staff backend, the status screen ---------------------------------------------

@pytest.fixture
def outbox(kiosk_store, store_key, store_clock):
    return Outbox(kiosk_store, store_key, store_clock)


def unreachable_worker_status(outbox, kiosk_store, store_clock, store_dir) -> dict:
    """A real worker sending a loan to a SIP2 port nobody listens on; what staff are shown."""
    from kiosk.shell.staff_backend import StaffBackend

    outbox.append(replace(make_loan(1), patron_id=PATRON_OK, item_id=ITEM_NEKO))
    client = Sip2Client(sip2_config("127.0.0.1", closed_port(), attempts=1), sleep=lambda s: None)
    catalogue = Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD)
    worker = OutboxWorker(outbox, catalogue, store_clock, lambda result: None)
    staff = StaffBackend(kiosk_store, outbox, Audit(kiosk_store, store_clock), store_dir, wall=store_clock,
                         config_version=lambda: "site", worker_status=lambda: worker.status)
    try:
        assert worker.drain_once().unavailable
    finally:
        catalogue.close()
    assert worker.status.reason == "unreachable" and "ConnectionRefusedError" in worker.status.last_error
    return staff.status()


def test_worker_keeps_the_reason_and_staff_get_only_the_code(outbox, kiosk_store, store_clock, store_dir):
    shown = unreachable_worker_status(outbox, kiosk_store, store_clock, store_dir)
    assert shown["catalogue"] == "failing (1)" and shown["catalogue_error"] == "unreachable"
    assert PATRON_OK not in repr(shown) and ITEM_NEKO not in repr(shown)


def test_every_reason_reads_in_every_language():
    for lang in LANGS:
        t = translator(lang)
        texts = [t(f"staff.status.reason.{o.value}") for o in Outage]
        assert len(set(texts)) == len(Outage), lang                   # each says something different
    assert translator("ja")("staff.status.reason.unreachable").startswith("図書館システムに接続できません")


@pytest.mark.ui
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_status_screen_says_why_in_the_staff_language(lang, make_view, kivy_window, outbox, kiosk_store,
                                                      store_clock, store_dir):
    status = unreachable_worker_status(outbox, kiosk_store, store_clock, store_dir)
    view, _ = make_view(default_language=lang)
    view.show("staff_status", dict(countdown=None, notice=None, status=status))
    kivy_window.settle()
    t = translator(lang)
    shown = view.screens["staff_status"].values["catalogue_error"]
    assert shown.text == t("staff.status.reason.unreachable")
    assert shown.get_root_window() is not None
    texts = " ".join(view.texts())
    assert not any(raw in texts for raw in ("ConnectionRefused", "CatalogueUnavailable", "errno", "SIP2"))


def test_a_kiosk_without_the_rest_backend_never_loads_requests():
    """The classifier knows requests' exception types only once the REST backend has loaded
    it: a SIP2 or local kiosk keeps requests (and urllib3) off its start-up path."""
    import subprocess
    import sys

    code = ("import sys\nfrom kiosk.sync.outbox_worker import OutboxWorker\nfrom kiosk.sync.outage import outage_of\n"
            "from kiosk.core.catalogue import CatalogueUnavailable\n"
            "try:\n    raise CatalogueUnavailable('down') from ConnectionRefusedError(111, 'refused')\n"
            "except CatalogueUnavailable as e:\n    print(outage_of(e).value)\n"
            "print('requests' in sys.modules, 'urllib3' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["unreachable", "False False"]
