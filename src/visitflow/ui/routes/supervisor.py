"""A supervisor's work: escalations, exception decisions, deadline extensions, reassignments.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from visitflow.deps import SessionDep, TemporalDep
from visitflow.models import (
    ExtendDeadline,
    Reassign,
    ResolveHold,
)
from visitflow.services import queries
from visitflow.services.changes import act_recording_change
from visitflow.services.commands import act, actor_of
from visitflow.ui.actions import finish, perform
from visitflow.ui.deps import PageCursor, SupervisorUser, UIDep, render, visible_visit
from visitflow.ui.forms import FORM, FormState, Target, read_form
from visitflow.workflows.visit import VisitWorkflow

router = APIRouter(include_in_schema=False)


@router.post("/visits/{visit_id}/decision")
async def decide_exception(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                           user: SupervisorUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["key", "decision", "reason"])
    target = Target.of(form)
    reason = f.need("reason", "Give a reason for your decision; it goes on the visit's record.")
    if f.v("decision") not in ("approved", "rejected"):
        f.errors["decision"] = "Choose Approve or Reject."
    hold = next((h for h in view.snap.holds if h.key == f.v("key")), None)
    ctx = {"view": view, "visit_id": visit_id, "hold": hold, "hold_key": f.v("key"), "target": target}
    result = await perform(request, "_form_decision.html", ctx, f,
                           lambda: act(temporal, visit_id, VisitWorkflow.resolve_hold, ResolveHold(
                               actor=actor_of(user), key=f.v("key"), decision=f.v("decision"), reason=reason),
                               idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    verb = "Approved" if f.v("decision") == "approved" else "Rejected (sent back to the clinician)"
    rule = hold.rule_id if hold else f.v("key")
    return await finish(request, session, user, target, result, f"{verb}: {rule} on visit {visit_id}.")


@router.post("/visits/{visit_id}/deadline")
async def extend_deadline(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                          user: SupervisorUser, ui: UIDep) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["stage", "new_deadline", "reason"])
    target = Target.of(form)
    if f.v("stage") not in ("note", "signature"):
        f.errors[FORM] = "The visit is not waiting for a note or a signature."
    new_deadline = f.time("new_deadline", ui.clock, "Enter the new deadline.")
    reason = f.need("reason", "Say why the deadline moves; it goes on the visit's record.")
    ctx = {"view": view, "visit_id": visit_id, "stage": f.v("stage"), "target": target}
    result = await perform(request, "_form_extend.html", ctx, f,
                           lambda: act(temporal, visit_id, VisitWorkflow.extend_deadline, ExtendDeadline(
                               actor=actor_of(user), stage=f.v("stage"), new_deadline=new_deadline, reason=reason),
                               idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, target, result,
                f"The {f.v('stage')} for visit {visit_id} is now due {ui.clock.when(new_deadline)}.")


@router.post("/visits/{visit_id}/reassign")
async def reassign(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                   user: SupervisorUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["clinician_id", "reason"])
    target = Target.of(form)
    clinician = queries.clinician(session, int(f.v("clinician_id"))) if f.v("clinician_id").isdigit() else None
    if clinician is None:
        f.errors["clinician_id"] = "Choose the clinician who takes the visit over."
    reason = f.need("reason", "Say why the visit is reassigned; it goes on the visit's record.")
    ctx = {"view": view, "visit_id": visit_id, "target": target, "clinicians": queries.clinicians(session),
           "current_clinician": view.snap.spec.clinician_id}
    result = await perform(request, "_form_reassign.html", ctx, f,
                           lambda: act_recording_change(  # CHG-01
                               session.get_bind(), temporal, request.app.state.settings, visit_id,
                               VisitWorkflow.reassign, Reassign(actor=actor_of(user), clinician_id=clinician.id,
                                                                reason=reason), "visit_reassigned", f.key))
    if isinstance(result, Response):
        return result
    return await finish(request, session, user, target, result,
                f"Visit {visit_id} is now assigned to {queries.clinician_label(clinician)}.")


@router.get("/visits/{visit_id}/reassign")
def reassign_form(visit_id: str, request: Request, session: SessionDep, user: SupervisorUser) -> Response:
    """The reassign form, fetched when a supervisor opens a late note's "Reassign": a list page carries no
    clinician list of its own (an agency has hundreds of clinicians and a page 25 late notes). Fetched at the
    moment it opens, it lists the clinicians as they are now and carries a fresh Idempotency key, however long
    the page was open before."""
    view = visible_visit(session, user, visit_id, with_events=False)
    return render(request, "_form_reassign.html", {
        "f": FormState(), "view": view, "visit_id": visit_id, "target": Target.of(request.query_params),
        "clinicians": queries.clinicians(session), "current_clinician": view.snap.spec.clinician_id})


def _clinician_filter(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _team(session, clinician_id: int | None) -> dict:
    team, more = queries.team_overdue(session, clinician_id)
    return {"team": team, "team_more": more}


@router.get("/escalations")
def escalations_page(request: Request, session: SessionDep, user: SupervisorUser,
                     clinician: str | None = None) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "escalations.html", {
        "clinician_id": cid, "clinicians": queries.clinicians(session),
        "overdue": queries.overdue_work(session, cid, None),
        "exceptions": queries.exceptions_to_decide(session, cid, None),
        **_team(session, cid)})


@router.get("/escalations/overdue")
def escalations_overdue(request: Request, session: SessionDep, user: SupervisorUser, after: PageCursor,
                        clinician: str | None = None) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "_overdue_list.html", {"clinician_id": cid,
                                                  "overdue": queries.overdue_work(session, cid, after)})


@router.get("/escalations/exceptions")
def escalations_exceptions(request: Request, session: SessionDep, user: SupervisorUser, after: PageCursor,
                           clinician: str | None = None) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "_exceptions_list.html",
                  {"clinician_id": cid, "exceptions": queries.exceptions_to_decide(session, cid, after)})


@router.get("/escalations/team")
def escalations_team(request: Request, session: SessionDep, user: SupervisorUser,
                     clinician: str | None = None) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "_team.html", {"clinician_id": cid, **_team(session, cid)})
