"""A biller's work: ready to bill, release into a batch, holds by rule, send back.
"""

from __future__ import annotations

import uuid
from datetime import date

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.catalogue import ROLE_LABELS, RULES, clinician_can_fix, hold_words, send_back_can_help, service_label
from visitflow.deps import SessionDep, TemporalDep, VisitId
from visitflow.models import (
    SendBack,
)
from visitflow.services import queries
from visitflow.services.changes import change_behind, holding_changes
from visitflow.services.commands import act, actor_of, release_visits
from visitflow.services.errors import ServiceError
from visitflow.ui.actions import done, perform, work_context
from visitflow.ui.deps import BillerUser, PageCursor, SendBackUser, StaffUser, get_ui, render, visible_visit
from visitflow.ui.forms import FormState, Target, read_dates, read_form
from visitflow.ui.routes.revenue import revenue_context
from visitflow.workflows.visit import VisitWorkflow

router = APIRouter(include_in_schema=False)

# The words these pages put on codes and rule ids (catalogue.py), for every template they render.
WORDS = {"service_label": service_label, "hold_words": hold_words, "clinician_can_fix": clinician_can_fix}


@router.post("/visits/{visit_id}/send-back")
async def send_back(visit_id: VisitId, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: SendBackUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    if not send_back_can_help(view.snap.holds):
        problems = "; ".join(f"{RULES.get(h.rule_id, h.rule_id)} ({ROLE_LABELS[h.role].lower()})"
                             for h in view.snap.holds)
        raise HTTPException(409, f"Nothing holding visit {visit_id} is for the clinician to fix: {problems}. "
                                 "Sending it back would only withdraw the signature.")
    form = await request.form()
    f = read_form(form, ["message"])
    target = Target.of(form)
    message = f.need("message", "Tell the clinician what to fix.")
    ctx = {"view": view, "visit_id": visit_id, "target": target}
    result = await perform(request, "_form_send_back.html", ctx, f,
                           lambda: act(temporal, visit_id, VisitWorkflow.send_back,
                                       SendBack(actor=actor_of(user), message=message), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"Visit {visit_id} went back to {queries.person(view.clinician)} to revise and sign again.")


def billing_filter(form_or_query, f: FormState | None = None) -> queries.BillingFilter:
    """The payer and date range from a query string or a form; bad values become field errors."""
    f = f if f is not None else FormState()
    payer = str(form_or_query.get("payer") or "")
    filters = queries.BillingFilter(payer_id=int(payer) if payer.isdigit() else None)
    read_dates(form_or_query, f, filters, ("date_from", "date_to"))
    f.values["payer"] = payer
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        f.errors["date_to"] = "The end date must not be before the start date."
        filters.date_to = None
    return filters


@router.get("/billing")
def billing_page(request: Request, session: SessionDep, user: BillerUser, after: PageCursor) -> Response:
    f = FormState()
    filters = billing_filter(request.query_params, f)
    return render(request, "billing.html", {
        **WORDS, "f": f, "filters": filters, "payers": queries.payers(session), "release_key": uuid.uuid4().hex,
        "ready": queries.ready_to_bill(session, filters, after, _today(request)),
        **revenue_context(session, get_ui(request).clock)})


def _today(request: Request) -> date:
    """The agency's date: filing limits (CLM-07) count local days."""
    clock = get_ui(request).clock
    return clock.local(clock.now()).date()


@router.get("/billing/list")
def billing_list(request: Request, session: SessionDep, user: BillerUser, after: PageCursor) -> Response:
    filters = billing_filter(request.query_params)
    return render(request, "_ready_list.html", {**WORDS, "filters": filters,
                                                "ready": queries.ready_to_bill(session, filters, after,
                                                                               _today(request))})


@router.post("/billing/release")
async def release(request: Request, session: SessionDep, temporal: TemporalDep, user: BillerUser) -> Response:
    form = await request.form()
    visit_ids = [str(v) for v in form.getlist("visit_ids") if str(v).strip()]
    filters = billing_filter(form)
    after = str(form.get("after") or "")  # the page the biller was looking at
    after = after if queries.is_cursor(after) else None
    context = {**WORDS, "filters": filters, "release_key": uuid.uuid4().hex, "oob": True}
    if not visit_ids:
        return render(request, "_release_outcome.html",
                      {**context, "error": "Tick at least one visit to release."}, status=422)
    # The key is fixed when the page is drawn: a double click or a retry lands in the same batch.
    key = str(form.get("release_key") or "") or uuid.uuid4().hex
    try:
        outcome = await release_visits(request.app.state.engine, temporal, get_ui(request).settings, visit_ids,
                                       actor_of(user), key)
    except ServiceError as refused:
        return render(request, "_release_outcome.html", {**context, "error": refused.message[:1].upper()
                                                         + refused.message[1:] + "."}, status=refused.status)
    session.rollback()  # end the read transaction begun before the release, so reads see the projections
    if form.get("context") == "visit" and len(visit_ids) == 1:
        view = visible_visit(session, user, visit_ids[0], with_events=False)
        message = _release_sentence(outcome)
        return render(request, "_work.html", work_context(session, user, view, flash=message, outcome=outcome),
                      headers={"HX-Retarget": "#work", "HX-Reswap": "outerHTML", "HX-Trigger": "visit-changed"})
    return render(request, "_release_outcome.html", {
        **context, "outcome": outcome, "flash": _release_sentence(outcome),
        "ready": queries.ready_to_bill(session, filters, after, _today(request))},
        headers={"HX-Trigger": "queue-changed"})


def _release_sentence(outcome) -> str:
    parts = []
    if outcome.released:
        n = len(outcome.released)
        parts.append(f"Released {n} visit{'s' if n != 1 else ''} in batch {outcome.batch_id}.")
    if outcome.already_released:
        parts.append(f"{len(outcome.already_released)} already released earlier.")
    if outcome.rejected:
        parts.append(f"{len(outcome.rejected)} could not be released.")
    return " ".join(parts) or "Nothing was released."


@router.get("/holds")
def holds_page(request: Request, session: SessionDep, user: StaffUser, after: PageCursor,
               payer: str | None = None) -> Response:
    payer_id = int(payer) if payer and payer.isdigit() else None
    groups, count = queries.holds_by_rule(session, payer_id, after, get_ui(request).clock.now())
    return render(request, "holds.html", {**WORDS, "payer_id": payer_id, "payers": queries.payers(session),
                                          "groups": groups, "count": count, **_changes_behind(session, groups)})


@router.get("/holds/list")
def holds_list(request: Request, session: SessionDep, user: StaffUser, after: PageCursor,
               payer: str | None = None) -> Response:
    payer_id = int(payer) if payer and payer.isdigit() else None
    groups, count = queries.holds_by_rule(session, payer_id, after, get_ui(request).clock.now())
    return render(request, "_holds_list.html", {**WORDS, "payer_id": payer_id, "groups": groups, "count": count,
                                                **_changes_behind(session, groups)})


def _changes_behind(session: Session, groups) -> dict:
    """CHG-01 on the holds list: a hold that a change (an authorization cut, ...) put on a visit names it."""
    found = holding_changes(session, [h.visit_id for g in groups.items for h in g.rows])
    return {"change_behind": lambda h: change_behind(found, h.visit_id, h.rule_id)}
