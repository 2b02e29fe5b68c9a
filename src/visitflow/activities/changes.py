"""CHG-01 side effects: what a change did to each visit it touched, and the change events sent to other systems.

Both are safe to repeat (Temporal retries activities): an outcome is an upsert keyed by change and visit; a
delivery carries the event id the receiver dedupes on, and its workflow stops retrying after the first success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from visitflow.activities.release import charge_for
from visitflow.db.session import write_session
from visitflow.db.tables import ChangeVisit, EventDelivery, EventEndpoint, Payer, Visit
from visitflow.models import ChangeOutcomeReport, VisitState

SIGNATURE_HEADER = "X-VisitFlow-Signature"
EVENT_ID_HEADER = "X-VisitFlow-Event-Id"
DELIVERY_TIMEOUT_SECONDS = 10.0
READY = {VisitState.authorized, VisitState.evv_verified, VisitState.claim_ready}


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



class ChangeActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def all(self) -> list:
        return [self.record_change_outcomes, self.deliver_event, self.record_delivery]

    @activity.defn(name="record_change_outcomes")
    def record_change_outcomes(self, report: ChangeOutcomeReport) -> None:
        outcome = outcome_of(report)
        now = datetime.now(UTC)
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
            s.commit()

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
