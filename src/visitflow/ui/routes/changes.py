"""What changed (CHG-01) for billers, and bulk intake uploads for the office."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from visitflow.catalogue import CHANGE_KINDS, CHANGE_OUTCOMES
from visitflow.db.tables import User
from visitflow.deps import MAX_ROW_ID, SessionDep, TemporalDep, let_go
from visitflow.models import Role
from visitflow.services import intake, queries
from visitflow.services.changes import (
    ChangeFilter,
    change_detail,
    change_outcomes,
    deliveries_of,
    list_changes,
)
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import StaffUser, get_ui, render, role_page
from visitflow.ui.forms import FormState, binary_file

router = APIRouter(include_in_schema=False)

IntakeUser = Annotated[User, role_page(Role.admin, Role.supervisor)]
PAGE = 25
MAX_UPLOAD_BYTES = 10_000_000
WORDS = {"OUTCOME_WORDS": CHANGE_OUTCOMES, "KIND_WORDS": CHANGE_KINDS}


def _filters(request: Request) -> tuple[ChangeFilter, FormState]:
    names = ("payer", "patient", "since", "until")
    f = FormState(values={n: request.query_params.get(n, "").strip() for n in names})
    filters = ChangeFilter()
    for name, attr in (("payer", "payer_id"), ("patient", "patient_id")):
        if f.v(name):
            if f.v(name).isdigit() and 1 <= int(f.v(name)) <= MAX_ROW_ID:
                setattr(filters, attr, int(f.v(name)))
            else:
                f.errors[name] = f"Give the {name}'s number."
    for name in ("since", "until"):
        if f.v(name):
            try:
                setattr(filters, name, date.fromisoformat(f.v(name)))
            except ValueError:
                f.errors[name] = "Give a date like 2026-03-31."
    if filters.since and filters.until and filters.until < filters.since:
        f.errors["until"] = "The end of the range is before its start."
        filters.until = None
    return filters, f


@router.get("/changes")
def changes_page(request: Request, session: SessionDep, user: StaffUser,
                 after: int | None = Query(None, ge=1, le=MAX_ROW_ID)) -> Response:
    filters, f = _filters(request)
    filters.before_id = after
    rows = list_changes(session, filters, PAGE + 1, get_ui(request).settings.agency_timezone)
    shown = rows[:PAGE]
    query = "&".join(f"{n}={f.v(n)}" for n in ("payer", "patient", "since", "until") if f.v(n) and n not in f.errors)
    return render(request, "changes.html", {
        **WORDS, "rows": shown, "outcomes": change_outcomes(session, [c.id for c in shown]), "f": f,
        "payers": queries.payers(session), "after": after, "query": query,
        "older": shown[-1].id if len(rows) > PAGE else None})


@router.get("/changes/{change_id}")
def change_page(change_id: int, request: Request, session: SessionDep, user: StaffUser) -> Response:
    if not 1 <= change_id <= MAX_ROW_ID:
        raise HTTPException(404, f"There is no change {change_id}.")
    try:
        detail = change_detail(session, change_id)
    except ServiceError as err:
        raise HTTPException(err.status, f"There is no change {change_id}.") from None
    return render(request, "change.html", {**WORDS, "c": detail,
                                           "deliveries": deliveries_of(session, change_id)})


@router.get("/intake")
def intake_page(request: Request, user: IntakeUser) -> Response:
    return render(request, "intake.html", {"auth_columns": intake.AUTHORIZATION_COLUMNS,
                                           "visit_columns": intake.VISIT_COLUMNS})


@router.post("/intake/{kind}")
async def intake_upload(kind: str, request: Request, session: SessionDep, temporal: TemporalDep,
                        user: IntakeUser) -> Response:
    """The CSV the office chose, applied as the API applies it: every row, or none with every problem listed."""
    if kind not in ("authorizations", "visits"):
        raise HTTPException(404, "Upload authorizations or visits.")
    if kind == "authorizations" and user.role != Role.admin:
        raise HTTPException(403, "Only an admin can load authorizations.")
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _outcome(request, kind, error="Choose the CSV file to load.")
    data = await upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        return _outcome(request, kind, error=f"The file is over {MAX_UPLOAD_BYTES:,} bytes; split it.")
    if binary_file(data):
        return _outcome(request, kind, error=f"{upload.filename} is not a text file (it holds binary data): "
                                             "save it as CSV and load that.")
    let_go(session)
    try:
        rows = intake.rows_from_csv(data.decode("utf-8"), kind)
        run = intake.import_authorizations if kind == "authorizations" else intake.import_visits
        result = await run(request.app.state.engine, temporal, get_ui(request).settings, rows, actor_of(user))
    except UnicodeDecodeError:
        return _outcome(request, kind, error=f"{upload.filename} is not UTF-8 text.")
    except intake.IntakeRejected as err:
        return _outcome(request, kind, error=f"Nothing from {upload.filename} was applied: fix these and load it "
                                             "again.", problems=err.problems)
    except ServiceError as err:
        return _outcome(request, kind, error=err.message)
    return render(request, "_intake_outcome.html", {"kind": kind, "result": result, "filename": upload.filename})


def _outcome(request: Request, kind: str, error: str, problems: list | None = None) -> Response:
    return render(request, "_intake_outcome.html", {"kind": kind, "error": error, "problems": problems or []},
                  status=422)
