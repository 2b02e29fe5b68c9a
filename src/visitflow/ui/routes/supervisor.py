"""A supervisor's work: escalations, exception decisions, deadline extensions, reassignments.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from visitflow.deps import SessionDep, TemporalDep, VisitId
from visitflow.catalogue import ROLE_LABELS
from visitflow.models import (
    ExtendDeadline,
    Reassign,
    ResolveHold,
    VisitState,
)
from visitflow.services import queries
from visitflow.services.changes import act_recording_change
from visitflow.services.commands import act, actor_of, decide_hold
from visitflow.ui.actions import deadline_stage, done, finish, open_decisions, perform
from visitflow.ui.deps import DeciderUser, PageCursor, SupervisorUser, UIDep, render, visible_visit
from visitflow.ui.forms import FORM, FormState, Target, read_form
from visitflow.workflows.visit import VisitWorkflow

router = APIRouter(include_in_schema=False)


@router.post("/visits/{visit_id}/decision")
async def decide_exception(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                           user: DeciderUser) -> Response:
    """A decision on a hold this person's role must act on: an exception (approve or reject), or a payer's denial
    (cleared once fixed). The workflow checks the hold names the person's role."""
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["key", "decision", "reason"])
    target = Target.of(form)
    hold = next((h for h in view.snap.holds if h.key == f.v("key")), None)
    denial = f.v("key").startswith("DEN-01:")
    reason = f.need("reason", "Say what was fixed; it goes on the visit's record." if denial
                    else "Give a reason for your decision; it goes on the visit's record.")
    if f.v("decision") not in ("approved", "rejected"):
        f.errors["decision"] = "Choose Fixed — bill again." if denial else "Choose Approve or Reject."
    ctx = {"view": view, "visit_id": visit_id, "hold": hold, "hold_key": f.v("key"), "target": target}
    result = await perform(request, "_form_decision.html", ctx, f,
                           lambda: decide_hold(session, temporal, visit_id, ResolveHold(
                               actor=actor_of(user), key=f.v("key"), decision=f.v("decision"), reason=reason),
                               f.key))
    if isinstance(result, Response):
        return result
    rule = hold.rule_id if hold else f.v("key")
    if denial:
        message = f"Cleared: {rule} on visit {visit_id}. " + (
            "It is ready to bill again." if result.state == VisitState.claim_ready
            else "It is checked again before it can be billed.")
    else:
        verb = "Approved" if f.v("decision") == "approved" else "Rejected (sent back to the clinician)"
        message = f"{verb}: {rule} on visit {visit_id}."
    return done(request, session, user, target, result, message)  # decide_hold waited for the re-check


@router.post("/visits/{visit_id}/deadline")
async def extend_deadline(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
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
async def reassign(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
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


# The forms of /escalations' rows arrive when their disclosure opens (the `opened_form` macro), so the list page
# carries none of them: 25 late notes and 25 exceptions would otherwise be ~140 KB of forms, and the reassign
# form alone lists every clinician. Fetched at the moment it opens, a form shows the visit as it is then and
# carries a fresh Idempotency key, however long the page was open before; the POST routes above are unchanged.


def _opened_form(request: Request, template: str, view, **context) -> Response:
    return render(request, template, {"f": FormState(), "view": view, "visit_id": view.snap.spec.visit_id,
                                      "target": Target.of(request.query_params), **context})


def _nothing_to_do(request: Request, visit_id: str, message: str) -> Response:
    """In place of a form the visit no longer needs (someone else acted while the page was open)."""
    return render(request, "_form_unavailable.html", {"visit_id": visit_id, "message": message})


@router.get("/visits/{visit_id}/reassign")
def reassign_form(visit_id: VisitId, request: Request, session: SessionDep, user: SupervisorUser) -> Response:
    """The reassign form, with the clinicians as they are now."""
    view = visible_visit(session, user, visit_id, with_events=False)
    return _opened_form(request, "_form_reassign.html", view, clinicians=queries.clinicians(session),
                        current_clinician=view.snap.spec.clinician_id)


@router.get("/visits/{visit_id}/deadline")
def extend_form(visit_id: VisitId, request: Request, session: SessionDep, user: SupervisorUser) -> Response:
    """The extend-deadline form for what the visit waits for now (the note, or the signature once the note is
    in)."""
    view = visible_visit(session, user, visit_id, with_events=False)
    stage = deadline_stage(view.snap)
    if stage is None:
        return _nothing_to_do(request, visit_id, f"Visit {visit_id} is no longer waiting for a note or a signature.")
    return _opened_form(request, "_form_extend.html", view, stage=stage)


@router.get("/visits/{visit_id}/decision")
def decision_form(visit_id: VisitId, request: Request, session: SessionDep, user: DeciderUser,
                  key: str = Query(..., min_length=1, max_length=200,
                                   description="the hold's key on the visit, e.g. EVV-02:punch-1")) -> Response:
    """The decision form for one hold on the visit that waits for this person's role: approve or reject an
    exception; clear a payer's denial once it is fixed."""
    view = visible_visit(session, user, visit_id, with_events=False)
    hold = next((h for h in view.snap.holds if h.key == key), None)
    rule = hold.rule_id if hold else key.split(":")[0]
    if hold is not None and hold.role != user.role and hold in open_decisions(view.snap, hold.role):
        # Open, but another role's to decide (a denial routed to billing, opened by a supervisor): say whose.
        return _nothing_to_do(request, visit_id, f"{rule} on visit {visit_id} waits for "
                              f"{ROLE_LABELS[hold.role].lower()} to act, not for you.")
    if hold is None or hold not in open_decisions(view.snap, user.role):
        return _nothing_to_do(request, visit_id, f"{rule} on visit {visit_id} is no longer waiting "
                              "for a decision: it was decided, or cleared by a fix.")
    return _opened_form(request, "_form_decision.html", view, hold=hold, hold_key=hold.key)


def _clinician_filter(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _team(session, clinician_id: int | None) -> dict:
    team, more = queries.team_overdue(session, clinician_id)
    return {"team": team, "team_more": more}


def _matches(session, typed: str) -> dict:
    found = queries.clinicians_named(session, typed) if typed else []
    return {"typed": typed, "matches": found[:queries.CLINICIANS_MATCHED],
            "more": len(found) > queries.CLINICIANS_MATCHED}


def _typed(who: str | None) -> str:
    """What was typed, as words: spaces collapsed, no control characters (a NUL is not text to PostgreSQL)."""
    return " ".join("".join(ch for ch in (who or "") if ch.isprintable() or ch.isspace()).split())[:80]


@router.get("/escalations")
def escalations_page(request: Request, session: SessionDep, user: SupervisorUser,
                     clinician: str | None = None, who: str | None = None) -> Response:
    """`clinician` (an id) narrows the page to one clinician; `who` (what was typed in the filter) finds them
    by the start of a name: one match goes to their list, several are listed to choose from."""
    cid = _clinician_filter(clinician)
    chosen = queries.clinician(session, cid) if cid else None
    f = FormState(values={"who": _typed(who)})
    matches = _matches(session, f.v("who") if chosen is None else "")
    if chosen is None and f.v("who"):
        if len(matches["matches"]) == 1 and not matches["more"]:
            return RedirectResponse(f"/escalations?clinician={matches['matches'][0].id}", status_code=303)
        if not matches["matches"]:
            f.errors["who"] = f"No clinician's first or last name starts with “{f.v('who')}”."
    if chosen is not None:
        f.values["who"] = queries.person(chosen)
    return render(request, "escalations.html", {
        "f": f, "clinician_id": cid, **matches,
        "overdue": queries.overdue_work(session, cid, None),
        "exceptions": queries.exceptions_to_decide(session, cid, None),
        **_team(session, cid)}, status=422 if f.errors else 200)


@router.get("/escalations/clinicians")
def escalations_clinicians(request: Request, session: SessionDep, user: SupervisorUser,
                           who: str | None = None) -> Response:
    """The filter's type-ahead: the clinicians whose name starts with what has been typed so far."""
    return render(request, "_clinician_matches.html", {"f": FormState(), **_matches(session, _typed(who))})


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
