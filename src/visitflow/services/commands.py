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
    ClaimEvent,
    ClaimFile,
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
    BackToBilling,
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
from visitflow.services.claims import (
    ALL_VOIDED,
    claim_billing_visits_of,
    lock_claim,
    record_new_claim,
    rewrite_blocked_file,
    set_claim_state,
    take_voided_claim_off_file,
)
from visitflow.services.errors import ServiceError
from visitflow.services.revenue import count_receivable
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


async def send_back_to_billing(client: Client, task_queue: str, visit_id: str, back: BackToBilling,
                               released_in: str) -> bool:
    """Make a released visit claim-ready again after the claim billing it was voided before the payer had it: a new
    run of its workflow from everything it knew (see VisitWorkflow._back_to_billing). Safe to repeat: a visit
    already sent back for this void, or released again since, is left alone. Returns whether this call sent it
    back."""
    handle = client.get_workflow_handle(visit_workflow_id(visit_id))
    try:
        progress = await handle.query(VisitWorkflow.progress)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False  # no workflow (a visit from before workflows kept it): nothing to reopen
        raise ServiceError(503, f"visit {visit_id} could not be sent back to billing just now; void the claim "
                                "again to finish it") from None
    if (back.key in progress.returns_seen or progress.state != VisitState.released
            or progress.release is None or progress.release.batch_id != released_in):
        return False
    progress.back_to_billing = back
    try:
        await client.start_workflow(
            VisitWorkflow.run, progress, id=visit_workflow_id(visit_id), task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=search_attributes_for(progress.spec, VisitState.signed))
    except WorkflowAlreadyStartedError:
        return False  # sent back by a concurrent void a moment ago
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
        else:
            # A retry must ask for what the key first released: the same key with other visits (a form resent
            # after its ticks changed) would otherwise be answered with the first release, as if done.
            stored = queries.visit_ids_as_stored(writer, visit_ids)
            if {stored[v] for v in visit_ids} != set(batch.visit_ids):
                raise ServiceError(422, f"this release was already sent for {', '.join(batch.visit_ids[:5])}"
                                        f"{' and more' if len(batch.visit_ids) > 5 else ''}; reload the page to "
                                        "release other visits (a release key stands for the visits it first "
                                        "released)", "visit_ids")
        # The batch as first stored: its workflow works on exactly these visits.
        request = _release_request(settings, batch, actor)
    return await _release_answer(client, settings, request)


def _release_request(settings: Settings, batch: ReleaseBatch, actor: Actor) -> ReleaseRequest:
    return ReleaseRequest(batch_id=batch.id, visit_ids=list(batch.visit_ids), actor=actor,
                          agency=settings.agency.model_dump(mode="json") if settings.agency else None,
                          file_blocker=settings.claim_file_blocker(), timezone=settings.agency_timezone)


async def _release_answer(client: Client, settings: Settings, request: ReleaseRequest) -> ReleaseOutcome:
    """Start the batch's release workflow, or join it when a retry finds it started (or finished: its answer is
    kept with it), and wait for its answer."""
    try:
        await _start_release(client, settings, request)
    except WorkflowAlreadyStartedError:
        pass
    return await release_outcome(client, request.batch_id)


async def _start_release(client: Client, settings: Settings, request: ReleaseRequest):
    return await client.start_workflow(
        ReleaseWorkflow.run, request, id=release_workflow_id(request.batch_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY, result_type=ReleaseOutcome)


# Claims the payer has on its books: cancelling one takes a frequency 8 claim. One that never reached the payer
# (made and not sent, or refused by the clearinghouse) is simply marked voided.
VOID_BY_FILE = {"paid", "partially_paid", "denied"}
VOID_IN_PLACE = {"created", "held", "rejected"}
# ... and so its visits, on no other live claim, go back to billing (released again, they go on a new claim).
BACK_TO_BILLING_WHEN_VOIDED = VOID_IN_PLACE


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
        claim = lock_claim(s, claim_id)
        done = claim.state == "voided" or s.get(ReleaseBatch, batch_id) is not None
        if not done and claim.state == "replaced":
            newer = s.exec(select(Claim.id, Claim.control_number).where(Claim.replaces_claim_id == claim.id,
                                                                       Claim.frequency == "7")).first()
            where = f"claim {newer[1]} (#{newer[0]})" if newer else "a newer claim"
            raise ServiceError(409, f"claim {claim.control_number} was replaced by {where}, which bills its "
                                    "visits now: void that one instead")
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
            was = claim.state
            set_claim_state(s, claim.id, "voided", actor.username, reason.strip())
            if was in ("created", "rejected"):  # a rejected claim may wait in a new file to be sent again
                take_voided_claim_off_file(s, claim)
            s.commit()
        by_file = s.get(ReleaseBatch, batch_id)
        request = _release_request(settings, by_file, actor) if by_file is not None else None
        # Voided while the payer never had it (its history says so: held, created, or rejected by the 999 /
        # 277CA), an original whose visits were on no other live claim: they go back to billing. Not a 7 or 8:
        # the claim those replace or cancel was adjudicated, and its visits are billed there.
        going_back = s.exec(select(ClaimLine.visit_id, Visit.release_batch_id)
                            .outerjoin(Visit, Visit.id == ClaimLine.visit_id).where(ClaimLine.claim_id == claim.id)
                            .order_by(ClaimLine.line_number)).all() if claim.frequency == "1" and s.exec(
            select(ClaimEvent.id).where(ClaimEvent.claim_id == claim.id,
                                        ClaimEvent.from_state.in_(BACK_TO_BILLING_WHEN_VOIDED),
                                        ClaimEvent.to_state == "voided")).first() else []
        # Each visit by the batch that released it (an unsent claim may have taken a held claim's visits, released
        # in another batch).
        going_back = [(visit_id, released_in or claim.release_batch_id) for visit_id, released_in in going_back]
        back = BackToBilling(key=f"void:{claim.id}", claim_control_number=claim.control_number,
                             reason=reason.strip() or "voided")
        file = s.get(ClaimFile, claim.claim_file_id) if claim.claim_file_id else None
        rewrite = (file is not None and not file.valid and file.submitted_at is None
                   and file.findings != [ALL_VOIDED])
    if rewrite:
        # Written again without the voided claim, after the commit (pyx12 reads the whole file); asked again,
        # the void finishes this if a crash came between.
        try:
            await asyncio.to_thread(rewrite_blocked_file, engine, file.id, settings)
        except ServiceError as err:
            if err.status != 409:
                raise
    if going_back:
        # The claim never reached the payer and was the only claim of its visits: they are billable again.
        # Asked again (Temporal was down, a double click), the visits not yet back go back; none goes twice.
        for visit_id, released_in in going_back:
            await send_back_to_billing(client, settings.task_queue, visit_id, back, released_in)
    if request is None:
        return None
    return await _release_answer(client, settings, request)


# A claim the payer adjudicated (and numbered) takes a replacement; one with the payer and unanswered must wait.
REPLACE_BY_FILE = {"paid", "partially_paid", "denied"}


async def bill_held_claim(engine: Engine, client: Client, settings: Settings, claim_id: int,
                          actor: Actor) -> ReleaseOutcome | None:
    """CLM-05: a held claim's visits bill days of service already on another live claim of the payer (the
    original). They go on that claim, never on a second one:
    - the payer adjudicated the original: a replacement (frequency 7) naming the payer's number carries the
      original's lines and the held claim's, in an 837P of its own (batch `rebill-<held claim id>`, made and
      checked by a ReleaseWorkflow, like a rebilled denial);
    - the original was never sent (in a file not yet uploaded): the payer has nothing to replace, so the held
      lines are added to the original and its file is written again with them; one claim goes out.
    Either way the held claim becomes `replaced`. Asking again changes nothing more and answers the same.

    Returns the replacement's release outcome (its claim and file), or None when the original took the lines.
    """
    batch_id = f"rebill-{claim_id}"
    with write_session(engine) as s:
        held = s.exec(select(Claim).where(Claim.id == claim_id).with_for_update()).first()
        if held is None:
            raise ServiceError(404, f"claim {claim_id} not found")
        done = held.state == "replaced" and s.exec(select(ClaimEvent.id).where(
            ClaimEvent.claim_id == held.id, ClaimEvent.from_state == "held",
            ClaimEvent.to_state == "replaced")).first() is not None
        merged_into = None
        if not done:
            if held.state != "held":
                raise ServiceError(409, f"claim {held.control_number} is {held.state}, not held: only a claim held "
                                        "for CLM-05 is billed on the claim it overlaps")
            lines = s.exec(select(ClaimLine).where(ClaimLine.claim_id == held.id, ClaimLine.live)
                           .order_by(ClaimLine.line_number)).all()
            originals: dict[int, Claim] = {}
            for line in lines:
                other = s.exec(select(Claim).join(ClaimLine, ClaimLine.claim_id == Claim.id).where(
                    ClaimLine.patient_id == line.patient_id, ClaimLine.service_date == line.service_date,
                    ClaimLine.hcpcs == line.hcpcs, ClaimLine.live, Claim.payer_id == held.payer_id,
                    Claim.id != held.id)).first()
                if other is not None:
                    originals[other.id] = other
            if not originals:
                raise ServiceError(409, "no other claim bills these days of service now (the one it overlapped "
                                        "was voided or replaced): void this held claim, and its visits come back "
                                        "to billing to be released like any other")
            if len(originals) > 1:
                names = ", ".join(c.control_number for c in originals.values())
                raise ServiceError(409, f"these visits overlap several claims ({names}): one claim can carry "
                                        "them only if those are one; void this held claim and bill the visits "
                                        "on each claim's replacement")
            [original] = originals.values()
            # Its file, then the claim itself, read afresh under lock: the order marking a file submitted takes
            # them in, so the original cannot be sent while its lines change, and no deadlock.
            if original.claim_file_id is not None:
                s.exec(select(ClaimFile.id).where(ClaimFile.id == original.claim_file_id).with_for_update()).one()
            original = s.exec(select(Claim).where(Claim.id == original.id).with_for_update()
                              .execution_options(populate_existing=True)).one()
            visits = ", ".join(line.visit_id for line in lines)
            if original.state in REPLACE_BY_FILE:
                s.add(ReleaseBatch(id=batch_id, created_by=actor.username, created_at=now_utc(), visit_ids=[]))
                s.flush()
                from visitflow.activities.release import replace_claim  # here: release imports this module

                new = replace_claim(s, batch_id, actor.username, original, {}, lines,
                                    why=f"to bill visits {visits} of held claim {held.control_number} (CLM-05)")
                set_claim_state(s, held.id, "replaced", actor.username,
                                f"its visits are billed on claim {new.control_number}, the replacement "
                                f"(frequency 7) of claim {original.control_number}")
            elif original.state == "created" and original.claim_file_id is not None:
                merged_into = add_lines_to_unsent_claim(s, original, lines, actor.username)
                set_claim_state(s, held.id, "replaced", actor.username,
                                f"its visits are added to claim {original.control_number}, which was not sent "
                                "yet: its file is written again with them")
            else:
                wait = ("it is with the payer and not answered yet: once the 835 answers it, bill these visits "
                        "on its replacement here" if original.state in ("submitted", "accepted") else
                        f"a {original.state} claim cannot be replaced")
                raise ServiceError(409, f"these visits' days are billed on claim {original.control_number}, "
                                        f"and {wait}")
            s.commit()
        else:
            # Asked again: an unsent original that took the lines and whose file a crash left unwritten is
            # written now (it is blocked meanwhile, saying so).
            billed_on = s.get(Claim, claim_billing_visits_of(s, held.id) or 0)
            file = s.get(ClaimFile, billed_on.claim_file_id) if billed_on and billed_on.claim_file_id else None
            if (billed_on is not None and billed_on.state == "created" and file is not None and not file.valid
                    and not file.content and file.submitted_at is None):
                merged_into = file.id
        by_file = s.get(ReleaseBatch, batch_id)
        request = _release_request(settings, by_file, actor) if by_file is not None else None
    if merged_into is not None:
        try:
            await asyncio.to_thread(rewrite_blocked_file, engine, merged_into, settings)
        except ServiceError as err:
            if err.status != 409:
                raise
    if request is None:
        return None
    return await _release_answer(client, settings, request)


def add_lines_to_unsent_claim(s: Session, original: Claim, lines: list[ClaimLine], actor: str) -> int:
    """Move a held claim's lines onto a claim not sent yet (one claim per day of service, CLM-05), and block its
    file until it is written again with them. Returns the file to write."""
    last = s.exec(select(ClaimLine.line_number).where(ClaimLine.claim_id == original.id)
                  .order_by(ClaimLine.line_number.desc())).first() or 0
    moved = []
    for line in lines:
        line.live = False
        s.add(line)
        moved.append(ClaimLine(**line.model_dump(exclude={"id", "claim_id", "line_number", "live", "state",
                                                            "paid_cents", "adjustments"}),
                               claim_id=original.id, line_number=last + len(moved) + 1))
    s.flush()  # the held lines let go of their visits before the original takes them
    s.add_all(moved)
    added = sum(line.charge_cents for line in moved)
    count_receivable(s, original, -1)  # the receivable is counted again at its new total
    original.total_cents += added
    count_receivable(s, original, 1)
    original.period_start = min([original.period_start, *(x.service_date for x in moved)])
    original.period_end = max([original.period_end, *(x.service_date for x in moved)])
    s.add(original)
    s.add(ClaimEvent(claim_id=original.id, at=now_utc(), actor=actor, from_state=original.state,
                     to_state=original.state, note=f"visits {', '.join(x.visit_id for x in moved)} added (CLM-05: "
                                                   "their days of service are billed on this claim only)"))
    file = s.exec(select(ClaimFile).where(ClaimFile.id == original.claim_file_id).with_for_update()).one()
    file.total_cents += added
    file.valid, file.content = False, ""
    file.findings = [f"claim {original.control_number} took the lines of a held claim: the file must be written "
                     "again with them (press Write the file again if this stays)"]
    s.add(file)
    s.flush()
    return file.id


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
