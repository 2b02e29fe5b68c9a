from datetime import UTC, date, datetime, timedelta

import pytest

from visitflow.models import Gate, PayerRules, PunchKind, Role, RoundingStrategy
from visitflow.rules import (
    UsageEntry,
    auth_01_covered,
    auth_02_units_within_limits,
    choose_authorization,
    covering_authorizations,
    visit_units,
)

from .conftest import PATIENT_ID, authorization, visit


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def visit_on(day: date, hours: float = 1):
    """A visit on `day` from 09:00 lasting `hours` (4 units per hour under nearest quarter)."""
    return visit(scheduled_start=at(day), scheduled_end=at(day) + timedelta(hours=hours))


def used(*entries: tuple[date, int]) -> dict[int, list[UsageEntry]]:
    return {1: [UsageEntry(visit_id=f"other-{i}", service_date=d, units=u) for i, (d, u) in enumerate(entries)]}


# --- covering_authorizations / AUTH-01


def test_auth_01_a_covering_authorization_passes() -> None:
    assert auth_01_covered(visit().ctx()) == []


def test_auth_01_no_authorization_is_a_biller_hold() -> None:
    [finding] = auth_01_covered(visit().ctx(authorizations=[]))
    assert (finding.key, finding.role, finding.gate, finding.approvable) == ("AUTH-01", Role.biller,
                                                                             Gate.authorized, False)
    assert finding.message == "AUTH-01 no active authorization for T1019 on 2026-11-20"


def test_auth_01_message_names_modifiers_and_the_ended_authorization() -> None:
    auth = authorization(modifiers=["U1"], start_date=date(2026, 8, 1), end_date=date(2026, 10, 31))
    [finding] = auth_01_covered(visit(modifiers=["U1"]).ctx(authorizations=[auth]))
    assert "no active authorization for T1019:U1 on 2026-11-20" in finding.message
    assert "authorization PA-1 ends 2026-10-31" in finding.message


def test_auth_01_authorization_starting_later() -> None:
    auth = authorization(start_date=date(2026, 11, 21))
    [finding] = auth_01_covered(visit().ctx(authorizations=[auth]))
    assert "authorization PA-1 starts 2026-11-21" in finding.message


def test_auth_01_date_range_is_inclusive_at_both_ends() -> None:
    day = date(2026, 11, 20)
    assert auth_01_covered(visit().ctx(authorizations=[authorization(start_date=day, end_date=day)])) == []


def test_auth_01_inactive_authorization_does_not_cover() -> None:
    [finding] = auth_01_covered(visit().ctx(authorizations=[authorization(active=False)]))
    assert "authorization PA-1 is inactive" in finding.message


def test_auth_01_modifiers_compare_as_sets() -> None:
    ctx = visit(modifiers=["U1", "TT"]).ctx(authorizations=[authorization(modifiers=["tt", "U1"])])
    assert auth_01_covered(ctx) == []


def test_auth_01_different_modifiers_do_not_cover() -> None:
    [finding] = auth_01_covered(visit(modifiers=["U1"]).ctx(authorizations=[authorization(modifiers=["U2"])]))
    assert "authorization PA-1 is for T1019:U2" in finding.message


@pytest.mark.parametrize("change", [{"patient_id": PATIENT_ID + 1}, {"payer_id": 99}, {"service_code": "S5125"}])
def test_auth_01_other_patient_payer_or_service_does_not_cover(change: dict) -> None:
    assert covering_authorizations(visit().ctx(authorizations=[authorization(**change)])) == []
    assert len(auth_01_covered(visit().ctx(authorizations=[authorization(**change)]))) == 1


def test_covering_authorizations_are_ordered_by_start_then_id() -> None:
    auths = [authorization(id=3, auth_number="PA-3", start_date=date(2026, 11, 1)),
             authorization(id=2, auth_number="PA-2", start_date=date(2026, 11, 1)),
             authorization(id=1, auth_number="PA-1", start_date=date(2026, 11, 10))]
    assert [a.id for a in covering_authorizations(visit().ctx(authorizations=auths))] == [2, 3, 1]


# --- AUTH-02


def test_auth_02_units_within_the_weekly_limit_pass() -> None:
    ctx = visit().ctx(usage=used((date(2026, 11, 16), 36)))  # 36 used + 4 this visit = 40
    assert auth_02_units_within_limits(ctx) == []
    chosen = choose_authorization(ctx)
    assert chosen is not None and chosen.auth_number == "PA-1"


def test_auth_02_over_the_weekly_limit_is_a_biller_hold() -> None:
    day = date(2026, 11, 20)
    ctx = visit_on(day, hours=3).ctx(usage=used((date(2026, 11, 16), 30), (day, 6)))
    [finding] = auth_02_units_within_limits(ctx)
    assert (finding.key, finding.role, finding.approvable) == ("AUTH-02", Role.biller, False)
    assert finding.message == "AUTH-02 12 units needed, 4 of 40 left this week on PA-1"
    assert choose_authorization(ctx) is None


def test_auth_02_iso_week_starts_on_monday() -> None:
    monday = date(2026, 11, 23)
    builder = visit_on(monday)
    # The Sunday before belongs to the previous ISO week ...
    assert auth_02_units_within_limits(builder.ctx(usage=used((date(2026, 11, 22), 40)))) == []
    # ... and the Sunday after to this one.
    assert len(auth_02_units_within_limits(builder.ctx(usage=used((date(2026, 11, 29), 37))))) == 1


def test_auth_02_iso_week_crosses_the_year_end_but_the_month_does_not() -> None:
    # 2026-W53 runs from Monday 2026-12-28 to Sunday 2027-01-03.
    auth = authorization(end_date=date(2027, 1, 31), units_per_week=40, units_per_month=100)
    builder = visit_on(date(2026, 12, 29))
    over_week = builder.ctx(authorizations=[auth], usage=used((date(2027, 1, 2), 37)))
    assert "left this week" in auth_02_units_within_limits(over_week)[0].message
    monthly = authorization(end_date=date(2027, 1, 31), units_per_week=None, units_per_month=10)
    assert auth_02_units_within_limits(builder.ctx(authorizations=[monthly], usage=used((date(2027, 1, 2), 10)))) == []


def test_auth_02_daily_limit() -> None:
    day = date(2026, 11, 20)
    auth = authorization(units_per_day=8, units_per_week=None)
    builder = visit_on(day)
    assert auth_02_units_within_limits(builder.ctx(authorizations=[auth], usage=used((day, 4)))) == []
    [finding] = auth_02_units_within_limits(builder.ctx(authorizations=[auth], usage=used((day, 5))))
    assert "3 of 8 left this day" in finding.message
    assert auth_02_units_within_limits(builder.ctx(authorizations=[auth], usage=used((date(2026, 11, 19), 8)))) == []


def test_auth_02_monthly_limit_counts_the_calendar_month() -> None:
    auth = authorization(units_per_week=None, units_per_month=20)
    builder = visit_on(date(2026, 11, 30))
    assert auth_02_units_within_limits(builder.ctx(authorizations=[auth], usage=used((date(2026, 12, 1), 20)))) == []
    [finding] = auth_02_units_within_limits(builder.ctx(authorizations=[auth], usage=used((date(2026, 11, 1), 17))))
    assert "3 of 20 left this month" in finding.message


def test_auth_02_total_limit_and_several_shortfalls_in_one_message() -> None:
    auth = authorization(units_per_week=10, units_total=50)
    [finding] = auth_02_units_within_limits(visit().ctx(authorizations=[auth], usage=used((date(2026, 11, 17), 48))))
    assert finding.message == "AUTH-02 4 units needed, 0 of 10 left this week and 2 of 50 left in total on PA-1"


def test_auth_02_no_limits_means_no_hold() -> None:
    auth = authorization(units_per_week=None)
    assert auth_02_units_within_limits(visit_on(date(2026, 11, 20), hours=20).ctx(authorizations=[auth])) == []


def test_auth_02_the_visits_own_usage_is_not_counted_twice() -> None:
    usage = {1: [UsageEntry(visit_id="v-1", service_date=date(2026, 11, 20), units=4),
                 UsageEntry(visit_id="other", service_date=date(2026, 11, 19), units=36)]}
    assert auth_02_units_within_limits(visit().ctx(usage=usage)) == []


def test_auth_02_falls_back_to_the_next_authorization_with_room() -> None:
    first = authorization(id=1, auth_number="PA-1", units_per_week=4)
    second = authorization(id=2, auth_number="PA-2", start_date=date(2026, 11, 15), units_per_week=40)
    ctx = visit().ctx(authorizations=[second, first], usage=used((date(2026, 11, 16), 4)))
    assert auth_02_units_within_limits(ctx) == []
    chosen = choose_authorization(ctx)
    assert chosen is not None and chosen.auth_number == "PA-2"


def test_auth_02_units_come_from_punches_under_the_payer_rounding() -> None:
    builder = visit().worked(52)
    assert visit_units(builder.ctx(payer=PayerRules(rounding=RoundingStrategy.nearest_quarter))) == 3
    assert visit_units(builder.ctx(payer=PayerRules(rounding=RoundingStrategy.cms_8_minute))) == 3
    assert visit_units(builder.ctx(payer=PayerRules(rounding=RoundingStrategy.ceil))) == 4


def test_auth_02_units_come_from_the_schedule_before_the_clock_out() -> None:
    ctx = visit_on(date(2026, 11, 20), hours=2).without(PunchKind.clock_out).ctx()
    assert visit_units(ctx) == 8


def test_auth_02_never_changes_the_punch_times() -> None:
    ctx = visit_on(date(2026, 11, 20), hours=3).ctx(usage=used((date(2026, 11, 16), 39)))
    before = ctx.model_dump()
    auth_02_units_within_limits(ctx)
    assert ctx.model_dump() == before


def test_auth_02_is_silent_without_a_covering_authorization() -> None:
    assert auth_02_units_within_limits(visit().ctx(authorizations=[])) == []
