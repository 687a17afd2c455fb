"""The return desk (kiosk/core/returns.py) and returns through the real outbox and worker."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.barcodes import BarcodeRules
from kiosk.core.catalogue import CHECKIN, LoanRequest, LoanResult, Refusal
from kiosk.core.returns import ReturnDesk, ReturnSettings
from kiosk.core.screen_models import check_model
from kiosk.store.outbox import Outbox
from kiosk.sync.local_catalogue import LocalCatalogue
from kiosk.sync.outbox_worker import OutboxWorker
from kiosk_testing.testbed_accounts import ITEM_KOKORO, ITEM_RASHOMON, account_seed

WALL = datetime(2026, 8, 1, 10, 30)


def rules() -> BarcodeRules:
    return BarcodeRules.from_config({"loans": {"item_pattern": r"^1\d{7,13}$", "patron_pattern": r"^2\d{7,13}$",
                                               "strip_codabar": True},
                                     "barcodes": {}})


def desk(station: bool = False, receipts: bool = False) -> ReturnDesk:
    ids = (f"r{n}" for n in itertools.count(1))
    return ReturnDesk(ReturnSettings(rules(), languages=("ja", "en"), station=station, idle_seconds=60,
                                     warning_seconds=10, pending_seconds=6, receipts=receipts),
                      new_txn_id=lambda: next(ids), wall=lambda: WALL)


def shown(effects) -> dict:
    model = [e for e in effects if isinstance(e, fx.Show)][-1].model
    check_model("returns", model)
    return model


def answer(txn: str, *, ok: bool = True, hold: bool = False, alert: bool = False,
           refusal: Refusal | None = None) -> ev.ItemDone:
    return ev.ItemDone(LoanResult(txn_id=txn, ok=ok, item_id="x", title="こころ", kind=CHECKIN, hold_shelf=hold,
                                  alert=alert or hold, refusal=refusal))


def test_an_online_return_is_journaled_first_then_shown_with_the_catalogues_answer():
    d = desk()
    d.open(0)
    out = d.handle(ev.Barcode("1230000101"), 1)
    checkin = [e for e in out if isinstance(e, fx.CheckIn)]
    assert out.index(checkin[0]) == 0                     # the journal before any screen
    request = checkin[0].request
    assert (request.kind, request.patron_id, request.offline, request.created_at) == (CHECKIN, "", False, WALL)
    assert [r["state"] for r in shown(out)["rows"]] == ["pending"]
    assert shown(d.handle(answer("r1"), 2))["rows"][0] == {
        "txn_id": "r1", "item_id": "1230000101", "title": "こころ", "state": "returned", "queued": False}


@pytest.mark.parametrize("result, state", [
    (dict(hold=True), "hold_shelf"),
    (dict(ok=False, refusal=Refusal.ITEM_UNKNOWN, alert=True), "counter"),
    (dict(alert=True), "counter"),                                  # another branch's book, damaged...
    (dict(ok=False, refusal=Refusal.NOT_ON_LOAN), "returned"),      # already back: shelve it
])
def test_per_book_outcomes(result, state):
    d = desk()
    d.open(0)
    d.handle(ev.Barcode("1230000101"), 1)
    assert shown(d.handle(answer("r1", **result), 2))["rows"][0]["state"] == state


def test_offline_returns_are_received_at_once_and_marked_for_no_block():
    d = desk()
    d.offline = True
    d.open(0)
    out = d.handle(ev.Barcode("1230000101"), 1)
    assert [e for e in out if isinstance(e, fx.CheckIn)][0].request.offline
    row = shown(out)["rows"][0]
    assert (row["state"], row["queued"]) == ("returned", True)
    # The drained answer later only matters when it says something new.
    assert d.handle(answer("r1"), 30) == []
    assert shown(d.handle(answer("r1", hold=True), 31))["rows"][0]["state"] == "hold_shelf"


def test_an_unanswered_return_is_shown_as_received_after_a_while_and_never_twice():
    d = desk()
    d.open(0)
    d.handle(ev.Barcode("1230000101"), 1)
    assert d.handle(ev.Tick(), 5) == []                               # still waiting: nothing new to draw
    assert shown(d.handle(ev.Tick(), 7.5))["rows"][0]["state"] == "returned"
    again = d.handle(ev.Barcode("1230000101"), 8)
    assert not any(isinstance(e, fx.CheckIn) for e in again)
    assert shown(again)["notice"] == "already_returned"


def test_a_return_that_could_not_be_journaled_goes_to_the_counter():
    d = desk()
    d.open(0)
    d.handle(ev.Barcode("1230000101"), 1)
    out = d.handle(ev.JournalFailed("r1"), 1.1)
    assert shown(out)["rows"][0]["state"] == "counter" and fx.Lights("refused") in out


def test_patron_card_is_not_a_book_and_nothing_is_sent():
    d = desk()
    d.open(0)
    out = d.handle(ev.Barcode("20000001"), 1)
    assert shown(out)["notice"] == "not_an_item" and not any(isinstance(e, fx.CheckIn) for e in out)


def test_finish_receipt_choice_and_wipe():
    d = desk(receipts=True)
    d.open(0)
    d.handle(ev.Barcode("1230000101"), 1)
    d.handle(answer("r1"), 2)
    model = shown(d.handle(ev.Press("finish"), 3))
    assert model["summary"] and model["receipt_available"]
    out = d.handle(ev.Press("receipt"), 4)
    printed = [e for e in out if isinstance(e, fx.PrintReceipt)][0]
    assert printed.lines == (("こころ", "returned"),)
    assert d.handle(ev.ReceiptDone(True), 5) == [] and not d.active and d.rows == []


def test_a_station_starts_again_empty_and_a_lending_kiosk_goes_back_to_idle():
    station = desk(station=True)
    station.open(0)
    station.handle(ev.Barcode("1230000101"), 1)
    station.handle(ev.Press("finish"), 2)
    out = station.handle(ev.Press("done"), 3)
    assert station.active and shown(out)["rows"] == []
    lending = desk()
    lending.open(0)
    lending.handle(ev.Barcode("1230000101"), 1)
    assert lending.handle(ev.Tick(), 61) == [] and not lending.active and lending.rows == []


# --------------------------------------------------------------------------- through the outbox


@pytest.fixture
def returns_setup(kiosk_store, store_key, store_clock, tmp_path):
    outbox = Outbox(kiosk_store, store_key, store_clock)
    local = LocalCatalogue(tmp_path / "catalogue.json")
    local.seed(account_seed())
    results: list[LoanResult] = []
    worker = OutboxWorker(outbox, local, store_clock, on_result=results.append, sleep=lambda s: None)
    yield outbox, local, worker, results
    local.close()


def ret(txn: str, item: str, offline: bool = False) -> LoanRequest:
    return LoanRequest(txn_id=txn, patron_id="", item_id=item, created_at=WALL, offline=offline, kind=CHECKIN)


def test_returns_drain_through_the_outbox_in_order_with_loans(returns_setup):
    outbox, local, worker, results = returns_setup
    outbox.append(ret("r1", ITEM_KOKORO))
    outbox.append(LoanRequest("l1", "2000000012345", ITEM_KOKORO, WALL))     # the next patron takes it
    outbox.append(ret("r2", ITEM_RASHOMON, offline=True))
    report = worker.drain_once()
    assert (report.acknowledged, report.remaining) == (3, 0)
    assert [(r.txn_id, r.kind, r.ok) for r in results] == [("r1", CHECKIN, True), ("l1", "checkout", True),
                                                           ("r2", CHECKIN, True)]
    assert results[2].hold_shelf
    assert local.loans_of("2000000012345") == [ITEM_KOKORO]
    assert local._db.table("returns").all()[-1]["offline"] is True


def test_a_return_answered_not_on_loan_after_an_earlier_send_is_done_not_refused(returns_setup):
    outbox, local, worker, results = returns_setup
    local.checkin(ret("earlier", ITEM_KOKORO))        # the first send got through; its answer was lost
    outbox.append(ret("r1", ITEM_KOKORO))
    outbox.mark_sent("r1")                             # ... as the worker recorded before the crash
    worker.drain_once()
    assert results[0].ok and results[0].replayed and outbox.count() == 0
    assert outbox.conflicts() == []


def test_an_offline_return_the_catalogue_cannot_place_goes_to_staff(returns_setup):
    outbox, _, worker, results = returns_setup
    outbox.append(ret("r1", "1239999999", offline=True))
    worker.drain_once()
    assert [c.id for c in outbox.conflicts()] == ["r1"] and not results[0].ok


def test_a_return_receipt_says_what_happened_to_each_book_in_the_patrons_language():
    from datetime import date

    from kiosk.hardware.receipt_printer import receipt_text

    ja = receipt_text((("こころ", "returned"), ("智恵子抄", "hold_shelf"), ("?", "counter")), "市立図書館",
                      date(2026, 8, 1), "", "ja", returns=True)
    assert "返却票" in ja and "返却：2冊" in ja
    assert any("予約棚" in line for line in ja) and any("カウンター" in line for line in ja)
    assert not any("返却期限" in line for line in ja)
    en = receipt_text((("Kokoro", "returned"),), "City Library", date(2026, 8, 1), "", "en", returns=True)
    assert "Return receipt" in en and "   Returned" in en


def test_the_desk_says_when_the_catalogue_is_away_and_back():
    d = desk()
    d.open(0)
    assert shown(d.set_offline(True, 1))["offline"] and d.set_offline(True, 2) == []
    assert not shown(d.set_offline(False, 3))["offline"]
