"""My account, renewals and returns through every catalogue backend, with Japanese titles.

The same journeys run against the independent pysip2 ACS, the Koha-quirks ACS, the REST
test server (contract-checked) and the demo's local catalogue: each must give the same
typed answers (kiosk.core.catalogue.PatronAccount, LoanResult, RenewAllResult).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from kiosk.core.catalogue import (
    CHECKIN,
    CatalogueUnavailable,
    LoanRequest,
    Refusal,
    ReturnOutcome,
    return_outcome,
)
from kiosk.sync.sip2_backend import Sip2Catalogue
from kiosk.sync.sip2_client import Sip2Client
from kiosk_testing.testbed_accounts import (
    ACCOUNT_TITLES,
    FINE_LINE,
    HOLD_PENDING_TITLE,
    HOLD_READY_TITLE,
    ITEM_GINGA,
    ITEM_KOKORO,
    ITEM_MAIHIME,
    ITEM_RASHOMON,
    ITEM_SANSHIRO,
    PATRON_ACCOUNT,
    account_backend,
)
from kiosk_testing.sip2_server import (
    INSTITUTION,
    ITEM_NEKO,
    TERMINAL_PASSWORD,
    FakeItem,
    FakeLibrary,
    sip2_config,
)

BACKENDS = ("pysip2", "koha", "rest", "local")
NOW = datetime(2026, 8, 1, 10, 30, 0)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    with account_backend(request.param, tmp_path, clock=lambda: NOW) as made:
        yield made


def ret(item: str, txn: str = "r-1", offline: bool = False) -> LoanRequest:
    return LoanRequest(txn_id=txn, patron_id="", item_id=item, created_at=NOW, offline=offline, kind=CHECKIN)


def test_account_lists_loans_overdue_holds_fines(backend):
    catalogue, _ = backend
    account = catalogue.patron_account(PATRON_ACCOUNT)
    assert account.valid
    titles = {loan.item_id: loan.title for loan in account.loans}
    assert titles == {k: v for k, v in ACCOUNT_TITLES.items() if k != ITEM_RASHOMON}
    overdue = {loan.item_id for loan in account.overdue}
    assert overdue == {ITEM_MAIHIME}
    kokoro = next(loan for loan in account.loans if loan.item_id == ITEM_KOKORO)
    assert kokoro.due_date == date(2099, 1, 1) and not kokoro.overdue
    assert [h.title for h in account.holds_ready] == [HOLD_READY_TITLE]
    assert [h.title for h in account.holds_pending] == [HOLD_PENDING_TITLE]
    assert [f.description for f in account.fines] == [FINE_LINE]
    assert account.fines[0].amount == Decimal(300)
    assert account.fee_amount == Decimal(300)
    assert account.currency == "JPY"
    assert account.blocked == ()


def test_account_of_unknown_patron_is_invalid(backend):
    catalogue, _ = backend
    assert not catalogue.patron_account("2999999999999").valid


def test_renew_one_accepted_and_each_refusal_in_plain_reasons(backend):
    catalogue, _ = backend
    ok = catalogue.renew(PATRON_ACCOUNT, ITEM_KOKORO, "tap-1")
    assert ok.ok and ok.due_date is not None and ok.due_date > date(2026, 8, 1)
    assert ok.title == "こころ"
    reserved = catalogue.renew(PATRON_ACCOUNT, ITEM_GINGA, "tap-2")
    assert (reserved.ok, reserved.refusal) == (False, Refusal.ON_HOLD)
    limit = catalogue.renew(PATRON_ACCOUNT, ITEM_SANSHIRO, "tap-3")
    assert (limit.ok, limit.refusal) == (False, Refusal.RENEWAL_LIMIT)
    overdue = catalogue.renew(PATRON_ACCOUNT, ITEM_MAIHIME, "tap-4")
    assert (overdue.ok, overdue.refusal) == (False, Refusal.OVERDUE)


def test_renew_all_lists_renewed_and_unrenewed(backend):
    catalogue, _ = backend
    result = catalogue.renew_all(PATRON_ACCOUNT, "tap-all")
    assert result.ok
    assert set(result.renewed) == {ITEM_KOKORO}
    assert set(result.unrenewed) == {ITEM_GINGA, ITEM_SANSHIRO, ITEM_MAIHIME}


def test_returns_returned_hold_shelf_unknown_and_not_on_loan(backend):
    catalogue, _ = backend
    done = catalogue.checkin(ret(ITEM_KOKORO, "r-1"))
    assert return_outcome(done) == ReturnOutcome.RETURNED and done.title == "こころ"
    held = catalogue.checkin(ret(ITEM_RASHOMON, "r-2"))
    assert return_outcome(held) == ReturnOutcome.HOLD_SHELF
    unknown = catalogue.checkin(ret("1239999999", "r-3"))
    assert return_outcome(unknown) == ReturnOutcome.COUNTER
    assert unknown.refusal == Refusal.ITEM_UNKNOWN
    again = catalogue.checkin(ret(ITEM_KOKORO, "r-4"))
    assert (again.ok, again.refusal) == (False, Refusal.NOT_ON_LOAN)
    account = catalogue.patron_account(PATRON_ACCOUNT)
    assert ITEM_KOKORO not in {loan.item_id for loan in account.loans}


def test_offline_return_is_replayed_with_no_block(backend):
    catalogue, peer = backend
    done = catalogue.checkin(ret(ITEM_KOKORO, "r-off", offline=True))
    assert done.ok
    assert peer.last_checkin_no_block() is True


# --------------------------------------------------------------------------- SIP2 resend rules


def test_sip2_renewal_lost_on_the_wire_is_not_sent_again(sip2_proxy):
    """A 29 whose answer is lost: CatalogueUnavailable, and the ACS saw exactly one 29."""
    from kiosk_testing.testbed_accounts import seeded_library
    from kiosk_testing.sip2_server import run_pysip2_acs

    library = seeded_library()
    with run_pysip2_acs(library) as acs:
        proxy = sip2_proxy((acs.host, acs.port))
        client = Sip2Client(sip2_config(proxy.host, proxy.port), sleep=lambda s: None)
        catalogue = Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD, clock=lambda: NOW)
        try:
            catalogue.patron_account(PATRON_ACCOUNT)          # connected and logged in
            proxy.fail_responses("drop")
            with pytest.raises(CatalogueUnavailable):
                catalogue.renew(PATRON_ACCOUNT, ITEM_KOKORO)
            assert library.requests.count("29") == 1
            assert [r["outcome"] for r in library.renewals] == ["renewed"]
            # A checkout, by contrast, is repeated on a new connection (the ACS books a replay as a renewal).
            proxy.fail_responses("corrupt")                 # a bad checksum: 97 on the same connection is fine
            assert catalogue.renew(PATRON_ACCOUNT, ITEM_KOKORO).ok
            assert library.requests.count("29") == 2
        finally:
            catalogue.close()


def test_sip2_patron_information_asks_one_list_at_a_time_and_pages():
    from kiosk_testing.testbed_accounts import seeded_library
    from kiosk_testing.sip2_server import KohaQuirksAcs

    library = seeded_library()
    many = [f"12300009{n:02d}" for n in range(60)]
    for item_id in many:
        library.items[item_id] = FakeItem(item_id, f"本 {item_id[-2:]}")
        library.loans[item_id] = (PATRON_ACCOUNT, "20990101    235900")
    acs = KohaQuirksAcs(library)
    client = Sip2Client(sip2_config(acs.host, acs.port), sleep=lambda s: None)
    catalogue = Sip2Catalogue(client, INSTITUTION, TERMINAL_PASSWORD, clock=lambda: NOW)
    try:
        account = catalogue.patron_account(PATRON_ACCOUNT)
        assert len(account.loans) == 64
        summaries = [f[23:33] for f in acs.frames if f.startswith(b"63")]
        assert all(s.count(b"Y") == 1 for s in summaries)
        assert {s.index(b"Y") for s in summaries} == {0, 1, 2, 3, 5}
        assert any(b"|BP51|BQ100|" in f for f in acs.frames if f.startswith(b"63"))
    finally:
        catalogue.close()
        acs.stop()


def test_fake_library_is_seeded_for_accounts():
    assert isinstance(FakeLibrary.seeded().patrons[PATRON_ACCOUNT].name, str)
    assert ITEM_NEKO not in ACCOUNT_TITLES


def test_demo_catalogue_seeds_an_account_with_everything(tmp_path):
    """The demo shows My account: patron 20000005 has loans, one overdue, a ready hold and a fine."""
    from kiosk.sync.local_catalogue import LocalCatalogue

    demo = LocalCatalogue(tmp_path / "demo.json")
    demo.seed(LocalCatalogue.demo_seed())
    try:
        account = demo.patron_account("20000005")
        assert len(account.loans) == 5 and [loan.title for loan in account.overdue] == ["舞姫"]
        assert all(loan.due_date is not None for loan in account.loans)
        assert [h.title for h in account.holds_ready] == ["檸檬"] and account.holds_pending
        assert account.fee_amount == Decimal(300) and account.currency == "JPY"
        assert demo.patron_status("20000005", "2468").may_borrow
        assert demo.renew("20000005", "10000013", "k1").refusal == Refusal.OVERDUE
        assert demo.renew("20000005", "10000014", "k2").refusal == Refusal.RENEWAL_LIMIT
        assert demo.renew("20000005", "10000016", "k3").refusal == Refusal.ON_HOLD
        first = demo.renew("20000005", "10000015", "k4")
        assert first.ok and not first.replayed
        again = demo.renew("20000005", "10000015", "k4")                 # the same tap: renewed once
        assert again.ok and again.replayed and again.due_date == first.due_date
        back = demo.checkin(ret("10000017", "r-demo"))
        assert return_outcome(back) == ReturnOutcome.HOLD_SHELF
        assert demo.checkin(ret("10000017", "r-demo")).replayed
    finally:
        demo.close()
