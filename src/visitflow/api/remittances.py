"""835 remittances: import what the payer paid and denied; see each file and how every line was applied."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from visitflow.api.x12_body import x12_body, x12_body_schema
from visitflow.claims.remittance import RemittanceError, read_835
from visitflow.claims.validate import UnreadableX12
from visitflow.db.tables import Remittance, RemittanceLinePublic, RemittancePublic, User
from visitflow.deps import MAX_ROW_ID, RowId, SessionDep, SettingsDep, TemporalDep, let_go, require_role
from visitflow.models import Role
from visitflow.services.commands import actor_of
from visitflow.services.remittances import ImportOutcome, import_835, remittance_lines, remittances

router = APIRouter(prefix="/api", tags=["remittances"])

BillingStaff = Annotated[User, require_role(Role.biller, Role.admin)]


async def parse_835(text: str):
    """pyx12 walks the whole file: off the event loop. Unreadable or inconsistent files are a 422 in words."""
    try:
        return await run_in_threadpool(read_835, text)
    except UnreadableX12 as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a readable 835 file: {exc}") from exc
    except RemittanceError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"the 835 cannot be applied: {exc}") from exc


@router.post("/remittances", response_model=ImportOutcome, status_code=status.HTTP_201_CREATED,
             openapi_extra=x12_body_schema("ISA*00*          *00*          *ZZ*TXMEDCLEAR ..."))
async def import_remittance(request: Request, response: Response, session: SessionDep, temporal: TemporalDep,
                            settings: SettingsDep, user: BillingStaff) -> ImportOutcome:
    """Import an 835: each claim (CLP) and line (SVC) is applied to the claim and visit it answers. Paid lines
    become paid; denied lines, and lines paid less for a reason someone can fix, go back into work with the
    payer's codes in words. Lines that match nothing are listed, never dropped.

    A file pyx12 finds incomplete (cut short: no SE, GE, IEA) or not as the 835 guide says is refused whole with
    422 and what is wrong in words. A payment is imported once, known by its payer and TRN trace number: the same
    file again, or a copy re-sent under new control numbers, changes nothing and answers 200 with
    `already_imported: true`. If denied visits
    could not be sent back into work (Temporal unreachable), `still_to_return` lists them: import the same file
    again to finish."""
    text, filename = await x12_body(request)
    parsed = await parse_835(text)
    let_go(session)
    outcome = await import_835(request.app.state.engine, temporal, settings, text, parsed, actor_of(user),
                               filename)
    if outcome.already_imported:
        response.status_code = status.HTTP_200_OK
    return outcome


class RemittancePage(BaseModel):
    items: list[RemittancePublic]
    next_before: int | None  # pass as `before` for the next (older) page; None on the last page


@router.get("/remittances", response_model=RemittancePage)
def list_remittances(session: SessionDep, _user: BillingStaff,
                     before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="older than this id")]
                     = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> RemittancePage:
    """Imported 835s, newest first."""
    rows = remittances(session, before, limit + 1)
    page = rows[:limit]
    return RemittancePage(items=[RemittancePublic.model_validate(r, from_attributes=True) for r in page],
                          next_before=page[-1].id if len(rows) > limit else None)


class RemittanceDetail(RemittancePublic):
    lines: list[RemittanceLinePublic]


@router.get("/remittances/{remittance_id}", response_model=RemittanceDetail)
def get_remittance(remittance_id: RowId, session: SessionDep, _user: BillingStaff) -> RemittanceDetail:
    """One imported 835 and how each of its lines was applied: paid, adjusted, denied (and whether the visit is
    back in work), unmatched."""
    remittance = session.get(Remittance, remittance_id)
    if remittance is None:
        raise HTTPException(404, f"remittance {remittance_id} not found")
    return RemittanceDetail(**RemittancePublic.model_validate(remittance, from_attributes=True).model_dump(),
                            lines=remittance_lines(session, remittance_id))
