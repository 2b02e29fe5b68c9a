"""What a person or a feeding system can do to visits, shared by the REST API and the UI.

Routes translate HTTP to these calls; these calls talk to Temporal and read the SQL read model.
Rejections come back as `ServiceError` with an HTTP-like status and a sentence a person understands.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from visitflow.db.session import write_session
from visitflow.claims.billing import control_number
from visitflow.db.tables import (
    Authorization,
    Claim,
    ClaimLine,
    Clinician,
    Patient,
    Payer,
    ReleaseBatch,
    User,
    Visit,
)
from visitflow.models import (
    END_STATES,
    OPEN_STATES,
    SKILLED_DISCIPLINES,
    Actor,
    AuthorizationChanged,
    Denial,
    DenialKind,
    ReferenceDataChanged,
    ReleaseOutcome,
    ReleaseRequest,
    ResolveHold,
    VisitSnapshot,
    VisitSpec,
    VisitState,
    as_utc,
)
from visitflow.services import queries
from visitflow.services.claims import record_new_claim, set_claim_state
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.release import ReleaseWorkflow, release_workflow_id
from visitflow.workflows.visit import (
    WORKFLOW_TASK_TIMEOUT,
    VisitWorkflow,
    search_attributes_for,
    visit_workflow_id,
)

_STATUS_BY_REJECTION = {"Forbidden": 403, "Conflict": 409, "Invalid": 422}


def actor_of(user: User) -> Actor:
    return Actor(user_id=user.id, username=user.username, role=user.role, clinician_id=user.clinician_id)


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- scheduling ---------------------------------------------------------------------------


class ScheduleRequest(BaseModel):
    id: str | None
    patient_id: int
    clinician_id: int
    payer_id: int
    service_code: str
    modifiers: list[str]
    scheduled_start: datetime
    scheduled_end: datetime
    supervisory: bool = False  # SUP-01: an RN's or therapist's supervisory visit


def visit_id_for(requested: str | None, idempotency_key: str | None) -> str:
    if requested:
        return requested
    if idempotency_key:  # a retried request with the same key lands on the same visit
        return "v" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return "v" + uuid.uuid4().hex[:16]


async def schedule_visit(session: Session, client: Client, settings: Settings, req: ScheduleRequest,
                         actor: Actor, idempotency_key: str | None = None) -> tuple[VisitSnapshot, bool]:
    """Start the visit's workflow. Returns (snapshot, created); a repeat of the same request is not an error."""
    patient = session.get(Patient, req.patient_id)
    clinician = session.get(Clinician, req.clinician_id)
    payer = session.get(Payer, req.payer_id)
    for name, value, found in (("patient", req.patient_id, patient), ("clinician", req.clinician_id, clinician),
                               ("payer", req.payer_id, payer)):
        if found is None:
            raise ServiceError(422, f"{name} {value} does not exist")
    start, end = as_utc(req.scheduled_start), as_utc(req.scheduled_end)
    if end <= start:
        raise ServiceError(422, "scheduled_end must be after scheduled_start")
    if (end - start).total_seconds() > 24 * 3600:
        raise ServiceError(422, "EVV-05 a visit cannot be scheduled for longer than 24 hours")
    if req.supervisory and clinician.discipline not in SKILLED_DISCIPLINES:
        raise ServiceError(422, f"SUP-01 a supervisory visit is made by an RN or a therapist, not by "
                                f"{clinician.discipline.value} {clinician.first_name} {clinician.last_name}",
                           "supervisory")
    bounds = settings.visit_minutes.get(req.service_code.upper())
    spec = VisitSpec(
        visit_id=visit_id_for(req.id, idempotency_key), patient_id=patient.id, clinician_id=clinician.id,
        payer_id=payer.id, discipline=clinician.discipline, service_code=req.service_code.upper(),
        modifiers=[m.upper() for m in req.modifiers], scheduled_start=start, scheduled_end=end,
        timers=settings.timers(), required_note_fields=settings.required_note_fields.get(clinician.discipline, []),
        correction_window_days=payer.correction_window_days, timezone=settings.agency_timezone,
        minutes_min=bounds[0] if bounds else None, minutes_max=bounds[1] if bounds else None,
        scheduled_by=actor.username, late_alert_minutes=payer.late_alert_minutes, supervisory=req.supervisory)
    workflow_id = visit_workflow_id(spec.visit_id)
    session.rollback()  # hold no read transaction across the call to Temporal
    try:
        await client.start_workflow(
            VisitWorkflow.run, spec, id=workflow_id, task_queue=settings.task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT, id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=search_attributes_for(spec, VisitState.scheduled))
    except WorkflowAlreadyStartedError:
        existing = await visit_snapshot(client, spec.visit_id)
        same = existing.spec.model_dump(include=_IDENTITY) == spec.model_dump(include=_IDENTITY)
        if not same:
            raise ServiceError(409, f"visit {spec.visit_id} already exists with different details") from None
        return existing, False
    return VisitSnapshot(spec=spec, state=VisitState.scheduled, version=0), True


# What makes a repeated schedule request "the same visit". A retry of the same request is answered as a success;
# the same id with any of these different is a conflict, never a silent keep-the-old.
_IDENTITY = {"patient_id", "clinician_id", "payer_id", "service_code", "modifiers", "scheduled_start",
             "scheduled_end", "supervisory"}


async def visit_snapshot(client: Client, visit_id: str) -> VisitSnapshot:
    handle = client.get_workflow_handle(visit_workflow_id(visit_id))
    try:
        return await handle.query(VisitWorkflow.snapshot)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ServiceError(404, f"visit {visit_id} not found") from None
        raise


# --- human actions ------------------------------------------------------------------------


def update_id_for(update: Any, actor: Actor, idempotency_key: str | None) -> str | None:
    """The Temporal Update id of a human action: the caller's key, scoped to the action and the person.

    Temporal keeps each Update's outcome by id, also after the visit's workflow has closed, so a retried
    request with the same key gets the first outcome back and the action is never applied twice.
    """
    if idempotency_key is None:
        return None
    scoped = hashlib.sha256(f"{actor.user_id}:{idempotency_key}".encode()).hexdigest()[:32]
    return f"{update.__name__}:{scoped}"


# A visit action normally answers in milliseconds; past this the caller is told to retry with its key.
UPDATE_WAIT = timedelta(seconds=20)
UPDATE_RETRIES = 5  # an open visit that refused an Update in passing is asked again, this many times


class MaybeApplied(ServiceError):
    """No answer in time: the action may or may not have been applied. The same key finds out which."""

    def __init__(self, visit_id: str) -> None:
        super().__init__(503, f"visit {visit_id} did not answer in time; the action may have been applied. "
                              "Send the same request again with the same Idempotency-Key to get its outcome.")


async def act(client: Client, visit_id: str, update: Any, arg: BaseModel, idempotency_key: str | None = None,
              update_id: str | None = None) -> VisitSnapshot:
    """Run one human action (a workflow Update) and return the visit as it is afterwards.

    With an idempotency key (or an explicit `update_id`), a repeat of the same action returns the first
    outcome instead of acting again.
    """
    handle = client.get_workflow_handle(visit_workflow_id(visit_id))
    update_id = update_id or update_id_for(update, arg.actor, idempotency_key)
    for attempt in range(UPDATE_RETRIES + 1):
        try:
            return await handle.execute_update(update, arg, id=update_id, result_type=VisitSnapshot,
                                               rpc_timeout=UPDATE_WAIT)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                facts = dict(cause.details[0]) if cause.details and isinstance(cause.details[0], dict) else {}
                raise ServiceError(_STATUS_BY_REJECTION.get(cause.type or "", 409), cause.message,
                                   facts.pop("field", None), **facts) from None
            raise
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise MaybeApplied(visit_id) from None
        except RPCError as err:
            if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
                raise MaybeApplied(visit_id) from None
            if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise
        # The workflow is gone or closed: say which, and how it ended. A run that is still open refused the
        # Update only in passing (it was being handed to a fresh run, or just starting): the same id again.
        snap = await visit_snapshot(client, visit_id)
        if snap.state not in END_STATES:
            await asyncio.sleep(0.1 * (attempt + 1))
            continue
        raise VisitClosed(snap)
    raise ServiceError(503, f"visit {visit_id} could not take the action just now; send it again with the same "
                            "Idempotency-Key")


# How long an action's answer waits for the workflow's re-check to reach the read model. A decision always
# changes the holds, so its re-check shows up in milliseconds; a re-check that finds nothing new writes nothing,
# and then the answer is the action's own result when this runs out.
RECHECK_WAIT = 2.0


def rechecks(snap: VisitSnapshot) -> bool:
    """Whether the workflow checks the gates again after this action (every action on a signed, open visit)."""
    return snap.signature is not None and snap.state not in END_STATES


async def settled(session: Session, snap: VisitSnapshot, wait: float = RECHECK_WAIT) -> VisitSnapshot:
    """The visit after the action's re-check: the action's Update answers before the workflow re-checks the
    gates, so its snapshot still shows the holds as they were. Waits (bounded) for the read model to move past
    the version the action returned, and answers with that; the action's own snapshot when nothing moved."""
    if not rechecks(snap):
        return snap
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        newer = queries.newer_snapshot(session, snap.spec.visit_id, snap.version)
        session.rollback()  # a fresh read each time, never a transaction held across the wait
        if newer is not None:
            return newer
        if loop.time() >= deadline:
            return snap
        await asyncio.sleep(0.05)


async def decide_hold(session: Session, client: Client, visit_id: str, req: ResolveHold,
                      idempotency_key: str | None = None) -> VisitSnapshot:
    """Approve or reject an exception, or clear a payer's denial once it is fixed (DEN-01), as the role the hold
    names; the answer is the visit after the re-check the decision causes (held still, or ready to bill)."""
    session.rollback()  # hold no read transaction across the call to Temporal
    snap = await act(client, visit_id, VisitWorkflow.resolve_hold, req, idempotency_key=idempotency_key)
    return await settled(session, snap)


class VisitClosed(ServiceError):
    """The visit's workflow has ended (released, cancelled or missed); nothing more can be done to it."""

    def __init__(self, snap: VisitSnapshot) -> None:
        how = (f"released by {snap.released_by} in batch {snap.release_batch_id}"
               if snap.state == VisitState.released else snap.state.value)
        super().__init__(409, f"visit {snap.spec.visit_id} is already {how}")
        self.snapshot = snap


async def reopen_denied_visit(client: Client, task_queue: str, visit_id: str, denial: Denial) -> bool:
    """Send a released visit whose claim line the payer denied back into work: a new run of its workflow,
    started from everything the visit knew, with the denial attached (see VisitWorkflow._reopen_for_denial).

    Safe to repeat: a denial already seen (an 835 imported again, a retried import) changes nothing. Returns
    whether this call reopened the visit.
    """
    handle = client.get_workflow_handle(visit_workflow_id(visit_id))
    try:
        progress = await handle.query(VisitWorkflow.progress)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ServiceError(404, f"visit {visit_id} not found") from None
        raise
    if denial.key in progress.denials_seen:
        return False
    if progress.state != VisitState.released:
        raise ServiceError(409, f"visit {visit_id} is {progress.state.value}, not released: "
                                "only a released visit can come back denied")
    progress.denial = denial
    reopened_as = VisitState.documented if denial.kind == DenialKind.documentation else VisitState.signed
    try:
        await client.start_workflow(
            VisitWorkflow.run, progress, id=visit_workflow_id(visit_id), task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=search_attributes_for(progress.spec, reopened_as))
    except WorkflowAlreadyStartedError:
        return False  # reopened by a concurrent import of the same denial a moment ago
    return True


def release_batch_id(actor: Actor, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "b" + uuid.uuid4().hex[:16]
    return "b" + hashlib.sha256(f"{actor.username}:{idempotency_key}".encode()).hexdigest()[:16]


# A release of a few hundred visits answers within this; a longer one goes on in Temporal, and the same request
# (same Idempotency-Key) asked again later gets its outcome.
RELEASE_WAIT = timedelta(seconds=60)


async def release_visits(engine: Engine, client: Client, settings: Settings, visit_ids: list[str], actor: Actor,
                         idempotency_key: str | None = None) -> ReleaseOutcome:
    """REL-01: release claim-ready visits into a batch, and make the batch's claims and 837P files.

    The batch is stored first, so a visit can never be released into a batch that does not exist. Then a
    ReleaseWorkflow (id from the batch id) releases each visit through its workflow's "release" Update (exactly
    once, whoever asks twice), makes one claim per payer, patient and billing period, and writes one checked
    837P file per payer. A retry with the same key lands in the same batch and joins the same workflow; a batch
    whose API process died is finished by Temporal anyway.
    """
    batch_id = release_batch_id(actor, idempotency_key)
    with write_session(engine) as writer:
        batch = writer.get(ReleaseBatch, batch_id)
        if batch is None:
            stored = queries.visit_ids_as_stored(writer, visit_ids)  # v-8001 is the visit V-8001
            visit_ids = list(dict.fromkeys(stored[v] for v in visit_ids))  # keep order, drop repeats
            batch = ReleaseBatch(id=batch_id, created_by=actor.username, created_at=now_utc(), visit_ids=visit_ids)
            writer.add(batch)
            writer.commit()
        # The batch as first stored: its workflow works on exactly these visits.
        request = _release_request(settings, batch, actor)
    try:
        await _start_release(client, settings, request)
    except WorkflowAlreadyStartedError:
        pass  # finished earlier: its answer is kept with the workflow
    return await release_outcome(client, batch_id)


def _release_request(settings: Settings, batch: ReleaseBatch, actor: Actor) -> ReleaseRequest:
    return ReleaseRequest(batch_id=batch.id, visit_ids=list(batch.visit_ids), actor=actor,
                          agency=settings.agency.model_dump(mode="json") if settings.agency else None,
                          file_blocker=settings.claim_file_blocker(), timezone=settings.agency_timezone)


async def _start_release(client: Client, settings: Settings, request: ReleaseRequest):
    return await client.start_workflow(
        ReleaseWorkflow.run, request, id=release_workflow_id(request.batch_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY, result_type=ReleaseOutcome)


# Claims the payer has on its books: cancelling one takes a frequency 8 claim. One that never reached the payer
# (made and not sent, or refused by the clearinghouse) is simply marked voided.
VOID_BY_FILE = {"paid", "partially_paid", "denied"}
VOID_IN_PLACE = {"created", "held", "rejected"}


async def void_claim(engine: Engine, client: Client, settings: Settings, claim_id: int, actor: Actor,
                     reason: str) -> ReleaseOutcome | None:
    """Cancel a claim whose services should not have been billed: its visits come off it, and a payer that already
    adjudicated it gets a void (frequency 8) naming its number, in an 837P of its own (batch `void-<claim id>`,
    written and checked by a ReleaseWorkflow like any release). Repeating it changes nothing more.

    Returns the void's release outcome (its claim and file), or None when the claim never reached the payer.
    """
    if not reason.strip():
        raise ServiceError(422, "say why the claim is voided", "reason")
    batch_id = f"void-{claim_id}"
    with write_session(engine) as s:
        claim = s.exec(select(Claim).where(Claim.id == claim_id).with_for_update()).first()
        if claim is None:
            raise ServiceError(404, f"claim {claim_id} not found")
        done = claim.state == "voided" or s.get(ReleaseBatch, batch_id) is not None
        if not done and claim.state not in VOID_BY_FILE | VOID_IN_PLACE:
            raise ServiceError(409, f"claim {claim.control_number} is {claim.state}: wait for the payer's answer "
                                    "(a void must name the payer's number for the claim)")
        if not done:
            lines = s.exec(select(ClaimLine).where(ClaimLine.claim_id == claim.id, ClaimLine.live)
                           .order_by(ClaimLine.line_number)).all()
            for line in lines:
                line.live = False
                s.add(line)
            s.flush()
            if claim.state in VOID_BY_FILE:
                s.add(ReleaseBatch(id=batch_id, created_by=actor.username, created_at=now_utc(), visit_ids=[]))
                s.flush()
                void = Claim(control_number=control_number(batch_id, claim.payer_id, claim.patient_id,
                                                           claim.period_start, "8", claim.id),
                             release_batch_id=batch_id, payer_id=claim.payer_id, patient_id=claim.patient_id,
                             period_start=claim.period_start, period_end=claim.period_end, frequency="8",
                             replaces_claim_id=claim.id, state="created", total_cents=claim.total_cents,
                             created_at=now_utc(), created_by=actor.username, state_changed_at=now_utc())
                s.add(void)
                s.flush()
                for number, line in enumerate(lines, start=1):  # the void lists what it cancels; it bills nothing
                    s.add(ClaimLine(claim_id=void.id, line_number=number, visit_id=line.visit_id,
                                    patient_id=line.patient_id, service_date=line.service_date, hcpcs=line.hcpcs,
                                    modifiers=list(line.modifiers), units=line.units,
                                    charge_cents=line.charge_cents, authorization_number=line.authorization_number,
                                    rendering_npi=line.rendering_npi, live=False))
                record_new_claim(s, void, actor.username, f"voids claim {claim.control_number}: {reason.strip()}")
            set_claim_state(s, claim.id, "voided", actor.username, reason.strip())
            s.commit()
        by_file = s.get(ReleaseBatch, batch_id)
        request = _release_request(settings, by_file, actor) if by_file is not None else None
    if request is None:
        return None
    try:
        await _start_release(client, settings, request)
    except WorkflowAlreadyStartedError:
        pass  # voided before: its workflow's answer is kept with it
    return await release_outcome(client, batch_id)


async def resume_unfinished_releases(engine: Engine, client: Client, settings: Settings,
                                     older_than: timedelta = timedelta(minutes=1)) -> list[str]:
    """Start the workflow of every stored batch that never finished and was left alone for `older_than`.

    The one gap Temporal cannot close by itself: the API stored a batch and died before starting its workflow
    (and the biller never retried). Run when the worker starts; a batch whose workflow is running is joined,
    not started twice. Returns the batches it (re)started.
    """
    cutoff = now_utc() - older_than
    with Session(engine) as s:
        waiting = [(b, s.exec(select(User).where(User.username == b.created_by)).first())
                   for b in s.exec(select(ReleaseBatch).where(ReleaseBatch.completed_at.is_(None),
                                                              ReleaseBatch.created_at < cutoff)
                                   .order_by(ReleaseBatch.created_at)).all()]
    resumed = []
    for batch, user in waiting:
        if user is None:
            continue  # the biller's account is gone; nobody can be named as releasing it
        try:
            await _start_release(client, settings, _release_request(settings, batch, actor_of(user)))
        except WorkflowAlreadyStartedError:
            continue  # it finished, and its last step is just being written
        resumed.append(batch.id)
    return resumed


async def release_outcome(client: Client, batch_id: str, wait: timedelta = RELEASE_WAIT) -> ReleaseOutcome:
    """The release's outcome once its workflow has finished; 503 (nothing lost, ask again) after `wait`."""
    # A handle by id, not the one start_workflow returned: the same wait whether this request started the
    # workflow or joined it (and in the tests, a wait that does not set the time-skipping server's clock running).
    handle = client.get_workflow_handle(release_workflow_id(batch_id), result_type=ReleaseOutcome)
    try:
        return await asyncio.wait_for(handle.result(), wait.total_seconds())
    except TimeoutError:
        raise ServiceError(503, f"release batch {batch_id} is still being worked on; nothing is lost. Send the "
                                "same request again with the same Idempotency-Key for its outcome.") from None


# --- AUTH-04 --------------------------------------------------------------------------------


async def recheck_visits_for(session: Session, client: Client, auth: Authorization, change: str,
                             change_id: int | None = None) -> list[str]:
    """AUTH-04: every open visit the authorization touches checks its gates again now."""
    return await _signal_gated_visits(
        session, client, [Visit.patient_id == auth.patient_id, Visit.payer_id == auth.payer_id,
                          Visit.service_code == auth.service_code],
        VisitWorkflow.authorization_changed,
        AuthorizationChanged(authorization_id=auth.id, change=change, at=now_utc(), change_id=change_id))


async def recheck_visits_of(session: Session, client: Client, what: str, condition, change: str,
                            change_id: int | None = None) -> list[str]:
    """A patient's or payer's facts changed (an address, a Medicaid id, EVV settings): re-check its visits."""
    return await _signal_gated_visits(session, client, [condition], VisitWorkflow.reference_data_changed,
                                      ReferenceDataChanged(what=what, change=change, at=now_utc(),
                                                           change_id=change_id))


async def _signal_gated_visits(session: Session, client: Client, conditions: list, signal: Any,
                               payload: BaseModel) -> list[str]:
    # Visits still waiting for a note or signature check the gates when they are signed anyway.
    waiting_for_gates = [s.value for s in OPEN_STATES if s not in (VisitState.scheduled, VisitState.documented)]
    visits = session.exec(select(Visit.id).where(*conditions, Visit.state.in_(waiting_for_gates))).all()
    session.rollback()  # hold no transaction (or write lock) across the calls to Temporal
    signalled = []
    for visit_id in visits:
        handle = client.get_workflow_handle(visit_workflow_id(visit_id))
        try:
            await handle.signal(signal, payload)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # closed since we looked: nothing to re-check
                raise
            continue
        signalled.append(visit_id)
    # Only the visits that got the signal: a change record waits for the outcome of each (CHG-01).
    return signalled
