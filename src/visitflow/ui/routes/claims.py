"""A biller's claims: the claims releases made, each claim's lines, visits and history, and the 837P files
(download a valid one, see why a blocked one is blocked, mark one submitted once it is uploaded)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlmodel import Session

from visitflow.catalogue import service_label
from visitflow.db.session import write_session
from visitflow.deps import MAX_ROW_ID, RowId, SessionDep, TemporalDep, let_go
from visitflow.services import claims as claim_service
from visitflow.services import queries
from visitflow.services.commands import actor_of, bill_held_claim, void_claim
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import BillingUser, get_ui, render
from visitflow.ui.forms import FormState, read_dates

router = APIRouter(include_in_schema=False)

STATE_WORDS = {
    "created": "In a file, not sent yet", "held": "Held, not filed", "submitted": "Submitted",
    "accepted": "Accepted by the payer", "rejected": "Rejected", "paid": "Paid", "partially_paid": "Partly paid",
    "denied": "Denied", "replaced": "Replaced", "voided": "Voided",
}
WORDS = {"CLAIM_STATES": STATE_WORDS, "service_label": service_label}


def _claim_filter(params, f: FormState) -> claim_service.ClaimFilter:
    wanted = claim_service.ClaimFilter()
    state = str(params.get("state") or "")
    f.values["state"] = state
    if state in STATE_WORDS:
        wanted.state = state
    elif state:
        f.errors["state"] = "Choose a state from the list."
    for name in ("payer", "patient"):
        raw = str(params.get(name) or "").strip()
        f.values[name] = raw
        if raw.isdigit() and 0 < int(raw) < 2_147_483_647:
            setattr(wanted, f"{name}_id", int(raw))
        elif raw:
            f.errors[name] = "Choose from the list." if name == "payer" else "Enter the patient's number."
    read_dates(params, f, wanted, ("period_from", "period_to"))
    return wanted


def _query_string(f: FormState, **extra) -> str:
    from urllib.parse import urlencode

    values = {k: f.v(k) for k in ("state", "payer", "patient", "period_from", "period_to")} | extra
    return urlencode({k: v for k, v in values.items() if v})


@router.get("/claims")
def claims_page(request: Request, session: SessionDep, user: BillingUser,
                after: int | None = Query(None, ge=1, le=MAX_ROW_ID)) -> Response:
    f = FormState()
    wanted = _claim_filter(request.query_params, f)
    page = claim_service.list_claims(session, wanted, after, 50) if not f.errors else None
    return render(request, "claims.html", {**WORDS, "f": f, "page": page, "after": after,
                                           "payers": queries.payers(session), "qs": _query_string(f)})


@router.get("/claims/{claim_id}")
def claim_page(claim_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    return render(request, "claim.html", {**WORDS, "claim": claim_service.claim_detail(session, claim_id),
                                          "done": request.query_params.get("done", "")})


@router.post("/claims/{claim_id}/state")
async def claim_state(claim_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    """The 999 / 277CA answer, as the biller read it: accepted, or rejected with the reason."""
    form = await request.form()
    to_state, note = str(form.get("state") or ""), str(form.get("note") or "")
    engine = request.app.state.engine
    session.rollback()
    try:
        with write_session(engine) as s:
            claim_service.set_claim_state_by_biller(s, claim_id, to_state, user.username, note)
            s.commit()
    except ServiceError as err:
        detail = claim_service.claim_detail(session, claim_id)
        if err.status == 409 and detail.state == to_state and detail.history[-1].actor == user.username:
            return RedirectResponse(f"/claims/{claim_id}?done={to_state}", 303)  # a double click: done once
        f = FormState(values={"state": to_state, "note": note}, errors={err.field or "state": err.message})
        return render(request, "claim.html", {**WORDS, "claim": detail, "f": f}, status=err.status)
    return RedirectResponse(f"/claims/{claim_id}?done={to_state}", 303)


@router.post("/claims/{claim_id}/void")
async def claim_void(claim_id: RowId, request: Request, session: SessionDep, temporal: TemporalDep,
                     user: BillingUser) -> Response:
    """Void a claim billed in error; the answer is the claim page again, saying what became of it."""
    form = await request.form()
    reason = str(form.get("reason") or "")
    let_go(session)
    try:
        await void_claim(request.app.state.engine, temporal, get_ui(request).settings, claim_id,
                                actor_of(user), reason)
    except ServiceError as err:
        with Session(request.app.state.engine) as fresh:
            detail = claim_service.claim_detail(fresh, claim_id)
        return render(request, "claim.html", {**WORDS, "claim": detail, "void_error": err.message},
                      status=err.status)
    return RedirectResponse(f"/claims/{claim_id}?done=voided", 303)


@router.post("/claims/{claim_id}/bill-on-replacement")
async def claim_bill_held(claim_id: RowId, request: Request, session: SessionDep, temporal: TemporalDep,
                          user: BillingUser) -> Response:
    """Bill a held claim's visits on the claim that already bills their days (CLM-05); the answer is the claim
    that bills them now. The action is keyed by the held claim itself (`rebill-<id>`), so a second press, a
    resend or another tab lands on the same claim and makes nothing more."""
    await request.form()
    let_go(session)
    engine = request.app.state.engine
    try:
        await bill_held_claim(engine, temporal, get_ui(request).settings, claim_id, actor_of(user))
    except ServiceError as err:
        with Session(engine) as fresh:
            detail = claim_service.claim_detail(fresh, claim_id)
        return render(request, "claim.html", {**WORDS, "claim": detail, "bill_error": err.message},
                      status=err.status)
    with Session(engine) as fresh:
        billed_on = claim_service.claim_billing_visits_of(fresh, claim_id)
    return RedirectResponse(f"/claims/{billed_on or claim_id}?done=billed", 303)


@router.post("/claims/{claim_id}/resubmit")
async def claim_resubmit(claim_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    """Send a rejected claim again in a new checked file; the answer is the claim page, saying it went or why its
    file is blocked. Keyed by the claim's own state: a second press finds it sent and shows it."""
    from fastapi.concurrency import run_in_threadpool

    await request.form()
    let_go(session)
    engine = request.app.state.engine
    try:
        await run_in_threadpool(claim_service.resend_rejected_claim, engine, claim_id, get_ui(request).settings,
                                user.username)
    except ServiceError as err:
        with Session(engine) as fresh:
            detail = claim_service.claim_detail(fresh, claim_id)
        return render(request, "claim.html", {**WORDS, "claim": detail, "resend_error": err.message},
                      status=err.status)
    return RedirectResponse(f"/claims/{claim_id}?done=resent", 303)


@router.get("/claim-files")
def files_page(request: Request, session: SessionDep, user: BillingUser,
               after: int | None = Query(None, ge=1, le=MAX_ROW_ID)) -> Response:
    return render(request, "claim_files.html", {**WORDS, "page": claim_service.list_files(session, after, 50),
                                                "after": after})


@router.get("/claim-files/{file_id}")
def file_page(file_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    return render(request, "claim_file.html", {**WORDS, "file": claim_service.file_detail(session, file_id),
                                               "done": request.query_params.get("done", "")})


@router.get("/claim-files/{file_id}/download")
def file_download(file_id: RowId, session: SessionDep, user: BillingUser) -> Response:
    name, content = claim_service.file_download(session, file_id)
    return PlainTextResponse(content, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/claim-files/{file_id}/rewrite")
async def file_rewrite(file_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    from fastapi.concurrency import run_in_threadpool

    from visitflow.ui.deps import get_ui

    session.rollback()
    try:
        await run_in_threadpool(claim_service.rewrite_blocked_file, request.app.state.engine, file_id,
                                get_ui(request).settings, user.username)
    except ServiceError as err:
        if err.status != 409:  # 409: valid already (a double click): show it
            raise
    return RedirectResponse(f"/claim-files/{file_id}?done=rewritten", 303)


@router.post("/claim-files/{file_id}/submitted")
def file_submitted(file_id: RowId, request: Request, session: SessionDep, user: BillingUser) -> Response:
    session.rollback()
    try:
        with write_session(request.app.state.engine) as s:
            claim_service.mark_file_submitted(s, file_id, user.username)
            s.commit()
    except ServiceError as err:
        detail = claim_service.file_detail(session, file_id)
        if detail.submitted_by == user.username:
            return RedirectResponse(f"/claim-files/{file_id}?done=submitted", 303)  # a double click: done once
        return render(request, "claim_file.html", {**WORDS, "file": detail, "error": err.message},
                      status=err.status)
    return RedirectResponse(f"/claim-files/{file_id}?done=submitted", 303)

