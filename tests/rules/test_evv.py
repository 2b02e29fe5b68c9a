from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from visitflow.models import Gate, PayerRules, PunchKind, PunchMethod, ReasonCode, Role
from visitflow.rules import (
    PatientFacts,
    distance_m,
    evv_01_six_elements,
    evv_02_punch_at_service_address,
    evv_03_clock_within_tolerance,
    evv_04_manual_time_approved,
    evv_05_visit_length,
    evv_06_correction_allowed,
)

from .conftest import END, HOME, PATIENT_ID, START, keys, moved, visit

ALL_EVV = [evv_01_six_elements, evv_02_punch_at_service_address, evv_03_clock_within_tolerance,
           evv_04_manual_time_approved, evv_05_visit_length]


@pytest.mark.parametrize("rule", ALL_EVV)
def test_evv_rules_pass_a_clean_visit(rule) -> None:
    assert rule(visit().ctx()) == []


@pytest.mark.parametrize("rule", ALL_EVV)
def test_evv_rules_are_silent_when_the_payer_does_not_require_evv(rule) -> None:
    ctx = (visit().no_punches().add_punch(PunchKind.clock_in, START, method=PunchMethod.manual)
           .ctx(payer=PayerRules(evv_required=False),
                patient=PatientFacts(patient_id=PATIENT_ID, medicaid_id=None, service_location=None)))
    assert rule(ctx) == []


# --- EVV-01


def test_evv_01_missing_clock_out_goes_to_the_clinician() -> None:
    [finding] = evv_01_six_elements(visit().without(PunchKind.clock_out).ctx())
    assert finding.key == "EVV-01:clock_out"
    assert finding.role == Role.clinician and finding.gate == Gate.evv and not finding.approvable
    assert finding.message == "EVV-01 no clock-out punch recorded"


def test_evv_01_no_punches_reports_both_times() -> None:
    assert keys(evv_01_six_elements(visit().no_punches().ctx())) == ["EVV-01:clock_in", "EVV-01:clock_out"]


@pytest.mark.parametrize("medicaid_id", [None, "", "   "])
def test_evv_01_missing_medicaid_id_goes_to_admin(medicaid_id: str | None) -> None:
    patient = PatientFacts(patient_id=PATIENT_ID, medicaid_id=medicaid_id, service_location=HOME)
    [finding] = evv_01_six_elements(visit().ctx(patient=patient))
    assert (finding.key, finding.role, finding.approvable) == ("EVV-01:medicaid_id", Role.admin, False)


def test_evv_01_missing_service_code_goes_to_admin() -> None:
    [finding] = evv_01_six_elements(visit(service_code=" ").ctx())
    assert (finding.key, finding.role) == ("EVV-01:service_code", Role.admin)


def test_evv_01_gps_punch_without_location_is_a_missing_element() -> None:
    [finding] = evv_01_six_elements(visit().clock_in(location=None).ctx())
    assert finding.key == "EVV-01:location-punch-3"
    assert finding.role == Role.clinician and not finding.approvable


@pytest.mark.parametrize("method", [PunchMethod.telephony, PunchMethod.fixed_device, PunchMethod.manual])
def test_evv_01_non_gps_punches_need_no_coordinates(method: PunchMethod) -> None:
    ctx = visit().clock_in(method=method, location=None, reason_code=ReasonCode.forgot_to_clock).ctx()
    assert evv_01_six_elements(ctx) == []


def test_evv_01_a_later_punch_supersedes_one_without_location() -> None:
    ctx = visit().clock_in(location=None).add_punch(PunchKind.clock_in, START, method=PunchMethod.telephony,
                                                    location=None).ctx()
    assert evv_01_six_elements(ctx) == []


# --- EVV-02


def test_evv_02_punch_outside_radius_is_a_supervisor_hold() -> None:
    ctx = visit().clock_out(location=moved(HOME, north_m=2300)).ctx()
    [finding] = evv_02_punch_at_service_address(ctx)
    assert finding.key == "EVV-02:punch-3"
    assert finding.role == Role.supervisor and finding.approvable
    assert finding.message == "EVV-02 clock-out punch 2.3 km from the service address (allowed 402 m)"


def test_evv_02_both_punches_far_give_two_findings() -> None:
    far = moved(HOME, east_m=900)
    ctx = visit().clock_in(location=far).clock_out(location=far).ctx()
    assert keys(evv_02_punch_at_service_address(ctx)) == ["EVV-02:punch-3", "EVV-02:punch-4"]


def test_evv_02_exactly_at_the_radius_passes_and_just_beyond_fails() -> None:
    where = moved(HOME, north_m=250, east_m=250)
    exact = distance_m(where, HOME)
    builder = visit().clock_in(location=where)
    assert evv_02_punch_at_service_address(builder.ctx(payer=PayerRules(evv_radius_m=exact))) == []
    assert len(evv_02_punch_at_service_address(builder.ctx(payer=PayerRules(evv_radius_m=exact - 0.01)))) == 1


def test_evv_02_uses_the_payer_radius() -> None:
    ctx = visit().clock_in(location=moved(HOME, north_m=1000)).ctx(payer=PayerRules(evv_radius_m=1609))
    assert evv_02_punch_at_service_address(ctx) == []


def test_evv_02_service_address_without_coordinates_goes_to_admin() -> None:
    patient = PatientFacts(patient_id=PATIENT_ID, medicaid_id="TX1", service_location=None)
    [finding] = evv_02_punch_at_service_address(visit().ctx(patient=patient))
    assert finding.role == Role.admin and finding.key == "EVV-02:service_address"
    assert "service address has no coordinates" in finding.message


def test_evv_02_telephony_punches_count_as_at_home() -> None:
    ctx = visit().clock_in(method=PunchMethod.telephony, location=moved(HOME, north_m=5000)).ctx()
    assert evv_02_punch_at_service_address(ctx) == []


def test_evv_02_superseded_far_punch_is_not_checked_again() -> None:
    ctx = visit().clock_in(location=moved(HOME, north_m=5000)).add_punch(PunchKind.clock_in, START).ctx()
    assert evv_02_punch_at_service_address(ctx) == []


# --- EVV-03


def test_evv_03_late_clock_in_is_an_approvable_supervisor_hold() -> None:
    [finding] = evv_03_clock_within_tolerance(visit().clock_in(START + timedelta(minutes=42)).ctx())
    assert finding.key == "EVV-03:clock_in" and finding.role == Role.supervisor and finding.approvable
    assert finding.message == "EVV-03 clock-in 42 min after the scheduled start (tolerance 15 min)"


def test_evv_03_early_clock_out() -> None:
    [finding] = evv_03_clock_within_tolerance(visit().clock_out(END - timedelta(minutes=20)).ctx())
    assert finding.key == "EVV-03:clock_out"
    assert "clock-out 20 min before the scheduled end" in finding.message


def test_evv_03_exactly_at_tolerance_passes() -> None:
    ctx = visit().clock_in(START - timedelta(minutes=15)).clock_out(END + timedelta(minutes=15)).ctx()
    assert evv_03_clock_within_tolerance(ctx) == []


def test_evv_03_one_second_beyond_tolerance_fails_and_reads_as_16_minutes() -> None:
    [finding] = evv_03_clock_within_tolerance(visit().clock_in(START + timedelta(minutes=15, seconds=1)).ctx())
    assert "16 min after" in finding.message


def test_evv_03_uses_the_adjusted_time() -> None:
    late = START + timedelta(minutes=40)
    ctx = visit().clock_in(late, adjusted_at=START + timedelta(minutes=5), adjust_reason_code=ReasonCode.schedule_error,
                           adjusted_by="sup").ctx()
    assert evv_03_clock_within_tolerance(ctx) == []


def test_evv_03_zero_tolerance_from_the_payer() -> None:
    ctx = visit().clock_in(START + timedelta(minutes=1)).ctx(payer=PayerRules(clock_tolerance_min=0))
    assert keys(evv_03_clock_within_tolerance(ctx)) == ["EVV-03:clock_in"]


# --- EVV-04


def test_evv_04_manual_punch_with_reason_needs_supervisor_approval() -> None:
    ctx = visit().clock_in(method=PunchMethod.manual, location=None, reason_code=ReasonCode.forgot_to_clock,
                           recorded_by="caregiver.ana").ctx()
    [finding] = evv_04_manual_time_approved(ctx)
    assert finding.key == "EVV-04:punch-3" and finding.role == Role.supervisor and finding.approvable
    assert finding.message == ("EVV-04 manual clock-in entered by caregiver.ana (reason: forgot_to_clock) "
                               "needs supervisor approval")


def test_evv_04_manual_punch_without_reason_goes_back_to_the_clinician() -> None:
    ctx = visit().clock_in(method=PunchMethod.manual, location=None).ctx()
    findings = {f.key: f for f in evv_04_manual_time_approved(ctx)}
    assert set(findings) == {"EVV-04:punch-3:reason", "EVV-04:punch-3"}
    reason = findings["EVV-04:punch-3:reason"]
    assert reason.role == Role.clinician and not reason.approvable
    assert "no reason code" in reason.message


@pytest.mark.parametrize("code", [ReasonCode.other, ReasonCode.alternate_location, ReasonCode.emergency])
def test_evv_04_reason_needing_text_without_text_goes_to_the_clinician(code: ReasonCode) -> None:
    ctx = visit().clock_out(method=PunchMethod.manual, location=None, reason_code=code, reason_text="  ").ctx()
    assert "EVV-04:punch-3:reason" in keys(evv_04_manual_time_approved(ctx))


def test_evv_04_reason_with_text_only_needs_approval() -> None:
    ctx = visit().clock_out(method=PunchMethod.manual, location=None, reason_code=ReasonCode.other,
                            reason_text="phone died").ctx()
    assert keys(evv_04_manual_time_approved(ctx)) == ["EVV-04:punch-3"]


def test_evv_04_adjusted_gps_punch_needs_approval() -> None:
    ctx = visit().clock_out(END + timedelta(minutes=30), adjusted_at=END, adjust_reason_code=ReasonCode.forgot_to_clock,
                            adjusted_by="caregiver.ana").ctx()
    [finding] = evv_04_manual_time_approved(ctx)
    assert finding.key == "EVV-04:punch-3"
    assert "clock-out adjusted from 10:30 to 10:00 by caregiver.ana (reason: forgot_to_clock)" in finding.message


def test_evv_04_times_are_told_in_the_agencys_zone() -> None:
    ctx = visit().clock_out(END + timedelta(minutes=30), adjusted_at=END, adjust_reason_code=ReasonCode.forgot_to_clock,
                            adjusted_by="caregiver.ana").ctx()
    ctx.visit.spec.timezone = "America/Chicago"
    [finding] = evv_04_manual_time_approved(ctx)
    local_from = (END + timedelta(minutes=30)).astimezone(ZoneInfo("America/Chicago"))
    assert f"adjusted from {local_from:%H:%M} to " in finding.message and "10:30" not in finding.message


def test_evv_04_adjustment_without_reason_goes_to_the_clinician() -> None:
    ctx = visit().clock_out(END + timedelta(minutes=30), adjusted_at=END, adjusted_by="caregiver.ana").ctx()
    assert "EVV-04:punch-3:reason" in keys(evv_04_manual_time_approved(ctx))


def test_evv_04_gps_punches_need_nothing() -> None:
    assert evv_04_manual_time_approved(visit().ctx()) == []


# --- EVV-05


def test_evv_05_visit_longer_than_the_maximum() -> None:
    [finding] = evv_05_visit_length(visit().clock_out(START + timedelta(hours=25)).ctx())
    assert finding.key == "EVV-05" and finding.role == Role.clinician and not finding.approvable
    assert "25.0 h, longer than the 24 h maximum" in finding.message


def test_evv_05_exactly_the_maximum_passes() -> None:
    assert evv_05_visit_length(visit().clock_out(START + timedelta(hours=24)).ctx()) == []
    ctx = visit().clock_out(START + timedelta(hours=8, seconds=1)).ctx(payer=PayerRules(max_visit_hours=8))
    assert len(evv_05_visit_length(ctx)) == 1


@pytest.mark.parametrize("minutes", [0, -30])
def test_evv_05_clock_out_must_follow_clock_in(minutes: int) -> None:
    [finding] = evv_05_visit_length(visit().clock_out(START + timedelta(minutes=minutes)).ctx())
    assert "is not after clock-in" in finding.message


def test_evv_05_uses_adjusted_times() -> None:
    ctx = visit().clock_out(START + timedelta(hours=30), adjusted_at=END, adjust_reason_code=ReasonCode.forgot_to_clock,
                            adjusted_by="ana").ctx()
    assert evv_05_visit_length(ctx) == []


# --- EVV-06


def test_evv_06_correction_inside_the_window_is_allowed() -> None:
    service_day = date(2026, 11, 20)
    assert evv_06_correction_allowed(service_day, datetime(2027, 2, 23, 23, 59, tzinfo=UTC), PayerRules()) is None


def test_evv_06_correction_on_day_96_is_refused() -> None:
    service_day = date(2026, 11, 20)
    assert (date(2027, 2, 24) - service_day).days == 96
    reason = evv_06_correction_allowed(service_day, datetime(2027, 2, 24, 0, 1, tzinfo=UTC), PayerRules())
    assert reason is not None and reason.startswith("EVV-06") and "95 days" in reason


def test_evv_06_uses_the_payer_window() -> None:
    payer = PayerRules(correction_window_days=0)
    day = date(2026, 11, 20)
    assert evv_06_correction_allowed(day, datetime(2026, 11, 20, 23, 0, tzinfo=UTC), payer) is None
    assert evv_06_correction_allowed(day, datetime(2026, 11, 21, 0, 0, tzinfo=UTC), payer) is not None
