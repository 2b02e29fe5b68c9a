"""Visits: schedule, act on, look at, release. Reads come from the SQL read model."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field

from visitflow.api.idempotency import Idempotency, IdempotencyDep
from visitflow.services.orders import frequency_warnings, recheck_order_neighbours
from visitflow.deps import (
    MAX_ROW_ID,
    BillerUser,
    CurrentUser,
    RefId,
    SessionDep,
    SettingsDep,
    TemporalDep,
    VisitId,
    let_go,
)
from visitflow.models import (
    Acknowledgement,
    AdjustPunch,
    Cancel,
    Discipline,
    ExtendDeadline,
    Finding,
    MissedReason,
    Note,
    Punch,
    PunchInput,
    ReasonCode,
    Reassign,
    RecordPunch,
    Reschedule,
    ResolveHold,
    Role,
    SendBack,
    Signature,
    SignNote,
    SubmitNote,
    Task,
    TimelineEntry,
    VisitSnapshot,
    VisitState,
    roles_phrase,
    service_date,
)
from visitflow.services import queries
from visitflow.services.access import sees_visit_of
from visitflow.services.claims import VisitClaim, visit_claims
from visitflow.services.changes import act_recording_change
from visitflow.services.commands import (
    ReleaseOutcome,
    ScheduleRequest,
    act,
    actor_of,
    as_utc,
    decide_hold,
    now_utc,
    release_visits,
    schedule_visit,
    visit_snapshot,
)
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

router = APIRouter(prefix="/api", tags=["visit"])



# --- bodies and responses -----------------------------------------------------------------


class VisitCreate(BaseModel):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                           description="Your scheduling system's visit id; a retry with the same id is safe")
    patient_id: RefId
    clinician_id: RefId
    payer_id: RefId
    service_code: str = Field(pattern=r"^[A-Za-z][0-9]{4}$", description="HCPCS code, e.g. T1019")
    modifiers: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9]{2}$")]] = Field(default=[], max_length=4)
    scheduled_start: datetime
    scheduled_end: datetime
    supervisory: bool = Field(default=False, description="SUP-01: an RN's or therapist's supervisory visit of the "
                                                         "patient's aide care")


class VisitPublic(BaseModel):
    id: str
    workflow_id: str
    state: VisitState
    version: int
    patient_id: int
    clinician_id: int
    payer_id: int
    discipline: Discipline
    service_code: str
    modifiers: list[str]
    scheduled_start: datetime
    scheduled_end: datetime
    service_date: date = Field(description="Date of service: the local date of the scheduled start in the "
                                           "visit's zone (what claims, weeks and filters use)")
    gates: dict[str, bool]
    holds: list[Finding]
    tasks: list[Task]
    punches: list[Punch]
    note: Note | None
    signature: Signature | None
    acknowledgements: list[Acknowledgement]
    timeline: list[TimelineEntry]
    note_deadline: datetime | None
    sign_deadline: datetime | None
    billable_units: int | None
    authorization_number: str | None
    release_batch_id: str | None
    released_by: str | None
    released_at: datetime | None
    cancelled_reason: str | None
    missed_reason: MissedReason | None = None  # MV-02
    missed_reason_text: str | None = None
    late_alert_at: datetime | None = None  # MV-01: alerted, no clock-in yet
    supervisory: bool = False  # SUP-01
    temporal_url: str
    # Said when scheduling, the visit is scheduled all the same: e.g. AUTH-03, over the ordered frequency.
    warnings: list[str] = []
    # The claims it was billed on, oldest first, with their state and the payer's answer for its line; for those
    # who see claims (admin, biller), empty for the others.
    claims: list[VisitClaim] = []

    @classmethod
    def of(cls, snap: VisitSnapshot, settings: Settings) -> VisitPublic:
        spec = snap.spec
        wf = visit_workflow_id(spec.visit_id)
        return cls(
            id=spec.visit_id, workflow_id=wf, **spec.model_dump(include={
                "patient_id", "clinician_id", "payer_id", "discipline", "service_code", "modifiers",
                "scheduled_start", "scheduled_end"}),
            **snap.model_dump(include={
                "state", "version", "gates", "holds", "tasks", "punches", "note", "signature", "acknowledgements",
                "timeline", "note_deadline", "sign_deadline", "billable_units", "authorization_number",
                "release_batch_id", "released_by", "released_at", "cancelled_reason", "late_alert_at"}),
            service_date=service_date(spec), missed_reason=snap.missed.reason if snap.missed else None,
            missed_reason_text=snap.missed.reason_text if snap.missed else None, supervisory=spec.supervisory,
            temporal_url=f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{wf}")


class VisitSummary(BaseModel):
    id: str
    state: str
    patient_id: int
    clinician_id: int
    payer_id: int
    service_code: str
    service_date: date
    scheduled_start: datetime
    scheduled_end: datetime
    hold_count: int
    billable_units: int | None
    release_batch_id: str | None
    updated_at: datetime


class VisitPage(BaseModel):
    total: int = Field(description="How many visits match, counted up to 1,000")
    total_capped: bool = Field(description="More than 1,000 match (`total` then says 1000)")
    items: list[VisitSummary]
    next: str | None = Field(description="The next page (the same filters after this page's last visit); "
                                         "absent on the last page")


class AdjustmentBody(BaseModel):
    adjusted_at: datetime
    reason_code: ReasonCode
    reason_text: str | None = Field(default=None, max_length=500)


class NoteBody(BaseModel):
    fields: dict[str, Annotated[str, Field(max_length=20000)]]


class SignatureBody(BaseModel):
    attestation: bool = Field(description="I attest that this note is accurate and that I delivered this visit")


class ExceptionDecisionBody(BaseModel):
    key: str = Field(description="The hold's key, e.g. EVV-02:punch-1")
    decision: str = Field(pattern="^(approved|rejected)$")
    reason: str = Field(min_length=1, max_length=500)


class DeadlineBody(BaseModel):
    stage: str = Field(pattern="^(note|signature)$")
    new_deadline: datetime
    reason: str = Field(min_length=1, max_length=500)


class ReassignBody(BaseModel):
    clinician_id: RefId
    reason: str = Field(min_length=1, max_length=500)


class RescheduleBody(BaseModel):
    scheduled_start: datetime
    scheduled_end: datetime
    reason: str = Field(min_length=1, max_length=500)


class ReasonBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class SendBackBody(BaseModel):
    message: str = Field(min_length=1, max_length=1000)


class ReleaseBody(BaseModel):
    visit_ids: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=500)


# --- helpers ------------------------------------------------------------------------------


async def _run(temporal, settings: Settings, visit_id: str, update: Any, arg: BaseModel,
               idempotency: Idempotency) -> VisitPublic:
    snap = await act(temporal, visit_id, update, arg, idempotency_key=idempotency.key)
    return VisitPublic.of(snap, settings)


# --- routes -------------------------------------------------------------------------------


@router.post("/visits", response_model=VisitPublic, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "The same visit was already scheduled (a retried request)"}})
async def create_visit(body: VisitCreate, request: Request, response: Response, session: SessionDep,
                       temporal: TemporalDep, settings: SettingsDep, user: CurrentUser,
                       idempotency: IdempotencyDep):
    """Schedule a visit: starts its VisitWorkflow (id `visit-<visit id>`)."""
    if user.role not in (Role.admin, Role.supervisor):
        raise HTTPException(403, "only an admin or a supervisor can schedule visits "
                                 f"(you are {roles_phrase([user.role])})")
    snap, created = await schedule_visit(session, temporal, settings, ScheduleRequest(**body.model_dump()),
                                         actor_of(user), idempotency.key)
    if not created:
        response.status_code = status.HTTP_200_OK
    public = VisitPublic.of(snap, settings)
    public.warnings = frequency_warnings(session, snap.spec)
    let_go(session)
    if created:  # AUTH-03: the patient's other visits in the order week may no longer fit
        await recheck_order_neighbours(request.app.state.engine, temporal, snap.spec, None, "visit scheduled")
    return public


def _next_link(request: Request, next_after: str | None) -> str | None:
    """The link to a list's next page: the same query (filters, limit) with the next page's cursor."""
    if not next_after:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "offset")]
    return f"{request.url.path}?{urlencode([*params, ('after', next_after)])}"


@router.get("/visits", response_model=VisitPage)
def list_visits(request: Request, session: SessionDep, user: CurrentUser, settings: SettingsDep,
                state: VisitState | None = None, clinician: Annotated[int | None, Query(le=MAX_ROW_ID)] = None,
                payer: Annotated[int | None, Query(le=MAX_ROW_ID)] = None,
                patient: Annotated[int | None, Query(le=MAX_ROW_ID)] = None, date_from: date | None = None,
                date_to: date | None = None, has_holds: bool | None = None, limit: int = Query(50, ge=1, le=500),
                after: Annotated[str | None, Query(max_length=200, description=(
                    "The cursor from the previous page's `next` link"))] = None,
                offset: Annotated[int | None, Query(include_in_schema=False)] = None):
    """Visits from the read model, the latest scheduled first, `limit` at a time: follow `next` for the rest.
    A clinician only ever sees their own."""
    if offset:
        raise HTTPException(422,
                            "offset paging is not supported: follow the `next` link of each page (its `after` "
                            "cursor), which never skips or repeats a visit while visits are added")
    cursor = None
    if after is not None:
        cursor = queries.decode_cursor(after, datetime, str)
        if cursor is None:
            raise HTTPException(422,
                                "after: not a cursor from this list; use the `next` link of the previous page")
    page = queries.list_visits(session, user, queries.VisitFilter(
        state=state.value if state else None, clinician_id=clinician, payer_id=payer, patient_id=patient,
        date_from=date_from, date_to=date_to, has_holds=has_holds, timezone=settings.agency_timezone), limit, cursor)
    return VisitPage(total=page.total, total_capped=page.total_capped, next=_next_link(request, page.next_after),
                     items=[VisitSummary.model_validate(r, from_attributes=True) for r in page.items])


@router.get("/visits/{visit_id}", response_model=VisitPublic)
async def get_visit(visit_id: VisitId, session: SessionDep, temporal: TemporalDep, settings: SettingsDep,
                    user: CurrentUser):
    """Current state, open holds and tasks, and the timeline of every transition."""
    snap = queries.projected_snapshot(session, visit_id)
    if snap is None:  # scheduled a moment ago; its first projection is on its way
        let_go(session)
        snap = await visit_snapshot(temporal, visit_id)
    if not sees_visit_of(user, snap.spec.clinician_id):
        raise HTTPException(404, f"visit {visit_id} not found")
    answer = VisitPublic.of(snap, settings)
    if user.role in (Role.admin, Role.biller):
        answer.claims = visit_claims(session, visit_id)
    return answer


@router.post("/visits/{visit_id}/punches", response_model=VisitPublic)
async def record_punch(visit_id: VisitId, body: PunchInput, temporal: TemporalDep, settings: SettingsDep,
                       user: CurrentUser, idempotency: IdempotencyDep):
    """Record an EVV clock-in or clock-out. A manual entry needs a reason code (EVV-04)."""
    body = body.model_copy(update={"at": as_utc(body.at)})
    return await _run(temporal, settings, visit_id, VisitWorkflow.record_punch,
                      RecordPunch(actor=actor_of(user), punch=body, now=now_utc()), idempotency)


@router.post("/visits/{visit_id}/punches/{seq}/adjustments", response_model=VisitPublic)
async def adjust_punch(visit_id: VisitId, seq: Annotated[int, Path(ge=1, le=1000)], body: AdjustmentBody,
                       temporal: TemporalDep,
                       settings: SettingsDep, user: CurrentUser,
                       idempotency: IdempotencyDep):
    """Correct a punch's time; the original stays beside the correction (EVV-04, EVV-06)."""
    return await _run(temporal, settings, visit_id, VisitWorkflow.adjust_punch, AdjustPunch(
        actor=actor_of(user), seq=seq, adjusted_at=as_utc(body.adjusted_at), reason_code=body.reason_code,
        reason_text=body.reason_text, now=now_utc()), idempotency)


@router.post("/visits/{visit_id}/note", response_model=VisitPublic)
async def submit_note(visit_id: VisitId, body: NoteBody, temporal: TemporalDep, settings: SettingsDep,
                      user: CurrentUser,
                      idempotency: IdempotencyDep):
    return await _run(temporal, settings, visit_id, VisitWorkflow.submit_note,
                      SubmitNote(actor=actor_of(user), fields=body.fields), idempotency)


@router.post("/visits/{visit_id}/signature", response_model=VisitPublic)
async def sign_note(visit_id: VisitId, body: SignatureBody, temporal: TemporalDep, settings: SettingsDep,
                    user: CurrentUser,
                    idempotency: IdempotencyDep):
    return await _run(temporal, settings, visit_id, VisitWorkflow.sign_note,
                      SignNote(actor=actor_of(user), attestation=body.attestation), idempotency)


@router.post("/visits/{visit_id}/exceptions", response_model=VisitPublic)
async def decide_exception(visit_id: VisitId, body: ExceptionDecisionBody, session: SessionDep, temporal: TemporalDep,
                           settings: SettingsDep, user: CurrentUser,
                           idempotency: IdempotencyDep):
    """Decide a hold, as the role it names (its "who must act"), with a reason: a supervisor approves or rejects an
    EVV or visit-time exception; billing (a supervisor, for EVV codes) clears a payer's denial once it is fixed
    (DEN-01, `"decision": "approved"`). Answers with the visit after the re-check the decision causes."""
    snap = await decide_hold(session, temporal, visit_id, ResolveHold(actor=actor_of(user), **body.model_dump()),
                             idempotency.key)
    return VisitPublic.of(snap, settings)


@router.post("/visits/{visit_id}/deadline", response_model=VisitPublic)
async def extend_deadline(visit_id: VisitId, body: DeadlineBody, temporal: TemporalDep, settings: SettingsDep,
                          user: CurrentUser,
                          idempotency: IdempotencyDep):
    return await _run(temporal, settings, visit_id, VisitWorkflow.extend_deadline, ExtendDeadline(
        actor=actor_of(user), stage=body.stage, new_deadline=as_utc(body.new_deadline), reason=body.reason),
        idempotency)


@router.post("/visits/{visit_id}/reassign", response_model=VisitPublic)
async def reassign(visit_id: VisitId, body: ReassignBody, session: SessionDep, temporal: TemporalDep,
                   settings: SettingsDep, user: CurrentUser,
                   idempotency: IdempotencyDep):
    if queries.clinician(session, body.clinician_id) is None:
        raise HTTPException(422, f"clinician {body.clinician_id} does not exist")
    let_go(session)
    snap = await act_recording_change(  # CHG-01
        session.get_bind(), temporal, settings, visit_id, VisitWorkflow.reassign,
        Reassign(actor=actor_of(user), **body.model_dump()), "visit_reassigned", idempotency.key)
    return VisitPublic.of(snap, settings)


@router.post("/visits/{visit_id}/reschedule", response_model=VisitPublic)
async def reschedule(visit_id: VisitId, body: RescheduleBody, request: Request, session: SessionDep,
                     temporal: TemporalDep, settings: SettingsDep, user: CurrentUser,
                     idempotency: IdempotencyDep):
    let_go(session)
    snap = await act_recording_change(  # CHG-01
        request.app.state.engine, temporal, settings, visit_id, VisitWorkflow.reschedule, Reschedule(
            actor=actor_of(user), scheduled_start=as_utc(body.scheduled_start),
            scheduled_end=as_utc(body.scheduled_end), reason=body.reason), "visit_rescheduled", idempotency.key)
    # AUTH-03: moved into (or out of) an order week, the visit changes which of the others fit the frequency.
    await recheck_order_neighbours(request.app.state.engine, temporal, snap.spec, None, "visit rescheduled")
    return VisitPublic.of(snap, settings)


@router.post("/visits/{visit_id}/cancel", response_model=VisitPublic)
async def cancel(visit_id: VisitId, body: ReasonBody, request: Request, temporal: TemporalDep, settings: SettingsDep,
                 user: CurrentUser,
                 idempotency: IdempotencyDep):
    """Cancel a visit; a cancelled visit never becomes claim-ready."""
    snap = await act(temporal, visit_id, VisitWorkflow.cancel, Cancel(actor=actor_of(user), reason=body.reason),
                     idempotency_key=idempotency.key)
    # AUTH-03: the cancelled visit no longer counts against its order's frequency.
    await recheck_order_neighbours(request.app.state.engine, temporal, snap.spec, "cancelled", "visit cancelled")
    return VisitPublic.of(snap, settings)


@router.post("/visits/{visit_id}/send-back", response_model=VisitPublic)
async def send_back(visit_id: VisitId, body: SendBackBody, temporal: TemporalDep, settings: SettingsDep,
                    user: CurrentUser,
                    idempotency: IdempotencyDep):
    """Send a signed visit back to its clinician with a message; they revise and sign again."""
    return await _run(temporal, settings, visit_id, VisitWorkflow.send_back,
                      SendBack(actor=actor_of(user), message=body.message), idempotency)


@router.post("/releases", response_model=ReleaseOutcome)
async def release(body: ReleaseBody, request: Request, temporal: TemporalDep, settings: SettingsDep,
                  user: BillerUser, idempotency: IdempotencyDep):
    """REL-01: release claim-ready visits into a batch (each visit exactly once), then make its claims (one per
    payer, patient and billing period) and one checked 837P file per payer.

    The batch is stored before any visit is released; with an `Idempotency-Key`, a retry lands in the same
    batch. A visit past its payer's timely filing limit is refused with CLM-07. A file with findings is blocked
    (`files[].valid` false, `findings` in words)."""
    return await release_visits(request.app.state.engine, temporal, settings, body.visit_ids, actor_of(user),
                                idempotency.key)


# --- work queues --------------------------------------------------------------------------


class TaskPublic(BaseModel):
    visit_id: str
    kind: str
    role: Role
    clinician_id: int | None
    title: str
    due_at: datetime | None
    escalated: bool
    hold_key: str | None
    state: str
    service_date: date


class HoldPublic(BaseModel):
    visit_id: str
    rule_id: str
    message: str
    role: Role
    key: str
    approvable: bool
    opened_at: datetime


class WorkQueue(BaseModel):
    role: Role
    tasks: list[TaskPublic]
    holds_by_reason: dict[str, list[HoldPublic]] = {}
    next: str | None = Field(default=None, description=(
        "The next page of tasks and holds (each list after this page's last); absent on the last page"))


class NotificationPublic(BaseModel):
    visit_id: str
    kind: str
    message: str
    created_at: datetime


@router.get("/notifications", response_model=list[NotificationPublic], tags=["task"])
def my_notifications(session: SessionDep, user: CurrentUser, limit: int = Query(50, ge=1, le=500)):
    """Reminders and escalations sent to the caller's role (a clinician: only their own), newest first."""
    return queries.notifications_for(session, user, limit)


@router.get("/tasks", response_model=WorkQueue, tags=["task"])
def my_tasks(request: Request, session: SessionDep, user: CurrentUser, limit: int = Query(50, ge=1, le=500),
             after: Annotated[str | None, Query(max_length=300, description=(
                 "The cursor from the previous page's `next` link"))] = None):
    """The caller's work queue, most urgent first (escalated, then earliest deadline), `limit` tasks at a time
    (and, for billers and supervisors, `limit` open holds by rule): follow `next` for the rest."""
    cursor = None
    if after is not None:
        cursor = queries.decode_work_cursor(after)
        if cursor is None:
            raise HTTPException(422, "after: not a cursor from this queue; use the `next` link of the previous page")
    page = queries.work_queue(session, user, limit, cursor)
    queue = WorkQueue(role=user.role, next=_next_link(request, page.next_after), tasks=[TaskPublic(
        visit_id=t.visit_id, kind=t.kind, role=t.role, clinician_id=t.clinician_id, title=t.title, due_at=t.due_at,
        escalated=t.escalated, hold_key=t.hold_key, state=v.state, service_date=v.service_date) for t, v in page.tasks])
    for h in page.holds:
        queue.holds_by_reason.setdefault(h.rule_id, []).append(HoldPublic.model_validate(h, from_attributes=True))
    return queue
