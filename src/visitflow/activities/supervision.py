"""Side effects of missed visits (MV-02) and aide supervision (SUP-01): notifications, the supervision record,
and the signals that let held aide visits move on.

Idempotent like every activity here: notifications carry a dedupe key, the supervision record only moves
forward, and a repeated re-check signal only makes a visit look at its gates again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from visitflow.activities.visits import heartbeating
from visitflow.db.session import write_session
from visitflow.db.tables import Notification, PatientSupervision, Payer, Visit, VisitHold
from visitflow.models import (
    OPEN_STATES,
    ReferenceDataChanged,
    Role,
    SupervisionAlert,
    SupervisionStatus,
    SupervisoryVisitDocumented,
    VisitSnapshot,
    service_date,
)

SUPERVISION_INBOX = "supervision-{patient_id}"  # notifications about a patient's supervision, not one visit


def supervision_workflow_id(patient_id: int) -> str:
    return f"supervision-{patient_id}"


def _notify(s: Session, visit_id: str, role: Role, kind: str, message: str, dedupe_key: str,
            clinician_id: int | None = None) -> None:
    s.add(Notification(visit_id=visit_id, role=role, clinician_id=clinician_id, kind=kind, message=message,
                       dedupe_key=dedupe_key[:120], created_at=datetime.now(UTC)))
    try:
        s.commit()
    except IntegrityError:
        s.rollback()  # sent by an earlier attempt


def notify_missed(engine: Engine, snap: VisitSnapshot) -> None:
    """MV-02: the supervisor and the office hear of every missed visit; others only where the payer requires."""
    missed = snap.missed
    assert missed is not None
    spec = snap.spec
    reason = missed.reason.value.replace("_", " ") + (f" ({missed.reason_text.strip()})" if missed.reason_text else "")
    message = (f"MV-02 visit {spec.visit_id} on {service_date(spec)} ({spec.service_code}) was missed: {reason}; "
               f"marked by {missed.actor.username}. It will not be billed.")
    with write_session(engine) as s:
        payer = s.get(Payer, spec.payer_id)
        for role in (Role.supervisor, Role.admin):
            _notify(s, spec.visit_id, role, "missed_visit", message, f"{spec.visit_id}:missed:{role.value}")
        if payer is not None and payer.missed_visit_notice_to:
            # The office sends the notice the payer requires (e.g. to the ordering practitioner): it is their task.
            _notify(s, spec.visit_id, Role.admin, "missed_visit_notice",
                    f"{payer.name} requires notice of missed visits: tell the {payer.missed_visit_notice_to}. "
                    + message, f"{spec.visit_id}:missed:notice")


async def supervisory_visit_documented(engine: Engine, doc: SupervisoryVisitDocumented) -> list[str]:
    """SUP-01: record the supervisory visit, then let the aide visits its lapse held go on (they re-check their
    gates now) and re-arm the patient's supervision timers. Returns the visits signalled."""
    held = await asyncio.to_thread(_record_supervisory_visit, engine, doc)
    if held is None:
        return []  # the patient's aide care is not supervised here: nothing is due, nothing held
    client = activity.client()
    change = ReferenceDataChanged(what=f"patient {doc.patient_id}", at=datetime.now(UTC),
                                  change=f"SUP-01 supervisory visit documented on {doc.service_date}")
    await signal_visits(client, held, change)
    await reload_supervision(client, doc.patient_id)
    return held


def _record_supervisory_visit(engine: Engine, doc: SupervisoryVisitDocumented) -> list[str] | None:
    with write_session(engine) as s:
        row = s.exec(select(PatientSupervision).where(PatientSupervision.patient_id == doc.patient_id)
                     .with_for_update()).first()
        if row is None:
            return None
        was_due = row.due_on
        if row.last_visit_on is None or doc.service_date >= row.last_visit_on:
            row.last_visit_on = doc.service_date
            row.last_visit_id = doc.visit_id
            row.due_on = next_due(row)
            row.updated_at = datetime.now(UTC)
            s.add(row)
            s.commit()
        return visits_the_lapse_may_hold(s, doc.patient_id, was_due)


def visits_the_lapse_may_hold(s: Session, patient_id: int, was_due: date | None) -> list[str]:
    """Visits of the patient that the lapse holds, or may: those with a SUP-01 hold, and the open ones dated after the
    old due date. A visit's workflow holds before its projection writes the hold, so a visit held a moment ago may
    not show its hold yet; without it here it would wait for its periodic re-check (a lost wake-up). Reads the hold
    index by rule and the patient's visits by their index: a few rows. `was_due` None: nothing was due before."""
    held = set(s.exec(select(VisitHold.visit_id).join(Visit, Visit.id == VisitHold.visit_id)
                      .where(VisitHold.rule_id == "SUP-01", Visit.patient_id == patient_id)).all())
    open_after = set() if was_due is None else set(s.exec(select(Visit.id).where(
        Visit.patient_id == patient_id, Visit.service_date > was_due,
        Visit.state.in_([state.value for state in OPEN_STATES]))).all())
    return sorted(held | open_after)


async def signal_visits(client, visit_ids: list[str], change: ReferenceDataChanged) -> None:
    from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

    for visit_id in visit_ids:
        try:
            await client.get_workflow_handle(visit_workflow_id(visit_id)).signal(
                VisitWorkflow.reference_data_changed, change)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # closed since: nothing to re-check
                raise


async def reload_supervision(client, patient_id: int) -> None:
    from visitflow.workflows.supervision import SupervisionWorkflow

    try:
        await client.get_workflow_handle(supervision_workflow_id(patient_id)).signal(SupervisionWorkflow.reload)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


def next_due(row: PatientSupervision) -> date:
    return (row.last_visit_on or row.since) + timedelta(days=row.interval_days)


def _start_of(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), ZoneInfo(zone)).astimezone(UTC)


class SupervisionActivities:
    def __init__(self, engine: Engine, timezone: str = "UTC") -> None:
        self.engine = engine
        self.timezone = timezone

    @activity.defn(name="supervision_status")
    @heartbeating
    def supervision_status(self, patient_id: int) -> SupervisionStatus | None:
        """Where the patient's supervision stands, and when its prompt and its lapse fall (agency-local days)."""
        with Session(self.engine) as s:
            row = s.get(PatientSupervision, patient_id)
            if row is None:
                return None
            return SupervisionStatus(
                patient_id=patient_id, due_on=row.due_on, last_visit_on=row.last_visit_on,
                supervising_clinician_id=row.supervising_clinician_id,
                prompt_at=_start_of(row.due_on - timedelta(days=row.prompt_days), self.timezone),
                lapse_at=_start_of(row.due_on + timedelta(days=1), self.timezone),
                prompted=row.prompted_for == row.due_on, lapsed=row.lapsed_for == row.due_on)

    @activity.defn(name="supervision_alert")
    @heartbeating
    def supervision_alert(self, alert: SupervisionAlert) -> None:
        """The prompt ahead of the due date, or the escalation when it lapsed: to the supervising clinician and
        the supervisors; the record keeps which due date each was for."""
        with write_session(self.engine) as s:
            row = s.exec(select(PatientSupervision).where(PatientSupervision.patient_id == alert.patient_id)
                         .with_for_update()).first()
            if row is None or row.due_on != alert.due_on:
                return  # documented or changed meanwhile: the workflow reloads and re-arms
            last = f"last on {row.last_visit_on}" if row.last_visit_on else "none on record"
            if alert.kind == "prompt":
                row.prompted_for = row.due_on
                message = (f"SUP-01 supervisory visit for patient {row.patient_id} is due by {row.due_on} ({last}): "
                           "schedule it with an RN or therapist")
            else:
                row.lapsed_for = row.due_on
                message = (f"SUP-01 supervisory visit for patient {row.patient_id} lapsed on {row.due_on} ({last}): "
                           "aide visits after that date are held until one is documented")
            row.updated_at = datetime.now(UTC)
            s.add(row)
            s.commit()
            inbox = SUPERVISION_INBOX.format(patient_id=row.patient_id)
            kind = f"supervision_{alert.kind}"
            if row.supervising_clinician_id is not None:
                _notify(s, inbox, Role.clinician, kind, message, f"{inbox}:{alert.kind}:{row.due_on}:clinician",
                        clinician_id=row.supervising_clinician_id)
            _notify(s, inbox, Role.supervisor, kind, message, f"{inbox}:{alert.kind}:{row.due_on}:supervisor")

    def all(self) -> list:
        return [self.supervision_status, self.supervision_alert]
