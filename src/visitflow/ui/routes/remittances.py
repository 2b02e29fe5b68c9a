"""Remittances for billers: import an 835, see what every line came to, and which visits went back into work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from visitflow.api.x12_body import MAX_FILE_BYTES
from visitflow.claims.check import file_text
from visitflow.claims.remittance import RemittanceError, read_835
from visitflow.claims.validate import UnreadableX12
from visitflow.db.tables import Remittance, User
from visitflow.deps import MAX_ROW_ID, SessionDep, TemporalDep, let_go
from visitflow.models import Role
from visitflow.services.commands import actor_of
from visitflow.services.remittances import import_835, remittance_lines, remittances
from visitflow.ui.deps import get_ui, render, role_page
from visitflow.ui.forms import binary_file

router = APIRouter(include_in_schema=False)

BillingStaff = Annotated[User, role_page(Role.biller, Role.admin)]
PAGE = 25
OUTCOME_WORDS = {"paid": "Paid", "adjusted": "Paid less: back in work", "denied": "Denied: back in work",
                 "unmatched": "Matched no claim", "not_applied": "Not applied"}
KIND_WORDS = {"documentation": "the clinician (revise the note and sign again)",
              "evv": "a supervisor (review the EVV punches)", "billing": "billing (correct and rebill)"}
WORDS = {"OUTCOME_WORDS": OUTCOME_WORDS, "KIND_WORDS": KIND_WORDS}


@router.get("/remittances")
def remittances_page(request: Request, session: SessionDep, user: BillingStaff,
                     before: int | None = Query(None, ge=1, le=MAX_ROW_ID)) -> Response:
    rows = remittances(session, before, PAGE + 1)
    return render(request, "remittances.html", {**WORDS, "rows": rows[:PAGE], "before": before,
                                                "older": rows[PAGE - 1].id if len(rows) > PAGE else None})


@router.post("/remittances")
async def import_page(request: Request, session: SessionDep, temporal: TemporalDep, user: BillingStaff) -> Response:
    """The 835 the biller chose, imported as the API imports it; the answer replaces the upload's outcome area."""
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _refused(request, "Choose the 835 file the payer sent.")
    data = await upload.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        return _refused(request, f"The file is over {MAX_FILE_BYTES:,} bytes: that is not a remittance file.")
    if binary_file(data):
        return _refused(request, f"{upload.filename} is not a text file (it holds binary data), so it is not an "
                                 "835 remittance: choose the 835 file the payer sent.")
    text = file_text(data)
    try:
        parsed = await run_in_threadpool(read_835, text)
    except UnreadableX12 as exc:
        return _refused(request, f"{upload.filename} is not a readable 835 file: {exc}")
    except RemittanceError as exc:
        return _refused(request, f"{upload.filename} cannot be applied: {exc}")
    let_go(session)
    outcome = await import_835(request.app.state.engine, temporal, get_ui(request).settings, text, parsed,
                               actor_of(user), upload.filename)
    return render(request, "_remittance_outcome.html", {**WORDS, "outcome": outcome, "r": outcome.remittance,
                                                         "lines": outcome.lines},
                  headers={"HX-Trigger": "remittances-changed"})


def _refused(request: Request, message: str) -> Response:
    return render(request, "_remittance_outcome.html", {**WORDS, "error": message}, status=422)


@router.get("/remittances/{remittance_id}")
def remittance_page(remittance_id: int, request: Request, session: SessionDep, user: BillingStaff) -> Response:
    if not 1 <= remittance_id <= MAX_ROW_ID or (r := session.get(Remittance, remittance_id)) is None:
        raise HTTPException(404, f"There is no remittance {remittance_id}.")
    return render(request, "remittance.html", {**WORDS, "r": r, "lines": remittance_lines(session, remittance_id)})
