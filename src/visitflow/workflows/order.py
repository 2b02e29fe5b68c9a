"""OrderWorkflow: a physician order sent for signature, chased until it comes back signed or returned (ORD-03).

Why a workflow: the chase lives for weeks (reminders to the office at the agency's interval, one escalation to a
supervisor), and its end (the signature) must reach every visit waiting on it even if the API process that
recorded it dies a moment later. The id comes from the order's id, so the chase is started once per order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from visitflow.activities.orders import OrderActivities
    from visitflow.models import (
        OrderChase,
        OrderNotice,
        OrderOutcome,
        ReturnOrder,
        Role,
        SignOrder,
    )

ACTIVITY_OPTIONS = {
    "start_to_close_timeout": timedelta(seconds=60),
    "heartbeat_timeout": timedelta(seconds=3),
    "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)),
}
# Signalling the visits an order touches: a patient's visits, a few dozen at most; retried until done.
RECHECK_OPTIONS = {
    "start_to_close_timeout": timedelta(minutes=5),
    "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)),
}


def order_workflow_id(order_id: int, entered_at: datetime) -> str:
    """An order's number is unique in its database only; with the moment it was entered, its chase's id is unique
    in Temporal too, so a database restored or started afresh never meets a chase of an older order."""
    entered = entered_at.replace(tzinfo=UTC) if entered_at.tzinfo is None else entered_at.astimezone(UTC)
    return f"order-{order_id}-{entered:%Y%m%d%H%M%S%f}"


def _reject(kind: str, message: str, field: str | None = None) -> ApplicationError:
    return ApplicationError(message, {"field": field}, type=kind, non_retryable=True)


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, chase: OrderChase) -> None:
        self._chase = chase
        self._outcome = OrderOutcome(order_id=chase.order_id, status="sent")
        self._ended = False  # the outcome is written and the visits told

    @workflow.run
    async def run(self, chase: OrderChase) -> OrderOutcome:
        next_reminder = chase.sent_at + chase.remind_every
        escalate_at = chase.sent_at + chase.escalate_after
        while self._outcome.status == "sent":
            now = workflow.now()
            due = next_reminder if self._outcome.escalated else min(next_reminder, escalate_at)
            if due > now:
                try:
                    await workflow.wait_condition(lambda: self._outcome.status != "sent", timeout=due - now)
                    break
                except TimeoutError:
                    pass
            now = workflow.now()
            if not self._outcome.escalated and now >= escalate_at:
                self._outcome.escalated = True
                await self._notice(Role.supervisor, "order_escalation", 1,
                                   f"ORD-03 {chase.title} is still unsigned {self._age()} after it was sent: "
                                   "call the practitioner's office")
            if now >= next_reminder and self._outcome.status == "sent":
                self._outcome.reminders_sent += 1
                await self._notice(Role.admin, "order_reminder", self._outcome.reminders_sent,
                                   f"ORD-03 {chase.title} unsigned for {self._age()}: remind the practitioner")
                next_reminder += chase.remind_every
        await workflow.wait_condition(lambda: self._ended)
        return self._outcome

    def _age(self) -> str:
        days = (workflow.now() - self._chase.sent_at).days
        return f"{days} day{'s' if days != 1 else ''}"

    async def _notice(self, role: Role, kind: str, number: int, message: str) -> None:
        await workflow.execute_activity_method(
            OrderActivities.order_notice,
            OrderNotice(order_id=self._chase.order_id, role=role, kind=kind, message=message, number=number,
                        at=workflow.now()),
            **ACTIVITY_OPTIONS)

    async def _end(self, change: str) -> OrderOutcome:
        visits = await workflow.execute_activity_method(OrderActivities.record_order_outcome, self._outcome,
                                                        **ACTIVITY_OPTIONS)
        if visits:
            await workflow.execute_activity_method(
                OrderActivities.recheck_order_visits, args=[self._chase.order_id, visits, change],
                **RECHECK_OPTIONS)
        self._ended = True
        return self._outcome

    # --- the office's actions: Updates with validators ------------------------------------

    @workflow.update
    async def sign(self, req: SignOrder) -> OrderOutcome:
        self._outcome.status = "signed"
        self._outcome.signed_on = req.signed_on
        self._outcome.by = req.actor.username
        self._outcome.document_ref = req.document_ref
        return await self._end(f"signed {req.signed_on.isoformat()}")

    @sign.validator
    def _validate_sign(self, req: SignOrder) -> None:
        self._require_open_for(req.actor)
        if req.signed_on < self._chase.sent_on:
            raise _reject("Invalid", f"the signature date {req.signed_on.isoformat()} is before the order was sent "
                                     f"({self._chase.sent_on.isoformat()})", "signed_on")
        if req.agency_utc_offset_minutes is not None:  # the agency's today, on the workflow's clock
            today = (workflow.now() + timedelta(minutes=req.agency_utc_offset_minutes)).date()
        else:
            today = workflow.now().date() + timedelta(days=1)
        if req.signed_on > today:
            raise _reject("Invalid", f"the signature date {req.signed_on.isoformat()} is in the future (today is "
                                     f"{today.isoformat()})", "signed_on")

    @workflow.update
    async def return_order(self, req: ReturnOrder) -> OrderOutcome:
        self._outcome.status = "returned"
        self._outcome.by = req.actor.username
        self._outcome.returned_reason = req.reason.strip()
        return await self._end("returned unsigned")

    @return_order.validator
    def _validate_return(self, req: ReturnOrder) -> None:
        self._require_open_for(req.actor)
        if not req.reason.strip():
            raise _reject("Invalid", "say why the practitioner returned the order", "reason")

    def _require_open_for(self, actor) -> None:
        if actor.role != Role.admin:
            raise _reject("Forbidden", f"only the office (an admin) records an order's signature; you are "
                                       f"{actor.role.value}")
        if self._outcome.status != "sent":
            raise _reject("Conflict", f"order {self._chase.order_id} is already {self._outcome.status}")

    @workflow.query
    def outcome(self) -> OrderOutcome:
        return self._outcome
