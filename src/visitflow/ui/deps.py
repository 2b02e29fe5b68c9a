"""What every UI request needs: templates and the agency's clock (UIState), the signed-in person and the
pages their role may see, and the visit they may see.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlmodel import Session
from starlette.templating import Jinja2Templates

from visitflow.catalogue import (
    EVENT_LABELS,
    FIELD_HINTS,
    GATES,
    METHOD_LABELS,
    PUNCH_LABELS,
    MISSED_REASON_LABELS,
    REASON_LABELS,
    ROLE_LABELS,
    ROLE_PEOPLE,
    RULES,
    STATE_LABELS,
    TASK_CHIPS,
    TASK_LABELS,
    field_label,
    service_name,
)
from visitflow.db.tables import User
from visitflow.deps import SessionDep, let_go
from visitflow.models import (
    HOLD_DECIDERS,
    Role,
)
from visitflow.services import queries
from visitflow.services.access import sees_visit_of
from visitflow.services.queries import dom_id
from visitflow.services.sessions import session_user
from visitflow.settings import Settings
from visitflow.ui.auth import (
    CSRF_FIELD,
    csrf_token,
    session_token,
)
from visitflow.ui.forms import FORM, FormState, Target, note_field_name
from visitflow.ui.present import Clock, event_detail, human_duration, link_changes, problem_text, readable

log = logging.getLogger("visitflow.ui")


HERE = Path(__file__).parent


TEMPLATES = HERE / "templates"


STATIC = HERE / "static"


HTMX_FILE = Path("node_modules") / "htmx.org" / "dist" / "htmx.min.js"


HTMX_URL = "/static/vendor/htmx.min.js"


NAV = {  # each role's pages, its home first (and everyone's notices last)
    Role.clinician: [("My tasks", "/tasks")],
    Role.supervisor: [("Escalations", "/escalations"), ("Holds", "/holds"), ("Visits", "/visits"),
                      ("Dashboard", "/dashboard"), ("Orders", "/orders"), ("Supervision", "/supervision"),
                      ("What changed", "/changes"), ("Load CSV", "/intake")],
    Role.biller: [("Ready to bill", "/billing"), ("Holds", "/holds"), ("Claims", "/claims"),
                  ("Claim files", "/claim-files"), ("Remittances", "/remittances"), ("Visits", "/visits"),
                  ("Dashboard", "/dashboard"), ("What changed", "/changes")],
    Role.admin: [("Dashboard", "/dashboard"), ("Visits", "/visits"), ("Holds", "/holds"), ("Claims", "/claims"),
                 ("Remittances", "/remittances"), ("Users", "/admin/users"), ("Audit", "/admin/audit"),
                 ("Orders", "/orders"), ("Supervision", "/supervision"), ("What changed", "/changes"),
                 ("Load CSV", "/intake"), ("Event endpoints", "/admin/events")],
}
NOTICES = "/notices"
for _pages in NAV.values():
    _pages.append(("Notices", NOTICES))
RECENT_NOTICES = timedelta(days=7)  # the nav counts the notices of the last week


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
            TASK_CHIPS=TASK_CHIPS,
            ROLE_LABELS={r.value: label for r, label in ROLE_LABELS.items()}, EVENT_LABELS=EVENT_LABELS,
            REASON_LABELS={r.value: label for r, label in REASON_LABELS.items()}, METHOD_LABELS=METHOD_LABELS,
            MISSED_REASON_LABELS={r.value: label for r, label in MISSED_REASON_LABELS.items()},
            PUNCH_LABELS=PUNCH_LABELS, RULES=RULES, GATES=GATES, FORM=FORM, CSRF_FIELD=CSRF_FIELD,
            note_field_name=note_field_name, human_duration=human_duration, static=self.static_url,
            htmx_url=f"{HTMX_URL}?v={self.htmx_version}" if htmx else None, htmx_config=HTMX_CONFIG,
            new_key=lambda: uuid.uuid4().hex,
            money=lambda cents: f"${cents / 100:,.2f}" if cents is not None else "—",
            human_duration_h=_hours_in_words, blank=FormState, visit_target=Target,
            row_target=lambda row_id: Target("row", row_id),
            readable=lambda text, staff=False: readable(text, self.clock, staff),
            problem_text=lambda hold, staff=False: problem_text(hold.message, hold.rule_id, self.clock, staff),
            # `links`: the reader may open a change's page (not clinicians), so "(change #12)" links it.
            event_detail=lambda e, staff=False, links=False: (link_changes if links else str)(
                event_detail(e.kind, e.detail, self.clock, staff)),
            service_name=service_name)
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
        return {"user": user, "nav": nav, "csrf": csrf_token(request), "path": request.url.path,
                "notice_count": lambda: _recent_notices(request, user)}


def _recent_notices(request: Request, user: User) -> str:
    """The nav's count of this person's notices of the last week ("" for none, "99+" past that): read only when a
    whole page with the nav is drawn (never for a fragment), from the notice index, at most 100 entries."""
    with Session(request.app.state.engine) as session:
        n, more = queries.recent_notice_count(session, user, datetime.now(UTC) - RECENT_NOTICES)
    return f"{n}+" if more else str(n) if n else ""


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


class SignInRequired(Exception):
    pass


def signed_in_user(request: Request, session: SessionDep) -> User:
    # The session row decides, not the cookie: signed out, expired or deactivated means not signed in.
    user = session_user(session, request.app.state.engine, get_ui(request).settings, session_token(request))
    if user is None:
        raise SignInRequired()
    request.state.user = user
    let_go(session)
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


BillingUser = Annotated[User, role_page(Role.biller, Role.admin)]  # claims and claim files


ActingUser = Annotated[User, role_page(Role.clinician, Role.supervisor)]


SendBackUser = Annotated[User, role_page(Role.supervisor, Role.biller)]


# Holds are decided by the role they name (HOLD_DECIDERS): supervisors the exceptions, billing its denials.
DeciderUser = Annotated[User, role_page(*HOLD_DECIDERS)]


def page_cursor(after: Annotated[str | None, Query(max_length=300)] = None) -> str | None:
    """The `after` of a list's "Next" link: where the page starts (none: the first page)."""
    if after and not queries.is_cursor(after):
        raise HTTPException(422, "That page link is not valid; start again from the first page.")
    return after or None


PageCursor = Annotated[str | None, Depends(page_cursor)]


def visible_visit(session: Session, user: User, visit_id: str, with_events: bool = True) -> queries.VisitView:
    """The visit, if this person may see it. A clinician sees only their own: others do not exist (404)."""
    view = queries.load_visit(session, visit_id, with_events)
    if view is None or not sees_visit_of(user, view.snap.spec.clinician_id):
        raise HTTPException(404, f"There is no visit {visit_id} for you to see.")
    let_go(session)  # an action on it waits on Temporal next
    return view
