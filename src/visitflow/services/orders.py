"""Physician orders, shared by the REST API and the UI: enter one, change it, record its signature or its return,
list those still waiting for a signature, and warn when a visit is scheduled over the ordered frequency.

An order's row is what the gates read (ORD-01, ORD-02, AUTH-03); its OrderWorkflow chases the signature
(ORD-03) and, when the signature comes back, tells every open visit waiting on it to check its gates again.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, tuple_
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from visitflow.activities.orders import gated_visits_of_order, orders_in_effect, visits_under
from visitflow.db.session import write_session
from visitflow.db.tables import (
    Patient,
    Payer,
    PhysicianOrder,
    PhysicianOrderCreate,
    PhysicianOrderUpdate,
    Visit,
    VisitHold,
)
from visitflow.models import (
    Actor,
    OrderChase,
    OrderOutcome,
    PayerRules,
    ReferenceDataChanged,
    ReturnOrder,
    SignOrder,
    VisitSnapshot,
    VisitSpec,
    VisitState,
    as_utc,
    service_date,
)
from visitflow.rules.claims import npi_is_valid
from visitflow.rules.facts import GateInput, PatientFacts
from visitflow.rules.frequency import FrequencyError, parse_frequency
from visitflow.rules.orders import ORDER_KINDS, auth_03_within_frequency, frequency_for
from visitflow.services.changes import announce_change, field_changes, record_change
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.order import OrderWorkflow, order_workflow_id
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

_STATUS_BY_REJECTION = {"Forbidden": 403, "Conflict": 409, "Invalid": 422}
UPDATE_WAIT = timedelta(seconds=20)


def now_utc() -> datetime:
    return datetime.now(UTC)


def agency_today(settings: Settings) -> date:
    return datetime.now(ZoneInfo(settings.agency_timezone)).date()


# --- entering and changing orders -------------------------------------------------------------


def check_frequencies(lines: list[str]) -> list[str]:
    """Each line read as a frequency (AUTH-03), one line per discipline; the lines as the office typed them."""
    seen: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        try:
            freq = parse_frequency(line)
        except FrequencyError as err:
            raise ServiceError(422, f"frequency line {number}: {err}", "frequencies") from None
        if freq.discipline in seen:
            raise ServiceError(422, f"frequency line {number}: {freq.discipline} is ordered twice "
                                    f"({seen[freq.discipline]!r} and {line.strip()!r}); put it on one line",
                               "frequencies")
        seen[freq.discipline] = line.strip()
    return [line.strip() for line in lines]


def check_order(session: Session, body: PhysicianOrderCreate) -> None:
    if session.get(Patient, body.patient_id) is None:
        raise ServiceError(422, f"patient {body.patient_id} does not exist", "patient_id")
    if not npi_is_valid(body.practitioner_npi):
        raise ServiceError(422, f"NPI {body.practitioner_npi} is not a valid NPI (ten digits with the Luhn check "
                                "digit): check it against the order", "practitioner_npi")
    if body.effective_to is not None and body.effective_to < body.effective_from:
        raise ServiceError(422, "the order cannot end before it takes effect", "effective_to")
    body.frequencies = check_frequencies(body.frequencies)


def order_title(order: PhysicianOrder, patient: Patient | None) -> str:
    who = f" for {patient.first_name} {patient.last_name}" if patient else ""
    return f"{ORDER_KINDS.get(order.kind, 'order')} #{order.id}{who} ({order.practitioner_name})"


def chase_of(order: PhysicianOrder, patient: Patient | None, settings: Settings) -> OrderChase:
    sent_at = datetime.combine(order.sent_on, datetime.min.time(), UTC)
    return OrderChase(order_id=order.id, patient_id=order.patient_id, title=order_title(order, patient),
                      sent_on=order.sent_on, sent_at=sent_at, entered_at=order.created_at,
                      remind_every=settings.order_reminder_every, escalate_after=settings.order_escalate_after)


async def start_chase(client: Client, settings: Settings, chase: OrderChase) -> None:
    """Start the order's chase once; asking again (a retry, a resumed start) joins the one that exists."""
    try:
        await client.start_workflow(
            OrderWorkflow.run, chase, id=order_workflow_id(chase.order_id, chase.entered_at),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A chase that ended signed or returned is never started again; one an operator terminated (or that
            # failed) may be, so a resumed start picks the order up again.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
    except WorkflowAlreadyStartedError:
        pass  # chased and finished already


async def recheck_order_visits(client: Client, order_id: int, visit_ids: list[str], change: str,
                               change_id: int | None = None) -> list[str]:
    """AUTH-04 for orders: each open visit the order touches checks its gates again now (and, with a change
    record, writes what the re-check did against it: CHG-01)."""
    payload = ReferenceDataChanged(what=f"order {order_id}", change=change, at=now_utc(), change_id=change_id)
    for visit_id in visit_ids:
        try:
            await client.get_workflow_handle(visit_workflow_id(visit_id)).signal(
                VisitWorkflow.reference_data_changed, payload)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # closed since we looked: nothing to re-check
                raise
    return visit_ids


def same_order(session: Session, body: PhysicianOrderCreate) -> PhysicianOrder | None:
    """An order already entered with exactly these facts (found by the patient's index)."""
    for order in session.exec(select(PhysicianOrder).where(
            PhysicianOrder.patient_id == body.patient_id, PhysicianOrder.effective_from == body.effective_from)):
        if all(getattr(order, name) == value for name, value in body.model_dump().items()):
            return order
    return None


def new_order(session: Session, body: PhysicianOrderCreate, actor: Actor) -> PhysicianOrder:
    """Store the order (in `session`'s transaction; the caller commits with its answer)."""
    check_order(session, body)
    now = now_utc()
    order = PhysicianOrder.model_validate(body, update={"created_at": now, "updated_at": now,
                                                        "created_by": actor.username, "status": "sent"})
    session.add(order)
    session.flush()
    return order


async def after_order_stored(session: Session, client: Client, settings: Settings, order: PhysicianOrder,
                             change: str, before: tuple[date, date | None] | None = None,
                             change_id: int | None = None) -> list[str]:
    """Start the chase (a new order) and tell the open visits in the order's dates to check their gates."""
    patient = session.get(Patient, order.patient_id)
    chase = chase_of(order, patient, settings) if order.status == "sent" else None
    visits = gated_visits_of_order(session, order, before)
    order_id = order.id
    session.rollback()  # hold no transaction across the calls to Temporal
    if chase is not None:
        await start_chase(client, settings, chase)
    touched = await recheck_order_visits(client, order_id, visits, change, change_id)
    if change_id is not None:
        await announce_change(session.get_bind(), client, settings, change_id, touched)
    return touched


# CHG-01: what of an order can move money.
ORDER_FACTS = ("kind", "frequencies", "effective_from", "effective_to", "sent_on", "status", "signed_on")


def order_facts(order: PhysicianOrder) -> dict:
    return {name: getattr(order, name) for name in ORDER_FACTS}


def record_order_change(session: Session, actor: str, order: PhysicianOrder, before: dict | None):
    """CHG-01: an order entered (before is None) or changed, in the caller's transaction; None if nothing moved."""
    moved = field_changes(before or {}, order_facts(order))
    if not moved:
        return None
    if before is None:
        kind, words = "order_added", f"entered: {', '.join(order.frequencies)}"
    else:
        kind, words = "order_changed", f"changed: {', '.join(m['field'] for m in moved)}"
    return record_change(session, actor=actor, kind=kind, subject=f"order {order.id}",
                         summary=f"order {order.id} ({order.practitioner_name}) {words}", fields=moved,
                         patient_id=order.patient_id)


async def change_order_rechecking(session: Session, client: Client, settings: Settings, order_id: int,
                                  body: PhysicianOrderUpdate, actor: Actor) -> tuple[PhysicianOrder, list[str]]:
    """A frequency change or a new end date, recorded as a change (CHG-01) in the caller's write session and
    committed; then every open visit it touches checks its gates again (AUTH-03/04). Answers the order and the
    visits re-checked. The same change sent again changes nothing more."""
    stored = session.get(PhysicianOrder, order_id)
    prior = order_facts(stored) if stored is not None else None
    order, before = change_order(session, order_id, body, actor)
    change = record_order_change(session, actor.username, order, prior)
    session.commit()
    rechecked = await after_order_stored(session, client, settings, order, "order changed", before,
                                         change_id=change.id if change else None)
    return order, rechecked


def change_order(session: Session, order_id: int, body: PhysicianOrderUpdate,
                 actor: Actor) -> tuple[PhysicianOrder, tuple[date, date | None]]:
    """A frequency change or a new end date; answers the order and its dates before the change."""
    order = session.exec(select(PhysicianOrder).where(PhysicianOrder.id == order_id).with_for_update()).first()
    if order is None:
        raise ServiceError(404, f"order {order_id} not found")
    if order.status == "returned":
        raise ServiceError(409, f"order {order_id} was returned unsigned: enter the corrected order as a new one")
    before = (order.effective_from, order.effective_to)
    fields = body.model_dump(exclude_unset=True)
    if "frequencies" in fields:
        if fields["frequencies"] is None:
            raise ServiceError(422, "an order orders at least one discipline", "frequencies")
        order.frequencies = check_frequencies(fields["frequencies"])
    if "effective_to" in fields:
        if fields["effective_to"] is not None and fields["effective_to"] < order.effective_from:
            raise ServiceError(422, "the order cannot end before it takes effect", "effective_to")
        order.effective_to = fields["effective_to"]
    if "document_ref" in fields:
        order.document_ref = fields["document_ref"]
    order.version += 1
    order.updated_at = now_utc()
    session.add(order)
    session.flush()
    return order, before


# --- signature and return (Updates on the order's workflow) ----------------------------------


def _update_id(name: str, actor: Actor, idempotency_key: str | None) -> str | None:
    if idempotency_key is None:
        return None
    return f"{name}:" + hashlib.sha256(f"{actor.user_id}:{idempotency_key}".encode()).hexdigest()[:32]


async def _order_update(engine: Engine, client: Client, settings: Settings, order_id: int, update, arg,
                        idempotency_key: str | None) -> OrderOutcome:
    with write_session(engine) as s:
        order = s.get(PhysicianOrder, order_id)
        if order is None:
            raise ServiceError(404, f"order {order_id} not found")
        chase = chase_of(order, s.get(Patient, order.patient_id), settings) if order.status == "sent" else None
        status, signed_on, entered_at = order.status, order.signed_on, order.created_at
    if chase is not None:
        await start_chase(client, settings, chase)  # an order whose chase never started (the API died) gets one
    handle = client.get_workflow_handle(order_workflow_id(order_id, entered_at))
    try:
        return await handle.execute_update(update, arg, id=_update_id(update.__name__, arg.actor, idempotency_key),
                                           result_type=OrderOutcome, rpc_timeout=UPDATE_WAIT)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            facts = dict(cause.details[0]) if cause.details and isinstance(cause.details[0], dict) else {}
            raise ServiceError(_STATUS_BY_REJECTION.get(cause.type or "", 409), cause.message,
                               facts.get("field")) from None
        raise
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ServiceError(503, f"order {order_id} did not answer in time; the action may have been applied. "
                                "Send the same request again with the same Idempotency-Key.") from None
    except RPCError as err:
        if err.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise
        done = f"signed on {signed_on.isoformat()}" if status == "signed" and signed_on else status
        raise ServiceError(409, f"order {order_id} is already {done}") from None


async def sign_order(engine: Engine, client: Client, settings: Settings, order_id: int, signed_on: date,
                     document_ref: str | None, actor: Actor, idempotency_key: str | None = None) -> OrderOutcome:
    """ORD-02/03: the signed order came back; the chase ends and the visits waiting on it move on."""
    offset = datetime.now(ZoneInfo(settings.agency_timezone)).utcoffset()
    return await _order_update(engine, client, settings, order_id, OrderWorkflow.sign,
                               SignOrder(actor=actor, signed_on=signed_on, document_ref=document_ref, now=now_utc(),
                                         agency_utc_offset_minutes=int(offset.total_seconds() // 60)),
                               idempotency_key)


async def return_order(engine: Engine, client: Client, settings: Settings, order_id: int, reason: str,
                       actor: Actor, idempotency_key: str | None = None) -> OrderOutcome:
    """The practitioner sent the order back unsigned: it orders nothing any more; its visits re-check."""
    return await _order_update(engine, client, settings, order_id, OrderWorkflow.return_order,
                               ReturnOrder(actor=actor, reason=reason, now=now_utc()), idempotency_key)


async def resume_order_chases(engine: Engine, client: Client, settings: Settings,
                              older_than: timedelta = timedelta(minutes=1)) -> int:
    """Start the chase of every order sent and unsigned whose API process died before starting it.

    Run when the worker starts; a chase that is running is joined, not started twice. Walks only the orders
    still waiting for a signature (the status index), a page at a time.
    """
    cutoff = now_utc() - older_than
    after: tuple[date, int] | None = None
    started = 0
    while True:
        with Session(engine) as s:
            query = select(PhysicianOrder).where(PhysicianOrder.status == "sent",
                                                 PhysicianOrder.created_at < cutoff)
            if after is not None:
                query = query.where(tuple_(PhysicianOrder.sent_on, PhysicianOrder.id) > after)
            page = s.exec(query.order_by(PhysicianOrder.sent_on, PhysicianOrder.id).limit(200)).all()
            chases = [chase_of(o, s.get(Patient, o.patient_id), settings) for o in page]
        for chase in chases:
            await start_chase(client, settings, chase)
            started += 1
        if len(page) < 200:
            return started
        after = (page[-1].sent_on, page[-1].id)


# --- orders pending signature -------------------------------------------------------------------


@dataclass
class PendingOrder:
    order: PhysicianOrder
    patient_name: str
    age_days: int
    visits_waiting: int
    dollars_waiting_cents: int


def pending_orders(session: Session, today: date, limit: int = 50,
                   after: tuple[date, int] | None = None) -> list[PendingOrder]:
    """Orders sent and not signed, oldest first (keyset paging on sent date and id), with what waits on them.

    "Waiting" is every open visit held by ORD-02 on the order (its hold key names the order), valued at the
    payer's rate for its billable units: found through the hold-key index, one grouped query for the page.
    """
    query = select(PhysicianOrder, Patient.first_name, Patient.last_name).join(
        Patient, Patient.id == PhysicianOrder.patient_id).where(PhysicianOrder.status == "sent")
    if after is not None:
        query = query.where(tuple_(PhysicianOrder.sent_on, PhysicianOrder.id) > after)
    rows = session.exec(query.order_by(PhysicianOrder.sent_on, PhysicianOrder.id).limit(limit)).all()
    keys = {f"ORD-02:order-{o.id}": o.id for o, _, _ in rows}
    waiting: dict[int, tuple[int, int]] = {}
    if keys:
        value = func.coalesce(Visit.billable_units, 0) * Payer.rate_per_unit_cents
        for key, count, cents in session.exec(
                select(VisitHold.key, func.count(VisitHold.id), func.coalesce(func.sum(value), 0))
                .join(Visit, Visit.id == VisitHold.visit_id).join(Payer, Payer.id == Visit.payer_id)
                .where(VisitHold.key.in_(list(keys))).group_by(VisitHold.key)).all():
            waiting[keys[key]] = (int(count), int(cents))
    return [PendingOrder(order=o, patient_name=f"{first} {last}", age_days=(today - o.sent_on).days,
                         visits_waiting=waiting.get(o.id, (0, 0))[0],
                         dollars_waiting_cents=waiting.get(o.id, (0, 0))[1])
            for o, first, last in rows]


# --- AUTH-03 at scheduling time --------------------------------------------------------------


def frequency_warnings(session: Session, spec: VisitSpec) -> list[str]:
    """Scheduling over the ordered frequency is allowed (plans change) but said at once: the visit would be held
    when documented unless the order changes (AUTH-03)."""
    day = service_date(spec)
    orders = orders_in_effect(session, spec.patient_id, day)
    if not any(frequency_for(o, spec.discipline) for o in orders):
        return []
    patient = session.get(Patient, spec.patient_id)
    ctx = GateInput(visit=VisitSnapshot(spec=spec, state=VisitState.scheduled, version=0),
                    patient=PatientFacts(patient_id=patient.id, medicaid_id=patient.medicaid_id,
                                         service_location=None),
                    payer=PayerRules(), authorizations=[], orders=orders,
                    ordered_visits=visits_under(session, spec.patient_id, orders))
    # AUTH-03 reads no payer setting: the payer's rules are left at their defaults.
    return [f.message + "; the visit is scheduled, and will be held when documented unless the order changes"
            for f in auth_03_within_frequency(ctx)]


# How long a scheduling or cancelling request waits for the visit's first projection before re-checking the
# other visits under the same order; the projection normally follows the workflow's start within milliseconds.
NEIGHBOURS_WAIT = timedelta(seconds=5)


async def recheck_order_neighbours(engine: Engine, client: Client, spec: VisitSpec, state: str | None,
                                   change: str) -> list[str]:
    """AUTH-03 counts every visit of the order week: a visit scheduled (or cancelled) there changes which of the
    patient's other visits fit the frequency, so those already checking their gates check again (AUTH-04).

    They count from the read model, so this waits (briefly) until the visit is in it as `state` (None: there at
    all). Nothing to do, and no wait, when no order with a frequency covers the visit or no other visit of the
    patient in the order's dates is past its signature. A rescheduled visit is waited for at its new start.
    """
    day = service_date(spec)
    with Session(engine) as s:
        covering = [o for o in orders_in_effect(s, spec.patient_id, day) if frequency_for(o, spec.discipline)]
        others = sorted({v for o in covering for v in gated_visits_of_order(s, o) if v != spec.visit_id})
    if not others:
        return []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NEIGHBOURS_WAIT.total_seconds()
    while loop.time() < deadline:
        with Session(engine) as s:
            projected = s.exec(select(Visit.state, Visit.scheduled_start).where(Visit.id == spec.visit_id)).first()
        if (projected is not None and (state is None or projected[0] == state)
                and as_utc(projected[1]) == as_utc(spec.scheduled_start)):
            break
        await asyncio.sleep(0.05)
    return await recheck_order_visits(client, covering[0].id, others, change)
