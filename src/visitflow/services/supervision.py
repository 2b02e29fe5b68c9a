"""SUP-01: setting up a patient's aide supervision and listing what is due, for the API and the UI."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from visitflow.activities.supervision import (
    next_due,
    reload_supervision,
    signal_visits,
    supervision_workflow_id,
    visits_the_lapse_may_hold,
)
from visitflow.db.session import write_session
from visitflow.db.tables import Clinician, Patient, PatientSupervision, PatientSupervisionCreate
from visitflow.models import SKILLED_DISCIPLINES, Actor, ReferenceDataChanged
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.supervision import SupervisionWorkflow


async def set_supervision(engine: Engine, client: Client, settings: Settings, patient_id: int,
                          body: PatientSupervisionCreate, actor: Actor,
                          today: date | None = None) -> PatientSupervision:
    """Track (or change) how the patient's aide care is supervised; its timers start or re-arm, and aide visits a
    lapse held are checked again (a new plan or a supervisory visit entered by hand may lift the hold).

    Setting the same plan again changes nothing but `updated_at`: safe to retry.
    """
    today = today or agency_today(settings)
    with write_session(engine) as s:
        if s.get(Patient, patient_id) is None:
            raise ServiceError(404, f"patient {patient_id} not found")
        if body.supervising_clinician_id is not None:
            clinician = s.get(Clinician, body.supervising_clinician_id)
            if clinician is None:
                raise ServiceError(422, f"clinician {body.supervising_clinician_id} does not exist",
                                   "supervising_clinician_id")
            if clinician.discipline not in SKILLED_DISCIPLINES:
                raise ServiceError(422, "SUP-01 aide care is supervised by an RN or a therapist, not by "
                                        f"{clinician.discipline.value} {clinician.first_name} {clinician.last_name}",
                                   "supervising_clinician_id")
        if body.last_visit_on is not None and body.last_visit_on > today:
            raise ServiceError(422, "the last supervisory visit cannot be in the future", "last_visit_on")
        row = s.exec(select(PatientSupervision).where(PatientSupervision.patient_id == patient_id)
                     .with_for_update()).first()
        was_due = row.due_on if row is not None else None
        if row is None:
            row = PatientSupervision(patient_id=patient_id, since=today, due_on=today, interval_days=1,
                                     prompt_days=settings.supervision_prompt_days, care=body.care,
                                     updated_at=datetime.now(UTC))
        row.care = body.care
        row.supervising_clinician_id = body.supervising_clinician_id
        if body.last_visit_on is not None and (row.last_visit_on is None or body.last_visit_on > row.last_visit_on):
            row.last_visit_on = body.last_visit_on
            row.last_visit_id = None  # entered by hand, not a visit documented here
        row.interval_days = (settings.supervision_skilled_days if body.care == "skilled"
                             else settings.supervision_aide_only_days)
        row.prompt_days = settings.supervision_prompt_days
        row.due_on = next_due(row)
        row.updated_at = datetime.now(UTC)
        s.add(row)
        s.commit()
        s.refresh(row)
        held = visits_the_lapse_may_hold(s, patient_id, was_due)
        s.expunge(row)
    await client.start_workflow(
        SupervisionWorkflow.run, patient_id, id=supervision_workflow_id(patient_id), task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE)
    await reload_supervision(client, patient_id)
    await signal_visits(client, held, ReferenceDataChanged(
        what=f"patient {patient_id}", change=f"SUP-01 supervision set by {actor.username}: due {row.due_on}",
        at=datetime.now(UTC)))
    return row


def agency_today(settings: Settings) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(settings.agency_timezone)).date()


def supervision_of(session: Session, patient_id: int) -> PatientSupervision:
    row = session.get(PatientSupervision, patient_id)
    if row is None:
        raise ServiceError(404, f"patient {patient_id} has no aide supervision on record")
    return row


def supervision_due(session: Session, due_by: date, limit: int = 200) -> list[PatientSupervision]:
    """Patients whose supervisory visit is due by `due_by` (lapsed ones first), from the due-date index."""
    return list(session.exec(select(PatientSupervision).where(PatientSupervision.due_on <= due_by)
                             .order_by(PatientSupervision.due_on, PatientSupervision.patient_id).limit(limit)).all())


def supervision_board(session: Session, due_by: date, limit: int = 200) -> list[dict]:
    """The supervision page: each patient due by `due_by` with names, soonest first (the due-date index, one
    join to the patient and one to the supervising clinician per row shown)."""
    rows = session.exec(
        select(PatientSupervision, Patient.first_name, Patient.last_name, Clinician.first_name, Clinician.last_name,
               Clinician.discipline)
        .join(Patient, Patient.id == PatientSupervision.patient_id)
        .outerjoin(Clinician, Clinician.id == PatientSupervision.supervising_clinician_id)
        .where(PatientSupervision.due_on <= due_by)
        .order_by(PatientSupervision.due_on, PatientSupervision.patient_id).limit(limit)).all()
    return [{"row": r, "patient": f"{pf} {pl}",
             "clinician": f"{cf} {cl} ({cd.value})" if cf else None} for r, pf, pl, cf, cl, cd in rows]
