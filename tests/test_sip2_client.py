"""SIP2 client against real peers on loopback: pysip2, a Koha-quirks ACS and a fault proxy."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import pytest

from kiosk.core.catalogue import CatalogueUnavailable
from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_client import Sip2Client, Sip2Config, make_ssl_context
from kiosk_testing.sip2_server import (
    INSTITUTION,
    ITEM_NEKO,
    ITEM_SNOW,
    NEKO_TITLE,
    SIP_PASSWORD,
    SIP_USER,
    KohaQuirksAcs,
    run_pysip2_acs,
    sip2_config,
)

WHEN = "20260801    103000"


def item_request(item_id: str = ITEM_NEKO) -> codec.SipMessage:
    return codec.item_information(INSTITUTION, item_id, WHEN, terminal_password="term-pass")


def sequences(frames: list[bytes], command: bytes) -> list[int]:
    return [int(f[-8:-7]) for f in frames if f.startswith(command)]


@pytest.fixture
def client_for():
    clients: list[Sip2Client] = []

    def make(host: str, port: int, **overrides) -> Sip2Client:
        client = Sip2Client(sip2_config(host, port, **overrides), sleep=lambda seconds: None)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --------------------------------------------------------------------------- pysip2 peer


def test_logs_in_first_then_reads_acs_status(pysip2_acs, sip2_library, client_for):
    client = client_for(pysip2_acs.host, pysip2_acs.port)
    reply = client.request(item_request())
    assert reply.command == "18" and reply.get("AJ") == NEKO_TITLE
    assert sip2_library.requests[:2] == ["93", "17"]        # pysip2 would hang up on anything before 93
    status = client.acs_status
    assert status.online and status.offline_ok and status.checkout_ok
    assert status.retries == 3 and status.timeout == 3.0
    assert status.supported["checkout"] and status.supported["login"] and not status.supported["hold"]
    assert status.institution == INSTITUTION and status.protocol_version == "2.00"
    assert client.security == "plain"


def test_refused_login_fails_at_once_without_retrying(pysip2_acs, sip2_library, client_for):
    client = client_for(pysip2_acs.host, pysip2_acs.port, login_password="wrong")
    with pytest.raises(CatalogueUnavailable, match="login refused"):
        client.request(item_request())
    assert sip2_library.requests == ["93"]


def test_unreachable_server_backs_off_and_gives_up():
    with socket.socket() as s:                          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pauses: list[float] = []
    client = Sip2Client(sip2_config("127.0.0.1", port, attempts=4, backoff=0.5, backoff_max=1.5),
                        sleep=pauses.append)
    with pytest.raises(CatalogueUnavailable, match="after 4 attempts"):
        client.request(item_request())
    assert pauses == [0.5, 1.0, 1.5]


def test_acs_off_line_is_unavailable(sip2_library):
    with run_pysip2_acs(sip2_library, online=False) as acs:
        client = Sip2Client(sip2_config(acs.host, acs.port, attempts=2), sleep=lambda s: None)
        with pytest.raises(CatalogueUnavailable):
            client.request(item_request())
        assert client.acs_status is not None and not client.acs_status.online
        assert "17" not in sip2_library.requests


def test_sequence_numbers_increment_and_wrap(pysip2_acs, sip2_proxy, client_for):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port))
    client = client_for(proxy.host, proxy.port)
    for _ in range(12):
        client.request(item_request())
    # 93 took AY0 and 99 AY1, so the twelve 17s run 2..9, 0..3
    assert sequences(proxy.client_frames, b"17") == [2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3]
    assert proxy.connections == 1


def test_field_over_255_bytes_is_truncated_so_pysip2_keeps_the_connection(pysip2_acs, client_for):
    client = client_for(pysip2_acs.host, pysip2_acs.port)
    long_id = "長" * 100                                   # 300 bytes in UTF-8
    reply = client.request(item_request(long_id))
    assert reply.get("AB") == "長" * 85 and reply.flag("circulation_status") == "01"
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert client.connections == 1


def test_one_client_is_safe_to_share_between_threads(pysip2_acs, sip2_library, client_for):
    client = client_for(pysip2_acs.host, pysip2_acs.port, timeout=2.0)
    # (not the 360-byte title: pysip2 drops the connection rather than send it, its quirk 3)
    items = [i for i in sip2_library.items.values() if len(i.title.encode()) <= 255]
    errors: list[str] = []

    def worker(item) -> None:
        try:
            for _ in range(8):
                reply = client.request(item_request(item.item_id))
                if reply.get("AB") != item.item_id or reply.get("AJ") != item.title:
                    errors.append(item.item_id)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == [] and client.connections == 1 and len(items) >= 6


# --------------------------------------------------------------------------- faults


@pytest.fixture
def faulty(pysip2_acs, sip2_proxy, client_for):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port), delay=1.5)
    client = client_for(proxy.host, proxy.port)
    client.connect()                                   # login and status go through cleanly
    return proxy, client


def test_bad_checksum_is_answered_with_97(faulty):
    proxy, client = faulty
    proxy.fail_responses("corrupt")
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert b"97AZFEF5\r" in proxy.client_frames
    assert proxy.connections == 1


def test_97_stops_at_the_retry_limit_then_reconnects(faulty):
    proxy, client = faulty
    proxy.fail_responses("corrupt", "corrupt", "corrupt", "corrupt")   # original + three 97 replays
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert proxy.client_frames.count(b"97AZFEF5\r") == 3               # the ACS's retries limit
    assert proxy.connections == 2


def test_96_makes_the_client_resend_the_same_frame(faulty, sip2_library):
    proxy, client = faulty
    proxy.fail_requests("corrupt")                       # pysip2 sees a bad checksum and sends 96
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    sent = [f for f in proxy.client_frames if f.startswith(b"17")]
    assert len(sent) == 2 and sent[0] == sent[1]         # same AY: a resend, not a new message
    assert sip2_library.requests.count("17") == 1


def test_96_from_the_acs_side(faulty):
    proxy, client = faulty
    proxy.fail_responses("ask_resend")                   # pysip2 then sees a duplicate and replays
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert len([f for f in proxy.client_frames if f.startswith(b"17")]) == 2


@pytest.mark.parametrize("fault", ["garbage", "noise", "stale", "crlf", "split"])
def test_damaged_or_extra_frames_are_survived_on_one_connection(faulty, fault):
    proxy, client = faulty
    proxy.fail_responses(fault)
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert client.request(item_request(ITEM_SNOW)).get("AJ") == "雪国"
    assert proxy.connections == 1


@pytest.mark.parametrize("fault", ["drop", "delay"])
def test_lost_or_late_responses_reconnect_and_resend(faulty, fault):
    proxy, client = faulty
    proxy.fail_responses(fault)
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert proxy.connections == 2
    assert client.request(item_request(ITEM_SNOW)).get("AJ") == "雪国"


def test_lost_request_reconnects(faulty, sip2_library):
    proxy, client = faulty
    proxy.fail_requests("drop")
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert proxy.connections == 2 and sip2_library.requests.count("17") == 1


def test_server_hanging_up_an_idle_connection(faulty, sip2_library):
    proxy, client = faulty
    proxy.hang_up()
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert proxy.connections == 2
    assert sip2_library.requests.count("93") == 2        # logged in again


def test_idle_hang_up_is_noticed_before_sending(pysip2_acs, sip2_proxy, client_for):
    """Checked before the request goes out, so it costs no attempt (a single one here)."""
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port))
    client = client_for(proxy.host, proxy.port, attempts=1)
    client.connect()
    proxy.hang_up()
    time.sleep(0.05)                                     # let the FIN land (loopback: microseconds)
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert proxy.connections == 2


def test_answer_about_another_item_is_discarded(koha_acs, sip2_proxy, client_for):
    proxy = sip2_proxy((koha_acs.host, koha_acs.port))
    client = client_for(proxy.host, proxy.port)
    client.connect()
    proxy.fail_responses("other_item")
    assert client.request(item_request()).get("AJ") == NEKO_TITLE


def test_late_duplicate_is_never_the_next_answer(koha_acs, sip2_proxy, client_for):
    """Koha without error detection has no AY to tell answers apart."""
    proxy = sip2_proxy((koha_acs.host, koha_acs.port))
    client = client_for(proxy.host, proxy.port)
    client.connect()
    proxy.fail_responses("duplicate")
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert client.request(item_request(ITEM_SNOW)).get("AJ") == "雪国"
    assert proxy.connections == 1


def test_gives_up_after_bounded_attempts(faulty):
    proxy, client = faulty
    proxy.fail_responses(*["drop"] * 10)
    with pytest.raises(CatalogueUnavailable, match="after 3 attempts"):
        client.request(item_request())


# --------------------------------------------------------------------------- Koha quirks


def test_koha_crlf_responses_without_trailer(koha_acs, client_for):
    client = client_for(koha_acs.host, koha_acs.port)
    for _ in range(3):
        assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert client.acs_status.protocol_version == "2.0E"
    assert client.connections == 1


def test_crlf_terminator_can_be_configured(koha_acs, client_for):
    client = client_for(koha_acs.host, koha_acs.port, terminator="\r\n")
    client.request(item_request())
    client.request(item_request())
    assert koha_acs.raw.count(b"\r\n") == 4 and koha_acs.raw.count(b"\r") == 4   # 93, 99, 17, 17
    plain = client_for(koha_acs.host, koha_acs.port)
    before = koha_acs.raw.count(b"\r\n")
    plain.request(item_request())
    assert koha_acs.raw.count(b"\r\n") == before        # CR only by default


def test_responses_over_255_bytes_are_accepted(koha_acs, client_for):
    from kiosk_testing.sip2_server import ITEM_LONG, LONG_TITLE
    client = client_for(koha_acs.host, koha_acs.port)
    assert client.request(item_request(ITEM_LONG)).get("AJ") == LONG_TITLE


@pytest.fixture
def koha_error_detect(sip2_library):
    """Koha with error detection on: AY/AZ on every response, 97 answered with AY0."""
    acs = KohaQuirksAcs(sip2_library, error_detect=True)
    yield acs
    acs.stop()


def test_koha_resend_with_ay0_after_97_is_accepted_and_lends_exactly_once(koha_error_detect, sip2_library,
                                                                          client_for):
    """Koha and Evergreen answer a 97 with the last response re-sent as AY0: that IS the answer.

    Discarding it meant a timeout, a reconnect and a second 11, which the library
    recorded as a renewal of a loan the patron had only taken once.
    """
    acs = koha_error_detect
    client = client_for(acs.host, acs.port, timeout=2.0)
    client.connect()                                       # 93 took AY0 and 99 AY1: the 11 goes with AY2
    acs.corrupt("11")
    reply = client.request(codec.checkout(INSTITUTION, "2000000012345", ITEM_SNOW, WHEN, WHEN,
                                          terminal_password="term-pass"))
    assert (reply.command, reply.flag("ok"), reply.flag("renewal_ok")) == ("12", "1", "N")
    assert reply.sequence == 0 and reply.get("AJ") == "雪国"
    assert acs.resends == 1 and sum(f.startswith(b"97") for f in acs.frames) == 1
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan"]       # exactly one 11 reached the ILS
    assert [f[:2] for f in acs.frames].count(b"11") == 1
    assert client.connections == 1


@pytest.mark.parametrize("resend_sequence", ["0", None])
def test_koha_resends_after_97_with_ay0_or_the_original_ay_are_accepted(koha_error_detect, client_for,
                                                                       resend_sequence):
    acs = koha_error_detect
    acs.resend_sequence = resend_sequence                  # None: the original AY, as the spec implies
    client = client_for(acs.host, acs.port, timeout=2.0)
    for _ in range(3):                                     # the 17s carry AY2, AY3, AY4
        acs.corrupt("17")
        assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert acs.resends == 3 and client.connections == 1


def test_after_97_a_resend_with_another_nonzero_sequence_is_still_discarded(koha_error_detect, client_for):
    """Only the original AY or 0 answers a 97; any other AY is a stale frame."""
    acs = koha_error_detect
    acs.resend_sequence = "7"
    client = client_for(acs.host, acs.port, timeout=0.5, attempts=1)
    acs.corrupt("17")
    with pytest.raises(CatalogueUnavailable):
        client.request(item_request())                     # 17 went with AY2


def test_koha_error_detection_without_faults_echoes_the_sequence(koha_error_detect, client_for):
    client = client_for(koha_error_detect.host, koha_error_detect.port)
    for _ in range(3):
        reply = client.request(item_request())
        assert reply.get("AJ") == NEKO_TITLE and reply.checksum is not None
    assert koha_error_detect.resends == 0 and client.connections == 1


# --------------------------------------------------------------------------- TLS


def test_tls_with_the_library_ca(pysip2_acs, sip2_proxy, sip2_tls, client_for):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port), ssl_context=sip2_tls.server_context())
    client = client_for(proxy.host, proxy.port, tls=True, ca_file=str(sip2_tls.ca))
    assert client.request(item_request()).get("AJ") == NEKO_TITLE
    assert client.security in ("TLSv1.2", "TLSv1.3")


def test_tls_with_an_untrusted_certificate_sends_nothing(sip2_library, sip2_tls, client_for):
    server = KohaQuirksAcs(sip2_library, ssl_context=sip2_tls.server_context())
    try:
        client = client_for(server.host, server.port, tls=True, ca_file=str(sip2_tls.other_ca))
        with pytest.raises(CatalogueUnavailable, match="certificate"):
            client.request(item_request())
        assert server.frames == [] and sip2_library.requests == []
    finally:
        server.stop()


def test_tls_checks_the_host_name(sip2_library, sip2_tls, client_for):
    server = KohaQuirksAcs(sip2_library, ssl_context=sip2_tls.server_context())
    try:
        client = client_for(server.host, server.port, tls=True, ca_file=str(sip2_tls.ca),
                            server_hostname="sip.other-library.example")
        with pytest.raises(CatalogueUnavailable):
            client.request(item_request())
        assert sip2_library.requests == []
    finally:
        server.stop()


def test_tls_never_downgrades_to_plain_tcp(koha_acs, sip2_library, sip2_tls, client_for):
    client = client_for(koha_acs.host, koha_acs.port, tls=True, ca_file=str(sip2_tls.ca), attempts=2,
                        connect_timeout=0.3)
    with pytest.raises(CatalogueUnavailable):
        client.request(item_request())
    assert sip2_library.requests == []
    assert SIP_USER.encode() not in koha_acs.raw and SIP_PASSWORD.encode() not in koha_acs.raw


def test_ssl_context_verifies_and_requires_tls12():
    context = make_ssl_context(Sip2Config(host="sip.example", port=6001))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_config_tls_is_on_unless_explicitly_off():
    assert Sip2Config(host="h", port=1).tls is True
    assert Sip2Config(host="h", port=1, tls=False).tls is False
    for not_a_boolean in (0, "false", None):
        with pytest.raises(ValueError):
            Sip2Config(host="h", port=1, tls=not_a_boolean)
    with pytest.raises(ValueError):
        Sip2Config(host="h", port=1, terminator="\n")
    with pytest.raises(LookupError):
        Sip2Config(host="h", port=1, charset="no-such-charset")


# --------------------------------------------------------------------------- privacy


def test_logs_carry_no_ids_titles_or_passwords(faulty, caplog):
    proxy, client = faulty
    caplog.set_level(logging.DEBUG, logger="kiosk")
    proxy.fail_responses("corrupt", "garbage", "stale", "drop")
    for _ in range(3):
        client.request(item_request())
    client.request(codec.patron_information(INSTITUTION, "2000000012345", WHEN,
                                            terminal_password="term-pass", patron_password="9876"))
    text = caplog.text
    assert "sip2" in text and "97" in text
    for secret in (ITEM_NEKO, NEKO_TITLE, "2000000012345", "山田", "term-pass", "9876", SIP_PASSWORD, SIP_USER):
        assert secret not in text
