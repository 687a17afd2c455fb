"""My account (kiosk/core/account.py): what is shown, renewal rules, one tap one renewal."""

from __future__ import annotations

import itertools
from datetime import date
from decimal import Decimal

from kiosk.core import effects as fx
from kiosk.core import events as ev
from kiosk.core.account import AccountView
from kiosk.core.catalogue import (
    AccountFine,
    AccountHold,
    AccountLoan,
    LoanResult,
    PatronAccount,
    Refusal,
    RenewAllResult,
)
from kiosk.core.screen_models import check_model

PATRON = "20000005"


def account(n: int = 3, blocked: tuple[str, ...] = ()) -> PatronAccount:
    loans = tuple(AccountLoan(f"1000{i:04d}", f"本 {i}", date(2026, 8, 10 + i), overdue=i == n - 1)
                  for i in range(n))
    return PatronAccount(PATRON, True, loans=loans,
                         holds=(AccountHold("", "檸檬", ready=True), AccountHold("", "山月記", ready=False)),
                         fines=(AccountFine("300 延滞料", Decimal(300)),), fee_amount=Decimal(300), currency="JPY",
                         blocked=blocked)


def view() -> AccountView:
    keys = (f"k{n}" for n in itertools.count(1))
    return AccountView(new_key=lambda: next(keys), page_size=5)


def shown(effects) -> dict:
    model = [e for e in effects if isinstance(e, fx.Show)][-1].model
    check_model("account", model)
    return model


def loaded(v: AccountView, acc: PatronAccount | None = None) -> dict:
    out = v.open(PATRON, "ja")
    assert fx.LoadAccount(PATRON, serial=v.serial) in out and shown(out)["loading"]
    return shown(v.handle(ev.AccountLoaded(acc or account(), serial=v.serial), 0))


def test_loaded_only_when_opened_with_overdue_first_holds_apart_and_fines():
    v = view()
    assert v.handle(ev.AccountLoaded(account(), serial=0), 0) == []     # not open: nothing is kept
    model = loaded(v)
    assert [x["overdue"] for x in model["loans"]] == [True, False, False]
    assert model["holds_ready"] == ["檸檬"] and model["holds_pending"] == ["山月記"]
    assert model["fines"] == ["300 延滞料"] and (model["fee_amount"], model["currency"]) == ("300", "JPY")
    assert model["can_renew"] and model["why_not"] == ""


def test_long_lists_are_paged():
    v = view()
    model = loaded(v, account(12))
    assert (model["pages"], len(model["loans"]), model["loan_count"]) == (3, 5, 12)
    assert len(shown(v.handle(ev.Press("page", 2), 0))["loans"]) == 2
    assert shown(v.handle(ev.Press("page", 9), 0))["page"] == 2


def test_one_tap_is_one_renewal_and_shows_the_new_due_date():
    v = view()
    loaded(v)
    item = "10000000"
    out = v.handle(ev.Press("renew", item), 0)
    assert [e for e in out if isinstance(e, fx.Renew)] == [fx.Renew(PATRON, item, "k1")]
    assert v.handle(ev.Press("renew", item), 0) == []                   # a second tap waits for the answer
    assert v.handle(ev.Press("renew_all"), 0) == []
    result = LoanResult(txn_id="k1", ok=True, item_id=item, due_date=date(2026, 9, 1))
    row = next(x for x in shown(v.handle(ev.RenewDone(item, "k1", result), 0))["loans"] if x["item_id"] == item)
    assert (row["state"], row["due"]) == ("renewed", "2026-09-01")
    assert v.handle(ev.Press("renew", item), 0) == []                   # renewed: done


def test_refusals_are_given_in_plain_reasons():
    v = view()
    loaded(v)
    for item, refusal in (("10000000", Refusal.ON_HOLD), ("10000001", Refusal.RENEWAL_LIMIT),
                          ("10000002", Refusal.LIMIT_REACHED)):
        out = v.handle(ev.Press("renew", item), 0)
        key = [e for e in out if isinstance(e, fx.Renew)][0].key
        model = shown(v.handle(ev.RenewDone(item, key, LoanResult(key, False, item, refusal=refusal)), 0))
        row = next(x for x in model["loans"] if x["item_id"] == item)
        expected = refusal.value if refusal != Refusal.LIMIT_REACHED else "other"
        assert (row["state"], row["reason"]) == ("refused", expected)


def test_offline_the_button_says_why_and_no_renewal_is_sent():
    v = view()
    v.open(PATRON, "ja")
    model = shown(v.handle(ev.AccountLoaded(None, serial=v.serial), 0))
    assert model["unavailable"] and not model["can_renew"] and model["why_not"] == "offline"
    v2 = view()
    loaded(v2)
    out = v2.handle(ev.Press("renew", "10000000"), 0)
    key = [e for e in out if isinstance(e, fx.Renew)][0].key
    model = shown(v2.handle(ev.RenewDone("10000000", key, None), 0))      # lost on the way: nothing known
    assert model["why_not"] == "offline" and v2.handle(ev.Press("renew", "10000001"), 0) == []


def test_blocked_patron_cannot_renew_and_is_told_why():
    v = view()
    model = loaded(v, account(blocked=("excessive_outstanding_fines",)))
    assert model["why_not"] == "blocked" and model["blocks"] == ["excessive_outstanding_fines"]
    assert v.handle(ev.Press("renew", "10000000"), 0) == []


def test_renew_all_then_reloads_and_keeps_each_result():
    v = view()
    loaded(v)
    out = v.handle(ev.Press("renew_all"), 0)
    assert fx.RenewAll(PATRON, "k1") in out
    out = v.handle(ev.RenewAllDone("k1", RenewAllResult(True, renewed=("10000000",),
                                                        unrenewed=("10000001", "10000002"))), 0)
    assert shown(out)["renew_all_result"] == {"renewed": 1, "unrenewed": 2}
    reload = [e for e in out if isinstance(e, fx.LoadAccount)][0]
    model = shown(v.handle(ev.AccountLoaded(account(), serial=reload.serial), 0))
    assert {x["item_id"]: x["state"] for x in model["loans"]} == {
        "10000000": "renewed", "10000001": "refused", "10000002": "refused"}


def test_closing_wipes_everything_and_late_answers_are_stale():
    v = view()
    loaded(v)
    serial = v.serial
    v.close()
    assert (v.account, v.loans, v.patron_id, v.active) == (None, [], "", False)
    assert v.handle(ev.AccountLoaded(account(), serial=serial), 0) == []
