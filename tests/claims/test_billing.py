"""Billing periods, claim numbers and the 50-line split: pure rules of how visits become claims."""

from __future__ import annotations

from datetime import date, timedelta

from visitflow.claims.billing import MAX_LINES_PER_CLAIM, control_number, period_of, split_lines


def test_periods():
    assert period_of(date(2026, 11, 26), "visit") == (date(2026, 11, 26), date(2026, 11, 26))
    assert period_of(date(2026, 11, 26), "week") == (date(2026, 11, 23), date(2026, 11, 29))  # Monday..Sunday
    assert period_of(date(2026, 11, 29), "week") == (date(2026, 11, 23), date(2026, 11, 29))
    assert period_of(date(2026, 12, 31), "month") == (date(2026, 12, 1), date(2026, 12, 31))
    assert period_of(date(2028, 2, 10), "month") == (date(2028, 2, 1), date(2028, 2, 29))


def test_control_numbers_are_stable_short_and_distinct():
    one = control_number("b1", 1, 2, date(2026, 11, 23), "1")
    assert one == control_number("b1", 1, 2, date(2026, 11, 23), "1")
    assert len(one) <= 20 and one.isalnum()
    assert one != control_number("b1", 1, 2, date(2026, 11, 30), "1")


def test_a_long_period_splits_between_dates_never_within_one():
    start = date(2026, 10, 1)
    dated = [(start + timedelta(days=i // 2), f"v{i}") for i in range(62)]  # two visits a day, 31 days
    parts = split_lines(dated)
    assert [len(p) for p in parts] == [50, 12] and sum(parts, []) == [v for _, v in dated]
    days = [{d for d, v in dated if v in part} for part in parts]
    assert not days[0] & days[1]
    assert all(len(p) <= MAX_LINES_PER_CLAIM for p in parts)
