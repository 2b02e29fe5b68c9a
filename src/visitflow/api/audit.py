"""The audit trail for admins: search it, newest first, and download what was found as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from visitflow.audit import AuditSearch, every_match, search
from visitflow.db.tables import AuditEvent, AuditEventPublic
from visitflow.deps import MAX_ROW_ID, AdminUser, SessionDep

router = APIRouter(prefix="/api", tags=["audit"])

CSV_COLUMNS = ["id", "at", "user_id", "username", "action", "method", "path", "status", "visit_id", "patient_id",
               "client_ip"]


def as_utc(moment: datetime | None) -> datetime | None:
    # A time without a zone is read as UTC, as everywhere else in the API.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def audit_search(user: Annotated[str | None, Query(max_length=80, description="username")] = None,
                 patient_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                 visit_id: Annotated[str | None, Query(max_length=64)] = None,
                 action: Annotated[str | None, Query(max_length=40, description="e.g. viewed_patient")] = None,
                 since: Annotated[datetime | None, Query(description="from this time on")] = None,
                 until: Annotated[datetime | None, Query(description="before this time")] = None) -> AuditSearch:
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
    return AuditSearch(username=user or None, patient_id=patient_id, visit_id=visit_id or None,
                       action=action or None, since=since, until=until)


AuditSearchDep = Annotated[AuditSearch, Depends(audit_search)]
Before = Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="only events older than this id")]


class AuditPage(BaseModel):
    items: list[AuditEventPublic]
    next_before: int | None  # pass as `before` for the next (older) page; None when this is the last


@router.get("/audit", response_model=AuditPage)
def search_audit_trail(session: SessionDep, _admin: AdminUser, wanted: AuditSearchDep, before: Before = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> AuditPage:
    """Sign-ins, views of patients and visits, and actions: newest first, one page at a time."""
    rows = search(session, wanted, limit + 1, before)  # one more than asked says whether there is a next page
    page = rows[:limit]
    return AuditPage(items=[AuditEventPublic.model_validate(r, from_attributes=True) for r in page],
                     next_before=page[-1].id if len(rows) > limit else None)


@router.get("/audit.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}, "description": "every matching event, newest first"}})
def download_audit_trail(request: Request, _admin: AdminUser, wanted: AuditSearchDep,
                         before: Before = None) -> StreamingResponse:
    """The same search as a CSV file with every matching event, streamed as it is read."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(csv_lines(every_match(request.app.state.engine, wanted, before)),
                             media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="visitflow-audit-{stamp}.csv"'})


def csv_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow([_cell(getattr(event, column)) for column in CSV_COLUMNS])
        if buffer.tell() > 32_768:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: object) -> object:
    """A value a spreadsheet shows as text: a typed username like `=HYPERLINK(...)` must not run as a formula."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value
