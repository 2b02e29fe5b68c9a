"""The server-rendered UI: Jinja2 pages and htmx partials, in the same FastAPI app as the API.

Pages read the SQL read model; every action goes through `visitflow.services` (a workflow Update) and
answers with a partial: the updated panel or row, or the same form with the problem next to its field.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visitflow.access import sees_visit_of
from visitflow.api.deps import SessionDep, TemporalDep
from visitflow.db.tables import Clinician, User, Visit
from visitflow.models import (
    AdjustPunch,
    ExtendDeadline,
    PunchInput,
    PunchKind,
    PunchMethod,
    ReasonCode,
    Reassign,
    RecordPunch,
    ResolveHold,
    Role,
    SendBack,
    SignNote,
    SubmitNote,
    VisitSnapshot,
    VisitState,
)
from visitflow.services import VisitError, act, actor_of, now_utc, release_visits
from visitflow.sessions import session_user
from visitflow.settings import Settings
from visitflow.ui import queries
from visitflow.ui.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    CSRFMiddleware,
    csrf_token,
    session_secret,
    session_token,
    sign_in,
    sign_out,
)
from visitflow.ui.charts import bars, stacked
from visitflow.ui.forms import FORM, FormState, Target, note_errors, note_field_name, place_rejection, read_form
from visitflow.ui.present import (
    EVENT_LABELS,
    FIELD_HINTS,
    GATES,
    METHOD_LABELS,
    PUNCH_LABELS,
    REASON_LABELS,
    ROLE_LABELS,
    ROLE_PEOPLE,
    RULES,
    STATE_LABELS,
    TASK_LABELS,
    Clock,
    dom_id,
    field_label,
    human_duration,
)
from visitflow.users import attempt_sign_in
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

log = logging.getLogger("visitflow.ui")

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
HTMX_FILE = Path("node_modules") / "htmx.org" / "dist" / "htmx.min.js"
HTMX_URL = "/static/vendor/htmx.min.js"
_API_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz")

NAV = {  # each role's pages, its home first
    Role.clinician: [("My tasks", "/tasks")],
    Role.supervisor: [("Escalations", "/escalations"), ("Holds", "/holds"), ("Dashboard", "/dashboard")],
    Role.biller: [("Ready to bill", "/billing"), ("Holds", "/holds"), ("Dashboard", "/dashboard")],
    Role.admin: [("Dashboard", "/dashboard"), ("Holds", "/holds"), ("Users", "/admin/users"),
                 ("Audit", "/admin/audit")],
}

# htmx swaps 4xx answers too: they carry the form again with the problem next to the field.
HTMX_CONFIG = {
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "4..", "swap": True, "error": False},
        {"code": "5..", "swap": True, "error": True},
    ],
    "historyCacheSize": 0,  # never keep copies of patient pages in localStorage
    "refreshOnHistoryMiss": True,
}


def find_htmx() -> Path | None:
    """htmx from `npm install` (node_modules is not in the repository): beside the project or the cwd."""
    project = HERE.parents[2]  # src/visitflow/ui -> the repository root in a source checkout
    for root in (Path.cwd(), project):
        candidate = root / HTMX_FILE
        if candidate.is_file():
            return candidate.resolve()
    return None


class UIState:
    """What every UI request needs: templates, the agency's clock, settings, where htmx lives."""

    def __init__(self, settings: Settings, htmx: Path | None) -> None:
        self.settings = settings
        self.clock = Clock(settings.agency_timezone)
        self.htmx = htmx
        self.htmx_version = _package_version(htmx)
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                 autoescape=jinja2.select_autoescape(), trim_blocks=True, lstrip_blocks=True)
        env.globals.update(
            clock=self.clock, settings=settings, dom_id=dom_id, field_label=field_label, FIELD_HINTS=FIELD_HINTS,
            STATE_LABELS={s.value: label for s, label in STATE_LABELS.items()}, TASK_LABELS=TASK_LABELS,
            ROLE_LABELS={r.value: label for r, label in ROLE_LABELS.items()}, EVENT_LABELS=EVENT_LABELS,
            REASON_LABELS={r.value: label for r, label in REASON_LABELS.items()}, METHOD_LABELS=METHOD_LABELS,
            PUNCH_LABELS=PUNCH_LABELS, RULES=RULES, GATES=GATES, FORM=FORM, CSRF_FIELD=CSRF_FIELD,
            note_field_name=note_field_name, human_duration=human_duration, static=self.static_url,
            htmx_url=f"{HTMX_URL}?v={self.htmx_version}" if htmx else None, htmx_config=HTMX_CONFIG,
            new_key=lambda: uuid.uuid4().hex,
            money=lambda cents: f"${cents / 100:,.2f}" if cents is not None else "—",
            human_duration_h=_hours_in_words, blank=FormState, visit_target=Target,
            row_target=lambda row_id: Target("row", row_id))
        self.templates = Jinja2Templates(env=env, context_processors=[self.common_context])

    @staticmethod
    def static_url(name: str) -> str:
        path = STATIC / name
        stamp = int(path.stat().st_mtime) if path.is_file() else 0  # a changed file is fetched again
        return f"/static/ui/{name}?v={stamp}"

    @staticmethod
    def common_context(request: Request) -> dict[str, Any]:
        user: User | None = getattr(request.state, "user", None)
        nav = NAV.get(user.role, []) if user else []
        return {"user": user, "nav": nav, "csrf": csrf_token(request), "path": request.url.path}


def _hours_in_words(hours: float | None) -> str:
    if hours is None:
        return "—"
    words = human_duration(timedelta(hours=hours))
    return f"−{words}" if hours < 0 else words


def _package_version(htmx: Path | None) -> str:
    try:
        return json.loads((htmx.parents[1] / "package.json").read_text())["version"] if htmx else ""
    except (OSError, ValueError, KeyError):
        return "0"


def get_ui(request: Request) -> UIState:
    return request.app.state.ui


UIDep = Annotated[UIState, Depends(get_ui)]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def render(request: Request, name: str, context: dict[str, Any] | None = None, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    return get_ui(request).templates.TemplateResponse(request, name, context or {}, status_code=status,
                                                      headers=headers)


# --- who is signed in ---------------------------------------------------------------------------


class SignInRequired(Exception):
    pass


def signed_in_user(request: Request, session: SessionDep) -> User:
    # The session row decides, not the cookie: signed out, expired or deactivated means not signed in.
    user = session_user(session, request.app.state.engine, get_ui(request).settings, session_token(request))
    if user is None:
        raise SignInRequired()
    request.state.user = user
    return user


UserDep = Annotated[User, Depends(signed_in_user)]


def role_page(*roles: Role):
    def check(user: UserDep) -> User:
        if user.role not in roles:
            allowed = ", ".join(ROLE_PEOPLE[r] for r in roles)
            raise HTTPException(403, f"This page is for {allowed}. You are signed in as "
                                     f"{user.display_name} ({ROLE_LABELS[user.role].lower()}).")
        return user
    return Depends(check)


ClinicianUser = Annotated[User, role_page(Role.clinician)]
SupervisorUser = Annotated[User, role_page(Role.supervisor)]
BillerUser = Annotated[User, role_page(Role.biller)]
StaffUser = Annotated[User, role_page(Role.supervisor, Role.biller, Role.admin)]
ActingUser = Annotated[User, role_page(Role.clinician, Role.supervisor)]
SendBackUser = Annotated[User, role_page(Role.supervisor, Role.biller)]


def visible_visit(session: Session, user: User, visit_id: str, with_events: bool = True) -> queries.VisitView:
    """The visit, if this person may see it. A clinician sees only their own: others do not exist (404)."""
    view = queries.load_visit(session, visit_id, with_events)
    if view is None or not sees_visit_of(user, view.snap.spec.clinician_id):
        raise HTTPException(404, f"There is no visit {visit_id} for you to see.")
    return view


router = APIRouter(include_in_schema=False)


@router.get("/")
def home(user: UserDep) -> Response:
    return RedirectResponse(NAV[user.role][0][1], status_code=303)


# --- sign in / out ------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an open redirect to somewhere else.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/signin")
def signin_page(request: Request, session: SessionDep, ui: UIDep, next: str = "/",
                signed_out: bool = False) -> Response:
    if session_user(session, request.app.state.engine, ui.settings, session_token(request)) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "signin.html", {"f": FormState(), "next": _safe_next(next), "signed_out": signed_out})


@router.post("/signin")
async def signin(request: Request, session: SessionDep, ui: UIDep) -> Response:
    form = await request.form()
    f = read_form(form, ["username", "password", "next"])
    username = f.need("username", "Enter your username.")
    password = f.need("password", "Enter your password.")
    status, user = 401, None
    if f.ok:
        # Hashing and the database run in a worker thread, and the wait below is a sleep on the loop:
        # a burst of guesses slows down only the guesser.
        outcome = await run_in_threadpool(attempt_sign_in, session, request.app.state.engine, ui.settings,
                                          username, password)
        user = outcome.user
        if outcome.locked_until is not None:
            status = 429
            # Whole minutes, rounded up: "15 min" right after the lock, never "0 min".
            left = int((outcome.locked_until - now_utc()).total_seconds())
            wait = human_duration(timedelta(minutes=max(1, -(-left // 60))))
            f.errors[FORM] = (f"This account is locked after too many failed sign-ins. Try again in {wait} "
                              f"(at {ui.clock.clock(outcome.locked_until)}), or ask the office to unlock it.")
        elif user is None:
            await asyncio.sleep(outcome.delay.total_seconds())
            f.errors["password"] = "That username and password do not match an active account."
    if user is None:
        f.values["password"] = ""  # never echo a password back into the page
        return render(request, "signin.html", {"f": f, "next": _safe_next(f.v("next")), "signed_out": False},
                      status=status)
    await run_in_threadpool(sign_in, request, user)
    request.state.user = user  # the audit trail records who signed in
    log.info("%s signed in", user.username)
    return RedirectResponse(_safe_next(f.v("next")) if f.v("next") not in ("", "/") else NAV[user.role][0][1],
                            status_code=303)


@router.post("/signout")
def signout(request: Request) -> Response:
    sign_out(request)
    return RedirectResponse("/signin?signed_out=true", status_code=303)


# --- clinician: my tasks --------------------------------------------------------------------------


@router.get("/tasks")
def tasks_page(request: Request, session: SessionDep, user: ClinicianUser, page: int = Query(1, ge=1)) -> Response:
    return render(request, "tasks.html", {"tasks": queries.clinician_tasks(session, user.clinician_id, page)})


@router.get("/tasks/list")
def tasks_list(request: Request, session: SessionDep, user: ClinicianUser, page: int = Query(1, ge=1)) -> Response:
    return render(request, "_tasks_list.html", {"tasks": queries.clinician_tasks(session, user.clinician_id, page)})


# --- one visit ----------------------------------------------------------------------------------


def temporal_url(settings: Settings, visit_id: str) -> str:
    workflow_id = visit_workflow_id(visit_id)
    return f"{settings.temporal_ui_url}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"


def gate_checklist(snap: VisitSnapshot) -> list[dict[str, Any]]:
    """Each gate as ✓ passed, ✗ held (with the holds' reasons), or … not reached yet (and why)."""
    checked_after_signing = snap.signature is None
    items = []
    for gate, label in GATES:
        holds = [h for h in snap.holds if h.gate.value == gate]
        if holds:
            status, why = "held", [h.message for h in holds]
        elif snap.gates.get(gate):
            status, why = "passed", []
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


def work_context(session: Session, user: User, view: queries.VisitView, **extra: Any) -> dict[str, Any]:
    """What this person can do on this visit now; each form starts empty unless `extra` says otherwise."""
    snap = view.snap
    is_open = snap.state not in (VisitState.released, VisitState.cancelled)
    own = user.role == Role.clinician and user.clinician_id == snap.spec.clinician_id
    waiting_stage = ("note" if snap.note is None else "signature" if snap.signature is None else None)
    ctx: dict[str, Any] = {
        "view": view, "snap": snap, "is_open": is_open, "draft_key": f"{user.id}:{snap.spec.visit_id}",
        "can_note": own and is_open and snap.signature is None,
        "can_sign": own and is_open and snap.note is not None and snap.signature is None,
        "can_punch": is_open and (own or user.role == Role.supervisor),
        "decisions": [h for h in snap.holds if h.approvable and h.role == Role.supervisor]
        if user.role == Role.supervisor and is_open else [],
        "extend_stage": waiting_stage if user.role == Role.supervisor and is_open else None,
        "can_reassign": user.role == Role.supervisor and is_open and snap.signature is None,
        "can_send_back": user.role in (Role.supervisor, Role.biller) and is_open and snap.signature is not None,
        "can_release": user.role == Role.biller and snap.state == VisitState.claim_ready,
        "my_tasks": [t for t in snap.tasks if t.role == user.role
                     and (user.role != Role.clinician or t.clinician_id == user.clinician_id)],
        "clinicians": queries.clinicians(session) if user.role == Role.supervisor else [],
        "reasons": list(ReasonCode), "release_key": uuid.uuid4().hex,
        "forms": {},
    }
    if ctx["can_note"] and snap.note is not None:  # a note sent back for revision starts from the last one
        ctx["forms"]["note"] = FormState({note_field_name(k): v for k, v in snap.note.fields.items()})
    ctx["forms"].update(extra.pop("forms", {}))
    ctx.update(extra)
    return ctx


def visit_page_context(request: Request, session: Session, user: User, view: queries.VisitView) -> dict[str, Any]:
    ui = get_ui(request)
    return {"view": view, "snap": view.snap, "gates": gate_checklist(view.snap), "punches": punch_rows(view.snap),
            "temporal_url": temporal_url(ui.settings, view.row.id), **work_context(session, user, view)}


@router.get("/visits/{visit_id}")
def visit_page(visit_id: str, request: Request, session: SessionDep, user: UserDep) -> Response:
    view = visible_visit(session, user, visit_id)
    return render(request, "visit.html", visit_page_context(request, session, user, view))


@router.get("/visits/{visit_id}/status")
def visit_status(visit_id: str, request: Request, session: SessionDep, user: UserDep,
                 since: int | None = None) -> Response:
    view = visible_visit(session, user, visit_id)
    if since is not None and view.snap.version <= since:
        return Response(status_code=204)  # nothing moved: htmx leaves the region alone
    return render(request, "_visit_status.html", visit_page_context(request, session, user, view))


@router.get("/visits/{visit_id}/work")
def visit_work(visit_id: str, request: Request, session: SessionDep, user: UserDep,
               since: int | None = None) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    if since is not None and view.snap.version <= since:
        return Response(status_code=204)
    return render(request, "_work.html", work_context(session, user, view))


# --- actions ------------------------------------------------------------------------------------


def form_again(request: Request, template: str, context: dict[str, Any], f: FormState, status: int) -> Response:
    """The same form, with what was typed and the problems next to their fields."""
    return render(request, template, {**context, "f": f}, status=status)


def done(request: Request, session: Session, user: User, target: Target, snap: VisitSnapshot, message: str,
         clear_draft: bool = False) -> Response:
    """An accepted action: the visit's work panel (or the list row) as it is now, and a message."""
    session.rollback()  # end any read transaction begun before the action, so reads see the new projection
    if target.context == "row":
        return render(request, "_row_done.html", {"row_id": target.row, "message": message, "flash": message},
                      headers={"HX-Retarget": f"#{target.row}", "HX-Reswap": "outerHTML",
                               "HX-Trigger": "queue-changed"})
    row = session.get(Visit, snap.spec.visit_id)
    view = queries.visit_view(session, row, snap, with_events=False)
    ctx = work_context(session, user, view, flash=message,
                       cleared_draft=f"{user.id}:{snap.spec.visit_id}" if clear_draft else None)
    return render(request, "_work.html", ctx,
                  headers={"HX-Retarget": "#work", "HX-Reswap": "outerHTML", "HX-Trigger": "visit-changed"})


async def perform(request: Request, template: str, context: dict[str, Any], f: FormState,
                  where: dict[str, str], call) -> VisitSnapshot | Response:
    """Run the action unless the form has problems; a rejection comes back as the form with its reason."""
    if not f.ok:
        return form_again(request, template, context, f, 422)
    try:
        return await call()
    except VisitError as err:
        f.errors.update(place_rejection(err.message, where))
        return form_again(request, template, context, f, err.status)


@router.post("/visits/{visit_id}/note")
async def submit_note(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                      user: ClinicianUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    required = view.snap.spec.required_note_fields
    form = await request.form()
    f = read_form(form, [note_field_name(n) for n in required])
    fields = {n: f.v(note_field_name(n)).strip() for n in required}
    f.errors.update({note_field_name(n): msg for n, msg in note_errors(fields, required).items()})
    ctx = {"view": view, "snap": view.snap, "draft_key": f"{user.id}:{visit_id}"}
    result = await perform(request, "_form_note.html", ctx, f, {}, lambda: act(
        temporal, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=actor_of(user), fields=fields),
        idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, Target(), result, "Note submitted. Sign it to send it on.", clear_draft=True)


@router.post("/visits/{visit_id}/sign")
async def sign_note(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: ClinicianUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["attestation"])
    if f.v("attestation") != "yes":
        f.errors["attestation"] = "Tick the box to confirm the attestation before you sign (SIG-01)."
    result = await perform(request, "_form_sign.html", {"view": view, "snap": view.snap}, f,
                           {"attestation": "attestation"},
                           lambda: act(temporal, visit_id, VisitWorkflow.sign_note,
                                       SignNote(actor=actor_of(user), attestation=True), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, Target(), result, "Signed. The visit is being checked for billing.")


_TIME_WORDS = {"needs an explanation": "reason_text", "needs a reason code": "reason_code",
               "in the future": "at", "after the clock-in": "at", "no clock-in": "kind"}


@router.post("/visits/{visit_id}/punches/adjust")
async def adjust_punch(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                       user: ActingUser, ui: UIDep) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["seq", "adjusted_at", "reason_code", "reason_text"])
    seqs = {str(p.seq) for p in view.snap.punches}
    if f.v("seq") not in seqs:
        f.errors["seq"] = "Choose the punch to correct."
    adjusted_at = f.time("adjusted_at", ui.clock, "Enter the corrected time.")
    code = f.reason()
    result = await perform(
        request, "_form_adjust.html", {"view": view, "snap": view.snap, "reasons": list(ReasonCode)}, f,
        {**_TIME_WORDS, "in the future": "adjusted_at"},
        lambda: act(temporal, visit_id, VisitWorkflow.adjust_punch, AdjustPunch(
            actor=actor_of(user), seq=int(f.v("seq")), adjusted_at=adjusted_at, reason_code=code,
            reason_text=f.v("reason_text").strip() or None, now=now_utc()), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, Target(), result,
                "Punch corrected. The original time stays beside it; a supervisor approves the change.")


@router.post("/visits/{visit_id}/punches/add")
async def add_punch(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: ActingUser, ui: UIDep) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["kind", "at", "reason_code", "reason_text"])
    try:
        kind = PunchKind(f.v("kind"))
    except ValueError:
        kind = None
        f.errors["kind"] = "Choose clock-in or clock-out."
    at = f.time("at", ui.clock, "Enter the time of the missing punch.")
    code = f.reason()
    result = await perform(
        request, "_form_add_punch.html", {"view": view, "snap": view.snap, "reasons": list(ReasonCode)}, f,
        _TIME_WORDS,
        lambda: act(temporal, visit_id, VisitWorkflow.record_punch, RecordPunch(
            actor=actor_of(user), now=now_utc(), punch=PunchInput(
                kind=kind, at=at, method=PunchMethod.manual, reason_code=code,
                reason_text=f.v("reason_text").strip() or None)), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, Target(), result,
                "Manual punch added. A supervisor approves it before the visit can be billed (EVV-04).")


@router.post("/visits/{visit_id}/decision")
async def decide_exception(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                           user: SupervisorUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["key", "decision", "reason"])
    target = Target.of(form)
    reason = f.need("reason", "Give a reason for your decision; it goes on the visit's record.")
    if f.v("decision") not in ("approved", "rejected"):
        f.errors["decision"] = "Choose Approve or Reject."
    hold = next((h for h in view.snap.holds if h.key == f.v("key")), None)
    ctx = {"view": view, "visit_id": visit_id, "hold": hold, "hold_key": f.v("key"), "target": target}
    result = await perform(request, "_form_decision.html", ctx, f, {"needs a reason": "reason"},
                           lambda: act(temporal, visit_id, VisitWorkflow.resolve_hold, ResolveHold(
                               actor=actor_of(user), key=f.v("key"), decision=f.v("decision"), reason=reason),
                               idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    verb = "Approved" if f.v("decision") == "approved" else "Rejected (sent back to the clinician)"
    rule = hold.rule_id if hold else f.v("key")
    return done(request, session, user, target, result, f"{verb}: {rule} on visit {visit_id}.")


@router.post("/visits/{visit_id}/deadline")
async def extend_deadline(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
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
                           {"in the future": "new_deadline", "needs a reason": "reason"},
                           lambda: act(temporal, visit_id, VisitWorkflow.extend_deadline, ExtendDeadline(
                               actor=actor_of(user), stage=f.v("stage"), new_deadline=new_deadline, reason=reason),
                               idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"The {f.v('stage')} for visit {visit_id} is now due {ui.clock.when(new_deadline)}.")


@router.post("/visits/{visit_id}/reassign")
async def reassign(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                   user: SupervisorUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["clinician_id", "reason"])
    target = Target.of(form)
    clinician = session.get(Clinician, int(f.v("clinician_id"))) if f.v("clinician_id").isdigit() else None
    if clinician is None:
        f.errors["clinician_id"] = "Choose the clinician who takes the visit over."
    reason = f.need("reason", "Say why the visit is reassigned; it goes on the visit's record.")
    ctx = {"view": view, "visit_id": visit_id, "target": target, "clinicians": queries.clinicians(session),
           "current_clinician": view.snap.spec.clinician_id}
    result = await perform(request, "_form_reassign.html", ctx, f,
                           {"already assigned": "clinician_id", "needs a reason": "reason"},
                           lambda: act(temporal, visit_id, VisitWorkflow.reassign, Reassign(
                               actor=actor_of(user), clinician_id=clinician.id, reason=reason),
                               idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"Visit {visit_id} is now assigned to {queries.clinician_label(clinician)}.")


@router.post("/visits/{visit_id}/send-back")
async def send_back(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                    user: SendBackUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["message"])
    target = Target.of(form)
    message = f.need("message", "Tell the clinician what to fix.")
    ctx = {"view": view, "visit_id": visit_id, "target": target}
    result = await perform(request, "_form_send_back.html", ctx, f, {"what the clinician must fix": "message"},
                           lambda: act(temporal, visit_id, VisitWorkflow.send_back,
                                       SendBack(actor=actor_of(user), message=message), idempotency_key=f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"Visit {visit_id} went back to {queries.person(view.clinician)} to revise and sign again.")


# --- supervisor: escalations ------------------------------------------------------------------------


def _clinician_filter(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@router.get("/escalations")
def escalations_page(request: Request, session: SessionDep, user: SupervisorUser,
                     clinician: str | None = None) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "escalations.html", {
        "clinician_id": cid, "clinicians": queries.clinicians(session),
        "overdue": queries.overdue_work(session, cid, 1), "exceptions": queries.exceptions_to_decide(session, cid, 1),
        "team": queries.team_overdue(session)})


@router.get("/escalations/overdue")
def escalations_overdue(request: Request, session: SessionDep, user: SupervisorUser, clinician: str | None = None,
                        page: int = Query(1, ge=1)) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "_overdue_list.html", {"clinician_id": cid, "clinicians": queries.clinicians(session),
                                                  "overdue": queries.overdue_work(session, cid, page)})


@router.get("/escalations/exceptions")
def escalations_exceptions(request: Request, session: SessionDep, user: SupervisorUser,
                           clinician: str | None = None, page: int = Query(1, ge=1)) -> Response:
    cid = _clinician_filter(clinician)
    return render(request, "_exceptions_list.html",
                  {"clinician_id": cid, "exceptions": queries.exceptions_to_decide(session, cid, page)})


@router.get("/escalations/team")
def escalations_team(request: Request, session: SessionDep, user: SupervisorUser,
                     clinician: str | None = None) -> Response:
    return render(request, "_team.html", {"clinician_id": _clinician_filter(clinician),
                                          "team": queries.team_overdue(session)})


# --- biller: ready to bill, release -----------------------------------------------------------------


def billing_filter(form_or_query, f: FormState | None = None) -> queries.BillingFilter:
    """The payer and date range from a query string or a form; bad values become field errors."""
    f = f if f is not None else FormState()
    payer = str(form_or_query.get("payer") or "")
    filters = queries.BillingFilter(payer_id=int(payer) if payer.isdigit() else None)
    for name in ("date_from", "date_to"):
        raw = str(form_or_query.get(name) or "").strip()
        f.values[name] = raw
        if raw:
            try:
                setattr(filters, name, date.fromisoformat(raw))
            except ValueError:
                f.errors[name] = "Enter a date, e.g. 2024-11-26."
    f.values["payer"] = payer
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        f.errors["date_to"] = "The end date must not be before the start date."
        filters.date_to = None
    return filters


@router.get("/billing")
def billing_page(request: Request, session: SessionDep, user: BillerUser, page: int = Query(1, ge=1)) -> Response:
    f = FormState()
    filters = billing_filter(request.query_params, f)
    return render(request, "billing.html", {
        "f": f, "filters": filters, "payers": queries.payers(session), "release_key": uuid.uuid4().hex,
        "ready": queries.ready_to_bill(session, filters, page)})


@router.get("/billing/list")
def billing_list(request: Request, session: SessionDep, user: BillerUser, page: int = Query(1, ge=1)) -> Response:
    filters = billing_filter(request.query_params)
    return render(request, "_ready_list.html", {"filters": filters,
                                                "ready": queries.ready_to_bill(session, filters, page)})


@router.post("/billing/release")
async def release(request: Request, session: SessionDep, temporal: TemporalDep, user: BillerUser) -> Response:
    form = await request.form()
    visit_ids = [str(v) for v in form.getlist("visit_ids") if str(v).strip()]
    filters = billing_filter(form)
    page = int(str(form.get("page") or "1")) if str(form.get("page") or "1").isdigit() else 1
    context = {"filters": filters, "release_key": uuid.uuid4().hex, "oob": True}
    if not visit_ids:
        return render(request, "_release_outcome.html",
                      {**context, "error": "Tick at least one visit to release."}, status=422)
    # The key is fixed when the page is drawn: a double click or a retry lands in the same batch.
    key = str(form.get("release_key") or "") or uuid.uuid4().hex
    outcome = await release_visits(request.app.state.engine, temporal, visit_ids, actor_of(user), key)
    session.rollback()  # end the read transaction begun before the release, so reads see the projections
    if form.get("context") == "visit" and len(visit_ids) == 1:
        view = visible_visit(session, user, visit_ids[0], with_events=False)
        message = _release_sentence(outcome)
        return render(request, "_work.html", work_context(session, user, view, flash=message, outcome=outcome),
                      headers={"HX-Retarget": "#work", "HX-Reswap": "outerHTML", "HX-Trigger": "visit-changed"})
    return render(request, "_release_outcome.html", {
        **context, "outcome": outcome, "flash": _release_sentence(outcome),
        "ready": queries.ready_to_bill(session, filters, page)}, headers={"HX-Trigger": "queue-changed"})


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


# --- holds ------------------------------------------------------------------------------------------


@router.get("/holds")
def holds_page(request: Request, session: SessionDep, user: StaffUser, payer: str | None = None,
               page: int = Query(1, ge=1)) -> Response:
    payer_id = int(payer) if payer and payer.isdigit() else None
    groups, count = queries.holds_by_rule(session, payer_id, page)
    return render(request, "holds.html", {"payer_id": payer_id, "payers": queries.payers(session),
                                          "groups": groups, "count": count})


@router.get("/holds/list")
def holds_list(request: Request, session: SessionDep, user: StaffUser, payer: str | None = None,
               page: int = Query(1, ge=1)) -> Response:
    payer_id = int(payer) if payer and payer.isdigit() else None
    groups, count = queries.holds_by_rule(session, payer_id, page)
    return render(request, "_holds_list.html", {"payer_id": payer_id, "groups": groups, "count": count})


# --- dashboard ----------------------------------------------------------------------------------------


def dashboard_context(session: Session, ui: UIState) -> dict[str, Any]:
    s = ui.settings
    d = queries.dashboard(session, now_utc(), s.note_due, s.note_escalate_after)
    state_tones = {STATE_LABELS[VisitState.on_hold]: "danger", STATE_LABELS[VisitState.claim_ready]: "good",
                   STATE_LABELS[VisitState.released]: "muted", STATE_LABELS[VisitState.cancelled]: "muted"}
    return {
        "d": d,
        "state_bars": bars([(label, n) for _, label, n in d.states], tones=state_tones),
        "aging": stacked([(b.name, f"waiting on {b.who}", b.buckets) for b in d.backlogs], queries.AGE_BUCKETS),
        "age_labels": queries.AGE_BUCKETS,
        "lag_bars": bars(d.lag_buckets, tones={d.lag_buckets[1][0]: "warn", d.lag_buckets[2][0]: "danger"}),
        "hold_bars": bars([(rule, n) for rule, _, n in d.holds], notes={rule: text for rule, text, _ in d.holds},
                          tones={rule: "danger" for rule, _, _ in d.holds}),
        "escalation_bars": bars(d.escalations, tones={label: "warn" for label, _ in d.escalations}),
    }


@router.get("/dashboard")
def dashboard_page(request: Request, session: SessionDep, user: StaffUser, ui: UIDep) -> Response:
    return render(request, "dashboard.html", dashboard_context(session, ui))


@router.get("/dashboard/charts")
def dashboard_charts(request: Request, session: SessionDep, user: StaffUser, ui: UIDep) -> Response:
    return render(request, "_dashboard_charts.html", dashboard_context(session, ui))


# --- htmx from node_modules ---------------------------------------------------------------------------


@router.get(HTMX_URL)
def htmx_script(ui: UIDep) -> Response:
    if ui.htmx is None:
        raise HTTPException(404, "htmx is not installed on this server: run `npm install` in the project.")
    return FileResponse(ui.htmx, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


# --- errors: friendly pages for people, the API's JSON for programs ----------------------------------


def is_ui_request(request: Request) -> bool:
    return not request.url.path.startswith(_API_PREFIXES)


def error_response(request: Request, status: int, message: str, title: str | None = None) -> Response:
    """A page (or, for htmx, a message in the page's notice area) that says what went wrong in words."""
    title = title or {401: "Please sign in", 403: "Not allowed", 404: "Not found",
                      422: "Please check your request"}.get(status, "Something went wrong")
    if is_htmx(request):
        return render(request, "_flash.html", {"message": f"{title}: {message}", "tone": "error"}, status=status,
                      headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)


def _sign_in_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if is_htmx(request):
        # htmx follows HX-Redirect; the page the person was on (their draft is in localStorage) comes back after.
        current = request.headers.get("hx-current-url", "")
        back = "/" + current.split("/", 3)[3] if current.count("/") >= 3 else "/"
        return Response(status_code=401, headers={"HX-Redirect": f"/signin?next={_quote(_safe_next(back))}"})
    return RedirectResponse(f"/signin?next={_quote(here)}", status_code=303)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def install_error_handlers(app: FastAPI) -> None:
    """Wrap the API's handlers: UI paths get pages, API paths keep their JSON answers."""

    def wrap(exc_class: type[Exception], for_ui: Callable[[Request, Any], Response]) -> None:
        for_api = app.exception_handlers.get(exc_class)

        async def handler(request: Request, exc: Exception) -> Response:
            if is_ui_request(request) or for_api is None:
                return for_ui(request, exc)
            result = for_api(request, exc)
            return await result if hasattr(result, "__await__") else result

        app.add_exception_handler(exc_class, handler)

    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401:
            return _sign_in_redirect(request)
        detail = exc.detail if isinstance(exc.detail, str) else "That did not work."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no page at this address."
        if exc.status_code == 405:
            detail = "This address does not take that kind of request."
        return error_response(request, exc.status_code, detail)

    def invalid(request: Request, exc: RequestValidationError) -> Response:
        names = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return error_response(request, 422, f"Some values in the address or form are not valid ({names}).")

    def crashed(request: Request, exc: Exception) -> Response:
        log.exception("UI error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "VisitFlow could not finish this. It has been logged; nothing you "
                                            "typed is lost. Try again in a moment.")

    wrap(StarletteHTTPException, http_error)
    wrap(RequestValidationError, invalid)
    wrap(Exception, crashed)
    app.add_exception_handler(SignInRequired, lambda request, exc: _sign_in_redirect(request))


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` to UI responses, so render times can be read off any page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={ms:.1f}".encode())]
            await send(message)

        await self.app(scope, receive, send_with_timing)


# --- wiring -----------------------------------------------------------------------------------------------


def mount_ui(app: FastAPI, settings: Settings) -> None:
    htmx = find_htmx()
    if htmx is None:
        log.warning("htmx is not installed (%s is missing): run `npm install` in the project directory. "
                    "Pages still render, but buttons and live lists need it.", HTMX_FILE)
    ui = UIState(settings, htmx)
    app.state.ui = ui
    app.include_router(router)
    from visitflow.ui.admin import router as admin_router  # here: the admin pages build on this module

    app.include_router(admin_router)
    app.mount("/static/ui", StaticFiles(directory=STATIC), name="ui-static")

    def csrf_rejection(scope: Scope, reason: str) -> Response:
        request = Request(scope)
        if not is_ui_request(request):
            return Response(json.dumps({"detail": reason}), status_code=403, media_type="application/json")
        return error_response(request, 403, reason, title="Not accepted")

    # Added inside-out: timing innermost, then CSRF (needs the session), then the session cookie.
    app.add_middleware(ServerTiming)
    app.add_middleware(CSRFMiddleware, reject=csrf_rejection)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
                       max_age=int(settings.session_max_age.total_seconds()), same_site="lax",
                       https_only=settings.secure_cookies)
    install_error_handlers(app)
