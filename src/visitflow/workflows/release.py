"""ReleaseWorkflow: a biller's release batch from stored batch to checked 837P files.

Why a workflow: the release is several steps with side effects (each visit's release Update, the claims, the
files), and the API process that asked for it may die between any two. Temporal runs the steps to the end on
whichever worker is alive, so a batch is finished even when nobody retries the request; each step may repeat
(see visitflow.activities.release) and ends the same. The id comes from the batch id, so asking again for the
same batch (a retried request) joins the run that exists instead of starting a second one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from visitflow.activities.release import ReleaseActivities
    from visitflow.models import ReleaseOutcome, ReleaseRequest

RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
# A batch of a few thousand visits takes minutes to release one by one; heartbeats tell a dead worker apart.
LONG_STEP = {"start_to_close_timeout": timedelta(minutes=30), "heartbeat_timeout": timedelta(seconds=20),
             "retry_policy": RETRY}


def release_workflow_id(batch_id: str) -> str:
    return f"release-{batch_id}"


@workflow.defn
class ReleaseWorkflow:
    @workflow.run
    async def run(self, req: ReleaseRequest) -> ReleaseOutcome:
        outcome = await workflow.execute_activity_method(ReleaseActivities.release_batch_visits, req, **LONG_STEP)
        outcome.claims = await workflow.execute_activity_method(
            ReleaseActivities.create_claims, args=[req, outcome.released], **LONG_STEP)
        outcome.files = await workflow.execute_activity_method(ReleaseActivities.write_claim_files, req,
                                                               **LONG_STEP)
        await workflow.execute_activity_method(ReleaseActivities.complete_release_batch, req.batch_id,
                                               **LONG_STEP)
        return outcome
