"""MV-01/02 (late alerts, missed visits) and SUP-01 (aide supervision) against the time-skipping test server and
the real database: every new timer fires when it should and stays quiet when it should not."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, delete, select

from tests.workflows.test_visit_workflow import (
    NOTE,
    authorize_around,
    deliver,
    in_state,
    notifications,
    punch,
    record,
    rejection,
    start,
    state_of,
    until,
)
from visitflow.db.session import write_session
from visitflow.db.tables import Notification, PatientSupervision, PatientSupervisionCreate, Payer, Visit, VisitHold
from visitflow.models import (
    Discipline,
    MarkMissed,
    MissedReason,
    PunchKind,
    Release,
    SubmitNote,
    VisitState,
)
from visitflow.services.commands import act
from visitflow.services.errors import ServiceError
from visitflow.services.missed import missed_by_reason, week_of
from visitflow.services.supervision import set_supervision
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow

ZONE = ZoneInfo(Settings.model_fields["agency_timezone"].default)  # the test worker's agency zone


def supervision_notifications(engine, patient_id: int) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [(n.kind, n.role.value) for n in s.exec(
            select(Notification).where(Notification.visit_id == f"supervision-{patient_id}").order_by(Notification.id))]


def late_tasks(snap) -> list[str]:
    return sorted(t.role.value for t in snap.tasks if t.kind == "late_visit")


# --- MV-01: late alerts ---------------------------------------------------------------------


async def test_no_clock_in_30_minutes_after_the_start_alerts_the_supervisor_and_the_office(client, agency, engine,
                                                                                            env, t0):
    spec = agency.spec(t0 + timedelta(minutes=10), late_alert_minutes=30)
    handle = await start(client, spec)
    await env.sleep(timedelta(minutes=35))  # 25 minutes after the start: not late yet
    assert "late_alert" not in notifications(engine, spec.visit_id)
    await env.sleep(timedelta(minutes=10))
    snap = await until(handle, lambda s: s.late_alert_at is not None)
    assert notifications(engine, spec.visit_id).count("late_alert") == 2
    assert late_tasks(snap) == ["admin", "supervisor"]
    with Session(engine) as s:
        roles = sorted(n.role.value for n in s.exec(select(Notification).where(
            Notification.visit_id == spec.visit_id, Notification.kind == "late_alert")))
    assert roles == ["admin", "supervisor"]

    # The caregiver arrives late: the alert clears, its tasks go, nothing is sent twice.
    arrived = spec.scheduled_start + timedelta(minutes=50)
    snap = await punch(handle, agency, PunchKind.clock_in, arrived, now=arrived)
    assert snap.late_alert_at is None and late_tasks(snap) == []
    assert [e.detail for e in snap.timeline if e.kind == "late_alert_cleared"] == [
        "clocked in 50 min after the scheduled start"]
    await env.sleep(timedelta(hours=2))
    assert notifications(engine, spec.visit_id).count("late_alert") == 2
    with Session(engine) as s:
        assert not [t for t in s.get(Visit, spec.visit_id).snapshot["tasks"] if t["kind"] == "late_visit"]
    await record(handle, "late_alert_then_clock_in")


async def test_a_clock_in_before_the_alert_time_suppresses_it(client, agency, engine, env, t0):
    spec = agency.spec(t0 + timedelta(minutes=5), late_alert_minutes=30)
    handle = await start(client, spec)
    await env.sleep(timedelta(minutes=7))
    on_time = spec.scheduled_start + timedelta(minutes=2)
    await punch(handle, agency, PunchKind.clock_in, on_time, now=on_time)
    await env.sleep(timedelta(hours=1))
    snap = await state_of(handle)
    assert snap.late_alert_at is None and late_tasks(snap) == []
    assert "late_alert" not in notifications(engine, spec.visit_id)


async def test_a_visit_entered_after_its_time_raises_no_late_alert(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=3), late_alert_minutes=30)  # recorded after the fact
    handle = await start(client, spec)
    await env.sleep(timedelta(minutes=5))
    assert (await state_of(handle)).late_alert_at is None
    assert "late_alert" not in notifications(engine, spec.visit_id)


async def test_rescheduling_a_late_visit_withdraws_the_alert_and_times_it_from_the_new_start(client, agency,
                                                                                            engine, env, t0):
    from visitflow.models import Reschedule

    spec = agency.spec(t0 + timedelta(minutes=1), late_alert_minutes=15)
    handle = await start(client, spec)
    await env.sleep(timedelta(minutes=20))
    await until(handle, lambda s: s.late_alert_at is not None)
    new_start = spec.scheduled_start + timedelta(hours=3)
    snap = await handle.execute_update(VisitWorkflow.reschedule, Reschedule(
        actor=agency.actor("supervisor"), scheduled_start=new_start, scheduled_end=new_start + timedelta(hours=2),
        reason="family asked for the afternoon"))
    assert snap.late_alert_at is None and late_tasks(snap) == []
    await env.sleep(timedelta(hours=3, minutes=20))
    await until(handle, lambda s: s.late_alert_at is not None)


# --- MV-02: missed visits -------------------------------------------------------------------


async def test_a_missed_visit_ends_non_billable_counts_by_reason_and_notifies_whom_the_payer_requires(
        client, agency, engine, env, t0):
    with write_session(engine) as s:
        payer = s.get(Payer, agency.payer.id)
        payer.missed_visit_notice_to = "ordering practitioner's office"
        s.add(payer)
        s.commit()
    spec = agency.spec(t0 + timedelta(minutes=10), late_alert_minutes=30)
    authorize_around(agency, spec)
    handle = await start(client, spec)
    mark = MarkMissed(actor=agency.actor("supervisor"), reason=MissedReason.not_home)

    # Not before the visit was due to start, not by a clinician, and "other" needs words.
    assert "not started yet" in (await rejection(handle.execute_update(VisitWorkflow.mark_missed, mark))).message
    await env.sleep(timedelta(minutes=45))
    await until(handle, lambda s: s.late_alert_at is not None)
    err = await rejection(handle.execute_update(VisitWorkflow.mark_missed, MarkMissed(
        actor=agency.actor("clinician"), reason=MissedReason.not_home)))
    assert err.type == "Forbidden"
    err = await rejection(handle.execute_update(VisitWorkflow.mark_missed, MarkMissed(
        actor=agency.actor("admin"), reason=MissedReason.other, reason_text="  ")))
    assert (err.type, err.details[0]["field"]) == ("Invalid", "reason_text")

    snap = await handle.execute_update(VisitWorkflow.mark_missed, mark)
    assert snap.state == VisitState.missed and snap.tasks == [] and snap.late_alert_at is None
    assert snap.missed.reason == MissedReason.not_home and snap.missed.actor.username == agency.users[
        "supervisor"].username
    assert (await handle.result()).state == VisitState.missed  # the visit's workflow has ended

    kinds = notifications(engine, spec.visit_id)
    assert kinds.count("missed_visit") == 2 and kinds.count("missed_visit_notice") == 1
    with Session(engine) as s:
        notice = s.exec(select(Notification).where(Notification.visit_id == spec.visit_id,
                                                   Notification.kind == "missed_visit_notice")).one()
        assert "ordering practitioner's office" in notice.message and notice.role.value == "admin"
        row = s.get(Visit, spec.visit_id)
        assert (row.state, row.missed_reason, row.hold_count) == ("missed", "not_home", 0)
        first, last = week_of(row.service_date)
        assert missed_by_reason(s, first, last)["not_home"] >= 1

    # Never released: the visit is over, and a release is refused.
    with pytest.raises(ServiceError) as refused:
        await act(client, spec.visit_id, VisitWorkflow.release, Release(actor=agency.actor("biller"), batch_id="b-x"))
    assert refused.value.status == 409 and "missed" in refused.value.message
    await record(handle, "missed_visit")


async def test_a_visit_that_happened_cannot_be_marked_missed(client, agency, env, t0):
    spec = agency.spec(t0 - timedelta(hours=3))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await punch(handle, agency, PunchKind.clock_in, spec.scheduled_start + timedelta(minutes=2))
    err = await rejection(handle.execute_update(VisitWorkflow.mark_missed, MarkMissed(
        actor=agency.actor("supervisor"), reason=MissedReason.patient_refused)))
    assert err.type == "Conflict" and "clock-in" in err.message


# --- SUP-01: aide supervision -----------------------------------------------------------------


def local_day(t0) -> date:
    return t0.astimezone(ZONE).date()


async def test_supervision_prompts_ahead_of_time_then_escalates_when_it_lapses(client, agency, engine, env, t0):
    today = local_day(t0)
    settings = Settings(task_queue="visits-test", supervision_prompt_days=3)
    row = await set_supervision(engine, client, settings, agency.patient.id, PatientSupervisionCreate(
        care="skilled", last_visit_on=today - timedelta(days=9)), agency.actor("supervisor"), today=today)
    assert row.due_on == today + timedelta(days=5)
    await env.sleep(timedelta(days=1))
    assert supervision_notifications(engine, agency.patient.id) == []  # the prompt is 3 days ahead of the due date
    await env.sleep(timedelta(days=2, hours=2))
    await _until_notified(env, engine, agency.patient.id, ("supervision_prompt", "supervisor"))
    assert all(kind == "supervision_prompt" for kind, _ in supervision_notifications(engine, agency.patient.id))
    await env.sleep(timedelta(days=3))
    await _until_notified(env, engine, agency.patient.id, ("supervision_lapse", "supervisor"))
    with Session(engine) as s:
        stored = s.get(PatientSupervision, agency.patient.id)
        assert (stored.prompted_for, stored.lapsed_for) == (row.due_on, row.due_on)


async def _until_notified(env, engine, patient_id: int, expected: tuple[str, str]) -> None:
    for _ in range(100):
        if expected in supervision_notifications(engine, patient_id):
            return
        await env.sleep(timedelta(seconds=1))
    raise AssertionError(f"no {expected}: {supervision_notifications(engine, patient_id)}")


async def test_a_lapsed_supervision_holds_aide_visits_until_a_supervisory_visit_is_documented(
        client, agency, engine, env, t0):
    today = local_day(t0)
    settings = Settings(task_queue="visits-test")
    await set_supervision(engine, client, settings, agency.patient.id, PatientSupervisionCreate(
        care="aide_only", last_visit_on=today - timedelta(days=70)), agency.actor("admin"), today=today)
    await _until_notified(env, engine, agency.patient.id, ("supervision_lapse", "supervisor"))

    aide = agency.spec(t0 - timedelta(hours=3))
    authorize_around(agency, aide)
    aide_handle = await start(client, aide)
    await deliver(aide_handle, agency, aide)
    held = await until(aide_handle, in_state(VisitState.on_hold))
    assert [h.rule_id for h in held.holds] == ["SUP-01"]
    assert "due by" in held.holds[0].message and not held.holds[0].approvable
    assert [(t.kind, t.role.value) for t in held.tasks] == [("supervisory_visit_due", "supervisor")]

    # The RN documents a supervisory visit: the due date moves and the held aide visit goes on by itself.
    rn = agency.spec(t0 - timedelta(hours=2), hours=1, service_code="G0299").model_copy(
        update={"discipline": Discipline.RN, "supervisory": True})
    rn_handle = await start(client, rn)
    snap = await rn_handle.execute_update(VisitWorkflow.submit_note,
                                          SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    assert "supervisory_visit_documented" in [e.kind for e in snap.timeline]
    await until(aide_handle, in_state(VisitState.claim_ready))
    with Session(engine) as s:
        stored = s.get(PatientSupervision, agency.patient.id)
        assert stored.last_visit_id == rn.visit_id
        assert stored.due_on == stored.last_visit_on + timedelta(days=60)
    await record(rn_handle, "supervisory_visit_documented")


async def test_a_visit_held_a_moment_before_its_hold_is_projected_still_goes_on(client, agency, engine, env, t0):
    """The lost wake-up: the aide visit's workflow holds it, and the supervisory visit is documented before that
    hold reaches the read model. The aide visit must still be told, not wait for its periodic re-check."""
    today = local_day(t0)
    await set_supervision(engine, client, Settings(task_queue="visits-test"), agency.patient.id,
                          PatientSupervisionCreate(care="aide_only", last_visit_on=today - timedelta(days=70)),
                          agency.actor("admin"), today=today)
    aide = agency.spec(t0 - timedelta(hours=3))
    authorize_around(agency, aide)
    aide_handle = await start(client, aide)
    await deliver(aide_handle, agency, aide)
    await until(aide_handle, in_state(VisitState.on_hold))
    await until_projected(engine, aide.visit_id, VisitState.on_hold)
    with write_session(engine) as s:  # the read model as it was a moment before the hold was written
        s.exec(delete(VisitHold).where(VisitHold.visit_id == aide.visit_id))
        row = s.get(Visit, aide.visit_id)
        row.state = VisitState.signed.value
        s.add(row)
        s.commit()

    rn = agency.spec(t0 - timedelta(hours=2), hours=1, service_code="G0299").model_copy(
        update={"discipline": Discipline.RN, "supervisory": True})
    rn_handle = await start(client, rn)
    await rn_handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    await until(aide_handle, in_state(VisitState.claim_ready))


async def until_projected(engine, visit_id: str, state: VisitState) -> None:
    for _ in range(200):
        with Session(engine) as s:
            row = s.get(Visit, visit_id)
            if row is not None and row.state == state.value:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{visit_id} never projected as {state.value}")
