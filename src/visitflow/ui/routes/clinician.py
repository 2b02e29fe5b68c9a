"""A clinician's work: my tasks, the note, the signature, correcting or adding a punch.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.deps import SessionDep, TemporalDep, VisitId
from visitflow.models import (
    AdjustPunch,
    PunchInput,
    PunchKind,
    PunchMethod,
    ReasonCode,
    RecordPunch,
    SignNote,
    SubmitNote,
)
from visitflow.services import queries
from visitflow.services.commands import act, actor_of, now_utc
from visitflow.ui.actions import finish, perform
from visitflow.ui.deps import ActingUser, ClinicianUser, PageCursor, UIDep, render, visible_visit
from visitflow.ui.forms import Target, note_errors, note_field_name, read_form
from visitflow.workflows.visit import VisitWorkflow

router = APIRouter(include_in_schema=False)


def tasks_context(session: Session, clinician_id: int, after: str | None) -> dict[str, Any]:
    now = now_utc()
    upcoming, upcoming_total = queries.upcoming_visits(session, clinician_id, now)
    return {"tasks": queries.clinician_tasks(session, clinician_id, after, now), "upcoming": upcoming,
            "upcoming_total": upcoming_total, "now": now}


@router.get("/tasks")
def tasks_page(request: Request, session: SessionDep, user: ClinicianUser, after: PageCursor) -> Response:
    return render(request, "tasks.html", tasks_context(session, user.clinician_id, after))


@router.get("/tasks/list")
def tasks_list(request: Request, session: SessionDep, user: ClinicianUser, after: PageCursor) -> Response:
    return render(request, "_tasks_list.html", tasks_context(session, user.clinician_id, after))


@router.post("/visits/{visit_id}/note")
async def submit_note(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                      user: ClinicianUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    required = view.snap.spec.required_note_fields
    form = await request.form()
    f = read_form(form, [note_field_name(n) for n in required])
    fields = {n: f.v(note_field_name(n)).strip() for n in required}
    f.errors.update({note_field_name(n): msg for n, msg in note_errors(fields, required).items()})
    ctx = {"view": view, "snap": view.snap, "draft_key": f"{user.id}:{visit_id}"}
    result = await perform(request, "_form_note.html", ctx, f, lambda: act(
        temporal, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=actor_of(user), fields=fields),
        idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, Target(), result, "Note submitted. Sign it to send it on.",
                        clear_draft=True)


@router.post("/visits/{visit_id}/sign")
async def sign_note(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: ClinicianUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["attestation"])
    if f.v("attestation") != "yes":
        f.errors["attestation"] = "Tick the box to confirm the attestation before you sign."
    result = await perform(request, "_form_sign.html", {"view": view, "snap": view.snap}, f,
                           lambda: act(temporal, visit_id, VisitWorkflow.sign_note,
                                       SignNote(actor=actor_of(user), attestation=True), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, Target(), result, "Signed. The visit is being checked for billing.")



@router.post("/visits/{visit_id}/punches/adjust")
async def adjust_punch(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                       user: ActingUser, ui: UIDep) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["seq", "adjusted_at", "reason_code", "reason_text"])
    seqs = {str(p.seq) for p in view.snap.punches}
    if f.v("seq") not in seqs:
        f.errors["seq"] = "Choose the punch to correct."
    adjusted_at = f.time("adjusted_at", ui.clock, "Enter the corrected time.")
    code = f.reason()
    result = await perform(
        request, "_form_adjust.html", {"view": view, "snap": view.snap, "reasons": list(ReasonCode)}, f,
        lambda: act(temporal, visit_id, VisitWorkflow.adjust_punch, AdjustPunch(
            actor=actor_of(user), seq=int(f.v("seq")), adjusted_at=adjusted_at, reason_code=code,
            reason_text=f.v("reason_text").strip() or None, now=now_utc()), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, Target(), result,
                "Punch corrected. The original time stays beside it; a supervisor approves the change.")


@router.post("/visits/{visit_id}/punches/add")
async def add_punch(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: ActingUser, ui: UIDep) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["kind", "at", "reason_code", "reason_text"])
    try:
        kind = PunchKind(f.v("kind"))
    except ValueError:
        kind = None
        f.errors["kind"] = "Choose clock-in or clock-out."
    at = f.time("at", ui.clock, "Enter the time of the missing punch.")
    code = f.reason()
    result = await perform(
        request, "_form_add_punch.html", {"view": view, "snap": view.snap, "reasons": list(ReasonCode)}, f,
        lambda: act(temporal, visit_id, VisitWorkflow.record_punch, RecordPunch(
            actor=actor_of(user), now=now_utc(), punch=PunchInput(
                kind=kind, at=at, method=PunchMethod.manual, reason_code=code,
                reason_text=f.v("reason_text").strip() or None)), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, Target(), result,
                "Manual punch added. A supervisor approves it before the visit can be billed.")
