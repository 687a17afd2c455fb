"""Sip2Catalogue against pysip2 and the Koha-quirks ACS, including crash replays."""

from __future__ import annotations

import socket
import unicodedata
from datetime import date, datetime, timedelta

import pytest

from kiosk.config.settings import Sip2Settings
from kiosk.core.catalogue import Catalogue, CatalogueUnavailable, LoanRequest, Refusal
from kiosk.sync import sip2_codec as codec
from kiosk.sync.sip2_backend import IDENTITY_UNSUPPORTED, Sip2Catalogue, classify_refusal, loan_result
from kiosk.sync.sip2_client import Sip2Client
from kiosk_testing.sip2_server import (
    INSTITUTION,
    GURI_NOTE,
    GURI_TITLE,
    ITEM_HELD,
    ITEM_LONG,
    ITEM_NFD,
    ITEM_NEKO,
    ITEM_OUT,
    ITEM_SNOW,
    ITEM_VIDEO,
    LONG_TITLE,
    NEKO_TITLE,
    PATRON_AT_LIMIT,
    PATRON_BLOCKED,
    PATRON_NFD,
    PATRON_NFD_NAME,
    PATRON_OK,
    PATRON_PIPE,
    TERMINAL_PASSWORD,
    sip2_config,
)

CREATED = datetime(2026, 8, 1, 10, 30, 0)


def loan(item: str = ITEM_NEKO, patron: str = PATRON_OK, txn: str = "txn-1", **kw) -> LoanRequest:
    return LoanRequest(txn_id=txn, patron_id=patron, item_id=item, created_at=CREATED, **kw)


@pytest.fixture
def catalogue_for():
    made: list[Sip2Catalogue] = []

    def make(host: str, port: int, **kw) -> Sip2Catalogue:
        backend_kw = {k: kw.pop(k) for k in ("patron_request", "language") if k in kw}
        client = Sip2Client(sip2_config(host, port, **kw), sleep=lambda s: None)
        catalogue = Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD,
                                  clock=lambda: CREATED, **backend_kw)
        made.append(catalogue)
        return catalogue

    yield make
    for catalogue in made:
        catalogue.close()


@pytest.fixture
def catalogue(pysip2_acs, catalogue_for) -> Sip2Catalogue:
    return catalogue_for(pysip2_acs.host, pysip2_acs.port)


@pytest.fixture
def koha(koha_acs, catalogue_for) -> Sip2Catalogue:
    return catalogue_for(koha_acs.host, koha_acs.port)


def test_is_a_catalogue(catalogue):
    """Every method of the Catalogue protocol, with the same parameter names."""
    import inspect

    methods = [n for n, v in vars(Catalogue).items() if callable(v) and not n.startswith("_")]
    assert "checkout" in methods and "resolve_identity" in methods
    for name in methods:
        expected = list(inspect.signature(getattr(Catalogue, name)).parameters)[1:]
        assert list(inspect.signature(getattr(catalogue, name)).parameters) == expected, name


# --------------------------------------------------------------------------- patrons


def test_patron_information(catalogue):
    status = catalogue.patron_status(PATRON_OK, password="1234")
    assert status.valid and status.password_ok is True and status.may_borrow
    assert status.blocked == () and status.limit == 10 and status.charged == 0
    assert status.holds_ready == 2 and status.name == "山田 太郎"
    assert catalogue.patron_status(PATRON_OK, password="0000").password_ok is False
    assert catalogue.patron_status(PATRON_OK).password_ok is None


def test_patron_counts_follow_loans(catalogue):
    status = catalogue.patron_status(PATRON_AT_LIMIT)
    assert (status.charged, status.limit) == (1, 1)


def test_blocked_and_unknown_patrons(catalogue):
    blocked = catalogue.patron_status(PATRON_BLOCKED)
    assert blocked.valid and not blocked.may_borrow
    assert blocked.blocked == ("charge_privileges_denied", "excessive_outstanding_fines")
    unknown = catalogue.patron_status("2999999999999")
    assert not unknown.valid and not unknown.may_borrow


def test_patron_status_message_23(pysip2_acs, sip2_library, catalogue_for):
    catalogue = catalogue_for(pysip2_acs.host, pysip2_acs.port, patron_request="23")
    status = catalogue.patron_status(PATRON_BLOCKED)
    assert status.blocked == ("charge_privileges_denied", "excessive_outstanding_fines")
    assert status.limit is None
    assert "23" in sip2_library.requests and "63" not in sip2_library.requests


def test_koha_patron_with_bar_in_name_and_extension_fields(koha):
    status = koha.patron_status(PATRON_PIPE)
    assert status.name == "Smith|Jones" and status.valid and status.limit == 10
    assert koha.patron_status(PATRON_OK).holds_ready == 2
    assert not koha.patron_status("2999999999999").valid


# --------------------------------------------------------------------------- items


def test_item_info(catalogue):
    neko = catalogue.item_info(ITEM_NEKO)
    assert (neko.title, neko.available, neko.counter_only, neko.media_type) == (NEKO_TITLE, True, False, "book")
    assert not catalogue.item_info(ITEM_HELD).available
    assert not catalogue.item_info(ITEM_OUT).available
    video = catalogue.item_info(ITEM_VIDEO)
    assert video.counter_only and video.media_type == "video_tape"
    unknown = catalogue.item_info("0000000000")
    assert (unknown.title, unknown.available) == ("", False)


def test_koha_item_with_title_over_255_bytes(koha):
    assert koha.item_info(ITEM_LONG).title == LONG_TITLE


def test_ids_that_cannot_be_sent_unchanged_are_never_sent(catalogue, sip2_library):
    too_long = "9" * 256
    assert catalogue.item_info(too_long).available is False
    result = catalogue.checkout(loan(item=too_long))
    assert not result.ok and result.refusal is Refusal.ITEM_UNKNOWN
    assert catalogue.checkout(loan(patron="")).refusal is Refusal.PATRON_UNKNOWN
    assert sip2_library.requests == []


# --------------------------------------------------------------------------- checkout


def test_online_checkout_sends_transaction_date_as_nb_due_date(catalogue, sip2_library):
    result = catalogue.checkout(loan())
    assert result.ok and not result.replayed and result.refusal is None
    assert result.txn_id == "txn-1" and result.item_id == ITEM_NEKO
    assert result.title == NEKO_TITLE                      # Japanese title round-trips in UTF-8
    assert result.due_date == date(2026, 8, 15)
    [sent] = sip2_library.checkouts
    assert sent == {"patron": PATRON_OK, "item": ITEM_NEKO, "no_block": "N",
                    "transaction_date": "20260801    103000", "nb_due_date": "20260801    103000",
                    "outcome": "loan"}


def test_offline_checkout_uses_no_block_and_its_own_due_date(catalogue, sip2_library):
    result = catalogue.checkout(loan(item=ITEM_SNOW, offline=True, due_date=date(2026, 8, 20)))
    assert result.ok and result.due_date == date(2026, 8, 20) and result.title == "雪国"
    [sent] = sip2_library.checkouts
    assert (sent["no_block"], sent["nb_due_date"]) == ("Y", "20260820    235900")
    assert sent["transaction_date"] == "20260801    103000"


def test_offline_checkout_needs_a_due_date(catalogue, sip2_library):
    with pytest.raises(ValueError):
        catalogue.checkout(loan(offline=True))
    assert sip2_library.checkouts == []


def test_aware_created_at_is_sent_as_local_time(pysip2_acs, sip2_library):
    from datetime import timezone
    jst = timezone(timedelta(hours=9))
    catalogue = Sip2Catalogue(Sip2Client(sip2_config(pysip2_acs.host, pysip2_acs.port)), INSTITUTION,
                              tz=jst)
    try:
        catalogue.checkout(LoanRequest("t", PATRON_OK, ITEM_NEKO, datetime(2026, 8, 1, 1, 30, tzinfo=timezone.utc)))
    finally:
        catalogue.close()
    assert sip2_library.checkouts[0]["transaction_date"] == "20260801    103000"


@pytest.mark.parametrize("item, patron, refusal", [
    (ITEM_HELD, PATRON_OK, Refusal.ON_HOLD),
    (ITEM_OUT, PATRON_OK, Refusal.ALREADY_OUT),
    (ITEM_SNOW, PATRON_AT_LIMIT, Refusal.LIMIT_REACHED),
    (ITEM_VIDEO, PATRON_OK, Refusal.COUNTER_ONLY),
    (ITEM_SNOW, PATRON_BLOCKED, Refusal.PATRON_BLOCKED),
    ("0000000000", PATRON_OK, Refusal.ITEM_UNKNOWN),
    (ITEM_SNOW, "2999999999999", Refusal.PATRON_UNKNOWN),
])
def test_refusals(catalogue, item, patron, refusal):
    result = catalogue.checkout(loan(item=item, patron=patron))
    assert not result.ok and result.refusal is refusal
    assert result.message and result.due_date is None


def test_replay_of_the_same_loan_is_acknowledged_once(catalogue, sip2_library):
    first = catalogue.checkout(loan())
    again = catalogue.checkout(loan())
    assert first.ok and not first.replayed
    assert again.ok and again.replayed and again.txn_id == "txn-1"
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan", "renewal"]
    assert sip2_library.loans_of(PATRON_OK) == [ITEM_NEKO]


@pytest.mark.parametrize("fault", ["drop", "delay"])
def test_lost_checkout_response_is_replayed_exactly_once(pysip2_acs, sip2_library, sip2_proxy,
                                                         catalogue_for, fault):
    """The ACS lent the book but the answer never arrived (crash, cable, timeout)."""
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port), delay=1.5)
    catalogue = catalogue_for(proxy.host, proxy.port)
    catalogue.client.connect()
    proxy.fail_responses(fault)
    result = catalogue.checkout(loan())
    assert result.ok and result.replayed and result.title == NEKO_TITLE
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan", "renewal"]
    assert sip2_library.loans_of(PATRON_OK) == [ITEM_NEKO]
    assert proxy.connections == 2


def test_lost_checkout_request_is_sent_again(pysip2_acs, sip2_library, sip2_proxy, catalogue_for):
    proxy = sip2_proxy((pysip2_acs.host, pysip2_acs.port))
    catalogue = catalogue_for(proxy.host, proxy.port)
    catalogue.client.connect()
    proxy.fail_requests("drop")
    result = catalogue.checkout(loan())
    assert result.ok and not result.replayed
    assert [c["outcome"] for c in sip2_library.checkouts] == ["loan"]


def test_unreachable_catalogue_raises_and_lends_nothing(sip2_library, catalogue_for):
    with socket.socket() as s:                             # the ACS has gone away: nobody listens
        s.bind(("127.0.0.1", 0))
        host, port = s.getsockname()
    catalogue = catalogue_for(host, port)
    with pytest.raises(CatalogueUnavailable):
        catalogue.checkout(loan())
    assert sip2_library.checkouts == []


def test_replay_after_a_new_client_process(pysip2_acs, sip2_library, catalogue_for):
    """A kiosk restarted after a crash has no memory; the ACS's renewal flag is the proof."""
    catalogue_for(pysip2_acs.host, pysip2_acs.port).checkout(loan())
    fresh = catalogue_for(pysip2_acs.host, pysip2_acs.port)
    assert fresh.checkout(loan()).replayed
    assert sip2_library.loans_of(PATRON_OK) == [ITEM_NEKO]


def test_koha_checkout_due_date_and_refusal(koha, sip2_library):
    result = koha.checkout(loan())
    assert result.ok and result.title == NEKO_TITLE and result.due_date == date(2026, 8, 15)
    assert koha.checkout(loan()).replayed
    assert koha.checkout(loan(item=ITEM_HELD, txn="t2")).refusal is Refusal.ON_HOLD
    assert sip2_library.checkouts[0]["nb_due_date"] == "20260801    103000"


# --------------------------------------------------------------------------- renew, end, links


def test_renew(catalogue):
    catalogue.checkout(loan())
    renewed = catalogue.renew(PATRON_OK, ITEM_NEKO)
    assert renewed.ok and renewed.due_date == date(2026, 8, 15)
    refused = catalogue.renew(PATRON_OK, ITEM_OUT)
    assert not refused.ok and refused.refusal is not None


def test_koha_renew_and_end_session(koha, sip2_library):
    koha.checkout(loan())
    assert koha.renew(PATRON_OK, ITEM_NEKO).due_date == date(2026, 8, 29)
    koha.end_session(PATRON_OK)
    assert sip2_library.requests[-1] == "35"


def test_end_session(catalogue, sip2_library):
    catalogue.end_session(PATRON_OK)
    assert sip2_library.requests == ["93", "35"]


def test_identity_links_are_not_a_sip2_thing(catalogue, sip2_library):
    for call in (lambda: catalogue.resolve_identity("abc"),
                 lambda: catalogue.link_identity("abc", PATRON_OK),
                 lambda: catalogue.unlink_identity("abc")):
        with pytest.raises(CatalogueUnavailable, match=IDENTITY_UNSUPPORTED):
            call()
    assert sip2_library.requests == []


def test_capabilities_from_acs_status(catalogue):
    caps = catalogue.capabilities()
    assert caps.online and caps.offline_ok and caps.checkout and caps.renew
    assert caps.messages["item_information"] and caps.messages["checkin"] and caps.messages["renew_all"]
    assert not caps.messages["hold"]


# --------------------------------------------------------------------------- pure mapping


@pytest.mark.parametrize("messages, fee, refusal", [
    (["Item is on hold for another patron."], False, Refusal.ON_HOLD),
    (["Item checked out to another patron"], False, Refusal.ALREADY_OUT),
    (["Too many items checked out"], False, Refusal.LIMIT_REACHED),
    (["Patron has too many fines"], False, Refusal.PATRON_BLOCKED),
    (["Patron Blocked"], False, Refusal.PATRON_BLOCKED),
    (["Invalid Item"], False, Refusal.ITEM_UNKNOWN),
    (["Item is not for loan"], False, Refusal.COUNTER_ONLY),
    (["この資料は予約されています"], False, Refusal.ON_HOLD),
    (["貸出冊数の上限です"], False, Refusal.LIMIT_REACHED),
    (["禁帯出資料です"], False, Refusal.COUNTER_ONLY),
    ([], True, Refusal.COUNTER_ONLY),
    (["Something odd happened"], False, Refusal.OTHER),
    ([], False, Refusal.OTHER),
])
def test_classify_refusal(messages, fee, refusal):
    assert classify_refusal(messages, fee=fee) is refusal


def test_loan_result_with_unparseable_due_date_keeps_the_text():
    reply = codec.decode("121NNY20260801    103000AOJPLIB|AA1|AB2|AJ本|AHnext Tuesday|".encode(), charset="utf-8")
    result = loan_result("t", "2", reply, ok=True)
    assert result.ok and result.due_date is None and result.due_text == "next Tuesday"
    assert result.title == "本" and result.refusal is None


def test_loan_result_refused_with_a_fee():
    reply = codec.decode(b"120NNN20260801    103000AOJPLIB|AA1|AB2|AJ|AH|BT06|BV300|")
    result = loan_result("t", "2", reply, ok=False)
    assert result.refusal is Refusal.COUNTER_ONLY and result.due_date is None and result.due_text == ""


# --------------------------------------------------------------------------- from the kiosk config


def test_built_from_the_kiosk_config(pysip2_acs, sip2_library, tmp_path):
    from kiosk.config.load import load_config
    from kiosk.sync.sip2_backend import build_sip2_catalogue
    from kiosk_testing.sip2_server import SIP_PASSWORD, SIP_USER

    (tmp_path / "sip2-password").write_text(SIP_PASSWORD + "\n", encoding="utf-8")
    (tmp_path / "terminal").write_text(TERMINAL_PASSWORD, encoding="utf-8")
    site = tmp_path / "kiosk.toml"
    site.write_text(
        "[card]\nbackend = 'none'\n[catalogue]\nbackend = 'sip2'\ntimeout = 2\n[catalogue.sip2]\n"
        f"host = '127.0.0.1'\nport = {pysip2_acs.port}\ntls = false\nlogin_user = '{SIP_USER}'\n"
        f"password_file = '{tmp_path / 'sip2-password'}'\nterminal_password_file = '{tmp_path / 'terminal'}'\n"
        f"institution = '{INSTITUTION}'\nlocation = 'MAIN'\ncharset = 'utf-8'\n", encoding="utf-8")
    catalogue = build_sip2_catalogue(Sip2Settings.from_config(load_config(site)))
    try:
        assert catalogue.client.config.tls is False and catalogue.client.config.login_password == SIP_PASSWORD
        assert catalogue.terminal_password == TERMINAL_PASSWORD and catalogue.institution == INSTITUTION
        assert catalogue.item_info(ITEM_NEKO).title == NEKO_TITLE
        assert sip2_library.requests == ["93", "17"]
    finally:
        catalogue.close()


def test_config_default_is_tls(tmp_path):
    from kiosk.config.load import load_config
    from kiosk.sync.sip2_backend import build_sip2_catalogue

    site = tmp_path / "kiosk.toml"
    site.write_text("[card]\nbackend = 'none'\n[catalogue]\nbackend = 'sip2'\n[catalogue.sip2]\n"
                    "host = 'ils.example'\n", encoding="utf-8")
    catalogue = build_sip2_catalogue(Sip2Settings.from_config(load_config(site)))
    assert catalogue.client.config.tls is True and not catalogue.client.connected


# --------------------------------------------------------------------------- Unicode from the ACS


@pytest.mark.parametrize("acs", ["catalogue", "koha"])
def test_decomposed_text_from_the_acs_is_normalised_to_nfc(acs, request, sip2_library):
    """MARC-fed ILSs send NFD: ぐりとぐら as 7 code points. The kiosk keeps NFC (5)."""
    backend = request.getfixturevalue(acs)             # pysip2 or the Koha-quirks ACS, on loopback
    assert len(sip2_library.items[ITEM_NFD].title) == 7          # what goes on the wire
    nfc = unicodedata.normalize("NFC", GURI_TITLE)
    item = backend.item_info(ITEM_NFD)
    assert item.title == nfc and len(item.title) == 5
    assert backend.patron_status(PATRON_NFD).name == unicodedata.normalize("NFC", PATRON_NFD_NAME)
    result = backend.checkout(loan(ITEM_NFD, PATRON_NFD))
    assert result.ok and result.title == nfc
    assert result.message == unicodedata.normalize("NFC", GURI_NOTE)           # AF screen message
    assert unicodedata.is_normalized("NFC", result.message)
    assert backend.renew(PATRON_NFD, ITEM_NFD).title == nfc


def test_loan_result_normalises_every_shown_text():
    frame = ("120NNN20260801    103000AOJPLIB|AA1|AB2|AJ" + unicodedata.normalize("NFD", GURI_TITLE)
             + "|AH" + unicodedata.normalize("NFD", "返却日: ２週間後です") + "|AF"
             + unicodedata.normalize("NFD", GURI_NOTE) + "|").encode("utf-8")
    result = loan_result("t", "2", codec.decode(frame, charset="utf-8"), ok=False)
    assert result.title == GURI_TITLE and result.message == GURI_NOTE
    for text in (result.title, result.message):
        assert unicodedata.is_normalized("NFC", text)


# --------------------------------------------------------------------------- ACS status gate


def test_checkout_hold_follows_the_acs_status_each_time_it_is_asked(koha, koha_acs, sip2_library):
    from kiosk.sync.linked_catalogue import LinkedCatalogue
    from kiosk.sync.sip2_backend import HOLD_CHECKOUT_NOT_ALLOWED, HOLD_OFFLINE

    linked = LinkedCatalogue(koha, links=koha)            # SIP2 circulation: its gate passes through
    assert koha.checkout_hold() is None and linked.checkout_hold() is None
    koha_acs.checkout_ok = False
    assert koha.checkout_hold() == HOLD_CHECKOUT_NOT_ALLOWED == linked.checkout_hold()
    koha_acs.online = False
    assert koha.checkout_hold() == HOLD_OFFLINE
    koha_acs.online = koha_acs.checkout_ok = True
    assert koha.checkout_hold() is None
    assert "11" not in sip2_library.requests


def test_a_circulation_backend_without_a_gate_is_never_held():
    from types import SimpleNamespace

    from kiosk.sync.linked_catalogue import LinkedCatalogue

    assert LinkedCatalogue(SimpleNamespace(), SimpleNamespace()).checkout_hold() is None
