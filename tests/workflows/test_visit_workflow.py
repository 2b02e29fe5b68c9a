"""VisitWorkflow against the real Temporal test server (time skipping) and the real database."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.conftest import HOME, Agency
from visitflow.activities.visits import VisitActivities
from visitflow.db.tables import AuthorizationUsage, Notification, Visit, VisitEvent, VisitTask
from visitflow.models import (
    AdjustPunch,
    AuthorizationChanged,
    Cancel,
    ExtendDeadline,
    GeoPoint,
    PunchInput,
    PunchKind,
    PunchMethod,
    ReasonCode,
    Reassign,
    RecordPunch,
    Release,
    Reschedule,
    ResolveHold,
    SendBack,
    SignNote,
    SubmitNote,
    Timers,
    VisitSnapshot,
    VisitState,
)
from visitflow.services.commands import act
from visitflow.services.errors import ServiceError
from visitflow.workflows.visit import LOCAL_PROJECTIONS, VisitWorkflow, search_attributes_for, visit_workflow_id

NOTE = {"tasks_performed": "Bathing, meals", "client_condition": "Stable"}
FAR = GeoPoint(lat=30.2950, lon=-97.7404)  # about 2.3 km north of HOME


async def start(client: Client, spec) -> WorkflowHandle:
    return await client.start_workflow(
        VisitWorkflow.run, spec, id=visit_workflow_id(spec.visit_id), task_queue="visits-test",
        search_attributes=search_attributes_for(spec, VisitState.scheduled))


async def state_of(handle: WorkflowHandle) -> VisitSnapshot:
    return await handle.query(VisitWorkflow.snapshot)


async def until(handle: WorkflowHandle, predicate, timeout: float = 15.0) -> VisitSnapshot:
    """Wait (real time) for the visit to reach what the test expects; fail with what it is instead."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snap = await state_of(handle)
        if predicate(snap):
            return snap
        if loop.time() > deadline:
            raise AssertionError(f"visit is {snap.state} with holds {[h.message for h in snap.holds]}")
        await asyncio.sleep(0.05)


def in_state(state: VisitState):
    return lambda snap: snap.state == state


async def punch(handle, agency: Agency, kind: PunchKind, at: datetime, where: GeoPoint | None = None,
                method=PunchMethod.gps, reason=None, text=None, who="clinician", now: datetime | None = None):
    return await handle.execute_update(VisitWorkflow.record_punch, RecordPunch(
        actor=agency.actor(who), now=now or at + timedelta(hours=1), punch=PunchInput(
            kind=kind, at=at, method=method, location=where if where or method != PunchMethod.gps
            else GeoPoint(lat=HOME[0], lon=HOME[1]), reason_code=reason, reason_text=text)))


async def deliver(handle, agency: Agency, spec, clock_in_where: GeoPoint | None = None):
    """The caregiver clocks in and out on time at the home, writes the note and signs it."""
    await punch(handle, agency, PunchKind.clock_in, spec.scheduled_start + timedelta(minutes=2), clock_in_where)
    await punch(handle, agency, PunchKind.clock_out, spec.scheduled_end - timedelta(minutes=1))
    await handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    return await handle.execute_update(VisitWorkflow.sign_note,
                                       SignNote(actor=agency.actor("clinician"), attestation=True))


HISTORIES = Path(__file__).parent.parent / "replay" / "histories"


async def record(handle: WorkflowHandle, name: str) -> None:
    """With VISITFLOW_RECORD_HISTORIES=1, keep this run's history for the replay test (tests/replay)."""
    if os.environ.get("VISITFLOW_RECORD_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


async def rejection(call) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call
    assert isinstance(info.value.cause, ApplicationError)
    return info.value.cause


def recent(t0: datetime, hours_ago: float = 3) -> datetime:
    return t0 - timedelta(hours=hours_ago)


def authorize_around(agency: Agency, spec, **limits):
    day = spec.scheduled_start.date()
    return agency.authorize(day - timedelta(days=30), day + timedelta(days=30), **limits)


# --- the happy path and release ---------------------------------------------------------------


async def test_clean_visit_reaches_claim_ready_and_is_released_exactly_once(client, agency, engine, t0):
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec, units_per_week=100)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    snap = await until(handle, in_state(VisitState.claim_ready))
    assert snap.gates == {"documented": True, "signed": True, "authorized": True, "evv": True}
    assert snap.billable_units == 8  # 2 h minus 3 min, to the nearest quarter hour
    kinds = [e.kind for e in snap.timeline]
    assert kinds[-3:] == ["authorized", "evv_verified", "claim_ready"]

    biller = agency.actor("biller")
    first = await handle.execute_update(VisitWorkflow.release, Release(actor=biller, batch_id="b1"), id="release")
    # A retried request (same update id) gets the first result back, not a second release.
    again = await handle.execute_update(VisitWorkflow.release, Release(actor=biller, batch_id="b2"), id="release")
    assert first.release_batch_id == again.release_batch_id == "b1"
    result = await handle.result()
    # A second biller's overlapping selection, after the visit closed, is told who released it.
    with pytest.raises(ServiceError) as info:
        await act(client, spec.visit_id, VisitWorkflow.release, Release(actor=biller, batch_id="b3"))
    assert info.value.status == 409 and f"released by {biller.username} in batch b1" in info.value.message
    assert result.state == VisitState.released and result.released_by == biller.username
    await record(handle, "released_once")

    # A new visit takes the newest lifecycle (local-projections): its 7 projections and its gate check are local
    # activities, one marker each, and no activity task goes through the server for them.
    events = (await handle.fetch_history()).events
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == []
    markers = [e.marker_recorded_event_attributes.marker_name for e in events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert markers == ["core_patch"] + ["core_local_activity"] * 8
    patch = next(e.marker_recorded_event_attributes for e in events
                 if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED)
    assert json.loads(patch.details["patch-data"].payloads[0].data)["id"] == LOCAL_PROJECTIONS

    with Session(engine) as s:
        row = s.get(Visit, spec.visit_id)
        assert row.state == "released" and row.release_batch_id == "b1" and row.version == result.version
        # Projections carry only new timeline entries (lean-lifecycle); the stored snapshot still has them all.
        assert row.snapshot["timeline"] == [e.model_dump(mode="json") for e in result.timeline]
        events = s.exec(select(VisitEvent).where(VisitEvent.visit_id == spec.visit_id)
                        .order_by(VisitEvent.seq)).all()
        assert [e.kind for e in events] == [e.kind for e in result.timeline]
        assert s.get(AuthorizationUsage, spec.visit_id).units == 8
        assert s.exec(select(VisitTask).where(VisitTask.visit_id == spec.visit_id)).all() == []


async def test_only_a_biller_releases_and_only_when_claim_ready(client, agency, t0):
    spec = agency.spec(recent(t0))
    handle = await start(client, spec)
    err = await rejection(handle.execute_update(
        VisitWorkflow.release, Release(actor=agency.actor("supervisor"), batch_id="x")))
    assert err.type == "Forbidden"
    err = await rejection(handle.execute_update(
        VisitWorkflow.release, Release(actor=agency.actor("biller"), batch_id="x")))
    assert err.type == "Conflict" and "scheduled, not claim_ready" in err.message


# --- human actions are rejected before they touch history -----------------------------------


async def test_bad_actions_are_rejected_with_reasons_and_write_no_history(client, agency, t0):
    spec = agency.spec(recent(t0))
    handle = await start(client, spec)
    await until(handle, lambda s: s.version >= 1)

    other = agency.actor("other")
    cases = [
        (VisitWorkflow.sign_note, SignNote(actor=agency.actor("clinician"), attestation=True), "Conflict",
         "no note to sign"),
        (VisitWorkflow.submit_note, SubmitNote(actor=other, fields=NOTE), "Forbidden", "another clinician"),
        (VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields={"tasks_performed": "x"}),
         "Invalid", "DOC-03 required note fields missing: client_condition"),
        (VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("biller"), fields=NOTE), "Forbidden",
         "only a clinician"),
        (VisitWorkflow.record_punch, RecordPunch(actor=agency.actor("clinician"), now=t0, punch=PunchInput(
            kind=PunchKind.clock_in, at=spec.scheduled_start, method=PunchMethod.manual)), "Invalid",
         "EVV-04 a manual punch needs a reason code"),
        (VisitWorkflow.record_punch, RecordPunch(actor=agency.actor("clinician"), now=t0, punch=PunchInput(
            kind=PunchKind.clock_in, at=spec.scheduled_start, method=PunchMethod.manual,
            reason_code=ReasonCode.other)), "Invalid", "needs an explanation"),
        (VisitWorkflow.record_punch, RecordPunch(actor=agency.actor("clinician"), now=t0, punch=PunchInput(
            kind=PunchKind.clock_in, at=spec.scheduled_start, method=PunchMethod.gps)), "Invalid",
         "needs its location"),
        (VisitWorkflow.record_punch, RecordPunch(actor=agency.actor("clinician"), now=t0, punch=PunchInput(
            kind=PunchKind.clock_out, at=spec.scheduled_end, method=PunchMethod.telephony)), "Conflict",
         "no clock-in"),
        (VisitWorkflow.resolve_hold, ResolveHold(actor=agency.actor("supervisor"), key="EVV-02:punch-1",
                                                 decision="approved", reason="ok"), "Conflict", "no open hold"),
        (VisitWorkflow.reschedule, Reschedule(actor=agency.actor("admin"), scheduled_start=spec.scheduled_end,
                                              scheduled_end=spec.scheduled_start, reason="x"), "Invalid", "after"),
    ]
    for update, arg, kind, words in cases:
        err = await rejection(handle.execute_update(update, arg))
        assert err.type == kind, (err.type, err.message)
        assert words in err.message, err.message
    # Rejected in the validator: no update is ever accepted into the history. (The time-skipping
    # server still logs workflow tasks for them; the end-to-end test checks the dev server writes nothing.)
    events = (await handle.fetch_history()).events
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]


async def test_manual_correction_outside_the_maintenance_window_is_rejected(client, agency, t0):
    spec = agency.spec(recent(t0, 24 * 120), correction_window_days=95)  # EVV-06
    handle = await start(client, spec)
    err = await rejection(punch(handle, agency, PunchKind.clock_in, spec.scheduled_start, None, PunchMethod.manual,
                                ReasonCode.forgot_to_clock, now=t0))
    assert err.type == "Conflict" and "unlock request" in err.message


# --- holds and how they clear ---------------------------------------------------------------


async def test_missing_authorization_holds_until_one_arrives_by_signal(client, agency, t0):
    spec = agency.spec(recent(t0))
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    snap = await until(handle, in_state(VisitState.on_hold))
    assert [h.rule_id for h in snap.holds] == ["AUTH-01"]
    assert "no active authorization for T1019" in snap.holds[0].message
    assert snap.tasks[0].role.value == "biller"

    auth = authorize_around(agency, spec)
    await handle.signal(VisitWorkflow.authorization_changed,
                        AuthorizationChanged(authorization_id=auth.id, change="added", at=datetime.now(UTC)))
    snap = await until(handle, in_state(VisitState.claim_ready))
    assert snap.authorization_number == auth.auth_number
    assert any(e.kind == "hold_cleared" for e in snap.timeline)
    await record(handle, "auth_hold_cleared_by_signal")


async def test_hold_is_rechecked_on_a_timer_when_nobody_signals(client, agency, env: WorkflowEnvironment, t0):
    spec = agency.spec(recent(t0), timers=Timers(hold_recheck_every=timedelta(hours=6)))
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    held = await until(handle, in_state(VisitState.on_hold))
    await env.sleep(timedelta(hours=13))  # two re-checks that find the same hold show nothing new
    assert (await state_of(handle)).version == held.version
    authorize_around(agency, spec)
    await env.sleep(timedelta(hours=7))
    await until(handle, in_state(VisitState.claim_ready))
    await record(handle, "hold_rechecked_quietly")


async def test_over_authorized_units_hold_and_never_change_times(client, agency, t0):
    first = agency.spec(recent(t0, 30))
    second = agency.spec(recent(t0, 6))
    authorize_around(agency, first, units_total=10)  # one 2-hour visit (8 units) fits, two do not
    h1, h2 = await start(client, first), await start(client, second)
    await deliver(h1, agency, first)
    await until(h1, in_state(VisitState.claim_ready))
    await deliver(h2, agency, second)
    snap = await until(h2, in_state(VisitState.on_hold))
    assert [h.rule_id for h in snap.holds] == ["AUTH-02"]
    assert snap.punches[0].at == second.scheduled_start + timedelta(minutes=2)  # times untouched
    assert snap.punches[0].adjusted_at is None


async def test_evv_exception_approved_by_a_supervisor_clears_the_hold(client, agency, t0):
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await deliver(handle, agency, spec, clock_in_where=FAR)
    snap = await until(handle, in_state(VisitState.on_hold))
    hold = snap.holds[0]
    assert hold.rule_id == "EVV-02" and "2.3 km from the service address" in hold.message
    assert hold.role.value == "supervisor" and hold.approvable
    err = await rejection(handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("clinician"), key=hold.key, decision="approved", reason="ok")))
    assert err.type == "Forbidden"
    # Billers decide the holds routed to billing (DEN-01), not a supervisor's exception.
    err = await rejection(handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("biller"), key=hold.key, decision="approved", reason="ok")))
    assert err.type == "Forbidden" and "EVV-02 on this visit is for a supervisor to decide" in err.message
    await handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=hold.key, decision="approved", reason="Client was at day program"))
    snap = await until(handle, in_state(VisitState.claim_ready))
    assert snap.acknowledgements[0].by == agency.actor("supervisor").username
    await record(handle, "evv_exception_approved")


async def test_rejected_exception_goes_back_to_the_clinician_who_corrects_the_time(client, agency, t0):
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await punch(handle, agency, PunchKind.clock_in, spec.scheduled_start + timedelta(minutes=50))  # late: EVV-03
    await punch(handle, agency, PunchKind.clock_out, spec.scheduled_end)
    await handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    await handle.execute_update(VisitWorkflow.sign_note, SignNote(actor=agency.actor("clinician"), attestation=True))
    snap = await until(handle, in_state(VisitState.on_hold))
    assert [h.rule_id for h in snap.holds] == ["EVV-03"]
    await handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=snap.holds[0].key, decision="rejected",
        reason="The schedule says 9:00; fix the punch"))
    snap = await until(handle, lambda s: s.holds and s.holds[0].role.value == "clinician")
    assert "rejected by" in snap.holds[0].message
    # The clinician corrects the time beside the original; the correction then needs approval (EVV-04).
    await handle.execute_update(VisitWorkflow.adjust_punch, AdjustPunch(
        actor=agency.actor("clinician"), seq=1, adjusted_at=spec.scheduled_start,
        reason_code=ReasonCode.data_entry_error, now=t0))
    snap = await until(handle, lambda s: [h.rule_id for h in s.holds] == ["EVV-04"])
    assert snap.punches[0].at == spec.scheduled_start + timedelta(minutes=50)  # original kept
    await handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=snap.holds[0].key, decision="approved", reason="Matches the log"))
    await until(handle, in_state(VisitState.claim_ready))
    await record(handle, "rejected_exception_corrected")


async def test_send_back_reopens_the_note_and_the_gates_run_again(client, agency, t0):
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    await until(handle, in_state(VisitState.claim_ready))
    await handle.execute_update(VisitWorkflow.send_back, SendBack(actor=agency.actor("biller"),
                                                                  message="Note says 3 h, visit was 2 h"))
    snap = await until(handle, in_state(VisitState.documented))
    assert snap.tasks[0].kind == "sign_note" and "Note says 3 h" in snap.tasks[0].title
    await handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    await handle.execute_update(VisitWorkflow.sign_note, SignNote(actor=agency.actor("clinician"), attestation=True))
    await until(handle, in_state(VisitState.claim_ready))


# --- timers: reminder, escalation, extension, cancel -----------------------------------------


def notifications(engine, visit_id: str) -> list[str]:
    with Session(engine) as s:
        return [n.kind for n in s.exec(select(Notification).where(Notification.visit_id == visit_id)
                                       .order_by(Notification.id))]


async def test_note_on_time_sends_no_reminder(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=2))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    await until(handle, in_state(VisitState.claim_ready))
    await env.sleep(timedelta(days=3))
    assert notifications(engine, spec.visit_id) == []


async def test_overdue_note_reminds_the_clinician_then_escalates_to_the_supervisor(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=2))  # ends now: note due in 24 h
    handle = await start(client, spec)
    await until(handle, lambda s: s.version >= 1)
    await env.sleep(timedelta(hours=23))
    assert notifications(engine, spec.visit_id) == []
    await env.sleep(timedelta(hours=2))
    await until(handle, lambda s: any(e.kind == "note_reminder" for e in s.timeline))
    assert notifications(engine, spec.visit_id) == ["note_reminder"]
    snap = await state_of(handle)
    assert snap.tasks[0].kind == "write_note" and snap.tasks[0].escalated
    await env.sleep(timedelta(hours=24))
    snap = await until(handle, lambda s: any(t.kind == "note_overdue" for t in s.tasks))
    assert notifications(engine, spec.visit_id) == ["note_reminder", "note_escalation"]
    with Session(engine) as s:
        roles = {t.role.value for t in s.exec(select(VisitTask).where(VisitTask.visit_id == spec.visit_id))}
    assert roles == {"clinician", "supervisor"}
    await record(handle, "note_reminder_escalation")


async def test_supervisor_extension_moves_the_deadline_and_its_escalation(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=2))
    handle = await start(client, spec)
    await env.sleep(timedelta(hours=25))
    await until(handle, lambda s: any(e.kind == "note_reminder" for e in s.timeline))
    new_deadline = (await state_of(handle)).note_deadline + timedelta(days=3)
    err = await rejection(handle.execute_update(VisitWorkflow.extend_deadline, ExtendDeadline(
        actor=agency.actor("supervisor"), stage="note", new_deadline=new_deadline, reason=" ")))
    assert err.type == "Invalid"
    await handle.execute_update(VisitWorkflow.extend_deadline, ExtendDeadline(
        actor=agency.actor("supervisor"), stage="note", new_deadline=new_deadline, reason="Clinician was ill"))
    snap = await state_of(handle)
    assert snap.note_deadline == new_deadline and not snap.tasks[0].escalated
    await env.sleep(timedelta(hours=30))  # past the old escalation time: nothing new
    assert notifications(engine, spec.visit_id) == ["note_reminder"]
    await env.sleep(timedelta(days=2))  # past the new deadline: a fresh reminder
    await until(handle, lambda s: sum(e.kind == "note_reminder" for e in s.timeline) == 2)
    assert notifications(engine, spec.visit_id) == ["note_reminder", "note_reminder"]
    await record(handle, "deadline_extended")


async def test_signature_escalates_like_the_note(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=2),
                       timers=Timers(sign_due=timedelta(hours=4), sign_escalate_after=timedelta(hours=4)))
    handle = await start(client, spec)
    await handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    await env.sleep(timedelta(hours=9))
    await until(handle, lambda s: any(t.kind == "signature_overdue" for t in s.tasks))
    assert notifications(engine, spec.visit_id) == ["signature_reminder", "signature_escalation"]


async def test_cancel_while_waiting_for_the_note_ends_the_visit(client, agency, engine, env, t0):
    spec = agency.spec(t0 + timedelta(hours=20))
    handle = await start(client, spec)
    err = await rejection(handle.execute_update(VisitWorkflow.cancel, Cancel(actor=agency.actor("clinician"),
                                                                             reason="x")))
    assert err.type == "Forbidden"
    await handle.execute_update(VisitWorkflow.cancel, Cancel(actor=agency.actor("admin"), reason="Patient in hospital"))
    result = await handle.result()
    assert result.state == VisitState.cancelled and result.tasks == []
    await record(handle, "cancelled_while_waiting")
    assert notifications(engine, spec.visit_id) == []
    with Session(engine) as s:
        assert s.get(Visit, spec.visit_id).state == "cancelled"


async def test_cancelled_visit_never_becomes_claim_ready(client, agency, t0):
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await deliver(handle, agency, spec, clock_in_where=FAR)
    await until(handle, in_state(VisitState.on_hold))
    await handle.execute_update(VisitWorkflow.cancel, Cancel(actor=agency.actor("supervisor"), reason="Duplicate"))
    result = await handle.result()
    assert result.state == VisitState.cancelled
    assert "claim_ready" not in [e.kind for e in result.timeline]


async def test_reassign_and_reschedule_move_the_work(client, agency, engine, env, t0):
    spec = agency.spec(t0 - timedelta(hours=2))
    handle = await start(client, spec)
    other = agency.users["other"]
    await handle.execute_update(VisitWorkflow.reassign, Reassign(actor=agency.actor("supervisor"),
                                                                 clinician_id=other.clinician_id,
                                                                 reason="Devon is on leave"))
    err = await rejection(handle.execute_update(VisitWorkflow.submit_note, SubmitNote(
        actor=agency.actor("clinician"), fields=NOTE)))
    assert err.type == "Forbidden"
    later = spec.scheduled_start + timedelta(days=1)
    await handle.execute_update(VisitWorkflow.reschedule, Reschedule(
        actor=agency.actor("admin"), scheduled_start=later, scheduled_end=later + timedelta(hours=2),
        reason="Patient asked for Friday"))
    snap = await state_of(handle)
    assert snap.spec.clinician_id == other.clinician_id
    assert snap.note_deadline == later + timedelta(hours=26)
    with Session(engine) as s:
        row = s.get(Visit, spec.visit_id)
        assert row.clinician_id == other.clinician_id and row.service_date == later.date()
    await env.sleep(timedelta(hours=25))  # the old deadline passes: no reminder, the new one is later
    assert notifications(engine, spec.visit_id) == []


# --- the projection itself ------------------------------------------------------------------


async def test_projection_never_moves_a_visit_backwards(client, agency, engine, t0):
    spec = agency.spec(recent(t0))
    handle = await start(client, spec)
    await handle.execute_update(VisitWorkflow.submit_note, SubmitNote(actor=agency.actor("clinician"), fields=NOTE))
    snap = await state_of(handle)
    stale = snap.model_copy(update={"version": 1, "state": VisitState.scheduled})
    VisitActivities(engine).project_visit(stale)  # a late retry of an old write
    VisitActivities(engine).project_visit(snap)  # and a repeat of the newest
    with Session(engine) as s:
        row = s.get(Visit, spec.visit_id)
        assert row.state == "documented" and row.version == snap.version
        seqs = [e.seq for e in s.exec(select(VisitEvent).where(VisitEvent.visit_id == spec.visit_id)
                                      .order_by(VisitEvent.seq))]
        assert seqs == list(range(1, len(snap.timeline) + 1))  # each entry once, none lost


async def test_a_projection_blocked_past_the_local_window_goes_on_as_an_activity(client, agency, engine, t0,
                                                                                  monkeypatch):
    """The database holds the visit's row locked longer than a local activity may run (LOCAL_ACTIVITY_WINDOW,
    shortened here): the projection gives way to an ordinary activity, which waits without growing the history,
    and the visit goes on once the lock is released; the timed-out local attempt, finishing late, writes nothing
    twice."""
    from visitflow.db.session import write_session
    from visitflow.workflows import visit as visit_module

    monkeypatch.setattr(visit_module, "LOCAL_ACTIVITY_WINDOW", timedelta(seconds=1))
    spec = agency.spec(recent(t0))
    handle = await start(client, spec)
    await until(handle, lambda snap: snap.version >= 1)
    with write_session(engine) as s:  # another writer holds the row (on SQLite: the database) for a while
        s.exec(select(Visit).where(Visit.id == spec.visit_id).with_for_update()).one()
        punching = asyncio.create_task(punch(handle, agency, PunchKind.clock_in, spec.scheduled_start))
        await asyncio.sleep(3)
        assert not punching.done()
        s.rollback()
    snap = await asyncio.wait_for(punching, 30)

    events = (await handle.fetch_history()).events
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED] == ["project_visit_changes"]
    with Session(engine) as s:
        row = s.get(Visit, spec.visit_id)
        assert row.version == snap.version and row.snapshot["punches"][0]["kind"] == "clock_in"
        kinds = [e.kind for e in s.exec(select(VisitEvent).where(VisitEvent.visit_id == spec.visit_id)
                                        .order_by(VisitEvent.seq))]
        assert kinds == ["scheduled", "punch"]  # the late local attempt and the activity: one write


def test_service_date_is_the_agency_local_date(agency):
    late_evening = datetime(2026, 11, 21, 3, 30, tzinfo=UTC)  # 21:30 on the 20th in Chicago
    from visitflow.models import service_date

    assert service_date(agency.spec(late_evening, timezone="America/Chicago")) == date(2026, 11, 20)


async def test_documented_duration_outside_the_service_bounds_goes_to_a_supervisor(client, agency, t0):
    spec = agency.spec(recent(t0), minutes_min=150, minutes_max=600)  # DOC-02: this 2-hour visit is too short
    authorize_around(agency, spec)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    snap = await until(handle, in_state(VisitState.on_hold))
    assert [(h.rule_id, h.role.value, h.approvable) for h in snap.holds] == [("DOC-02", "supervisor", True)]
    await handle.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key="DOC-02", decision="approved", reason="Client asked to end early"))
    await until(handle, in_state(VisitState.claim_ready))


async def test_an_action_arriving_with_the_start_comes_after_scheduled_in_the_timeline(client, agency, engine, t0):
    """An Update that reaches a just-started visit in its first workflow task is handled before run() begins."""
    from visitflow.temporal import build_worker

    spec = agency.spec(t0 - timedelta(hours=3))
    queue = f"late-{spec.visit_id}"  # no worker yet: the start and the punch wait together for the first task
    handle = await client.start_workflow(VisitWorkflow.run, spec, id=visit_workflow_id(spec.visit_id),
                                         task_queue=queue)
    punch = asyncio.ensure_future(handle.execute_update(VisitWorkflow.record_punch, RecordPunch(
        actor=agency.actor("clinician"), now=t0,
        punch=PunchInput(kind=PunchKind.clock_in, at=spec.scheduled_start, method=PunchMethod.telephony))))
    await asyncio.sleep(0.5)
    async with build_worker(client, queue, engine):
        snap = await punch
        kinds = [(e.seq, e.kind) for e in snap.timeline]
        assert kinds[:2] == [(1, "scheduled"), (2, "punch")], kinds
        await handle.terminate("test finished")
