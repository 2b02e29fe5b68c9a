"""CHG-01 side effects: what a change did to each visit it touched, and the change events sent to other systems.

Both are safe to repeat (Temporal retries activities): an outcome is an upsert keyed by change and visit; a
delivery carries the event id the receiver dedupes on, and its workflow stops retrying after the first success.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from visitflow.activities.release import charge_for
from visitflow.db.session import write_session
from visitflow.db.tables import ChangeRecord, ChangeVisit, EventDelivery, EventEndpoint, Payer, Visit
from visitflow.models import ChangeOutcomeReport, EventDeliveryRequest, VisitState

SIGNATURE_HEADER = "X-VisitFlow-Signature"
EVENT_ID_HEADER = "X-VisitFlow-Event-Id"
DELIVERY_TIMEOUT_SECONDS = 10.0
READY = {VisitState.authorized, VisitState.evv_verified, VisitState.claim_ready}
EVENT_VERSION = 1
CHANGE_EVENT = "change.recorded"
OUTCOME_EVENT = "change.visit_outcome"


def outcome_of(report: ChangeOutcomeReport) -> str:
    """In the biller's words: did the change put the visit on hold, clear it, or move its units?"""
    held_before, held_after = report.state_before == VisitState.on_hold, report.state_after == VisitState.on_hold
    if held_after and not held_before:
        return "held"
    if held_before and report.state_after in READY:
        return "cleared"
    if report.units_before is not None and report.units_after != report.units_before:
        return "units_moved"
    return "still_held" if held_after else "still_ready"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 of the exact body bytes with the endpoint's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()



def subscribed_endpoints(session: Session, event_type: str) -> list[int]:
    """The active endpoints that asked for this type of event (endpoints are few: read them all)."""
    return [endpoint_id for endpoint_id, types in session.exec(
        select(EventEndpoint.id, EventEndpoint.event_types).where(EventEndpoint.active).order_by(EventEndpoint.id))
        if event_type in (types or ())]


def outcome_event_id(change_id: int, visit_id: str) -> str:
    """One event per change and visit, ever (visit ids run to 64 characters: a digest keeps the id short)."""
    return f"out_{change_id}_" + hashlib.blake2b(visit_id.encode(), digest_size=8).hexdigest()


def outcome_event(change: ChangeRecord, row: ChangeVisit) -> dict[str, Any]:
    """What one change did to one open visit, once its re-check settled (README "Change events"). Version 1."""
    return {
        "event_id": outcome_event_id(change.id, row.visit_id), "type": OUTCOME_EVENT, "version": EVENT_VERSION,
        "occurred_at": (row.checked_at or change.at).astimezone(UTC).isoformat(),
        "change": {"id": change.id, "kind": change.kind, "subject": change.subject, "actor": change.actor,
                   "patient_id": change.patient_id, "payer_id": change.payer_id, "summary": change.summary},
        "visit": {"id": row.visit_id, "outcome": row.outcome, "state_before": row.state_before,
                  "state_after": row.state_after, "units_before": row.units_before, "units_after": row.units_after,
                  "cents_before": row.cents_before, "cents_after": row.cents_after, "holds": row.detail},
    }


async def start_delivery(client: Client, task_queue: str, endpoint_id: int, event: dict[str, Any]) -> None:
    """Start the one delivery of this event to this endpoint; one that started before (even long finished) is
    refused by its workflow id, so calling this again never sends anything twice."""
    from visitflow.workflows.events import EventDeliveryWorkflow, delivery_workflow_id  # it imports this module

    try:
        await client.start_workflow(
            EventDeliveryWorkflow.run,
            EventDeliveryRequest(endpoint_id=endpoint_id, event_id=event["event_id"], body=event_body(event)),
            id=delivery_workflow_id(endpoint_id, event["event_id"]), task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
    except WorkflowAlreadyStartedError:
        pass


def store_deliveries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Note deliveries to start (pending) in the caller's transaction; ones already noted are left as they are."""
    if rows:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.exec(insert(EventDelivery).values(rows).on_conflict_do_nothing())


class ChangeActivities:
    def __init__(self, engine: Engine, client: Client | None = None, task_queue: str | None = None) -> None:
        self.engine, self.client, self.task_queue = engine, client, task_queue

    def all(self) -> list:
        return [self.record_change_outcomes, self.deliver_event, self.record_delivery]

    @activity.defn(name="record_change_outcomes")
    async def record_change_outcomes(self, report: ChangeOutcomeReport) -> None:
        """Write what the changes did to the visit, and send each outcome to the endpoints that asked for them.

        The outcome and its pending deliveries commit together, so a worker that dies before starting the
        deliveries leaves them for this activity's retry (or the worker's start) to find."""
        events = await asyncio.to_thread(self._write_outcomes, report)
        if self.client is None:
            return  # a worker without a client (none in this app) leaves them to resume_undelivered_events
        for endpoint_id, event in events:
            await start_delivery(self.client, self.task_queue, endpoint_id, event)

    def _write_outcomes(self, report: ChangeOutcomeReport) -> list[tuple[int, dict[str, Any]]]:
        outcome = outcome_of(report)
        now = datetime.now(UTC)
        events: list[tuple[int, dict[str, Any]]] = []
        with write_session(self.engine) as s:
            visit = s.get(Visit, report.visit_id)
            payer = s.get(Payer, visit.payer_id) if visit is not None else None

            def cents(units: int | None) -> int | None:
                if units is None or payer is None or visit is None:
                    return None
                return charge_for(s, payer, visit.service_code, list(visit.modifiers), units)

            before, after = cents(report.units_before), cents(report.units_after)
            detail = "; ".join(report.holds)[:500] or None
            for change_id in report.change_ids:
                row = s.get(ChangeVisit, (change_id, report.visit_id)) or ChangeVisit(
                    change_id=change_id, visit_id=report.visit_id)
                row.sqlmodel_update({
                    "outcome": outcome, "state_before": report.state_before.value,
                    "state_after": report.state_after.value, "units_before": report.units_before,
                    "units_after": report.units_after, "cents_before": before, "cents_after": after,
                    "detail": detail, "checked_at": now})
                s.add(row)
            endpoints = subscribed_endpoints(s, OUTCOME_EVENT) if report.change_ids else []
            if endpoints:
                s.flush()
                deliveries = []
                for change in s.exec(select(ChangeRecord).where(ChangeRecord.id.in_(report.change_ids))).all():
                    event = outcome_event(change, s.get(ChangeVisit, (change.id, report.visit_id)))
                    for endpoint_id in endpoints:
                        deliveries.append({"endpoint_id": endpoint_id, "event_id": event["event_id"],
                                           "event_type": OUTCOME_EVENT, "change_id": change.id,
                                           "visit_id": report.visit_id, "state": "pending", "attempts": 0,
                                           "updated_at": now})
                        events.append((endpoint_id, event))
                store_deliveries(s, deliveries)
            s.commit()
        return events

    @activity.defn(name="deliver_event")
    async def deliver_event(self, endpoint_id: int, event_id: str, body: str) -> int:
        """POST the event once; any answer but 2xx (or no answer) fails the attempt and Temporal retries it."""
        endpoint = await _endpoint(self.engine, endpoint_id)
        if endpoint is None or not endpoint.active:
            raise ApplicationError(f"event endpoint {endpoint_id} is gone or switched off", type="EndpointOff",
                                   non_retryable=True)
        raw = body.encode()
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: event_id,
                   SIGNATURE_HEADER: sign(endpoint.secret, raw)}
        attempt = activity.info().attempt
        try:
            async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS) as http:
                answer = await http.post(endpoint.url, content=raw, headers=headers)
        except httpx.HTTPError as err:
            await _note_attempt(self.engine, endpoint_id, event_id, attempt, None, f"no answer: {err!r}"[:500])
            raise ApplicationError(f"{endpoint.url} did not answer: {err!r}", type="NoAnswer") from None
        if not 200 <= answer.status_code < 300:
            await _note_attempt(self.engine, endpoint_id, event_id, attempt, answer.status_code,
                                f"answered {answer.status_code}: {answer.text[:200]}")
            raise ApplicationError(f"{endpoint.url} answered {answer.status_code}", type="Refused")
        return answer.status_code

    @activity.defn(name="record_delivery")
    def record_delivery(self, endpoint_id: int, event_id: str, state: str, status: int | None,
                        error: str | None) -> None:
        _write_delivery(self.engine, endpoint_id, event_id, state=state, last_status=status,
                        last_error=(error or None) and error[:500],
                        delivered_at=datetime.now(UTC) if state == "delivered" else None)


async def _endpoint(engine: Engine, endpoint_id: int) -> EventEndpoint | None:
    from asyncio import to_thread

    def load():
        from sqlmodel import Session
        with Session(engine) as s:
            found = s.get(EventEndpoint, endpoint_id)
            if found is not None:
                s.expunge(found)
            return found
    return await to_thread(load)


async def _note_attempt(engine: Engine, endpoint_id: int, event_id: str, attempt: int, status: int | None,
                        error: str) -> None:
    from asyncio import to_thread
    await to_thread(_write_delivery, engine, endpoint_id, event_id, attempts=attempt, last_status=status,
                    last_error=error)


def _write_delivery(engine: Engine, endpoint_id: int, event_id: str, **fields) -> None:
    with write_session(engine) as s:
        row = s.get(EventDelivery, (endpoint_id, event_id))
        if row is None:
            return  # stored with the change before its workflow started; nothing to note otherwise
        if row.state == "delivered" and fields.get("state") != "delivered":
            return  # a late note from an earlier failed attempt never hides the success
        fields = {k: v for k, v in fields.items() if v is not None or k in ("last_error",)}
        if "attempts" in fields:
            fields["attempts"] = max(row.attempts, fields["attempts"])
        row.sqlmodel_update({**fields, "updated_at": datetime.now(UTC)})
        s.add(row)
        s.commit()


def event_body(event: dict) -> str:
    """The exact bytes signed and sent: compact, keys sorted, so a receiver can check the signature."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
