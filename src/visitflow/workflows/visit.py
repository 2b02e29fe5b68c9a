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
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from visitflow.models import (
        REASONS_NEEDING_TEXT,
        Acknowledgement,
        Actor,
        AdjustPunch,
        AuthorizationChanged,
        Cancel,
        ExtendDeadline,
        Finding,
        GateResult,
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
        Task,
        TimelineEntry,
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

ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30))

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


def _reject(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


@workflow.defn
class VisitWorkflow:
    @workflow.init
    def __init__(self, spec: VisitSpec) -> None:
        self._spec = spec
        self._state = VisitState.scheduled
        self._version = 0
        self._punches: list[Punch] = []
        self._note: Note | None = None
        self._signature: Signature | None = None
        self._holds: list[Finding] = []
        self._acks: list[Acknowledgement] = []
        self._timeline: list[TimelineEntry] = []
        self._gate_result: GateResult | None = None
        self._note_deadline_override: datetime | None = None
        self._sign_deadline: datetime | None = None
        self._notified: set[str] = set()  # "note:reminder", "note:escalation", ...
        self._sent_back: str | None = None
        self._recheck = False  # new facts arrived: evaluate the gates again
        self._wake = 0  # bumped when a deadline moves, so a waiting stage recomputes its timers
        self._release: Release | None = None
        self._released_at: datetime | None = None
        self._cancel: Cancel | None = None
        # One projection at a time, so the read model sees versions in order and rows never race.
        self._projecting = asyncio.Lock()

    # --- main flow ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, spec: VisitSpec) -> VisitSnapshot:
        self._log(spec.scheduled_by, "scheduled",
                  f"{spec.service_code} {spec.scheduled_start:%Y-%m-%d %H:%M}-{spec.scheduled_end:%H:%M} UTC")
        await self._project()
        while not self._finished:
            if self._note is None:
                await self._wait_for_stage("note", lambda: self._note is not None)
            elif self._signature is None:
                await self._wait_for_stage("signature", lambda: self._signature is not None)
            else:
                await self._check_gates()
        # Let in-flight handlers (e.g. the release that finished us) write their projections.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._snapshot()

    @property
    def _finished(self) -> bool:
        return self._state in (VisitState.released, VisitState.cancelled)

    async def _wait_for_stage(self, stage: str, done: Callable[[], bool]) -> None:
        """Wait for the note or the signature; remind at the deadline, escalate after (DOC-01)."""
        timers = self._spec.timers
        escalate_after = timers.note_escalate_after if stage == "note" else timers.sign_escalate_after
        while not (done() or self._finished):
            deadline = self._deadline(stage)
            now = workflow.now()
            if now >= deadline and f"{stage}:reminder" not in self._notified:
                await self._notify(stage, "reminder", deadline, Role.clinician)
            if now >= deadline + escalate_after and f"{stage}:escalation" not in self._notified:
                await self._notify(stage, "escalation", deadline, Role.supervisor)
            if f"{stage}:reminder" not in self._notified:
                next_wake: datetime | None = deadline
            elif f"{stage}:escalation" not in self._notified:
                next_wake = deadline + escalate_after
            else:
                next_wake = None
            wake = self._wake
            timeout = max(next_wake - now, timedelta(0)) if next_wake else None
            try:
                await workflow.wait_condition(
                    lambda wake=wake: done() or self._finished or self._wake != wake, timeout=timeout)
            except TimeoutError:
                pass

    def _deadline(self, stage: str) -> datetime:
        if stage == "note":
            return self._note_deadline_override or (self._spec.scheduled_end + self._spec.timers.note_due)
        assert self._sign_deadline is not None
        return self._sign_deadline

    async def _notify(self, stage: str, level: str, deadline: datetime, role: Role) -> None:
        self._notified.add(f"{stage}:{level}")
        what = "note" if stage == "note" else "signature"
        late = workflow.now() - deadline
        hours = late.total_seconds() / 3600
        message = (f"{what} for visit {self._spec.visit_id} was due {deadline:%Y-%m-%d %H:%M} UTC"
                   + (f", {hours:.1f} h overdue" if hours >= 0.1 else ""))
        await workflow.execute_activity(
            "notify",
            NotificationRequest(
                visit_id=self._spec.visit_id, role=role,
                clinician_id=self._spec.clinician_id if role == Role.clinician else None,
                kind=f"{stage}_{level}", message=message,
                dedupe_key=f"{self._spec.visit_id}:{stage}:{level}:{deadline.isoformat()}"),
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY)
        self._log("system", f"{stage}_{level}", message)
        await self._project()

    async def _check_gates(self) -> None:
        """Authorization and EVV gates; hold with named reasons, or become claim-ready."""
        self._recheck = False
        result: GateResult = await workflow.execute_activity(
            "evaluate_gates", self._snapshot(), result_type=GateResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY)
        if self._finished or self._signature is None or self._recheck:
            return  # something changed while we were checking: loop and look again
        self._gate_result = result
        self._record_hold_changes(result.findings)
        if result.findings:
            self._set_state(VisitState.on_hold)
            await self._project()
            try:
                await workflow.wait_condition(
                    lambda: self._recheck or self._finished or self._signature is None,
                    timeout=self._spec.timers.hold_recheck_every)
            except TimeoutError:
                pass  # a periodic re-check catches a change nobody signalled
            return
        for state in (VisitState.authorized, VisitState.evv_verified, VisitState.claim_ready):
            self._set_state(state)
            self._log("system", state.value, self._gate_detail(state))
        await self._project()
        await workflow.wait_condition(
            lambda: self._recheck or self._finished or self._signature is None)

    def _gate_detail(self, state: VisitState) -> str:
        r = self._gate_result
        if state == VisitState.authorized and r and r.authorization_number:
            return f"authorization {r.authorization_number}, {r.billable_units} units"
        if state == VisitState.evv_verified:
            return f"{len(self._punches)} punches verified"
        return ""

    def _record_hold_changes(self, findings: list[Finding]) -> None:
        before = {h.key for h in self._holds}
        after = {f.key for f in findings}
        for f in findings:
            if f.key not in before:
                self._log("system", "hold", f"{f.message} -> {f.role.value}")
        for h in self._holds:
            if h.key not in after:
                self._log("system", "hold_cleared", h.message)
        self._holds = findings

    # --- human actions: Updates with validators ---------------------------------------------

    @workflow.update
    async def record_punch(self, req: RecordPunch) -> VisitSnapshot:
        punch = Punch(seq=len(self._punches) + 1, recorded_by=req.actor.username,
                      recorded_at=req.now, **req.punch.model_dump())
        self._punches.append(punch)
        self._log(req.actor.username, "punch",
                  f"{punch.kind.value} {punch.at:%Y-%m-%d %H:%M} UTC via {punch.method.value}"
                  + (f" ({punch.reason_code.value})" if punch.reason_code else ""))
        return await self._changed()

    @record_punch.validator
    def _validate_record_punch(self, req: RecordPunch) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician, Role.admin, Role.supervisor)
        if req.actor.role == Role.clinician:
            self._require_own_visit(req.actor)
        p = req.punch
        if p.method == PunchMethod.gps and p.location is None:
            raise _reject(INVALID, "a GPS punch needs its location (lat, lon)")
        if p.method == PunchMethod.manual:
            self._require_reason(p.reason_code, p.reason_text, "a manual punch")
        if p.at > req.now + PUNCH_CLOCK_SKEW:
            raise _reject(INVALID, f"punch time {p.at:%Y-%m-%d %H:%M} UTC is in the future")
        if p.kind == PunchKind.clock_out:
            clock_in = self._latest(PunchKind.clock_in)
            if clock_in is None and p.method != PunchMethod.manual:
                raise _reject(CONFLICT, "no clock-in recorded for this visit yet")
            if clock_in is not None and p.at <= clock_in.effective_at:
                raise _reject(INVALID, "clock-out must be after the clock-in")
        self._require_correction_window(req.now, p.method == PunchMethod.manual)

    @workflow.update
    async def adjust_punch(self, req: AdjustPunch) -> VisitSnapshot:
        punch = self._punches[req.seq - 1]
        punch.adjusted_at = req.adjusted_at
        punch.adjust_reason_code = req.reason_code
        punch.adjust_reason_text = req.reason_text
        punch.adjusted_by = req.actor.username
        punch.adjusted_when = req.now
        # A new correction needs a new approval (EVV-04).
        self._acks = [a for a in self._acks
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
        if not 1 <= req.seq <= len(self._punches):
            raise _reject(INVALID, f"this visit has no punch #{req.seq}")
        self._require_reason(req.reason_code, req.reason_text, "a time correction")
        if req.adjusted_at > req.now + PUNCH_CLOCK_SKEW:
            raise _reject(INVALID, "a corrected time cannot be in the future")
        self._require_correction_window(req.now, True)

    @workflow.update
    async def submit_note(self, req: SubmitNote) -> VisitSnapshot:
        first = self._note is None
        self._note = Note(fields=req.fields, submitted_by=req.actor.username, submitted_at=workflow.now())
        if first or self._sign_deadline is None:
            self._sign_deadline = workflow.now() + self._spec.timers.sign_due
        self._sent_back = None
        self._set_state(VisitState.documented)
        self._log(req.actor.username, "note_submitted", "note submitted" if first else "note revised")
        return await self._changed()

    @submit_note.validator
    def _validate_submit_note(self, req: SubmitNote) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician)
        self._require_own_visit(req.actor)
        if self._signature is not None:
            raise _reject(CONFLICT, "the note is already signed; a biller or supervisor must send it back first")
        missing = [f for f in self._spec.required_note_fields if not req.fields.get(f, "").strip()]
        if missing:
            raise _reject(INVALID, f"DOC-03 required note fields missing: {', '.join(missing)}")

    @workflow.update
    async def sign_note(self, req: SignNote) -> VisitSnapshot:
        self._signature = Signature(attestation=req.attestation_text, signed_by=req.actor.username,
                                    signed_at=workflow.now())
        self._set_state(VisitState.signed)
        self._log(req.actor.username, "signed", req.attestation_text)
        return await self._changed()

    @sign_note.validator
    def _validate_sign_note(self, req: SignNote) -> None:
        self._require_open()
        self._require_role(req.actor, Role.clinician)
        self._require_own_visit(req.actor)  # SIG-01: by the visit's clinician
        if self._note is None:
            raise _reject(CONFLICT, "SIG-01 there is no note to sign yet: submit the note first")
        if self._signature is not None:
            raise _reject(CONFLICT, "the note is already signed")
        if not req.attestation:
            raise _reject(INVALID, "SIG-01 signing needs the attestation to be confirmed")

    @workflow.update
    async def resolve_hold(self, req: ResolveHold) -> VisitSnapshot:
        hold = next(h for h in self._holds if h.key == req.key)
        self._acks.append(Acknowledgement(key=req.key, rule_id=hold.rule_id, decision=req.decision,
                                          reason=req.reason, by=req.actor.username, at=workflow.now()))
        self._log(req.actor.username, f"exception_{req.decision}", f"{hold.message}: {req.reason}")
        return await self._changed()

    @resolve_hold.validator
    def _validate_resolve_hold(self, req: ResolveHold) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor)
        hold = next((h for h in self._holds if h.key == req.key), None)
        if hold is None:
            raise _reject(CONFLICT, f"no open hold {req.key!r} on this visit")
        if not hold.approvable:
            raise _reject(CONFLICT, f"{hold.rule_id} cannot be approved; it must be fixed: {hold.message}")
        if not req.reason.strip():
            raise _reject(INVALID, "a decision on an exception needs a reason")

    @workflow.update
    async def extend_deadline(self, req: ExtendDeadline) -> VisitSnapshot:
        if req.stage == "note":
            self._note_deadline_override = req.new_deadline
        else:
            self._sign_deadline = req.new_deadline
        # The new deadline gets its own reminder and escalation.
        self._notified -= {f"{req.stage}:reminder", f"{req.stage}:escalation"}
        self._wake += 1
        self._log(req.actor.username, "deadline_extended",
                  f"{req.stage} due {req.new_deadline:%Y-%m-%d %H:%M} UTC: {req.reason}")
        return await self._changed()

    @extend_deadline.validator
    def _validate_extend_deadline(self, req: ExtendDeadline) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor)
        waiting = (req.stage == "note" and self._note is None) or (
            req.stage == "signature" and self._note is not None and self._signature is None)
        if not waiting:
            raise _reject(CONFLICT, f"the visit is not waiting for its {req.stage}")
        if req.new_deadline <= workflow.now():
            raise _reject(INVALID, "the new deadline must be in the future")
        if not req.reason.strip():
            raise _reject(INVALID, "extending a deadline needs a reason")

    @workflow.update
    async def reassign(self, req: Reassign) -> VisitSnapshot:
        before = self._spec.clinician_id
        self._spec.clinician_id = req.clinician_id
        workflow.upsert_search_attributes([VISIT_CLINICIAN.value_set(str(req.clinician_id))])
        self._log(req.actor.username, "reassigned", f"clinician {before} -> {req.clinician_id}: {req.reason}")
        return await self._changed()

    @reassign.validator
    def _validate_reassign(self, req: Reassign) -> None:
        self._require_open()
        self._require_role(req.actor, Role.supervisor)
        if self._signature is not None:
            raise _reject(CONFLICT, "a signed visit cannot be reassigned; send it back first")
        if req.clinician_id == self._spec.clinician_id:
            raise _reject(INVALID, "the visit is already assigned to that clinician")
        if not req.reason.strip():
            raise _reject(INVALID, "reassigning needs a reason")

    @workflow.update
    async def reschedule(self, req: Reschedule) -> VisitSnapshot:
        self._spec.scheduled_start = req.scheduled_start
        self._spec.scheduled_end = req.scheduled_end
        workflow.upsert_search_attributes([VISIT_SERVICE_DATE.value_set(req.scheduled_start)])
        self._wake += 1  # the note deadline follows the scheduled end
        self._log(req.actor.username, "rescheduled",
                  f"{req.scheduled_start:%Y-%m-%d %H:%M}-{req.scheduled_end:%H:%M} UTC: {req.reason}")
        return await self._changed()

    @reschedule.validator
    def _validate_reschedule(self, req: Reschedule) -> None:
        self._require_open()
        self._require_role(req.actor, Role.admin, Role.supervisor)
        if req.scheduled_end <= req.scheduled_start:
            raise _reject(INVALID, "the scheduled end must be after the start")
        if req.scheduled_end - req.scheduled_start > timedelta(hours=24):
            raise _reject(INVALID, "EVV-05 a visit cannot be longer than 24 hours")
        if not req.reason.strip():
            raise _reject(INVALID, "rescheduling needs a reason")

    @workflow.update
    async def cancel(self, req: Cancel) -> VisitSnapshot:
        self._cancel = req
        self._set_state(VisitState.cancelled)
        self._log(req.actor.username, "cancelled", req.reason)
        return await self._changed()

    @cancel.validator
    def _validate_cancel(self, req: Cancel) -> None:
        self._require_open()
        self._require_role(req.actor, Role.admin, Role.supervisor)
        if not req.reason.strip():
            raise _reject(INVALID, "cancelling needs a reason")

    @workflow.update
    async def release(self, req: Release) -> VisitSnapshot:
        self._release = req
        self._released_at = workflow.now()
        self._set_state(VisitState.released)
        self._log(req.actor.username, "released", f"batch {req.batch_id}")
        return await self._changed()

    @release.validator
    def _validate_release(self, req: Release) -> None:
        self._require_role(req.actor, Role.biller)  # REL-01: only a biller releases
        if self._state == VisitState.released and self._release:
            raise _reject(CONFLICT, f"already released by {self._release.actor.username} "
                                    f"in batch {self._release.batch_id}")
        if self._state == VisitState.claim_ready and self._recheck:
            raise _reject(CONFLICT, "the visit is being re-checked after a change; try again in a moment")
        if self._state != VisitState.claim_ready:
            holds = "; ".join(h.message for h in self._holds)
            raise _reject(CONFLICT, f"the visit is {self._state.value}, not claim_ready"
                                    + (f" (holds: {holds})" if holds else ""))

    @workflow.update
    async def send_back(self, req: SendBack) -> VisitSnapshot:
        # The clinician revises the note and signs again; the gates run again after that.
        self._signature = None
        self._sent_back = req.message
        self._sign_deadline = workflow.now() + self._spec.timers.sign_due
        self._notified -= {"signature:reminder", "signature:escalation"}
        self._set_state(VisitState.documented)
        self._log(req.actor.username, "sent_back", req.message)
        return await self._changed()

    @send_back.validator
    def _validate_send_back(self, req: SendBack) -> None:
        self._require_open()
        self._require_role(req.actor, Role.biller, Role.supervisor)
        if self._signature is None:
            raise _reject(CONFLICT, "the note is not signed yet; nothing to send back")
        if not req.message.strip():
            raise _reject(INVALID, "say what the clinician must fix")

    # --- system events ----------------------------------------------------------------------

    @workflow.signal
    def authorization_changed(self, change: AuthorizationChanged) -> None:
        """AUTH-04: an authorization touching this visit changed; check the gates again now."""
        self._log("system", "authorization_changed", f"authorization {change.authorization_id} {change.change}")
        self._recheck = True

    @workflow.signal
    def reference_data_changed(self, change: ReferenceDataChanged) -> None:
        """The patient's or payer's facts changed (e.g. the service address was corrected): check again."""
        self._log("system", "reference_data_changed", f"{change.what} {change.change}")
        self._recheck = True

    @workflow.query
    def snapshot(self) -> VisitSnapshot:
        return self._snapshot()

    # --- helpers ----------------------------------------------------------------------------

    async def _changed(self) -> VisitSnapshot:
        self._recheck = True
        await self._project()
        return self._snapshot()

    def _require_open(self) -> None:
        if self._state == VisitState.cancelled:
            raise _reject(CONFLICT, "the visit is cancelled")
        if self._state == VisitState.released:
            raise _reject(CONFLICT, "the visit is already released for billing")

    def _require_role(self, actor: Actor, *roles: Role) -> None:
        if actor.role not in roles:
            raise _reject(FORBIDDEN, f"only {roles_phrase(roles)} can do this (you are {roles_phrase([actor.role])})")

    def _require_own_visit(self, actor: Actor) -> None:
        if actor.role == Role.clinician and actor.clinician_id != self._spec.clinician_id:
            raise _reject(FORBIDDEN, "this visit is assigned to another clinician")

    def _require_reason(self, code, text: str | None, what: str) -> None:
        if code is None:
            raise _reject(INVALID, f"EVV-04 {what} needs a reason code")
        if code in REASONS_NEEDING_TEXT and not (text or "").strip():
            raise _reject(INVALID, f"EVV-04 reason code {code.value} needs an explanation in reason_text")

    def _require_correction_window(self, now: datetime, is_correction: bool) -> None:
        if not is_correction:
            return
        problem = evv_06_correction_allowed(
            service_date(self._spec), now,
            PayerRules(correction_window_days=self._spec.correction_window_days))
        if problem:
            raise _reject(CONFLICT, problem)

    def _latest(self, kind: PunchKind) -> Punch | None:
        found = [p for p in self._punches if p.kind == kind]
        return found[-1] if found else None

    def _set_state(self, state: VisitState) -> None:
        if state != self._state:
            self._state = state
            workflow.upsert_search_attributes([VISIT_STATE.value_set(state.value)])

    def _log(self, actor: str, kind: str, detail: str = "") -> None:
        self._timeline.append(TimelineEntry(seq=len(self._timeline) + 1, at=workflow.now(), actor=actor,
                                            kind=kind, detail=detail, state=self._state))

    async def _project(self) -> None:
        async with self._projecting:
            self._version += 1
            await workflow.execute_activity(
                "project_visit", self._snapshot(), start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY)

    def _tasks(self) -> list[Task]:
        spec, tasks = self._spec, []
        if self._state in (VisitState.released, VisitState.cancelled):
            return tasks
        if self._note is None or self._signature is None:
            stage = "note" if self._note is None else "signature"
            due = self._deadline(stage)
            reminded = f"{stage}:reminder" in self._notified
            title = ("Write the visit note" if stage == "note" else "Sign the note") + (
                f" (sent back: {self._sent_back})" if self._sent_back else "")
            tasks.append(Task(kind="write_note" if stage == "note" else "sign_note", role=Role.clinician,
                              clinician_id=spec.clinician_id, title=title, due_at=due, escalated=reminded))
            if f"{stage}:escalation" in self._notified:
                tasks.append(Task(kind=f"{stage}_overdue", role=Role.supervisor, clinician_id=spec.clinician_id,
                                  title=f"{'Note' if stage == 'note' else 'Signature'} overdue", due_at=due,
                                  escalated=True))
        elif self._state == VisitState.on_hold:
            for h in self._holds:
                tasks.append(Task(kind=_hold_task_kind(h), role=h.role,
                                  clinician_id=spec.clinician_id if h.role == Role.clinician else None,
                                  title=h.message, hold_key=h.key))
        elif self._state == VisitState.claim_ready:
            tasks.append(Task(kind="release", role=Role.biller, title="Claim-ready: release for billing"))
        return tasks

    def _snapshot(self) -> VisitSnapshot:
        r = self._gate_result
        signed = self._signature is not None
        hold_gates = {h.gate.value for h in self._holds} if self._state == VisitState.on_hold else set()
        checked = r is not None and signed
        gates = {
            "documented": self._note is not None,
            "signed": signed,
            "authorized": checked and "authorized" not in hold_gates,
            "evv": checked and "evv" not in hold_gates,
        }
        return VisitSnapshot(
            spec=self._spec, state=self._state, version=self._version, punches=self._punches,
            note=self._note, signature=self._signature,
            holds=self._holds if self._state == VisitState.on_hold else [],
            acknowledgements=self._acks, tasks=self._tasks(), timeline=self._timeline, gates=gates,
            note_deadline=self._deadline("note"), sign_deadline=self._sign_deadline,
            billable_units=r.billable_units if r else None,
            authorization_id=r.authorization_id if r else None,
            authorization_number=r.authorization_number if r else None,
            release_batch_id=self._release.batch_id if self._release else None,
            released_by=self._release.actor.username if self._release else None,
            released_at=self._released_at,
            cancelled_reason=self._cancel.reason if self._cancel else None,
        )


def _hold_task_kind(hold: Finding) -> str:
    if hold.role == Role.supervisor:
        return "approve_exception"
    if hold.role == Role.biller:
        return "resolve_authorization"
    if hold.role == Role.admin:
        return "fix_reference_data"
    return "fix_evv" if hold.gate.value == "evv" else "fix_note"
