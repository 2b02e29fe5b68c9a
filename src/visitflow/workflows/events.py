"""EventDeliveryWorkflow: one change event delivered to one endpoint, exactly once.

Why a workflow per delivery: Temporal keeps the retries (with backoff) going across restarts of every VisitFlow
process, and its id (endpoint + event) can be used only once, ever, so the same event is never sent to the same
endpoint by two deliveries. Inside one delivery, an attempt whose answer was lost may repeat the POST; the event id
header is what the receiver dedupes on. After a 2xx nothing is sent again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from visitflow.activities.changes import ChangeActivities
    from visitflow.models import EventDeliveryRequest

# A receiver that is down is tried again after 2 s, 4 s, 8 s ... then every 10 minutes, for up to three days.
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=10), non_retryable_error_types=["EndpointOff"])
KEEP_TRYING_FOR = timedelta(days=3)
BOOKKEEPING = {"start_to_close_timeout": timedelta(seconds=30),
               "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200),
                                           maximum_interval=timedelta(seconds=10))}


def delivery_workflow_id(endpoint_id: int, event_id: str) -> str:
    return f"event-{endpoint_id}-{event_id}"


@workflow.defn
class EventDeliveryWorkflow:
    @workflow.run
    async def run(self, req: EventDeliveryRequest) -> str:
        try:
            status = await workflow.execute_activity_method(
                ChangeActivities.deliver_event, args=[req.endpoint_id, req.event_id, req.body],
                start_to_close_timeout=timedelta(seconds=30), schedule_to_close_timeout=KEEP_TRYING_FOR,
                retry_policy=DELIVERY_RETRY)
        except ActivityError as err:
            reason = str(err.cause or err)
            await workflow.execute_activity_method(
                ChangeActivities.record_delivery, args=[req.endpoint_id, req.event_id, "given_up", None, reason],
                **BOOKKEEPING)
            return "given_up"
        await workflow.execute_activity_method(
            ChangeActivities.record_delivery, args=[req.endpoint_id, req.event_id, "delivered", status, None],
            **BOOKKEEPING)
        return "delivered"
