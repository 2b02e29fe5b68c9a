"""CHG-01: every change that can move money, what it did to each open visit, and the events other systems get.

Any writer that changes money-moving facts (authorizations, a visit's schedule or clinician, a patient's or payer's
facts, and physician orders when they arrive) calls `record_change` in the transaction that makes the change, then
`announce_change` after it commits: that sends the change id to the open visits it touches (their next gate check
writes its outcome against the change: held, cleared, units moved, with the dollars) and starts one delivery
workflow per active event endpoint.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from visitflow.activities.changes import (
    CHANGE_EVENT,
    EVENT_VERSION,
    OUTCOME_EVENT,
    event_body,  # noqa: F401 (the exact bytes sent; callers read it from here)
    outcome_event,
    start_delivery,
    store_deliveries,
    subscribed_endpoints,
)
from visitflow.db.session import write_session
from visitflow.db.tables import (
    Authorization,
    ChangeRecord,
    ChangeRecordPublic,
    TEST_EVENT_TYPE,
    ChangeVisit,
    EventDelivery,
    EventEndpoint,
    EventEndpointCreate,
    EventEndpointPublic,
    EventEndpointUpdate,
)
from visitflow.models import ReferenceDataChanged, VisitSnapshot
from visitflow.services.commands import act, now_utc, visit_snapshot
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

EVENT_TYPE = CHANGE_EVENT


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

    `endpoint_ids`: the endpoints that asked for change events (`active_endpoints`), when the caller records many
    changes and looked them up once."""
    change = ChangeRecord(at=datetime.now(UTC), actor=actor, kind=kind, subject=subject[:80], summary=summary[:500],
                          fields=fields, patient_id=patient_id, payer_id=payer_id)
    session.add(change)
    session.flush()
    if endpoint_ids is None:
        endpoint_ids = active_endpoints(session)
    for endpoint_id in endpoint_ids:  # stored with the change: a delivery that never started is found again
        session.add(EventDelivery(endpoint_id=endpoint_id, event_id=event_id_of(change.id), event_type=EVENT_TYPE,
                                  change_id=change.id, updated_at=change.at))
    return change


def active_endpoints(session: Session) -> list[int]:
    """The active endpoints that asked for change records."""
    return subscribed_endpoints(session, EVENT_TYPE)


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
    # Once per endpoint per event, ever: a delivery's workflow id is never used again.
    for endpoint_id in endpoint_ids:
        await start_delivery(client, settings.task_queue, endpoint_id, event)


def test_event(endpoint_id: int, event_id: str, sent_by: str, at: datetime) -> dict[str, Any]:
    """An event an admin sends to check an endpoint (README "Change events"): nothing changed."""
    return {"event_id": event_id, "type": TEST_EVENT_TYPE, "version": EVENT_VERSION,
            "occurred_at": at.astimezone(UTC).isoformat(), "endpoint": {"id": endpoint_id}, "sent_by": sent_by}


async def resume_undelivered_events(engine: Engine, client: Client, settings: Settings, limit: int = 1000) -> int:
    """Start the deliveries a process stored and died before starting (run when the worker starts).

    A delivery that did start is refused by its workflow id, so this never sends anything twice."""
    with Session(engine) as s:
        rows = s.exec(select(EventDelivery)
                      .where(EventDelivery.state == "pending", EventDelivery.attempts == 0)
                      .order_by(EventDelivery.change_id).limit(limit)).all()
        change_ids = {r.change_id for r in rows if r.change_id is not None}
        changes = {c.id: c for c in s.exec(select(ChangeRecord).where(ChangeRecord.id.in_(change_ids))).all()}
        events: list[tuple[int, dict[str, Any]]] = []
        for r in rows:
            if r.event_type == OUTCOME_EVENT:
                outcome = s.get(ChangeVisit, (r.change_id, r.visit_id))
                if outcome is None or r.change_id not in changes:
                    continue
                events.append((r.endpoint_id, outcome_event(changes[r.change_id], outcome)))
            elif r.event_type == TEST_EVENT_TYPE:
                events.append((r.endpoint_id, test_event(r.endpoint_id, r.event_id, "visitflow", r.updated_at)))
            elif r.change_id in changes:
                events.append((r.endpoint_id, event_of(changes[r.change_id])))
    for endpoint_id, event in events:
        await start_delivery(client, settings.task_queue, endpoint_id, event)
    return len(events)


# --- event endpoints (the admin's page and /api/event-endpoints both call these) -------------------------


class EndpointAdded(EventEndpointPublic):
    """The answer to adding an endpoint. A secret VisitFlow made is shown here, once, and never again; one the
    admin chose is not repeated back."""

    secret: str | None = None


MADE_SECRET = "whsec_"  # how a secret VisitFlow made begins


def request_key_of(user_id: int | None, key: str | None) -> str | None:
    """Who asked and their Idempotency-Key (or form key), as stored on what the request made."""
    return hashlib.sha256(f"{user_id}:{key}".encode()).hexdigest() if key else None


def list_endpoints(session: Session, limit: int = 500) -> list[EventEndpoint]:
    return list(session.exec(select(EventEndpoint).order_by(EventEndpoint.id).limit(limit)).all())


def get_endpoint(session: Session, endpoint_id: int) -> EventEndpoint:
    endpoint = session.get(EventEndpoint, endpoint_id)
    if endpoint is None:
        raise ServiceError(404, f"event endpoint {endpoint_id} not found")
    return endpoint


def add_endpoint(session: Session, body: EventEndpointCreate, actor: str, request_key: str | None) -> EndpointAdded:
    """A system to receive events, in the caller's transaction (flushed; the caller commits). Without a secret,
    one is made. The same request again (same `request_key`) answers with the endpoint it added, adding nothing."""
    if request_key is not None:
        earlier = session.exec(select(EventEndpoint).where(EventEndpoint.request_key == request_key)).first()
        if earlier is not None:  # the same person's same request: the same answer, the made secret included
            made = earlier.secret if earlier.secret.startswith(MADE_SECRET) else None
            return EndpointAdded(**earlier.model_dump(exclude={"secret"}), secret=made)
    made = None if body.secret else MADE_SECRET + secrets.token_urlsafe(32)
    endpoint = EventEndpoint(url=body.url, description=body.description, active=body.active,
                             event_types=body.event_types, secret=body.secret or made,
                             created_at=datetime.now(UTC), created_by=actor, request_key=request_key)
    session.add(endpoint)
    session.flush()
    return EndpointAdded(**endpoint.model_dump(exclude={"secret"}), secret=made)


def change_endpoint(session: Session, endpoint_id: int, body: EventEndpointUpdate) -> EventEndpoint:
    """Change the URL, secret or event types, or switch it off or on (flushed; the caller commits). Sending the
    same change again leaves it as it is."""
    endpoint = get_endpoint(session, endpoint_id)
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ServiceError(422, "nothing to change: send at least one field")
    for field, value in changes.items():
        if value is None and field != "description":
            raise ServiceError(422, f"{field} cannot be empty", field)
    if changes.get("description") is None and "description" in changes:
        changes["description"] = ""
    endpoint.sqlmodel_update(changes)
    session.add(endpoint)
    session.flush()
    return endpoint


def endpoint_deliveries(session: Session, endpoint_id: int, limit: int = 20) -> list[EventDelivery]:
    """Its most recent deliveries, newest first (read from the endpoint's index range)."""
    return list(session.exec(select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id)
                             .order_by(EventDelivery.updated_at.desc()).limit(limit)).all())


async def send_test_event(engine: Engine, client: Client, settings: Settings, endpoint_id: int, actor: str,
                          request_key: str | None) -> EventDelivery:
    """Send an `endpoint.test` event to one endpoint now, delivered like any other (signed, retried). The same
    request again (same key) is the same event: it is sent once."""
    now = datetime.now(UTC)
    event_id = "test_" + (request_key[:32] if request_key else secrets.token_hex(16))
    with write_session(engine) as s:
        endpoint = get_endpoint(s, endpoint_id)
        if not endpoint.active:
            raise ServiceError(409, f"event endpoint {endpoint_id} is switched off: switch it on to send it events")
        store_deliveries(s, [{"endpoint_id": endpoint_id, "event_id": event_id, "event_type": TEST_EVENT_TYPE,
                              "state": "pending", "attempts": 0, "updated_at": now}])
        s.commit()
    await start_delivery(client, settings.task_queue, endpoint_id, test_event(endpoint_id, event_id, actor, now))
    with Session(engine) as s:
        return s.get(EventDelivery, (endpoint_id, event_id))


# --- reading ---------------------------------------------------------------------------------------


class ChangeFilter(BaseModel):
    payer_id: int | None = None
    patient_id: int | None = None
    since: date | None = None  # days in the agency's time zone (`list_changes` is given it)
    until: date | None = None
    before_id: int | None = None  # keyset: the last id of the previous page


def list_changes(session: Session, f: ChangeFilter, limit: int = 50, zone: str = "UTC") -> list[ChangeRecord]:
    """Newest first, keyset paged by id (ids grow with time): each page is an index range, never an OFFSET.

    `since`/`until` are the agency's days (`zone`): a change at 7 pm in Chicago is on that day, not UTC's next."""
    if f.since and f.until and f.until < f.since:
        raise ServiceError(422, "until must not be before since", "until")
    query = select(ChangeRecord)
    if f.payer_id is not None:
        query = query.where(ChangeRecord.payer_id == f.payer_id)
    if f.patient_id is not None:
        query = query.where(ChangeRecord.patient_id == f.patient_id)
    tz = ZoneInfo(zone)
    if f.since is not None:
        query = query.where(ChangeRecord.at >= datetime.combine(f.since, time(), tz).astimezone(UTC))
    if f.until is not None:
        query = query.where(ChangeRecord.at < datetime.combine(f.until + timedelta(days=1), time(), tz).astimezone(UTC))
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


def holding_changes(session: Session, visit_ids: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """For the visits on a page of holds: the changes that put each back on hold, newest first, as (change id,
    summary, the holds it left) — read from the visit id index, one query for the page."""
    found: dict[str, list[tuple[int, str, str]]] = {}
    if not visit_ids:
        return found
    for visit_id, change_id, summary, detail in session.exec(
            select(ChangeVisit.visit_id, ChangeRecord.id, ChangeRecord.summary, ChangeVisit.detail)
            .join(ChangeRecord, ChangeRecord.id == ChangeVisit.change_id)
            .where(ChangeVisit.visit_id.in_(sorted(set(visit_ids))), ChangeVisit.outcome == "held")
            .order_by(ChangeRecord.id.desc())):
        found.setdefault(visit_id, []).append((change_id, summary, detail or ""))
    return found


def change_behind(found: dict[str, list[tuple[int, str, str]]], visit_id: str, rule_id: str
                  ) -> tuple[int, str] | None:
    """The latest change that put this visit on hold with this rule among its holds, if one did."""
    for change_id, summary, detail in found.get(visit_id, []):
        if rule_id in detail:
            return change_id, summary
    return None


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
