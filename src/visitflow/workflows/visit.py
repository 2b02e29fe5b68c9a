"""VisitWorkflow: one visit from schedule to release.

scheduled -> documented -> signed -> (authorized -> evv_verified) -> claim_ready -> released,
with `on_hold` whenever a gate finds an open problem, and `cancelled` from anywhere before release.

Deterministic orchestration only: every side effect (database, notifications) is an activity.
Human actions are Updates whose validators reject bad input before anything is written to
history; system events (an authorization changed) are Signals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from visitflow.activities.changes import ChangeActivities
    from visitflow.activities.visits import VisitActivities
    from visitflow.models import (
        END_STATES,
        HOLD_DECIDERS,
        REASONS_NEEDING_TEXT,
        SKILLED_DISCIPLINES,
        Acknowledgement,
        Actor,
        AdjustPunch,
        AuthorizationChanged,
        Cancel,
        ChangeOutcomeReport,
        Decision,
        DenialKind,
        ExtendDeadline,
        Finding,
        MarkMissed,
        MissedReason,
        Note,
        NotificationRequest,
        PayerRules,
        Punch,
        PunchKind,
        PunchMethod,
        Reassign,
        RecordPunch,
        ReferenceDataChanged,
        Release,
        Reschedule,
        ResolveHold,
        Role,
        SendBack,
        Signature,
        SignNote,
        SubmitNote,
        SupervisoryVisitDocumented,
        Task,
        TimelineEntry,
        VisitProgress,
        VisitSnapshot,
        VisitSpec,
        VisitState,
        roles_phrase,
        service_date,
    )
    from visitflow.rules.evv import evv_06_correction_allowed

# Custom search attributes, registered by `visitflow up` (and docker-compose) on the server.
VISIT_STATE = SearchAttributeKey.for_keyword("VisitState")
VISIT_CLINICIAN = SearchAttributeKey.for_keyword("VisitClinician")
VISIT_PAYER = SearchAttributeKey.for_keyword("VisitPayer")
VISIT_SERVICE_DATE = SearchAttributeKey.for_datetime("VisitServiceDate")
SEARCH_ATTRIBUTES = {  # name -> type, for `temporal server start-dev --search-attribute`
    "VisitState": "Keyword", "VisitClinician": "Keyword", "VisitPayer": "Keyword",
    "VisitServiceDate": "Datetime",
}

# CHG-01: a visit that a recorded change reached writes what its next gate check found against that change.
CHANGE_FEED = "change-feed"

# Activities take milliseconds but may queue for the database under load: a generous start-to-close, and a
# short heartbeat timeout (they heartbeat every second while running) so that when a worker dies, the activity
# it was running moves to another worker within seconds.
ACTIVITY_OPTIONS = {
    "start_to_close_timeout": timedelta(seconds=60),
    "heartbeat_timeout": timedelta(seconds=3),
    "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)),
}
# Local activities (LOCAL_PROJECTIONS) run inside a workflow task. One that queues for the database longer than
# WORKFLOW_TASK_TIMEOUT keeps its task alive (the SDK heartbeats the task, 3 history events each time); retries
# back off in the worker. If the worker dies mid-projection, its workflow task times out and another worker
# replays the visit and runs the projection again: the projection is version-checked in the database, so a
# write that did land is not made twice. A local activity still failing after LOCAL_ACTIVITY_WINDOW (the
# database down, say) gives way to the same activity as an ordinary one, which retries for as long as it takes
# without adding to the history (task heartbeats for hours would).
LOCAL_ACTIVITY_WINDOW = timedelta(seconds=30)
# A workflow task is milliseconds of work; if the worker running it dies, another worker retries it after this.
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=5)
# Past this many history events a visit goes on in a fresh run (continue-as-new), carrying its VisitProgress.
FRESH_RUN_AFTER_EVENTS = 2000
EARLIER_ACTIONS_KEPT = 500
# Visits started (or first acted on) by code with this patch write a leaner history: each projection carries
# only the timeline entries the read model does not have yet, and the state search attribute is set once per
# transition. Older visits replay as they ran.
LEAN_LIFECYCLE = "lean-lifecycle"
# Visits started by code with this patch run their projections and gate checks as local activities: a few
# milliseconds of SQL in the worker that holds the visit, recorded as one marker event each (their inputs are
# not kept in history), with no activity task going through the server. An Update then completes in the
# workflow task that accepted it. It implies the lean lifecycle; older visits replay as they ran.
LOCAL_PROJECTIONS = "local-projections"
# MV-01: visits scheduled with a late-alert setting wait for their clock-in on a timer of their own; SUP-01: a
# supervisory visit tells the patient's supervision workflow when it is documented. Older visits replay as they ran.
MISSED_VISITS = "missed-visits"
SUPERVISORY = "supervisory"

# Update rejections carry one of these types; the API maps them to HTTP status codes.
FORBIDDEN = "Forbidden"  # 403: wrong role, wrong clinician
CONFLICT = "Conflict"  # 409: not allowed in the visit's current state
INVALID = "Invalid"  # 422: the request itself is incomplete or inconsistent

PUNCH_CLOCK_SKEW = timedelta(minutes=5)  # a device clock may run a little ahead of the server


def visit_workflow_id(visit_id: str) -> str:
    return f"visit-{visit_id}"


def search_attributes_for(spec: VisitSpec, state: VisitState) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(VISIT_STATE, state.value),
        SearchAttributePair(VISIT_CLINICIAN, str(spec.clinician_id)),
        SearchAttributePair(VISIT_PAYER, str(spec.payer_id)),
        SearchAttributePair(VISIT_SERVICE_DATE, spec.scheduled_start),
    ])


def _reject(kind: str, message: str, field: str | None = None, **facts) -> ApplicationError:
    """A refused action: its kind (-> HTTP status), the reason in words, and as data the field it is about
    (named as in the request), so a form shows the reason next to that field without reading the words."""
    return ApplicationError(message, {"field": field, **facts}, type=kind, non_retryable=True)


@workflow.defn
class VisitWorkflow:
    @workflow.init
    def __init__(self, start: VisitSpec | VisitProgress) -> None:
        # A new visit starts from what was scheduled; a visit going on in a fresh run (continue-as-new) from
        # everything it knew. All of it lives in one model.
        carried = start if isinstance(start, VisitProgress) else None
        self._visit = carried or VisitProgress(spec=start)
        spec = self._visit.spec
        self._wake = 0  # bumped when a deadline moves, so a waiting stage recomputes its timers
        self._actions_this_run: list[str] = []  # Update ids, carried into a fresh run (never applied twice)
        self._fresh_runs_allowed: bool | None = None  # decided (a patch) when the history first grows long
        self._lifecycle: str | None = None  # "local", "lean" or "full" (patches), decided at the first projection
        self._late_alerts: bool | None = None  # MISSED_VISITS, decided when a late alert is first due
        self._projected_upto = 0  # the last timeline entry the read model has (this run's projections)
        # One projection at a time, so the read model sees versions in order and rows never race.
        self._projecting = asyncio.Lock()
        released = carried is not None and carried.state == VisitState.released
        # Asked first: a visit once denied keeps its denial, and must not be reopened for it a second time.
        back_to_billing = released and carried.back_to_billing is not None
        self._reopened = released and (back_to_billing or carried.denial is not None)
        if back_to_billing:
            self._back_to_billing()
        elif self._reopened:
            self._reopen_for_denial()
        if carried is None:
            # Logged here, not in run(): an Update that arrives with the first workflow task is handled before
            # run() starts, and its timeline entry must still come after "scheduled".
            self._log(spec.scheduled_by, "scheduled",
                      f"{spec.service_code} {spec.scheduled_start:%Y-%m-%d %H:%M}-{spec.scheduled_end:%H:%M} UTC")

    # --- main flow ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: VisitSpec | VisitProgress) -> VisitSnapshot:
        if isinstance(start, VisitSpec) or self._reopened:
            await self._project()  # a new visit, or one a payer's denial sent back: the read model shows it now
        while not self._finished:
            if self._fresh_run_due():
                # Let running actions finish, then go on in a fresh run with everything the visit knows.
                await workflow.wait_condition(workflow.all_handlers_finished)
                if not self._finished:
                    workflow.continue_as_new(self._carry_over(),
                                             search_attributes=workflow.info().typed_search_attributes)
            if self._visit.note is None:
                await self._wait_for_stage("note", lambda: self._visit.note is not None)
            elif self._visit.signature is None:
                await self._wait_for_stage("signature", lambda: self._visit.signature is not None)
            else:
                await self._check_gates()
        # Let in-flight handlers (e.g. the release that finished us) write their projections.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._snapshot()

    def _fresh_run_wanted(self) -> bool:
        """The history is long (a visit held for months re-checks every few hours). Pure: used in waits."""
        if self._fresh_runs_allowed is False:
            return False
        info = workflow.info()
        return info.get_current_history_length() >= FRESH_RUN_AFTER_EVENTS or info.is_continue_as_new_suggested()

    def _fresh_run_due(self) -> bool:
        """Whether to go on in a fresh run now: the history is long, and this visit's code may (patch)."""
        if not self._fresh_run_wanted():
            return False
        if self._fresh_runs_allowed is None:  # asked once, when the history first grows long
            self._fresh_runs_allowed = workflow.patched("continue-as-new")
        return self._fresh_runs_allowed

    def _carry_over(self) -> VisitProgress:
        carried = self._visit.model_copy()
        carried.earlier_actions = [*self._visit.earlier_actions, *self._actions_this_run][-EARLIER_ACTIONS_KEPT:]
        return carried

    def _reopen_for_denial(self) -> None:
        """The payer denied this released visit's claim line: back into work, with the reasons in front of whoever
        can fix them. Documentation goes back to the clinician to revise and sign again; anything else becomes a
        DEN-01 hold for the biller (or the supervisor, for EVV) to clear once it is fixed. The service starting
        this run sets the matching VisitState search attribute, so nothing is upserted here."""
        v, denial = self._visit, self._visit.denial
        assert denial is not None
        v.denials_seen = [*v.denials_seen, denial.key]
        v.release, v.released_at = None, None
        # The release that billed the denied claim was an earlier action; the release after the fix is a new one.
        v.earlier_actions = [a for a in v.earlier_actions if a != "release"]
        self._log("system", "claim_denied", f"claim {denial.claim_control_number}: {'; '.join(denial.reasons)}")
        if denial.kind == DenialKind.documentation:
            v.signature = None
            v.sent_back = f"the payer denied the claim: {'; '.join(denial.reasons)}"
            v.sign_deadline = workflow.now() + v.spec.timers.sign_due
            v.notified -= {"signature:reminder", "signature:escalation"}
            v.state = VisitState.documented
        else:
            v.state = VisitState.signed
        v.recheck = True

    def _back_to_billing(self) -> None:
        """The claim this released visit was on was voided before the payer had it (held, not sent yet, or
        rejected by the 999 / 277CA): the visit is billable again. It checks its gates again and, passing them,
        is claim-ready to release like any other."""
        v, back = self._visit, self._visit.back_to_billing
        assert back is not None
        v.returns_seen = [*v.returns_seen, back.key]
        v.back_to_billing = None
        v.release, v.released_at = None, None
        v.earlier_actions = [a for a in v.earlier_actions if a != "release"]
        self._log("system", "back_to_billing", f"claim {back.claim_control_number} was voided: {back.reason}")
        v.state = VisitState.signed
        v.recheck = True

    @property
    def _finished(self) -> bool:
        return self._visit.state in END_STATES

    async def _wait_for_stage(self, stage: str, done: Callable[[], bool]) -> None:
        """Wait for the note or the signature; remind at the deadline, escalate after (DOC-01)."""
        timers = self._visit.spec.timers
        escalate_after = timers.note_escalate_after if stage == "note" else timers.sign_escalate_after
        while not (done() or self._finished):
            deadline = self._deadline(stage)
            now = workflow.now()
            late_at = self._late_alert_due() if stage == "note" else None
            if late_at is not None and now >= late_at:
                await self._raise_late_alert()
                late_at = None
            if now >= deadline and f"{stage}:reminder" not in self._visit.notified:
                await self._notify(stage, "reminder", deadline, Role.clinician)
            if now >= deadline + escalate_after and f"{stage}:escalation" not in self._visit.notified:
                await self._notify(stage, "escalation", deadline, Role.supervisor)
            if f"{stage}:reminder" not in self._visit.notified:
                next_wake: datetime | None = deadline
            elif f"{stage}:escalation" not in self._visit.notified:
                next_wake = deadline + escalate_after
            else:
                next_wake = None
            if late_at is not None and (next_wake is None or late_at < next_wake):
                next_wake = late_at
            wake = self._wake
            timeout = max(next_wake - now, timedelta(0)) if next_wake else None
            try:
                await workflow.wait_condition(
                    lambda wake=wake: done() or self._finished or self._wake != wake or self._fresh_run_wanted(),
                    timeout=timeout)
            except TimeoutError:
                pass
            if self._fresh_run_due():
                return  # the main loop carries the visit into a fresh run

    def _late_alert_due(self) -> datetime | None:
        """MV-01: when this visit raises its late alert, if it still may (no clock-in, not alerted yet)."""
        v = self._visit
        minutes = v.spec.late_alert_minutes
        if minutes is None or "late:alert" in v.notified or self._latest(PunchKind.clock_in) is not None:
            return None
        at = v.spec.scheduled_start + timedelta(minutes=minutes)
        if v.timeline and v.timeline[0].at >= at:
            return None  # entered after the fact (a visit being recorded), not a visit running late
        if self._late_alerts is None:
            self._late_alerts = workflow.patched(MISSED_VISITS)
        return at if self._late_alerts else None

    async def _raise_late_alert(self) -> None:
        """No clock-in some minutes after the start: the supervisor and the office call, or mark it missed."""
        v = self._visit
        v.notified.add("late:alert")
        v.late_alert_at = workflow.now()
        minutes = int((workflow.now() - v.spec.scheduled_start).total_seconds() // 60)
        message = (f"MV-01 visit {v.spec.visit_id} ({v.spec.service_code}, scheduled "
                   f"{v.spec.scheduled_start:%Y-%m-%d %H:%M} UTC) has no clock-in {minutes} min after its start")
        for role in (Role.supervisor, Role.admin):
            await workflow.execute_activity_method(
                VisitActivities.notify,
                NotificationRequest(
                    visit_id=v.spec.visit_id, role=role, kind="late_alert", message=message,
                    dedupe_key=f"{v.spec.visit_id}:late:{role.value}:{v.spec.scheduled_start.isoformat()}"),
                **ACTIVITY_OPTIONS)
        self._log("system", "late_alert", message)
        await self._project()

    def _deadline(self, stage: str) -> datetime:
        v = self._visit
        if stage == "note":
            return v.note_deadline_override or (v.spec.scheduled_end + v.spec.timers.note_due)
        assert self._visit.sign_deadline is not None
        return self._visit.sign_deadline

    async def _notify(self, stage: str, level: str, deadline: datetime, role: Role) -> None:
        self._visit.notified.add(f"{stage}:{level}")
        what = "note" if stage == "note" else "signature"
        late = workflow.now() - deadline
        hours = late.total_seconds() / 3600
        message = (f"{what} for visit {self._visit.spec.visit_id} was due {deadline:%Y-%m-%d %H:%M} UTC"
                   + (f", {hours:.1f} h overdue" if hours >= 0.1 else ""))
        await workflow.execute_activity_method(
            VisitActivities.notify,
            NotificationRequest(
                visit_id=self._visit.spec.visit_id, role=role,
                clinician_id=self._visit.spec.clinician_id if role == Role.clinician else None,
                kind=f"{stage}_{level}", message=message,
                dedupe_key=f"{self._visit.spec.visit_id}:{stage}:{level}:{deadline.isoformat()}"),
            **ACTIVITY_OPTIONS)
        self._log("system", f"{stage}_{level}", message)
        await self._project()

    async def _check_gates(self) -> None:
        """Authorization and EVV gates; hold with named reasons, or become claim-ready."""
        self._visit.recheck = False
        state_before = self._visit.state
        units_before = self._visit.gate_result.billable_units if self._visit.gate_result else None
        # The changes this check answers for: one arriving while it runs is answered by the next check.
        answering = list(self._visit.changes_pending)
        if self._local_activities():
            result = await self._run_locally(VisitActivities.evaluate_gates, self._snapshot())
        else:
            result = await workflow.execute_activity_method(
                VisitActivities.evaluate_gates, self._snapshot(), **ACTIVITY_OPTIONS)
        if self._finished or self._visit.signature is None or self._visit.recheck:
            return  # something changed while we were checking: loop and look again
        unchanged = self._visit.state == VisitState.on_hold and result == self._visit.gate_result
        self._visit.gate_result = result
        self._record_hold_changes(result.findings)
        if result.findings:
            self._set_state(VisitState.on_hold)
            # A periodic re-check that finds the same holds has nothing new to show: no projection, so a visit
            # held for months adds only a timer and one activity per re-check to its history.
            if not (unchanged and workflow.patched("quiet-recheck")):
                await self._project()
            await self._report_changes(answering, state_before, units_before)
            try:
                await workflow.wait_condition(
                    lambda: self._visit.recheck or self._finished or self._visit.signature is None
                    or self._fresh_run_wanted(), timeout=self._visit.spec.timers.hold_recheck_every)
            except TimeoutError:
                pass  # a periodic re-check catches a change nobody signalled
            return
        for state in (VisitState.authorized, VisitState.evv_verified, VisitState.claim_ready):
            # One search attribute upsert for the three steps: they happen in the same instant.
            self._set_state(state, publish=state == VisitState.claim_ready or not self._lean_lifecycle())
            self._log("system", state.value, self._gate_detail(state))
        await self._project()
        await self._report_changes(answering, state_before, units_before)
        while not (self._visit.recheck or self._finished or self._visit.signature is None):
            await workflow.wait_condition(
                lambda: self._visit.recheck or self._finished or self._visit.signature is None
                or self._fresh_run_wanted())
            if self._fresh_run_due():
                return

    async def _report_changes(self, reported: list[int], state_before: VisitState, units_before: int | None) -> None:
        """CHG-01: tell the change records that reached this visit what the gate check they caused found.

        Only a visit that received a change id asks for the patch, so histories from before it replay as they were.
        """
        if not reported or not workflow.patched(CHANGE_FEED):
            return
        r = self._visit.gate_result
        await workflow.execute_activity_method(
            ChangeActivities.record_change_outcomes,
            ChangeOutcomeReport(visit_id=self._visit.spec.visit_id, change_ids=reported, state_before=state_before,
                                state_after=self._visit.state, units_before=units_before,
                                units_after=r.billable_units if r else None,
                                holds=[h.message for h in self._visit.holds] if self._visit.state == VisitState.on_hold
                                else []),
            **ACTIVITY_OPTIONS)
        # Changes that arrived since the check began wait for the next check.
        self._visit.changes_pending = [c for c in self._visit.changes_pending if c not in reported]

    def _gate_detail(self, state: VisitState) -> str:
        r = self._visit.gate_result
        if state == VisitState.authorized and r and r.authorization_number:
            return f"authorization {r.authorization_number}, {r.billable_units} units"
        if state == VisitState.evv_verified:
            return f"{len(self._visit.punches)} punches verified"
        return ""

    def _record_hold_changes(self, findings: list[Finding]) -> None:
        before = {h.key for h in self._visit.holds}
        after = {f.key for f in findings}
        for f in findings:
            if f.key not in before:
                self._log("system", "hold", f"{f.message} -> {f.role.value}")
        for h in self._visit.holds:
            if h.key not in after:
                self._log("system", "hold_cleared", h.message)
        self._visit.holds = findings

    # --- human actions: Updates with validators ---------------------------------------------

    @workflow.update
    async def record_punch(self, req: RecordPunch) -> VisitSnapshot:
        punch = Punch(seq=len(self._visit.punches) + 1, recorded_by=req.actor.username,
                      recorded_at=req.now, **req.punch.model_dump())
        self._visit.punches.append(punch)
        self._log(req.actor.username, "punch",
                  f"{punch.kind.value} {punch.at:%Y-%m-%d %H:%M} UTC via {punch.method.value}"
                  + (f" ({punch.reason_code.value})" if punch.reason_code else ""))
        if punch.kind == PunchKind.clock_in and self._visit.late_alert_at is not None:
            late = int((punch.effective_at - self._visit.spec.scheduled_start).total_seconds() // 60)
            self._visit.late_alert_at = None
            self._log("system", "late_alert_cleared", f"clocked in {late} min after the scheduled start")
        return await self._changed()

    @record_punch.validator
    def _validate_record_punch(self, req: RecordPunch) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician, Role.admin, Role.supervisor)
        if req.actor.role == Role.clinician:
            self._require_own_visit(req.actor)
        p = req.punch
        if p.method == PunchMethod.gps and p.location is None:
            raise _reject(INVALID, "a GPS punch needs its location (lat, lon)", "location")
        if p.method == PunchMethod.manual:
            self._require_reason(p.reason_code, p.reason_text, "a manual punch")
        if p.at > req.now + PUNCH_CLOCK_SKEW:
            raise _reject(INVALID, f"punch time {p.at:%Y-%m-%d %H:%M} UTC is in the future", "at")
        if p.kind == PunchKind.clock_out:
            clock_in = self._latest(PunchKind.clock_in)
            if clock_in is None and p.method != PunchMethod.manual:
                raise _reject(CONFLICT, "no clock-in recorded for this visit yet", "kind")
            if clock_in is not None and p.at <= clock_in.effective_at:
                raise _reject(INVALID, "clock-out must be after the clock-in", "at")
        self._require_correction_window(req.now, p.method == PunchMethod.manual)

    @workflow.update
    async def adjust_punch(self, req: AdjustPunch) -> VisitSnapshot:
        punch = self._visit.punches[req.seq - 1]
        punch.adjusted_at = req.adjusted_at
        punch.adjust_reason_code = req.reason_code
        punch.adjust_reason_text = req.reason_text
        punch.adjusted_by = req.actor.username
        punch.adjusted_when = req.now
        # A new correction needs a new approval (EVV-04).
        self._visit.acknowledgements = [a for a in self._visit.acknowledgements
                      if not (a.key.endswith(f"punch-{req.seq}") or a.key == f"EVV-03:{punch.kind.value}")]
        self._log(req.actor.username, "punch_adjusted",
                  f"{punch.kind.value} {punch.at:%H:%M} -> {req.adjusted_at:%Y-%m-%d %H:%M} UTC "
                  f"({req.reason_code.value})")
        return await self._changed()

    @adjust_punch.validator
    def _validate_adjust_punch(self, req: AdjustPunch) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician, Role.supervisor)
        if req.actor.role == Role.clinician:
            self._require_own_visit(req.actor)
        if not 1 <= req.seq <= len(self._visit.punches):
            raise _reject(INVALID, f"this visit has no punch #{req.seq}", "seq")
        self._require_reason(req.reason_code, req.reason_text, "a time correction")
        if req.adjusted_at > req.now + PUNCH_CLOCK_SKEW:
            raise _reject(INVALID, "a corrected time cannot be in the future", "adjusted_at")
        self._require_correction_window(req.now, True)

    @workflow.update
    async def submit_note(self, req: SubmitNote) -> VisitSnapshot:
        first = self._visit.note is None
        self._visit.note = Note(fields=req.fields, submitted_by=req.actor.username, submitted_at=workflow.now())
        if first or self._visit.sign_deadline is None:
            self._visit.sign_deadline = workflow.now() + self._visit.spec.timers.sign_due
        self._visit.sent_back = None
        self._set_state(VisitState.documented)
        self._log(req.actor.username, "note_submitted", "note submitted" if first else "note revised")
        spec = self._visit.spec
        if first and spec.supervisory and spec.discipline in SKILLED_DISCIPLINES and workflow.patched(SUPERVISORY):
            # SUP-01: the patient's aide care was supervised on this date; its supervision workflow moves the due
            # date and lets the aide visits it held go on.
            await workflow.execute_activity_method(
                VisitActivities.supervisory_visit_documented,
                SupervisoryVisitDocumented(visit_id=spec.visit_id, patient_id=spec.patient_id,
                                           service_date=service_date(spec), clinician_id=spec.clinician_id,
                                           discipline=spec.discipline),
                **ACTIVITY_OPTIONS)
            self._log("system", "supervisory_visit_documented", f"SUP-01 supervisory visit on {service_date(spec)}")
        return await self._changed()

    @submit_note.validator
    def _validate_submit_note(self, req: SubmitNote) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician)
        self._require_own_visit(req.actor)
        if self._visit.signature is not None:
            raise _reject(CONFLICT, "the note is already signed; a biller or supervisor must send it back first")
        missing = [f for f in self._visit.spec.required_note_fields if not req.fields.get(f, "").strip()]
        if missing:
            raise _reject(INVALID, f"DOC-03 required note fields missing: {', '.join(missing)}", "fields",
                          missing=missing)

    @workflow.update
    async def sign_note(self, req: SignNote) -> VisitSnapshot:
        self._visit.signature = Signature(attestation=req.attestation_text, signed_by=req.actor.username,
                                    signed_at=workflow.now())
        self._set_state(VisitState.signed)
        self._log(req.actor.username, "signed", req.attestation_text)
        return await self._changed()

    @sign_note.validator
    def _validate_sign_note(self, req: SignNote) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician)
        self._require_own_visit(req.actor)  # SIG-01: by the visit's clinician
        if self._visit.note is None:
            raise _reject(CONFLICT, "SIG-01 there is no note to sign yet: submit the note first")
        if self._visit.signature is not None:
            raise _reject(CONFLICT, "the note is already signed")
        if not req.attestation:
            raise _reject(INVALID, "SIG-01 signing needs the attestation to be confirmed", "attestation")

    @workflow.update
    async def resolve_hold(self, req: ResolveHold) -> VisitSnapshot:
        hold = next(h for h in self._visit.holds if h.key == req.key)
        self._visit.acknowledgements.append(Acknowledgement(key=req.key, rule_id=hold.rule_id, decision=req.decision,
                                          reason=req.reason, by=req.actor.username, at=workflow.now()))
        self._log(req.actor.username, f"exception_{req.decision}", f"{hold.message}: {req.reason}")
        return await self._changed()

    @resolve_hold.validator
    def _validate_resolve_hold(self, req: ResolveHold) -> None:
        self._require_open()
        self._require_role(req.actor, *HOLD_DECIDERS)
        hold = next((h for h in self._visit.holds if h.key == req.key), None)
        if hold is None:
            raise _reject(CONFLICT, f"no open hold {req.key!r} on this visit", "key")
        if not hold.approvable:
            raise _reject(CONFLICT, f"{hold.rule_id} cannot be approved; it must be fixed: {hold.message}", "key")
        # The role the hold names decides it: supervisors the exceptions; a payer's denial whoever it was routed to.
        if req.actor.role != hold.role:
            raise _reject(FORBIDDEN, f"{hold.rule_id} on this visit is for {roles_phrase([hold.role])} to decide "
                                     f"(you are {roles_phrase([req.actor.role])})", "key")
        if hold.rule_id == "DEN-01" and req.decision == Decision.rejected:
            # A rejected exception goes back to the clinician; a denial has nothing to reject, only a fix to confirm.
            raise _reject(INVALID, "DEN-01 a payer's denial is cleared once its cause is fixed, never rejected: fix "
                                   "it, then clear the hold (decision \"approved\") to bill the visit again",
                          "decision")
        if not req.reason.strip():
            raise _reject(INVALID, "a decision on an exception needs a reason", "reason")

    @workflow.update
    async def extend_deadline(self, req: ExtendDeadline) -> VisitSnapshot:
        if req.stage == "note":
            self._visit.note_deadline_override = req.new_deadline
        else:
            self._visit.sign_deadline = req.new_deadline
        # The new deadline gets its own reminder and escalation.
        self._visit.notified -= {f"{req.stage}:reminder", f"{req.stage}:escalation"}
        self._wake += 1
        self._log(req.actor.username, "deadline_extended",
                  f"{req.stage} due {req.new_deadline:%Y-%m-%d %H:%M} UTC: {req.reason}")
        return await self._changed()

    @extend_deadline.validator
    def _validate_extend_deadline(self, req: ExtendDeadline) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor)
        waiting = (req.stage == "note" and self._visit.note is None) or (
            req.stage == "signature" and self._visit.note is not None and self._visit.signature is None)
        if not waiting:
            raise _reject(CONFLICT, f"the visit is not waiting for its {req.stage}", "stage")
        if req.new_deadline <= workflow.now():
            raise _reject(INVALID, "the new deadline must be in the future", "new_deadline")
        if not req.reason.strip():
            raise _reject(INVALID, "extending a deadline needs a reason", "reason")

    @workflow.update
    async def reassign(self, req: Reassign) -> VisitSnapshot:
        before = self._visit.spec.clinician_id
        self._visit.spec.clinician_id = req.clinician_id
        workflow.upsert_search_attributes([VISIT_CLINICIAN.value_set(str(req.clinician_id))])
        self._log(req.actor.username, "reassigned", f"clinician {before} -> {req.clinician_id}: {req.reason}")
        return await self._changed()

    @reassign.validator
    def _validate_reassign(self, req: Reassign) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor)
        if self._visit.signature is not None:
            raise _reject(CONFLICT, "a signed visit cannot be reassigned; send it back first")
        if req.clinician_id == self._visit.spec.clinician_id:
            raise _reject(INVALID, "the visit is already assigned to that clinician", "clinician_id")
        if not req.reason.strip():
            raise _reject(INVALID, "reassigning needs a reason", "reason")

    @workflow.update
    async def reschedule(self, req: Reschedule) -> VisitSnapshot:
        self._visit.spec.scheduled_start = req.scheduled_start
        self._visit.spec.scheduled_end = req.scheduled_end
        workflow.upsert_search_attributes([VISIT_SERVICE_DATE.value_set(req.scheduled_start)])
        self._wake += 1  # the note deadline follows the scheduled end
        if "late:alert" in self._visit.notified and self._latest(PunchKind.clock_in) is None:
            # MV-01 counts from the new start: the alert on the old one no longer stands.
            self._visit.notified.discard("late:alert")
            self._visit.late_alert_at = None
            self._log("system", "late_alert_cleared", "the visit was rescheduled")
        self._log(req.actor.username, "rescheduled",
                  f"{req.scheduled_start:%Y-%m-%d %H:%M}-{req.scheduled_end:%H:%M} UTC: {req.reason}")
        return await self._changed()

    @reschedule.validator
    def _validate_reschedule(self, req: Reschedule) -> None:
        self._require_open()
        self._require_role(req.actor, Role.admin, Role.supervisor)
        if req.scheduled_end <= req.scheduled_start:
            raise _reject(INVALID, "the scheduled end must be after the start", "scheduled_end")
        if req.scheduled_end - req.scheduled_start > timedelta(hours=24):
            raise _reject(INVALID, "EVV-05 a visit cannot be longer than 24 hours", "scheduled_end")
        if not req.reason.strip():
            raise _reject(INVALID, "rescheduling needs a reason", "reason")

    @workflow.update
    async def cancel(self, req: Cancel) -> VisitSnapshot:
        self._visit.cancel = req
        self._set_state(VisitState.cancelled)
        self._log(req.actor.username, "cancelled", req.reason)
        return await self._changed()

    @cancel.validator
    def _validate_cancel(self, req: Cancel) -> None:
        self._require_open()
        self._require_role(req.actor, Role.admin, Role.supervisor)
        if not req.reason.strip():
            raise _reject(INVALID, "cancelling needs a reason", "reason")

    @workflow.update
    async def mark_missed(self, req: MarkMissed) -> VisitSnapshot:
        """MV-02: the visit did not happen. It ends here, non-billable, and whoever the payer requires is told."""
        self._visit.missed = req.model_copy(update={"at": workflow.now()})
        self._visit.late_alert_at = None
        self._set_state(VisitState.missed)
        detail = req.reason.value.replace("_", " ") + (f": {req.reason_text.strip()}" if req.reason_text else "")
        self._log(req.actor.username, "missed", detail)
        await workflow.execute_activity_method(VisitActivities.notify_missed, self._snapshot(), **ACTIVITY_OPTIONS)
        return await self._changed()

    @mark_missed.validator
    def _validate_mark_missed(self, req: MarkMissed) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor, Role.admin)
        if self._latest(PunchKind.clock_in) is not None:
            raise _reject(CONFLICT, "MV-02 a clock-in is recorded: the visit happened (correct the punches if it "
                                    "did not)")
        if self._visit.note is not None:
            raise _reject(CONFLICT, "MV-02 a note was submitted for this visit: it happened")
        if workflow.now() < self._visit.spec.scheduled_start:
            raise _reject(CONFLICT, "MV-02 the visit has not started yet: reschedule or cancel it instead")
        if req.reason == MissedReason.other and not (req.reason_text or "").strip():
            raise _reject(INVALID, "MV-02 reason 'other' needs an explanation in reason_text", "reason_text")

    @workflow.update
    async def release(self, req: Release) -> VisitSnapshot:
        self._visit.release = req
        self._visit.released_at = workflow.now()
        self._set_state(VisitState.released)
        self._log(req.actor.username, "released", f"batch {req.batch_id}")
        return await self._changed()

    @release.validator
    def _validate_release(self, req: Release) -> None:
        self._require_role(req.actor, Role.biller)  # REL-01: only a biller releases
        if self._visit.state == VisitState.released and self._visit.release:
            raise _reject(CONFLICT, f"already released by {self._visit.release.actor.username} "
                                    f"in batch {self._visit.release.batch_id}")
        if self._visit.state == VisitState.claim_ready and self._visit.recheck:
            raise _reject(CONFLICT, "the visit is being re-checked after a change; try again in a moment")
        if self._visit.state != VisitState.claim_ready:
            holds = "; ".join(h.message for h in self._visit.holds)
            raise _reject(CONFLICT, f"the visit is {self._visit.state.value}, not claim_ready"
                                    + (f" (holds: {holds})" if holds else ""))

    @workflow.update
    async def send_back(self, req: SendBack) -> VisitSnapshot:
        # The clinician revises the note and signs again; the gates run again after that.
        self._visit.signature = None
        self._visit.sent_back = req.message
        self._visit.sign_deadline = workflow.now() + self._visit.spec.timers.sign_due
        self._visit.notified -= {"signature:reminder", "signature:escalation"}
        self._set_state(VisitState.documented)
        self._log(req.actor.username, "sent_back", req.message)
        return await self._changed()

    @send_back.validator
    def _validate_send_back(self, req: SendBack) -> None:
        self._require_open()
        self._require_role(req.actor, Role.biller, Role.supervisor)
        if self._visit.signature is None:
            raise _reject(CONFLICT, "the note is not signed yet; nothing to send back")
        if not req.message.strip():
            raise _reject(INVALID, "say what the clinician must fix", "message")

    # --- system events ----------------------------------------------------------------------

    @workflow.signal
    def authorization_changed(self, change: AuthorizationChanged) -> None:
        """AUTH-04: an authorization touching this visit changed; check the gates again now."""
        self._log("system", "authorization_changed",
                  f"authorization {change.authorization_id} {change.change}{_change_ref(change.change_id)}")
        self._note_change(change.change_id)
        self._visit.recheck = True

    @workflow.signal
    def reference_data_changed(self, change: ReferenceDataChanged) -> None:
        """The patient's or payer's facts changed (e.g. the service address was corrected): check again."""
        self._log("system", "reference_data_changed", f"{change.what} {change.change}{_change_ref(change.change_id)}")
        self._note_change(change.change_id)
        self._visit.recheck = True

    def _note_change(self, change_id: int | None) -> None:
        if change_id is not None and change_id not in self._visit.changes_pending:
            self._visit.changes_pending = [*self._visit.changes_pending, change_id]

    @workflow.query
    def snapshot(self) -> VisitSnapshot:
        return self._snapshot()

    @workflow.query
    def progress(self) -> VisitProgress:
        """Everything this visit knows, as a fresh run would start from it (a denial reopens a released visit)."""
        return self._carry_over()

    # --- helpers ----------------------------------------------------------------------------

    async def _changed(self) -> VisitSnapshot:
        action = workflow.current_update_info()
        if action is not None:
            self._actions_this_run.append(action.id)
        self._visit.recheck = True
        await self._project()
        return self._snapshot()

    def _require_open(self) -> None:
        action = workflow.current_update_info()
        if action is not None and action.id in self._visit.earlier_actions:
            # Temporal answers a repeated Update id within a run; across a fresh run, we refuse it ourselves.
            raise _reject(CONFLICT, "this action was already taken on this visit")
        if self._visit.state == VisitState.cancelled:
            raise _reject(CONFLICT, "the visit is cancelled")
        if self._visit.state == VisitState.released:
            raise _reject(CONFLICT, "the visit is already released for billing")
        if self._visit.state == VisitState.missed:
            raise _reject(CONFLICT, "the visit was marked missed; it is not billable")

    def _require_role(self, actor: Actor, *roles: Role) -> None:
        if actor.role not in roles:
            raise _reject(FORBIDDEN, f"only {roles_phrase(roles)} can do this (you are {roles_phrase([actor.role])})")

    def _require_own_visit(self, actor: Actor) -> None:
        if actor.role == Role.clinician and actor.clinician_id != self._visit.spec.clinician_id:
            raise _reject(FORBIDDEN, "this visit is assigned to another clinician")

    def _require_reason(self, code, text: str | None, what: str) -> None:
        if code is None:
            raise _reject(INVALID, f"EVV-04 {what} needs a reason code", "reason_code")
        if code in REASONS_NEEDING_TEXT and not (text or "").strip():
            raise _reject(INVALID, f"EVV-04 reason code {code.value} needs an explanation in reason_text",
                          "reason_text")

    def _require_correction_window(self, now: datetime, is_correction: bool) -> None:
        if not is_correction:
            return
        problem = evv_06_correction_allowed(
            service_date(self._visit.spec), now,
            PayerRules(correction_window_days=self._visit.spec.correction_window_days))
        if problem:
            raise _reject(CONFLICT, problem)

    def _latest(self, kind: PunchKind) -> Punch | None:
        found = [p for p in self._visit.punches if p.kind == kind]
        return found[-1] if found else None

    def _set_state(self, state: VisitState, publish: bool = True) -> None:
        if state != self._visit.state:
            self._visit.state = state
            if publish:
                workflow.upsert_search_attributes([VISIT_STATE.value_set(state.value)])

    def _lifecycle_version(self) -> str:
        """Which lifecycle this visit runs, asked once. A new visit writes only the newest patch's marker; a
        visit recorded under an older patch finds no newer marker on replay and goes on as it ran."""
        if self._lifecycle is None:
            if workflow.patched(LOCAL_PROJECTIONS):
                self._lifecycle = "local"
            elif workflow.patched(LEAN_LIFECYCLE):
                self._lifecycle = "lean"
            else:
                self._lifecycle = "full"
        return self._lifecycle

    def _lean_lifecycle(self) -> bool:
        return self._lifecycle_version() != "full"

    def _local_activities(self) -> bool:
        return self._lifecycle_version() == "local"

    def _log(self, actor: str, kind: str, detail: str = "") -> None:
        self._visit.timeline.append(TimelineEntry(seq=len(self._visit.timeline) + 1, at=workflow.now(), actor=actor,
                                            kind=kind, detail=detail, state=self._visit.state))

    async def _project(self) -> None:
        async with self._projecting:
            self._visit.version += 1
            if not self._lean_lifecycle():
                await workflow.execute_activity_method(VisitActivities.project_visit, self._snapshot(),
                                                       **ACTIVITY_OPTIONS)
                return
            # The timeline only grows and the read model keeps it: send the entries it has not seen. A fresh
            # run starts from 0 and sends the whole timeline once (the activity skips what it has).
            changes = self._snapshot(timeline_after=self._projected_upto)
            if self._local_activities():
                await self._run_locally(VisitActivities.project_visit_changes, changes)
            else:
                await workflow.execute_activity_method(VisitActivities.project_visit_changes, changes,
                                                       **ACTIVITY_OPTIONS)
            if changes.timeline:
                self._projected_upto = changes.timeline[-1].seq

    async def _run_locally(self, method, arg):
        """A projection or gate check as a local activity; as an ordinary one if it keeps failing (see
        LOCAL_ACTIVITY_WINDOW). A refusal that no retry can change (a non-retryable error) is not tried again."""
        try:
            return await workflow.execute_local_activity_method(
                method, arg, schedule_to_close_timeout=LOCAL_ACTIVITY_WINDOW,
                # An attempt stuck on the database is tried once more inside the window. (With both timeouts equal,
                # the SDK sometimes started a further attempt past the window.)
                start_to_close_timeout=LOCAL_ACTIVITY_WINDOW * 2 / 3, retry_policy=ACTIVITY_OPTIONS["retry_policy"])
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.non_retryable:
                raise
            workflow.logger.warning("%s kept failing as a local activity (%s); retrying it as an activity",
                                    err.activity_type, err.cause)
            return await workflow.execute_activity_method(method, arg, **ACTIVITY_OPTIONS)

    def _tasks(self) -> list[Task]:
        spec, tasks = self._visit.spec, []
        if self._visit.state in END_STATES:
            return tasks
        if self._visit.late_alert_at is not None:
            for role in (Role.supervisor, Role.admin):
                tasks.append(Task(kind="late_visit", role=role, due_at=self._visit.late_alert_at, escalated=True,
                                  title="Late visit: no clock-in yet. Reach the caregiver and the patient, "
                                        "or mark the visit missed"))
        if self._visit.note is None or self._visit.signature is None:
            stage = "note" if self._visit.note is None else "signature"
            due = self._deadline(stage)
            reminded = f"{stage}:reminder" in self._visit.notified
            title = ("Write the visit note" if stage == "note" else "Sign the note") + (
                f" (sent back: {self._visit.sent_back})" if self._visit.sent_back else "")
            tasks.append(Task(kind="write_note" if stage == "note" else "sign_note", role=Role.clinician,
                              clinician_id=spec.clinician_id, title=title, due_at=due, escalated=reminded))
            if f"{stage}:escalation" in self._visit.notified:
                tasks.append(Task(kind=f"{stage}_overdue", role=Role.supervisor, clinician_id=spec.clinician_id,
                                  title=f"{'Note' if stage == 'note' else 'Signature'} overdue", due_at=due,
                                  escalated=True))
        elif self._visit.state == VisitState.on_hold:
            for h in self._visit.holds:
                tasks.append(Task(kind=_hold_task_kind(h), role=h.role,
                                  clinician_id=spec.clinician_id if h.role == Role.clinician else None,
                                  title=h.message, hold_key=h.key))
        elif self._visit.state == VisitState.claim_ready:
            tasks.append(Task(kind="release", role=Role.biller, title="Claim-ready: release for billing"))
        return tasks

    def _snapshot(self, timeline_after: int = 0) -> VisitSnapshot:
        """The visit as the read model and the API show it; with `timeline_after`, only the later timeline entries."""
        v = self._visit
        r = v.gate_result
        signed = v.signature is not None
        held = v.state == VisitState.on_hold
        hold_gates = {h.gate.value for h in v.holds} if held else set()
        checked = r is not None and signed
        gates = {
            "documented": v.note is not None,
            "signed": signed,
            "authorized": checked and "authorized" not in hold_gates,
            "evv": checked and "evv" not in hold_gates,
        }
        return VisitSnapshot(
            spec=v.spec, state=v.state, version=v.version, punches=v.punches, note=v.note, signature=v.signature,
            holds=v.holds if held else [], acknowledgements=v.acknowledgements,
            tasks=self._tasks(), timeline=[e for e in v.timeline if e.seq > timeline_after], gates=gates,
            note_deadline=self._deadline("note"), sign_deadline=v.sign_deadline,
            billable_units=r.billable_units if r else None,
            authorization_id=r.authorization_id if r else None,
            authorization_number=r.authorization_number if r else None,
            release_batch_id=v.release.batch_id if v.release else None,
            released_by=v.release.actor.username if v.release else None,
            released_at=v.released_at,
            cancelled_reason=v.cancel.reason if v.cancel else None,
            denial=v.denial,
            missed=v.missed,
            late_alert_at=v.late_alert_at,
        )


def _change_ref(change_id: int | None) -> str:
    """The timeline names the change record (the visit page links it); older signals carry none."""
    return f" (change #{change_id})" if change_id is not None else ""


def _hold_task_kind(hold: Finding) -> str:
    if hold.rule_id == "DEN-01":
        return "resolve_denial"
    if hold.rule_id == "SUP-01":
        return "supervisory_visit_due"  # fixed by a documented supervisory visit, never approved away
    if hold.role == Role.supervisor:
        return "approve_exception"
    if hold.role == Role.biller:
        return "resolve_authorization"
    if hold.role == Role.admin:
        return "fix_reference_data"
    return "fix_evv" if hold.gate.value == "evv" else "fix_note"
