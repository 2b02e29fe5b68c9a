"""Marking a visit missed from its page (MV-02); the aide supervision page (SUP-01): what is due, and the office's
form to set or change a patient's supervision (the same service as `PUT /api/patients/{id}/supervision`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from visitflow.api.idempotency import claim_form_key
from visitflow.audit import PATIENT_STATE
from visitflow.catalogue import MISSED_REASON_LABELS
from visitflow.db.tables import Patient, PatientSupervision, PatientSupervisionCreate, User
from visitflow.deps import MAX_ROW_ID, SessionDep, TemporalDep, VisitId, let_go
from visitflow.models import SKILLED_DISCIPLINES, MissedReason, Role
from visitflow.services import missed, queries
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError
from visitflow.services.supervision import agency_today, set_supervision, supervision_board
from visitflow.ui.actions import done, perform
from visitflow.ui.deps import UIDep, UIState, render, role_page, visible_visit
from visitflow.ui.forms import FORM, FormState, Target, place_rejection, read_form

router = APIRouter(include_in_schema=False)

OfficeUser = Annotated[User, role_page(Role.admin, Role.supervisor)]


@router.post("/visits/{visit_id}/missed")
async def mark_missed(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                      user: OfficeUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["reason", "reason_text"])
    target = Target.of(form)
    reason = f.need("reason", "Choose why the visit did not happen.")
    if reason and reason not in {r.value for r in MissedReason}:
        f.errors["reason"] = "Choose a reason from the list."
    if reason == MissedReason.other.value and not f.v("reason_text").strip():
        f.errors["reason_text"] = "Say what happened."
    ctx = {"view": view, "visit_id": visit_id, "target": target,
           "missed_reasons": list(MISSED_REASON_LABELS.items())}
    result = await perform(request, "_form_missed.html", ctx, f,
                           lambda: missed.mark_missed(temporal, visit_id, actor_of(user), MissedReason(reason),
                                                      f.v("reason_text"), f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"Visit {visit_id} was marked missed ({MISSED_REASON_LABELS[MissedReason(reason)].lower()}); "
                "it will not be billed.")


SUPERVISION_FIELDS = ["patient_id", "supervising_clinician_id", "care", "last_visit_on"]
CHOICES = 20  # patients a type-ahead offers at once


@router.get("/supervision")
def supervision_page(request: Request, session: SessionDep, user: OfficeUser, ui: UIDep,
                     within_days: Annotated[int, Query(ge=0, le=366)] = 14,
                     patient: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None) -> Response:
    """`patient`: the form starts with that patient's supervision as it is (the board's "Change" links)."""
    f = FormState()
    chosen = session.get(Patient, patient) if patient else None
    if chosen is not None:
        f.values["patient_id"] = str(chosen.id)
        current = session.get(PatientSupervision, chosen.id)
        if current is not None:
            f.values.update(care=current.care, supervising_clinician_id=str(current.supervising_clinician_id or ""),
                            last_visit_on=current.last_visit_on.isoformat() if current.last_visit_on else "")
    return render(request, "supervision.html", {**_board(session, ui, within_days),
                                                **_form(session, ui, f, chosen)})


def _board(session: Session, ui: UIState, within_days: int) -> dict:
    today = agency_today(ui.settings)
    return {"rows": supervision_board(session, today + timedelta(days=within_days)), "today": today,
            "within_days": within_days, "skilled_days": ui.settings.supervision_skilled_days,
            "aide_only_days": ui.settings.supervision_aide_only_days}


def _form(session: Session, ui: UIState, f: FormState, chosen: Patient | None, flash: str = "") -> dict:
    # Only an RN or a therapist supervises aide care (the service refuses anyone else): the staff list is the
    # agency's clinicians, a few hundred at most, never its patients.
    return {"f": f, "chosen": chosen, "flash": flash, "today": agency_today(ui.settings),
            "supervisors": [c for c in queries.clinicians(session) if c.discipline in SKILLED_DISCIPLINES]}


@router.get("/supervision/patients")
def patient_choices(request: Request, session: SessionDep, user: OfficeUser,
                    q: Annotated[str, Query(max_length=80)] = "") -> Response:
    """The type-ahead's choices for the patient picker: up to CHOICES patients whose names start with what was
    typed (or the patient with that number)."""
    found = queries.patients_matching(session, q, CHOICES)
    return render(request, "_patient_choices.html", {"patients": found, "q": q.strip(), "limit": CHOICES})


@router.post("/supervision")
async def change_supervision(request: Request, session: SessionDep, temporal: TemporalDep, user: OfficeUser,
                             ui: UIDep) -> Response:
    """Set or change a patient's aide supervision: `supervision.set_supervision`, as the API's PUT. The form's key
    makes a resend (a double click, a lost answer) get the first answer, changing nothing more."""
    await request.body()  # kept, so the form's key is held against exactly what was sent
    f = read_form(await request.form(), SUPERVISION_FIELDS)
    raw = {name: f.v(name).strip() for name in SUPERVISION_FIELDS}
    patient_id = int(raw["patient_id"]) if raw["patient_id"].isdigit() else None
    if patient_id is None or not 1 <= patient_id <= MAX_ROW_ID:
        f.errors["patient_id"] = "Find the patient and choose them from the list."
        patient_id = None
    chosen = session.get(Patient, patient_id) if patient_id else None
    if patient_id and chosen is None:
        f.errors["patient_id"] = f"There is no patient {patient_id}; find the patient by name."
    if chosen is not None:
        # The audit record names whose supervision it is, a resend answered from the first answer too.
        setattr(request.state, PATIENT_STATE, chosen.id)
    await claim_form_key(request, user.id, f.key)
    if raw["care"] not in ("skilled", "aide_only"):
        f.errors["care"] = "Choose the kind of aide care."
    clinician = raw["supervising_clinician_id"]
    if clinician and not (clinician.isdigit() and 1 <= int(clinician) <= MAX_ROW_ID):
        f.errors["supervising_clinician_id"] = "Choose the supervising RN or therapist from the list."
    last_visit_on: date | None = None
    if raw["last_visit_on"]:
        try:
            last_visit_on = date.fromisoformat(raw["last_visit_on"])
        except ValueError:
            f.errors["last_visit_on"] = "Enter a date, e.g. 2026-11-02."
    if f.errors:
        return _form_again(request, session, ui, f, chosen)
    body = PatientSupervisionCreate(care=raw["care"], supervising_clinician_id=int(clinician) if clinician else None,
                                    last_visit_on=last_visit_on)
    let_go(session)  # the service writes with its own session, then waits on Temporal
    try:
        row = await set_supervision(request.app.state.engine, temporal, ui.settings, chosen.id, body,
                                    actor_of(user))
    except (ServiceError, ValidationError) as err:
        if isinstance(err, ValidationError):
            f.errors[FORM] = "; ".join(str(e["msg"]) for e in err.errors())
        else:
            f.errors.update(place_rejection(err, f))
        return _form_again(request, session, ui, f, chosen, err.status if isinstance(err, ServiceError) else 422)
    session.rollback()  # read the board as the change left it
    name = queries.person(chosen)
    words = "with skilled services" if row.care == "skilled" else "aide only"
    flash = (f"Aide supervision set for {name} ({words}): the next supervisory visit is due by "
             f"{ui.clock.day(row.due_on)}.")
    return render(request, "_form_supervision.html", {**_form(session, ui, FormState(), None, flash),
                                                      **_board(session, ui, 14), "oob_board": True})


def _form_again(request: Request, session: Session, ui: UIState, f: FormState, chosen: Patient | None,
                status: int = 422) -> Response:
    """The form with what was typed and each problem beside its field; a new key, as nothing was applied (the
    corrected form is a new request, while a resend of this one gets this same answer)."""
    f.values.pop("idempotency_key", None)
    status = status if status < 500 else 503
    return render(request, "_form_supervision.html", _form(session, ui, f, chosen), status=status)

