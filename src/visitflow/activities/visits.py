"""Side effects of a visit's workflow: the read model, the gate facts, notifications.

Activities are idempotent because Temporal retries them: projections carry a version that only moves
forward, usage is one row per visit, notifications carry a dedupe key.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import bindparam, delete, func, insert, join, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from visitflow.db.session import write_session
from visitflow.db.tables import (
    Authorization,
    AuthorizationUsage,
    Notification,
    Patient,
    PatientSupervision,
    Payer,
    Visit,
    VisitEvent,
    VisitHold,
    VisitTask,
)
from visitflow.models import (
    AIDE_DISCIPLINES,
    GateResult,
    GeoPoint,
    NotificationRequest,
    PayerRules,
    Role,
    SupervisoryVisitDocumented,
    VisitSnapshot,
    VisitState,
    service_date,
)
from visitflow.rules import AuthorizationFacts, GateInput, PatientFacts, UsageEntry, evaluate
from visitflow.services import rollups
from visitflow.rules.facts import SupervisionFacts

HEARTBEAT_EVERY = 1.0  # seconds; the workflow's heartbeat timeout is a few of these

F = TypeVar("F", bound=Callable)


def heartbeating(fn: F) -> F:
    """Heartbeat from a side thread while a blocking activity runs.

    Activities here take milliseconds, but one may wait its turn for the database. Heartbeats let the
    server notice a dead worker within the heartbeat timeout, and hand the activity to another worker,
    instead of waiting out the whole start-to-close timeout. A body that ends within a second sends none.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if activity.in_activity() and activity.info().is_local:
            # A local activity cannot heartbeat: the worker running it holds the visit's workflow task, and a
            # dead worker shows as that task timing out.
            return fn(*args, **kwargs)
        context = contextvars.copy_context()  # the activity's context, for heartbeats from the side thread
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_EVERY):
                context.run(activity.heartbeat)

        threading.Thread(target=beat, name="activity-heartbeat", daemon=True).start()
        try:
            return fn(*args, **kwargs)
        finally:
            done.set()

    return run  # type: ignore[return-value]


def payer_rules(payer: Payer) -> PayerRules:
    return PayerRules(
        evv_required=payer.evv_required, evv_radius_m=payer.evv_radius_m,
        clock_tolerance_min=payer.clock_tolerance_min, max_visit_hours=payer.max_visit_hours,
        correction_window_days=payer.correction_window_days, rounding=payer.rounding,
        orders_required=list(payer.orders_required or []),
        signed_orders_before_billing=payer.signed_orders_before_billing)


class _ProjectionStatements:
    """The projection's statements, built once; each call passes only values."""

    def __init__(self) -> None:
        visit = bindparam("b_visit")
        # The row's version, and what its dashboard counts depend on (rollups.VisitFacts), in one read.
        stored = (Visit.version, Visit.hold_count, *rollups.VISIT_COLUMNS[1:])
        self.stored = select(*stored).where(Visit.id == visit).with_for_update()
        self.stored_with_snapshot = select(*stored, Visit.snapshot).where(Visit.id == visit).with_for_update()
        self.insert_visit = insert(Visit)
        self.update_visit = update(Visit).where(Visit.id == visit)
        self.open_holds = (select(VisitHold.key, VisitHold.opened_at, VisitHold.rule_id, VisitHold.gate, VisitHold.role,
                                  VisitHold.message, VisitHold.approvable)
                           .where(VisitHold.visit_id == visit).order_by(VisitHold.id))
        self.open_tasks = select(VisitTask.kind, VisitTask.escalated, VisitTask.clinician_id).where(
            VisitTask.visit_id == visit)
        self.delete_holds = delete(VisitHold).where(VisitHold.visit_id == visit)
        self.delete_tasks = delete(VisitTask).where(VisitTask.visit_id == visit)
        self.insert_hold = insert(VisitHold)
        self.insert_task = insert(VisitTask)
        self.last_event = select(func.max(VisitEvent.seq)).where(VisitEvent.visit_id == visit)
        self.insert_event = insert(VisitEvent)
        self.release_units = delete(AuthorizationUsage).where(AuthorizationUsage.visit_id == visit)


_PROJECTION = _ProjectionStatements()


class _GateStatements:
    """The gate check's own reads and its units write, built once."""

    def __init__(self) -> None:
        patient, payer, visit = bindparam("b_patient"), bindparam("b_payer"), bindparam("b_visit")
        # The patient and the payer in one read: a row only if both exist.
        self.patient_and_payer = select(
            Patient.medicaid_id, Patient.latitude, Patient.longitude, Payer.evv_required, Payer.evv_radius_m,
            Payer.clock_tolerance_min, Payer.max_visit_hours, Payer.correction_window_days, Payer.rounding,
            Payer.orders_required, Payer.signed_orders_before_billing,
        ).select_from(join(Patient, Payer, Payer.id == payer)).where(Patient.id == patient)
        self.authorizations = select(*Authorization.__table__.c).where(
            Authorization.patient_id == patient, Authorization.payer_id == payer,
            Authorization.service_code == bindparam("b_service")).order_by(Authorization.id).with_for_update()
        # The units held on those authorizations, and this visit's own wherever they are.
        self.usage = select(AuthorizationUsage.visit_id, AuthorizationUsage.authorization_id,
                            AuthorizationUsage.service_date, AuthorizationUsage.units).where(or_(
                                AuthorizationUsage.authorization_id.in_(bindparam("b_auths", expanding=True)),
                                AuthorizationUsage.visit_id == visit))
        self.insert_usage = insert(AuthorizationUsage)
        self.update_usage = update(AuthorizationUsage).where(AuthorizationUsage.visit_id == visit)
        self.delete_usage = delete(AuthorizationUsage).where(AuthorizationUsage.visit_id == visit)


_GATES = _GateStatements()


def _hold_content(rule_id: str, gate: str, role: Role | str, key: str, message: str, approvable: bool) -> tuple:
    """What a hold row says, opened_at aside (it is kept from the row the hold first had)."""
    return rule_id, gate, Role(role).value, key, message, bool(approvable)


class VisitActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="project_visit")
    @heartbeating
    def project_visit(self, snap: VisitSnapshot) -> None:
        """Write the visit as its snapshot shows it (visits started before the lean lifecycle send these)."""
        self._project(snap, timeline_is_new_only=False)

    @activity.defn(name="project_visit_changes")
    @heartbeating
    def project_visit_changes(self, snap: VisitSnapshot) -> None:
        """The same, from a snapshot whose timeline holds only the entries the read model has not had yet."""
        self._project(snap, timeline_is_new_only=True)

    def _project(self, snap: VisitSnapshot, timeline_is_new_only: bool) -> None:
        # Everything that does not depend on the stored row is made before the write lock is taken: on SQLite one
        # writer at a time holds it, so its hold time caps the worker's throughput. Inside: the version check, what
        # needs the stored row (the old dashboard counts, hold opening times, the stored timeline) and the writes.
        spec = snap.spec
        now = datetime.now(UTC)
        visit_id = spec.visit_id
        fields = {
            "clinician_id": spec.clinician_id, "modifiers": list(spec.modifiers),
            "scheduled_start": spec.scheduled_start, "scheduled_end": spec.scheduled_end,
            "service_date": service_date(spec), "state": snap.state.value, "version": snap.version,
            "hold_count": len(snap.holds), "note_deadline": snap.note_deadline,
            "billable_units": snap.billable_units, "authorization_id": snap.authorization_id,
            "release_batch_id": snap.release_batch_id, "released_at": snap.released_at,
            "released_by": snap.released_by, "updated_at": now, "snapshot": snap.model_dump(mode="json"),
            **rollups.snapshot_columns(snap),
            "missed_reason": snap.missed.reason.value if snap.missed else None,
        }
        holds = [{"visit_id": visit_id, "rule_id": h.rule_id, "gate": h.gate.value, "role": h.role, "key": h.key,
                  "message": h.message, "approvable": h.approvable} for h in snap.holds]
        hold_contents = [_hold_content(h.rule_id, h.gate.value, h.role, h.key, h.message, h.approvable)
                         for h in snap.holds]
        tasks = [{"visit_id": visit_id, "kind": t.kind, "role": t.role, "clinician_id": t.clinician_id,
                  "title": t.title, "due_at": t.due_at, "escalated": t.escalated, "hold_key": t.hold_key}
                 for t in snap.tasks]
        events = [{"visit_id": visit_id, "seq": e.seq, "at": e.at, "actor": e.actor, "kind": e.kind,
                   "detail": e.detail, "state": e.state.value} for e in snap.timeline]
        # The visit's new dashboard counts, as they are unless the stored row says otherwise (a hold opened earlier,
        # waits that began in timeline entries this snapshot no longer carries): then they are counted again below.
        new_facts = rollups.VisitFacts(
            state=snap.state.value, clinician_id=spec.clinician_id, payer_id=spec.payer_id,
            service_code=spec.service_code, modifiers=list(spec.modifiers), billable_units=snap.billable_units,
            scheduled_start=spec.scheduled_start, scheduled_end=spec.scheduled_end,
            service_date=fields["service_date"], note_submitted_at=fields["note_submitted_at"],
            sign_waiting_since=fields["sign_waiting_since"], ready_since=fields["ready_since"],
            holds=[(h.role, h.rule_id, h.approvable, now) for h in snap.holds],
            tasks=[(t.kind, t.escalated, t.clinician_id) for t in snap.tasks])
        new_figures = rollups.figures(new_facts)
        # Locked from the first statement: the version check and the write are one step. Plain SQL statements
        # built once (_PROJECTION), values passed as parameters: this runs on every transition of every visit,
        # and building statements per call cost more CPU than running them.
        q = _PROJECTION
        with write_session(self.engine) as s:
            db = s.connection()
            row = db.execute(q.stored_with_snapshot if timeline_is_new_only else q.stored,
                             {"b_visit": visit_id}).first()
            if row is not None and row.version >= snap.version:
                return  # a retried or late write never moves a visit backwards
            if row is None:
                db.execute(q.insert_visit, {
                    "id": visit_id, "workflow_id": f"visit-{visit_id}", "created_at": now,
                    "patient_id": spec.patient_id, "payer_id": spec.payer_id, "service_code": spec.service_code,
                    **fields})
                if holds:
                    db.execute(q.insert_hold, [{**h, "opened_at": now} for h in holds])
                if tasks:
                    db.execute(q.insert_task, tasks)
                delta = new_figures
                last_seq = 0
            else:
                # The stored holds keep their opening time; a visit without holds has no rows to read.
                stored_holds = db.execute(q.open_holds, {"b_visit": visit_id}).all() if row.hold_count else []
                opened = {h.key: h.opened_at for h in stored_holds}
                if timeline_is_new_only:
                    # The stored snapshot's timeline and the event rows are written together: its last entry is the
                    # last event. The new snapshot keeps the entries before the first one this projection brings.
                    stored_timeline = row.snapshot.get("timeline", [])
                    last_seq = stored_timeline[-1]["seq"] if stored_timeline else 0
                    first_new = snap.timeline[0].seq if snap.timeline else last_seq + 1
                    kept = [e for e in stored_timeline if e["seq"] < first_new]
                    if kept:
                        fields["snapshot"]["timeline"][:0] = kept
                        fields.update(rollups.timeline_columns(fields["snapshot"]["timeline"]))
                    # The stored snapshot lists the task rows (they are written together), so they need no read.
                    stored_tasks = row.snapshot.get("tasks", [])
                    tasks_unchanged = stored_tasks == fields["snapshot"]["tasks"]
                    old_tasks = [(t["kind"], t["escalated"], t["clinician_id"]) for t in stored_tasks]
                else:
                    last_seq = db.execute(q.last_event, {"b_visit": visit_id}).scalar() or 0
                    tasks_unchanged = False
                    old_tasks = [tuple(t) for t in db.execute(q.open_tasks, {"b_visit": visit_id})]
                db.execute(q.update_visit, {"b_visit": visit_id, **fields})
                # Holds and tasks that say what the stored rows say are left as they are (a punch changes neither).
                if [_hold_content(h.rule_id, h.gate, h.role, h.key, h.message, h.approvable)
                        for h in stored_holds] != hold_contents:
                    if stored_holds:
                        db.execute(q.delete_holds, {"b_visit": visit_id})
                    if holds:
                        db.execute(q.insert_hold, [{**h, "opened_at": opened.get(h["key"], now)} for h in holds])
                if not tasks_unchanged:
                    if old_tasks:
                        db.execute(q.delete_tasks, {"b_visit": visit_id})
                    if tasks:
                        db.execute(q.insert_task, tasks)
                if opened or any(fields[c] != getattr(new_facts, c) for c in ("sign_waiting_since", "ready_since")):
                    new_figures = rollups.figures(dataclasses.replace(
                        new_facts, sign_waiting_since=fields["sign_waiting_since"], ready_since=fields["ready_since"],
                        holds=[(h.role, h.rule_id, h.approvable, opened.get(h.key, now)) for h in snap.holds]))
                # The dashboard's counts move with the visit: its old contribution out, its new one in (only when
                # the version moves forward, so a retried or late projection counts nothing).
                delta = new_figures.copy()
                delta.subtract(rollups.figures(rollups.VisitFacts(
                    *row[2:2 + len(rollups.VISIT_COLUMNS) - 1],
                    holds=[(h.role, h.rule_id, h.approvable, h.opened_at) for h in stored_holds], tasks=old_tasks)))
            rollups.apply(db, rollups.Change(delta))
            events = [e for e in events if e["seq"] > last_seq]
            if events:
                db.execute(q.insert_event, events)
            if snap.state in (VisitState.cancelled, VisitState.missed):  # nothing billed: the units go back
                db.execute(q.release_units, {"b_visit": visit_id})
            s.commit()

    @activity.defn(name="evaluate_gates")
    @heartbeating
    def evaluate_gates(self, snap: VisitSnapshot) -> GateResult:
        """Load the facts the gates need, run the pure rules, hold the units the visit uses (AUTH-02)."""
        spec = snap.spec
        day = service_date(spec)
        q = _GATES
        # (Imported here: activities.orders uses this module's `heartbeating`.)
        from visitflow.activities.orders import orders_in_effect, visits_under

        # Check-then-reserve is one locked transaction: two visits cannot both take the last units. Statements are
        # built once (_GATES): on SQLite this holds the one write lock, so only the reads and the rules are inside.
        with write_session(self.engine) as s:
            db = s.connection()
            found = db.execute(q.patient_and_payer, {"b_patient": spec.patient_id, "b_payer": spec.payer_id}).first()
            if found is None:
                raise ApplicationError(f"visit {spec.visit_id} refers to a missing patient or payer",
                                       non_retryable=True)
            # Lock the candidate authorizations so two visits cannot both take the last units.
            auths = [AuthorizationFacts.model_validate(dict(a._mapping)) for a in db.execute(q.authorizations, {
                "b_patient": spec.patient_id, "b_payer": spec.payer_id, "b_service": spec.service_code})]
            usage: dict[int, list[UsageEntry]] = {a.id: [] for a in auths}
            existing = None  # the units this visit holds now, whichever authorization they are on
            for u in db.execute(q.usage, {"b_auths": list(usage), "b_visit": spec.visit_id}):
                if u.visit_id == spec.visit_id:
                    existing = u
                else:
                    usage[u.authorization_id].append(
                        UsageEntry(visit_id=u.visit_id, service_date=u.service_date, units=u.units))
            location = (GeoPoint(lat=found.latitude, lon=found.longitude)
                        if found.latitude is not None and found.longitude is not None else None)
            ctx = GateInput(
                visit=snap,
                patient=PatientFacts(patient_id=spec.patient_id, medicaid_id=found.medicaid_id,
                                     service_location=location),
                payer=payer_rules(found),
                authorizations=auths,
                usage=usage, required_note_fields=spec.required_note_fields,
                min_minutes=spec.minutes_min, max_minutes=spec.minutes_max,
                supervision=_supervision_facts(s, spec))
            # ORD-01, ORD-02, AUTH-03: the patient's orders on the date of service and the visits they count.
            ctx.orders = orders_in_effect(s, spec.patient_id, day)
            ctx.ordered_visits = visits_under(s, spec.patient_id, ctx.orders)
            result = evaluate(ctx)

            authorized = result.authorization_id is not None and not any(
                f.gate.value == "authorized" for f in result.findings)
            held = {"visit_id": spec.visit_id, "authorization_id": result.authorization_id, "service_date": day,
                    "units": result.billable_units or 0}
            if authorized:
                if existing is None:
                    db.execute(q.insert_usage, held)
                elif (existing.authorization_id, existing.service_date, existing.units) != (
                        held["authorization_id"], day, held["units"]):
                    db.execute(q.update_usage, {**held, "b_visit": spec.visit_id})
            elif existing is not None:
                db.execute(q.delete_usage, {"b_visit": spec.visit_id})
            s.commit()
        # (After the lock: sending an exception back changes who acts on a finding, never its gate.)
        return _route_rejected_exceptions(snap, result)

    @activity.defn(name="notify")
    @heartbeating
    def notify(self, req: NotificationRequest) -> None:
        with write_session(self.engine) as s:
            s.add(Notification(visit_id=req.visit_id, role=req.role, clinician_id=req.clinician_id,
                               kind=req.kind, message=req.message, dedupe_key=req.dedupe_key,
                               created_at=datetime.now(UTC)))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()  # already sent by an earlier attempt

    @activity.defn(name="notify_missed")
    @heartbeating
    def notify_missed(self, snap: VisitSnapshot) -> None:
        """MV-02: tell the supervisor, the office, and whoever the payer requires, that the visit was missed."""
        from visitflow.activities.supervision import notify_missed

        notify_missed(self.engine, snap)

    @activity.defn(name="supervisory_visit_documented")
    async def supervisory_visit_documented(self, doc: SupervisoryVisitDocumented) -> list[str]:
        """SUP-01: record the supervisory visit; the aide visits its lapse held move on."""
        from visitflow.activities.supervision import supervisory_visit_documented

        return await supervisory_visit_documented(self.engine, doc)

    def all(self) -> list:
        return [self.project_visit, self.project_visit_changes, self.evaluate_gates, self.notify,
                self.notify_missed, self.supervisory_visit_documented]


def _supervision_facts(s, spec) -> SupervisionFacts | None:
    """SUP-01 facts, for aide visits of a patient whose supervision is tracked (one primary-key read)."""
    if spec.discipline not in AIDE_DISCIPLINES:
        return None
    row = s.get(PatientSupervision, spec.patient_id)
    return SupervisionFacts(due_on=row.due_on, last_visit_on=row.last_visit_on) if row is not None else None


def _route_rejected_exceptions(snap: VisitSnapshot, result: GateResult) -> GateResult:
    """A supervisor who rejects an exception sends it back to the clinician to fix."""
    last: dict[str, str] = {}
    for ack in snap.acknowledgements:
        last[ack.key] = ack.decision
    findings = []
    for f in result.findings:
        if last.get(f.key) == "rejected":
            reason = next(a for a in reversed(snap.acknowledgements) if a.key == f.key)
            f = f.model_copy(update={"role": Role.clinician, "approvable": False,
                                     "message": f"{f.message}; rejected by {reason.by}: {reason.reason}"})
        findings.append(f)
    return result.model_copy(update={"findings": findings})
