"""Claims and claim files: the claims a release made, their 837P files (downloaded only when valid), their
states; and a check of any 837 before it goes to the payer."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlmodel import Session

from visitflow.api.idempotency import IdempotencyDep
from visitflow.api.x12_body import x12_body, x12_body_schema
from visitflow.claims.check import DEFAULT_FILING_LIMIT_DAYS, CheckReport, check_837
from visitflow.claims.validate import UnreadableX12
from visitflow.deps import (
    MAX_ROW_ID,
    BillingUser,
    RowId,
    SessionDep,
    SettingsDep,
    StaffUser,
    TemporalDep,
    WriteSessionDep,
    let_go,
)
from visitflow.models import ReleaseOutcome
from visitflow.services.commands import actor_of, bill_held_claim, void_claim
from visitflow.services import claims as claim_service
from visitflow.services.claims import ClaimDetail, ClaimFilter, ClaimPage, FileDetail, FilePage

router = APIRouter(prefix="/api/claims", tags=["claims"])
files_router = APIRouter(prefix="/api/claim-files", tags=["claims"])

@router.post("/check", openapi_extra=x12_body_schema("ISA*00*          *00*          *ZZ*..."),
             response_model=CheckReport)
async def check_claim_file(
        request: Request, _user: StaffUser, settings: SettingsDep,
        filing_limit_days: Annotated[int, Query(ge=1, le=3650, description="the payer's filing limit (CLM-07)")]
        = DEFAULT_FILING_LIMIT_DAYS,
        as_of: Annotated[date | None, Query(description="count filing days to this day (default: today)")] = None,
) -> CheckReport:
    """Check an 837P or 837I file: pyx12 against the implementation guide (CLM-06), then CLM-01, 02, 03, 05, 07.

    Send the file as `text/plain`, or as JSON `{"x12": "..."}`. The answer lists each finding with its rule, the
    segment and line, and what is wrong; no findings means the file is clean. A body that is not an 837 is a 422.
    """
    text, _name = await x12_body(request)
    today = as_of or datetime.now(ZoneInfo(settings.agency_timezone)).date()
    try:
        # pyx12 walks the whole file: off the event loop.
        return await run_in_threadpool(check_837, text, today, filing_limit_days)
    except UnreadableX12 as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a readable 837 file: {exc}") from exc


@router.get("", response_model=ClaimPage)
def list_claims(
        session: SessionDep, _user: BillingUser,
        state: Annotated[str | None, Query(max_length=20, description="created, held, submitted, accepted, ...")]
        = None,
        payer: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        patient: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        period_from: Annotated[date | None, Query(description="claims whose period starts on or after")] = None,
        period_to: Annotated[date | None, Query(description="... and on or before")] = None,
        after: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="next_after of the page before")]
        = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ClaimPage:
    """Claims, newest first, a page at a time: pass the answer's `next_after` as `after` for the next page."""
    return claim_service.list_claims(session, ClaimFilter(state=state, payer_id=payer, patient_id=patient,
                                                          period_from=period_from, period_to=period_to),
                                     after, limit)


@router.get("/{claim_id}", response_model=ClaimDetail)
def get_claim(claim_id: RowId, session: SessionDep, _user: BillingUser) -> ClaimDetail:
    """A claim: its lines with their visits, its status history (who, when, from what to what) and its segments
    of the 837P file."""
    return claim_service.claim_detail(session, claim_id)


class ClaimStateChange(BaseModel):
    state: str = Field(description="accepted or rejected: what the 999 / 277CA said", max_length=20)
    note: str = Field(default="", max_length=2000)


@router.post("/{claim_id}/state", response_model=ClaimDetail)
def change_claim_state(claim_id: RowId, body: ClaimStateChange, request: Request, session: WriteSessionDep,
                       user: BillingUser, idempotency: IdempotencyDep):
    """Record the 999 / 277CA answer for a submitted claim: accepted, or rejected with the reason."""
    claim_service.set_claim_state_by_biller(session, claim_id, body.state, user.username, body.note)
    session.flush()
    answer = idempotency.answer(request, session, 200, claim_service.claim_detail(session, claim_id))
    session.commit()
    return answer


class ClaimVoid(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, description="why the services should not have been billed")


class VoidOutcome(BaseModel):
    claim: ClaimDetail
    void: ReleaseOutcome | None  # the frequency 8 claim and its file; None when the payer never had the claim


@router.post("/{claim_id}/void", response_model=VoidOutcome)
async def void_a_claim(claim_id: RowId, body: ClaimVoid, request: Request, session: SessionDep,
                       temporal: TemporalDep, settings: SettingsDep, user: BillingUser) -> VoidOutcome:
    """Cancel a claim whose services should not have been billed (the wrong payer, a visit that did not happen).
    A claim the payer adjudicated gets a void (frequency 8) naming the payer's number, in an 837P of its own; one
    the payer never had is only marked voided. Its visits come off it. Asking again changes nothing more."""
    let_go(session)
    void = await void_claim(request.app.state.engine, temporal, settings, claim_id, actor_of(user), body.reason)
    with Session(request.app.state.engine) as fresh:
        return VoidOutcome(claim=claim_service.claim_detail(fresh, claim_id), void=void)


class HeldClaimBilled(BaseModel):
    claim: ClaimDetail  # the held claim, now replaced
    billed_on: int | None  # the claim that bills its visits now: the replacement, or the unsent original
    replacement: ReleaseOutcome | None  # the frequency 7 claim and its file; None when the original took the lines


@router.post("/{claim_id}/bill-on-replacement", response_model=HeldClaimBilled)
async def bill_a_held_claim(claim_id: RowId, request: Request, session: SessionDep, temporal: TemporalDep,
                            settings: SettingsDep, user: BillingUser) -> HeldClaimBilled:
    """Bill a claim held for CLM-05 on the claim that already bills those days of service: a replacement
    (frequency 7, REF*F8 the payer's number) carrying that claim's lines and the held ones, in a checked 837P of
    its own; or, when that claim was never sent, its own lines plus the held ones in its file written again. The
    held claim becomes replaced. Asking again changes nothing more and gives the same answer."""
    let_go(session)
    replacement = await bill_held_claim(request.app.state.engine, temporal, settings, claim_id, actor_of(user))
    with Session(request.app.state.engine) as fresh:
        return HeldClaimBilled(claim=claim_service.claim_detail(fresh, claim_id),
                               billed_on=claim_service.claim_billing_visits_of(fresh, claim_id),
                               replacement=replacement)


@router.post("/{claim_id}/resubmit", response_model=ClaimDetail,
             responses={409: {"description": "not rejected, or its new file is blocked: the findings in words"}})
async def resubmit_a_claim(claim_id: RowId, request: Request, session: SessionDep, settings: SettingsDep,
                           user: BillingUser) -> ClaimDetail:
    """Send a rejected claim again once what the 999 / 277CA named is fixed: the same claim (same control number;
    the payer never adjudicated it) in a new 837P, checked with pyx12 and the claim edits. Valid, the claim
    becomes created and its file is ready to download; with findings the file is blocked, the claim stays
    rejected and the answer (409) says what to fix. Asking again once it went answers the same."""
    let_go(session)
    engine = request.app.state.engine
    await run_in_threadpool(claim_service.resend_rejected_claim, engine, claim_id, settings, user.username)
    with Session(engine) as fresh:
        return claim_service.claim_detail(fresh, claim_id)


@files_router.get("", response_model=FilePage)
def list_claim_files(
        session: SessionDep, _user: BillingUser,
        payer: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        after: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FilePage:
    """837P files, newest first, valid or blocked (with the findings that block them)."""
    return claim_service.list_files(session, after, limit, payer)


@files_router.get("/{file_id}", response_model=FileDetail)
def get_claim_file(file_id: RowId, session: SessionDep, _user: BillingUser) -> FileDetail:
    return claim_service.file_detail(session, file_id)


@files_router.get("/{file_id}/download", response_class=PlainTextResponse,
                  responses={409: {"description": "the file is blocked: the findings in words"}})
def download_claim_file(file_id: RowId, session: SessionDep, _user: BillingUser) -> PlainTextResponse:
    """The 837P as a file (text/plain), named by its interchange control number. Only a valid file: one with
    findings answers 409 with them."""
    name, content = claim_service.file_download(session, file_id)
    return PlainTextResponse(content, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@files_router.post("/{file_id}/rewrite", response_model=FileDetail)
async def rewrite_claim_file(file_id: RowId, request: Request, session: SessionDep, settings: SettingsDep,
                             _user: BillingUser):
    """Write a blocked file again once what it named is fixed (a patient's record, the agency's identity): the
    same claims and control numbers, checked again. The answer says whether it is valid now."""
    session.rollback()
    await run_in_threadpool(claim_service.rewrite_blocked_file, request.app.state.engine, file_id, settings,
                            _user.username)
    return claim_service.file_detail(session, file_id)


@files_router.post("/{file_id}/submitted", response_model=FileDetail)
def mark_submitted(file_id: RowId, request: Request, session: WriteSessionDep, user: BillingUser,
                   idempotency: IdempotencyDep):
    """The biller uploaded the file to the payer or clearinghouse: the file and its claims become submitted."""
    claim_service.mark_file_submitted(session, file_id, user.username)
    session.flush()
    answer = idempotency.answer(request, session, 200, claim_service.file_detail(session, file_id))
    session.commit()
    return answer
