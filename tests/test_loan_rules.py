"""The loan rules the kiosk applies itself: duplicates, allowance, offline local rules."""

from __future__ import annotations

from datetime import date

import pytest

from kiosk.core.catalogue import PatronStatus, Refusal
from kiosk.core.loan_rules import OfflineRules, allowance, check_scan


def patron(**kw) -> PatronStatus:
    return PatronStatus(patron_id="20000001", valid=True, **kw)


@pytest.mark.parametrize("kw, in_session, left", [
    ({}, 0, None),                                      # the catalogue gave no limit
    ({}, 50, None),
    ({"limit": 10}, 0, 10),
    ({"limit": 10, "charged": 4}, 0, 6),
    ({"limit": 10, "charged": 4}, 2, 4),
    ({"limit": 10, "charged": 4}, 6, 0),
    ({"limit": 10, "charged": 12}, 0, 0),               # already over: never negative
    ({"limit": 0}, 0, 0),
])
def test_allowance_online(kw, in_session, left):
    assert allowance(patron(**kw), in_session, None) == left


@pytest.mark.parametrize("kw, in_session, left", [
    ({}, 0, 5),                                         # only the local limit
    ({}, 3, 2),
    ({}, 7, 0),
    ({"limit": 10, "charged": 8}, 0, 2),                # the smaller of the two
    ({"limit": 10, "charged": 1}, 1, 4),
])
def test_allowance_offline_takes_the_smaller_limit(kw, in_session, left):
    assert allowance(patron(**kw), in_session, OfflineRules(max_items=5)) == left


def test_duplicate_is_refused_before_anything_else():
    st = patron(limit=1, charged=1)
    offline = OfflineRules(max_items=0, refused_patterns=(r"1\d+",))
    assert check_scan("10000001", {"10000001"}, st, 5, offline) == Refusal.ALREADY_YOURS


def test_limit_is_checked_before_counter_only():
    offline = OfflineRules(max_items=1, refused_patterns=(r"19\d+",))
    assert check_scan("19000001", set(), patron(), 1, offline) == Refusal.LIMIT_REACHED
    assert check_scan("19000001", set(), patron(), 0, offline) == Refusal.COUNTER_ONLY


def test_scan_allowed():
    assert check_scan("10000001", {"10000002"}, patron(limit=3, charged=1), 1, None) is None
    assert check_scan("10000001", set(), patron(), 100, None) is None


def test_limit_reached_online():
    assert check_scan("10000001", set(), patron(limit=3, charged=1), 2, None) == Refusal.LIMIT_REACHED


def test_refused_patterns_apply_only_offline_and_match_whole_ids():
    offline = OfflineRules(refused_patterns=(r"19\d{6}", r"1\d*AV"))
    assert offline.refuses("19000001")
    assert offline.refuses("123AV")
    assert not offline.refuses("119000001")             # fullmatch, not search
    assert not offline.refuses("190000012")
    assert not OfflineRules().refuses("19000001")
    assert check_scan("19000001", set(), patron(), 0, None) is None


@pytest.mark.parametrize("today, days, due", [
    (date(2025, 4, 1), 14, date(2025, 4, 15)),
    (date(2025, 12, 25), 14, date(2026, 1, 8)),         # across the year
    (date(2024, 2, 20), 10, date(2024, 3, 1)),          # leap year
    (date(2025, 4, 1), 0, date(2025, 4, 1)),
])
def test_offline_due_date(today, days, due):
    assert OfflineRules(loan_days=days).due_date(today) == due


def test_offline_rule_defaults():
    r = OfflineRules()
    assert (r.max_items, r.loan_days, r.refused_patterns) == (5, 14, ())
