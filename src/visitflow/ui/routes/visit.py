"""One visit: the gates as a checklist, punches against the schedule, the timeline, the work panel.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.catalogue import (
    CHANGE_OUTCOMES,
    GATES,
)
from visitflow.db.tables import User
from visitflow.deps import SessionDep, VisitId
from visitflow.models import (
    PunchKind,
    Role,
    VisitSnapshot,
    VisitState,
)
from visitflow.services import queries
from visitflow.services.changes import changes_of_visit
from visitflow.services.claims import visit_claims
from visitflow.settings import Settings
from visitflow.ui.actions import work_context
from visitflow.ui.deps import StaffUser, UserDep, get_ui, render, visible_visit
from visitflow.ui.forms import FORM, FormState
from visitflow.ui.routes.claims import STATE_WORDS as CLAIM_STATE_WORDS
from visitflow.workflows.visit import visit_workflow_id

router = APIRouter(include_in_schema=False)


def temporal_url(settings: Settings, visit_id: str) -> str:
    workflow_id = visit_workflow_id(visit_id)
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


def gate_checklist(snap: VisitSnapshot) -> list[dict[str, Any]]:
    """Each gate as ✓ passed, ✗ held (with the holds' reasons), or … not reached yet (and why)."""
    checked_after_signing = snap.signature is None
    items = []
    for gate, label in GATES:
        holds = [h for h in snap.holds if h.gate.value == gate]
        if holds:  # each hold is told once, under "Open holds"; the gate only counts them
            status, why = "held", [f"{len(holds)} open hold{'s' if len(holds) > 1 else ''}, listed below"]
        elif snap.gates.get(gate):
            status, why = "passed", []
        elif snap.state in (VisitState.missed, VisitState.cancelled):  # ended: nothing is waited for
            status, why = "skipped", [f"the visit was {snap.state.value}: it is never billed"]
        elif gate == "documented":
            status, why = "waiting", ["waiting for the note"]
        elif gate == "signed":
            status, why = "waiting", ["waiting for the clinician's signature"]
        elif checked_after_signing:
            status, why = "waiting", ["checked once the note is signed"]
        elif snap.state in (VisitState.released, VisitState.cancelled):
            status, why = "waiting", [f"not checked: the visit is {snap.state.value}"]
        else:
            status, why = "waiting", ["being checked now"]
        items.append({"gate": gate, "label": label, "status": status, "why": why})
    return items


def punch_rows(snap: VisitSnapshot) -> list[dict[str, Any]]:
    """Punches against the schedule: the original time and, beside it, any correction."""
    spec = snap.spec
    rows = []
    for p in snap.punches:
        scheduled = spec.scheduled_start if p.kind == PunchKind.clock_in else spec.scheduled_end
        off = (p.effective_at - scheduled).total_seconds() / 60
        rows.append({"p": p, "scheduled": scheduled, "off_min": round(off)})
    for kind in PunchKind:
        if not any(p.kind == kind for p in snap.punches):
            rows.append({"p": None, "kind": kind.value,
                         "scheduled": spec.scheduled_start if kind == PunchKind.clock_in else spec.scheduled_end})
    return rows


def visit_page_context(request: Request, session: Session, user: User, view: queries.VisitView) -> dict[str, Any]:
    ui = get_ui(request)
    # The workflow's inner workings are for the people who run it (office staff) and the supervisors.
    operator = user.role in (Role.admin, Role.supervisor)
    return {"view": view, "snap": view.snap, "gates": gate_checklist(view.snap), "punches": punch_rows(view.snap),
            "decided": {a.key for a in view.snap.acknowledgements},
            "temporal_url": temporal_url(ui.settings, view.row.id) if operator else None,
            # CHG-01: the changes that touched this visit, each linked (the staff who can open the change feed)
            "visit_changes": changes_of_visit(session, view.row.id, 20) if user.role != Role.clinician else [],
            "CHANGE_OUTCOME_WORDS": CHANGE_OUTCOMES,
            # The claims it was billed on, for those who see claims.
            "visit_claims": visit_claims(session, view.row.id) if user.role in (Role.admin, Role.biller) else [],
            "CLAIM_STATES": CLAIM_STATE_WORDS,
            **work_context(session, user, view)}


SEARCH_FIELDS = ["visit_id", "patient", "clinician", "date", "state", "after"]


def read_search(request: Request) -> tuple[queries.VisitSearch, FormState]:
    """The search form as typed; each value that cannot be searched by is named next to its field."""
    f = FormState(values={n: request.query_params.get(n, "").strip() for n in SEARCH_FIELDS})
    search = queries.VisitSearch(visit_id=f.v("visit_id")[:64], patient=f.v("patient")[:80])
    if f.v("clinician"):
        if f.v("clinician").isdigit():
            search.clinician_id = int(f.v("clinician"))
        else:
            f.errors["clinician"] = "Choose a clinician from the list."
    if f.v("date"):
        try:
            search.service_date = date.fromisoformat(f.v("date"))
        except ValueError:
            f.errors["date"] = "Enter the date of service as a date, e.g. 2026-11-28."
    if f.v("state"):
        if f.v("state") in {s.value for s in VisitState}:
            search.state = f.v("state")
        else:
            f.errors["state"] = "Choose a state from the list."
    if f.v("after") and queries.parse_cursor(f.v("after")) is None:
        f.errors[FORM] = "That page of results no longer exists; search again."
    return search, f


@router.get("/visits")
def visit_search(request: Request, session: SessionDep, user: StaffUser) -> Response:
    search, f = read_search(request)
    ok = not f.errors
    results = queries.search_visits(session, search, f.v("after") or None) if ok and not search.empty else None
    return render(request, "visits.html", {
        "f": f, "search": search, "results": results, "clinicians": queries.clinicians(session),
        "states": list(VisitState)}, status=200 if ok else 422)


@router.get("/visits/{visit_id}")
def visit_page(visit_id: VisitId, request: Request, session: SessionDep, user: UserDep) -> Response:
    view = visible_visit(session, user, visit_id)
    return render(request, "visit.html", visit_page_context(request, session, user, view))


@router.get("/visits/{visit_id}/status")
def visit_status(visit_id: VisitId, request: Request, session: SessionDep, user: UserDep,
                 since: int | None = None) -> Response:
    view = visible_visit(session, user, visit_id)
    if since is not None and view.snap.version <= since:
        return Response(status_code=204)  # nothing moved: htmx leaves the region alone
    return render(request, "_visit_status.html", visit_page_context(request, session, user, view))


@router.get("/visits/{visit_id}/work")
def visit_work(visit_id: VisitId, request: Request, session: SessionDep, user: UserDep,
               since: int | None = None) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    if since is not None and view.snap.version <= since:
        return Response(status_code=204)
    return render(request, "_work.html", work_context(session, user, view))
