"""The admin's audit page: who signed in, looked at a patient or a visit, or acted; filters, a table, a CSV."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from visitflow.audit import ACTIONS, AUDITED_READS, SIGN_IN_OUTCOMES, AuditSearch, search
from visitflow.db.tables import User
from visitflow.deps import MAX_ROW_ID, SessionDep
from visitflow.models import Role
from visitflow.ui.deps import UIDep, render, role_page
from visitflow.ui.forms import FormState
from visitflow.ui.present import Clock

router = APIRouter(include_in_schema=False)

AdminUser = Annotated[User, role_page(Role.admin)]
PAGE_SIZE = 100
ACTION_NAMES = sorted({*AUDITED_READS.values(), *ACTIONS.values(), *SIGN_IN_OUTCOMES.values(), "sign_in_failed"})


def read_filters(params: QueryParams, clock: Clock) -> tuple[AuditSearch, FormState, int | None]:
    """The search the form asks for; days are the agency's local days. Bad values become field errors."""
    f = FormState({name: str(params.get(name) or "").strip()
                   for name in ("user", "patient_id", "visit_id", "action", "since", "until", "before")})
    wanted = AuditSearch(username=f.v("user")[:80] or None, visit_id=f.v("visit_id")[:64] or None,
                         action=f.v("action")[:40] or None)
    wanted.patient_id = _number(f, "patient_id", "Enter the patient's number, e.g. 12.")
    before = _number(f, "before", "That page link is not valid; start again from the newest events.")
    days = {}
    for name in ("since", "until"):
        if f.v(name):
            try:
                days[name] = date.fromisoformat(f.v(name))
            except ValueError:
                f.errors[name] = "Enter a date, e.g. 2026-11-26."
    if "since" in days:
        wanted.since = datetime.combine(days["since"], time(), clock.zone)
    if "until" in days:  # the whole of the last day
        wanted.until = datetime.combine(days["until"] + timedelta(days=1), time(), clock.zone)
    if wanted.since and wanted.until and wanted.since >= wanted.until:
        f.errors["until"] = "The last day must not be before the first day."
    return wanted, f, before


def _number(f: FormState, name: str, problem: str) -> int | None:
    raw = f.v(name)
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ROW_ID:
        f.errors[name] = problem
        return None
    return int(raw)


def api_query(wanted: AuditSearch) -> str:
    """The same search for GET /api/audit.csv."""
    params = {"user": wanted.username, "patient_id": wanted.patient_id, "visit_id": wanted.visit_id,
              "action": wanted.action, "since": wanted.since and wanted.since.isoformat(),
              "until": wanted.until and wanted.until.isoformat()}
    return urlencode({k: v for k, v in params.items() if v is not None})


@router.get("/admin/audit")
def audit_page(request: Request, session: SessionDep, user: AdminUser, ui: UIDep) -> Response:
    wanted, f, before = read_filters(request.query_params, ui.clock)
    if f.errors:
        return render(request, "admin_audit.html", {"f": f, "events": [], "actions": ACTION_NAMES}, status=422)
    rows = search(session, wanted, PAGE_SIZE + 1, before)
    filters = urlencode({k: v for k, v in f.values.items() if v and k != "before"})
    return render(request, "admin_audit.html", {
        "f": f, "events": rows[:PAGE_SIZE], "actions": ACTION_NAMES, "filters": filters,
        "older": rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None, "csv_query": api_query(wanted)})
