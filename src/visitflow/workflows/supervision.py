"""SupervisionWorkflow: one per patient whose aide care is supervised (SUP-01).

It keeps two durable timers on the patient's supervisory-visit due date: a prompt to the supervising clinician and
the supervisors some days ahead, and an escalation when the date passes (from then on the SUP-01 gate holds the
patient's later aide visits). When a supervisory visit is documented, or the plan changes, it is told (`reload`)
and re-arms from the record. The record itself (`patientsupervision`) is the source of truth; this workflow only
times it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from visitflow.activities.supervision import SupervisionActivities
    from visitflow.models import SupervisionAlert

ACTIVITY_OPTIONS = {"start_to_close_timeout": timedelta(seconds=60), "heartbeat_timeout": timedelta(seconds=10)}
# A year of a 14-day cycle is ~26 prompts and lapses; past this the workflow goes on in a fresh run.
FRESH_RUN_AFTER_EVENTS = 1000


@workflow.defn
class SupervisionWorkflow:
    def __init__(self) -> None:
        self._reloads = 0

    @workflow.run
    async def run(self, patient_id: int) -> None:
        while True:
            status = await workflow.execute_activity_method(
                SupervisionActivities.supervision_status, patient_id, **ACTIVITY_OPTIONS)
            if status is None:
                return  # the patient's supervision is no longer tracked
            now = workflow.now()
            if not status.lapsed and now >= status.lapse_at:
                await self._alert(status, "lapse")
                continue
            if not status.prompted and not status.lapsed and now >= status.prompt_at:
                await self._alert(status, "prompt")
                continue
            if not status.prompted and not status.lapsed:
                wake_at = status.prompt_at
            elif not status.lapsed:
                wake_at = status.lapse_at
            else:
                wake_at = None  # lapsed and escalated: wait for the supervisory visit (or a plan change)
            seen = self._reloads
            info = workflow.info()
            if info.get_current_history_length() > FRESH_RUN_AFTER_EVENTS or info.is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(patient_id)
            try:
                await workflow.wait_condition(lambda: self._reloads != seen,
                                              timeout=(wake_at - now) if wake_at is not None else None)
            except TimeoutError:
                pass

    async def _alert(self, status, kind: str) -> None:
        await workflow.execute_activity_method(
            SupervisionActivities.supervision_alert,
            SupervisionAlert(patient_id=status.patient_id, due_on=status.due_on, kind=kind), **ACTIVITY_OPTIONS)

    @workflow.signal
    def reload(self) -> None:
        """The record changed (a supervisory visit was documented, the plan was set): re-arm from it."""
        self._reloads += 1
