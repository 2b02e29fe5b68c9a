"""CHG-01: every change that can move money, what it did to each open visit, and the events other systems get.

Any writer that changes money-moving facts (authorizations, a visit's schedule or clinician, a patient's or payer's
facts, and physician orders when they arrive) calls `record_change` in the transaction that makes the change, then
`announce_change` after it commits: that sends the change id to the open visits it touches (their next gate check
writes its outcome against the change: held, cleared, units moved, with the dollars) and starts one delivery
workflow per active event endpoint.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from visitflow.activities.changes import event_body
from visitflow.db.session import write_session
from visitflow.db.tables import (
    Authorization,
    ChangeRecord,
    ChangeRecordPublic,
    ChangeVisit,
    EventDelivery,
    EventEndpoint,
)
from visitflow.models import EventDeliveryRequest, ReferenceDataChanged, VisitSnapshot
from visitflow.services.commands import act, now_utc, visit_snapshot
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.events import EventDeliveryWorkflow, delivery_workflow_id
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

EVENT_VERSION = 1
EVENT_TYPE = "change.recorded"


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Before → after, field by field, for the fields whose value actually changed (JSON-ready)."""
    return [{"field": name, "before": _plain(before.get(name)), "after": _plain(value)}
            for name, value in after.items() if _plain(before.get(name)) != _plain(value)]


def record_change(session: Session, *, actor: str, kind: str, subject: str, summary: str,
                  fields: list[dict[str, Any]], patient_id: int | None = None,
                  payer_id: int | None = None, endpoint_ids: list[int] | None = None) -> ChangeRecord:
    """Store one change record in the caller's transaction (flushed, so its id is known; the caller commits).

    `endpoint_ids`: the active event endpoints, when the caller records many changes and looked them up once."""
    change = ChangeRecord(at=datetime.now(UTC), actor=actor, kind=kind, subject=subject[:80], summary=summary[:500],
                          fields=fields, patient_id=patient_id, payer_id=payer_id)
    session.add(change)
    session.flush()
    if endpoint_ids is None:
        endpoint_ids = active_endpoints(session)
    for endpoint_id in endpoint_ids:  # stored with the change: a delivery that never started is found again
        session.add(EventDelivery(endpoint_id=endpoint_id, event_id=event_id_of(change.id), change_id=change.id,
                                  updated_at=change.at))
    return change


def active_endpoints(session: Session) -> list[int]:
    return list(session.exec(select(EventEndpoint.id).where(EventEndpoint.active)).all())


def event_id_of(change_id: int) -> str:
    return f"chg_{change_id}"


def event_of(change: ChangeRecord) -> dict[str, Any]:
    """The event other systems receive (schema in README.md, "Change events"). Version 1."""
    return {
        "event_id": event_id_of(change.id), "type": EVENT_TYPE, "version": EVENT_VERSION,
        "occurred_at": change.at.astimezone(UTC).isoformat(),
        "change": {"id": change.id, "kind": change.kind, "subject": change.subject, "actor": change.actor,
                   "patient_id": change.patient_id, "payer_id": change.payer_id, "summary": change.summary,
                   "fields": change.fields},
    }


async def announce_change(engine: Engine, client: Client, settings: Settings, change_id: int,
                          touched: list[str], not_checked: list[str] = ()) -> None:
    """After the change committed: note the visits it sent back to their gates, and send its events.

    `not_checked`: visits it touched that have no gate check to run yet (not signed): nothing moved for them."""
    await announce_changes(engine, client, settings, {change_id: (list(touched), list(not_checked))})


async def announce_changes(engine: Engine, client: Client, settings: Settings,
                           touched: dict[int, tuple[list[str], list[str]]]) -> None:
    """`announce_change` for many changes at once (bulk intake): one transaction for all their visit rows."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    with write_session(engine) as s:
        for change_id, (rechecked, not_checked) in touched.items():
            rows = ([{"change_id": change_id, "visit_id": v, "outcome": "pending"} for v in rechecked]
                    + [{"change_id": change_id, "visit_id": v, "outcome": "not_checked"} for v in not_checked])
            if rows:
                # The visit may have written its outcome already: the pending row never overwrites it.
                s.exec(insert(ChangeVisit).values(rows).on_conflict_do_nothing())
                s.exec(update(ChangeRecord).where(ChangeRecord.id == change_id).values(visits_touched=len(rows)))
        s.commit()
        ids = sorted(touched)
        waiting: list[tuple[int, int]] = []
        events: dict[int, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            waiting += s.exec(select(EventDelivery.change_id, EventDelivery.endpoint_id).where(
                EventDelivery.change_id.in_(chunk), EventDelivery.state == "pending")).all()
        needed = sorted({c for c, _ in waiting})
        for i in range(0, len(needed), 500):
            for change in s.exec(select(ChangeRecord).where(ChangeRecord.id.in_(needed[i:i + 500]))).all():
                events[change.id] = event_of(change)
    for change_id, endpoint_id in waiting:
        await start_deliveries(client, settings, events[change_id], [endpoint_id])


async def start_deliveries(client: Client, settings: Settings, event: dict[str, Any],
                           endpoint_ids: list[int]) -> None:
    body = event_body(event)
    for endpoint_id in endpoint_ids:
        try:
            await client.start_workflow(
                EventDeliveryWorkflow.run,
                EventDeliveryRequest(endpoint_id=endpoint_id, event_id=event["event_id"], body=body),
                id=delivery_workflow_id(endpoint_id, event["event_id"]), task_queue=settings.task_queue,
                # Once per endpoint per event, ever: a finished delivery's id is never used again.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            continue


async def resume_undelivered_events(engine: Engine, client: Client, settings: Settings, limit: int = 1000) -> int:
    """Start the deliveries a process stored and died before starting (run when the worker starts).

    A delivery that did start is refused by its workflow id, so this never sends anything twice."""
    with Session(engine) as s:
        rows = s.exec(select(EventDelivery.endpoint_id, EventDelivery.change_id)
                      .where(EventDelivery.state == "pending", EventDelivery.attempts == 0)
                      .order_by(EventDelivery.change_id).limit(limit)).all()
        changes = {c.id: event_of(c) for c in s.exec(
            select(ChangeRecord).where(ChangeRecord.id.in_({r[1] for r in rows}))).all()} if rows else {}
    for endpoint_id, change_id in rows:
        await start_deliveries(client, settings, changes[change_id], [endpoint_id])
    return len(rows)


# --- reading ---------------------------------------------------------------------------------------


class ChangeFilter(BaseModel):
    payer_id: int | None = None
    patient_id: int | None = None
    since: date | None = None  # the agency's dates, taken as UTC days
    until: date | None = None
    before_id: int | None = None  # keyset: the last id of the previous page


def list_changes(session: Session, f: ChangeFilter, limit: int = 50) -> list[ChangeRecord]:
    """Newest first, keyset paged by id (ids grow with time): each page is an index range, never an OFFSET."""
    if f.since and f.until and f.until < f.since:
        raise ServiceError(422, "until must not be before since", "until")
    query = select(ChangeRecord)
    if f.payer_id is not None:
        query = query.where(ChangeRecord.payer_id == f.payer_id)
    if f.patient_id is not None:
        query = query.where(ChangeRecord.patient_id == f.patient_id)
    if f.since is not None:
        query = query.where(ChangeRecord.at >= datetime.combine(f.since, time(), UTC))
    if f.until is not None:
        query = query.where(ChangeRecord.at < datetime.combine(f.until, time(), UTC) + timedelta(days=1))
    if f.before_id is not None:
        query = query.where(ChangeRecord.id < f.before_id)
    return list(session.exec(query.order_by(ChangeRecord.id.desc()).limit(limit)).all())


class ChangeVisitOutcome(BaseModel):
    visit_id: str
    outcome: str
    state_before: str | None
    state_after: str | None
    units_before: int | None
    units_after: int | None
    cents_before: int | None
    cents_after: int | None
    detail: str | None
    checked_at: datetime | None


DETAIL_VISITS = 2000  # one change's page lists this many of its visits


class ChangeDetail(ChangeRecordPublic):
    visits: list[ChangeVisitOutcome] = []


def change_outcomes(session: Session, change_ids: list[int], per_change: int = 20) -> dict[int, list[ChangeVisit]]:
    """The first `per_change` visits of each change (a payer's change may touch thousands; the change's
    `visits_touched` says how many), each read from the primary key's range for that change."""
    return {c: list(session.exec(select(ChangeVisit).where(ChangeVisit.change_id == c)
                                 .order_by(ChangeVisit.visit_id).limit(per_change)).all()) for c in change_ids}


def change_detail(session: Session, change_id: int) -> ChangeDetail:
    change = session.get(ChangeRecord, change_id)
    if change is None:
        raise ServiceError(404, f"change {change_id} not found")
    visits = change_outcomes(session, [change_id], DETAIL_VISITS)[change_id]
    return ChangeDetail(**change.model_dump(), visits=[ChangeVisitOutcome(**v.model_dump()) for v in visits])


def changes_of_visit(session: Session, visit_id: str, limit: int = 50) -> list[tuple[ChangeRecord, ChangeVisit]]:
    """The changes that touched one visit, newest first (the visit page links each)."""
    return list(session.exec(select(ChangeRecord, ChangeVisit)
                             .join(ChangeVisit, ChangeVisit.change_id == ChangeRecord.id)
                             .where(ChangeVisit.visit_id == visit_id).order_by(ChangeRecord.id.desc())
                             .limit(limit)).all())


def deliveries_of(session: Session, change_id: int) -> list[EventDelivery]:
    return list(session.exec(select(EventDelivery).where(EventDelivery.change_id == change_id)
                             .order_by(EventDelivery.endpoint_id)).all())



# --- authorizations ---------------------------------------------------------------------------------------

AUTHORIZATION_FACTS = ("auth_number", "patient_id", "payer_id", "service_code", "modifiers", "start_date",
                       "end_date", "units_per_day", "units_per_week", "units_per_month", "units_total", "active")


def record_authorization_change(session: Session, actor: str, auth: Authorization,
                                before: dict | None, endpoint_ids: list[int] | None = None) -> ChangeRecord | None:
    """CHG-01: an authorization added (before is None), changed, or ended (switched off), in the caller's
    transaction. Returns None when nothing it records actually changed."""
    after = {k: getattr(auth, k) for k in AUTHORIZATION_FACTS}
    moved = field_changes(before or {}, after)
    if not moved:
        return None
    if before is None:
        kind, words = "authorization_added", "added"
    elif before.get("active") and not auth.active:
        kind, words = "authorization_ended", "ended"
    else:
        kind, words = "authorization_changed", "changed: " + ", ".join(
            f"{m['field']} {m['before']} → {m['after']}" for m in moved)
    return record_change(session, actor=actor, kind=kind, subject=f"authorization {auth.id}",
                         summary=f"authorization {auth.auth_number} ({auth.service_code}) {words}", fields=moved,
                         patient_id=auth.patient_id, payer_id=auth.payer_id, endpoint_ids=endpoint_ids)


# --- a visit's own facts ------------------------------------------------------------------------

VISIT_FACTS = ("scheduled_start", "scheduled_end", "clinician_id")
_GATED = {"signed", "authorized", "evv_verified", "claim_ready", "on_hold"}


async def act_recording_change(engine: Engine, client: Client, settings: Settings, visit_id: str, update: Any,
                               arg: BaseModel, kind: str, idempotency_key: str | None = None) -> VisitSnapshot:
    """A visit rescheduled or reassigned (an Update), recorded as a change when it changed anything.

    A retried request (same key) finds nothing different from before and records nothing more."""
    before = await visit_snapshot(client, visit_id)
    after = await act(client, visit_id, update, arg, idempotency_key=idempotency_key)
    fields = field_changes({k: getattr(before.spec, k) for k in VISIT_FACTS},
                           {k: getattr(after.spec, k) for k in VISIT_FACTS})
    if not fields:
        return after
    words = ", ".join(f"{f['field']} {f['before']} → {f['after']}" for f in fields)
    reason = getattr(arg, "reason", "") or ""
    with write_session(engine) as s:
        change = record_change(s, actor=arg.actor.username, kind=kind, subject=f"visit {visit_id}",
                               summary=f"visit {visit_id} {kind.removeprefix('visit_')}: {words}"
                                       + (f" ({reason})" if reason else ""),
                               fields=fields, patient_id=after.spec.patient_id, payer_id=after.spec.payer_id)
        change_id = change.id
        s.commit()
    gated = after.state.value in _GATED
    if gated:
        try:
            await client.get_workflow_handle(visit_workflow_id(visit_id)).signal(
                VisitWorkflow.reference_data_changed,
                ReferenceDataChanged(what=f"visit {visit_id}", change=kind.removeprefix("visit_"), at=now_utc(),
                                     change_id=change_id))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            gated = False
    await announce_change(engine, client, settings, change_id, [visit_id] if gated else [],
                          not_checked=[] if gated else [visit_id])
    return after
