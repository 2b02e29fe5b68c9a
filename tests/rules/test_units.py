from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visitflow.models import PunchKind, PunchMethod, RoundingStrategy
from visitflow.rules import UNIT_MINUTES, billable_units, latest_punch, round_units, unit_minutes, visit_minutes

from .conftest import START, visit

CMS = RoundingStrategy.cms_8_minute


@pytest.mark.parametrize(
    ("minutes", "units"),
    [(0, 0), (7, 0), (7.99, 0), (8, 1), (22, 1), (22.99, 1), (23, 2), (37, 2), (38, 3), (52, 3), (53, 4), (60, 4)],
)
def test_clm_03_cms_8_minute_table(minutes: float, units: int) -> None:
    assert round_units(minutes, CMS) == units


def test_clm_03_cms_8_minute_for_hour_units_counts_after_half_an_hour_and_a_minute() -> None:
    assert round_units(30, CMS, 60) == 0
    assert round_units(31, CMS, 60) == 1
    assert round_units(90, CMS, 60) == 1
    assert round_units(91, CMS, 60) == 2


@pytest.mark.parametrize(("minutes", "units"), [(7.4, 0), (7.5, 1), (22.4, 1), (22.5, 2), (60, 4), (67.5, 5)])
def test_clm_03_nearest_quarter_rounds_half_up(minutes: float, units: int) -> None:
    assert round_units(minutes, RoundingStrategy.nearest_quarter) == units


@pytest.mark.parametrize(("minutes", "units"), [(0, 0), (1, 1), (15, 1), (22.4, 1), (22.5, 2), (37.5, 3), (44, 3)])
def test_clm_03_medicare_hh_short_visit_is_one_unit_then_nearest(minutes: float, units: int) -> None:
    assert round_units(minutes, RoundingStrategy.medicare_hh) == units


def test_clm_03_ceil_and_floor() -> None:
    assert round_units(15.01, RoundingStrategy.ceil) == 2
    assert round_units(15, RoundingStrategy.ceil) == 1
    assert round_units(29.99, RoundingStrategy.floor) == 1
    assert round_units(30, RoundingStrategy.floor) == 2


@pytest.mark.parametrize("strategy", list(RoundingStrategy))
def test_clm_03_negative_or_zero_minutes_bill_nothing(strategy: RoundingStrategy) -> None:
    assert round_units(-30, strategy) == 0
    assert round_units(0, strategy) == 0


def test_round_units_refuses_a_zero_unit_size() -> None:
    with pytest.raises(ValueError):
        round_units(30, CMS, 0)


def test_unit_minutes_per_code() -> None:
    assert unit_minutes("T1019") == 15
    assert unit_minutes("s9123 ") == 60
    assert unit_minutes("T1020") is None
    assert unit_minutes("Z9999") == 15  # unknown codes are treated as 15-minute codes
    assert all(UNIT_MINUTES[c] == 60 for c in ("S9122", "S9123", "S9124"))


def test_billable_units_per_hour_and_per_diem() -> None:
    assert billable_units(120, "S9123", RoundingStrategy.nearest_quarter) == 2
    assert billable_units(300, "T1020", RoundingStrategy.nearest_quarter) == 1
    assert billable_units(0, "T1020", RoundingStrategy.nearest_quarter) == 0
    assert billable_units(60, "T1019", RoundingStrategy.nearest_quarter) == 4


def test_visit_minutes_uses_effective_punch_times() -> None:
    v = visit().clock_out(START + timedelta(minutes=50), adjusted_at=START + timedelta(minutes=45)).build()
    assert visit_minutes(v) == 45


def test_visit_minutes_falls_back_to_the_schedule_without_a_clock_out() -> None:
    assert visit_minutes(visit().without(PunchKind.clock_out).build()) == 60


def test_visit_minutes_is_never_negative() -> None:
    assert visit_minutes(visit().clock_out(START - timedelta(minutes=5)).build()) == 0


def test_latest_punch_by_seq_counts() -> None:
    v = visit().add_punch(PunchKind.clock_in, START + timedelta(minutes=3), method=PunchMethod.telephony).build()
    latest = latest_punch(v.punches, PunchKind.clock_in)
    assert latest is not None and latest.seq == 3 and latest.method == PunchMethod.telephony


# --- properties

minutes_st = st.floats(min_value=-600, max_value=24 * 60, allow_nan=False, allow_infinity=False)
unit_st = st.sampled_from([15, 60]) | st.integers(min_value=1, max_value=240)


@given(minutes=minutes_st, strategy=st.sampled_from(list(RoundingStrategy)), size=unit_st)
def test_clm_03_property_units_never_negative(minutes: float, strategy: RoundingStrategy, size: int) -> None:
    assert round_units(minutes, strategy, size) >= 0


@given(a=minutes_st, b=minutes_st, strategy=st.sampled_from(list(RoundingStrategy)), size=unit_st)
def test_clm_03_property_units_monotone_in_minutes(a: float, b: float, strategy: RoundingStrategy,
                                                     size: int) -> None:
    low, high = sorted((a, b))
    assert round_units(low, strategy, size) <= round_units(high, strategy, size)


@given(minutes=st.integers(min_value=0, max_value=24 * 60))
def test_clm_03_property_cms_matches_the_published_formula_for_whole_minutes(minutes: int) -> None:
    assert round_units(minutes, CMS) == (minutes + 7) // 15
