"""Minimum necessary, route by route: every route of the app, for every role, against one table.

The table below is the rule; README.md shows the same table. A route the table does not name fails the first
test, so nobody adds a route without saying who may use it. The walk makes real requests (the real database,
the real Temporal test server) as each role and checks the answer: allowed, own only, or 403.

- allowed: the role gets past every check of who they are (the answer may still be 404 for an unknown id, 409
  for a visit in the wrong state or 422 for an empty form: those are about the request, not the person);
- own only: a clinician, allowed on their own visit (its patient, their clinician record); someone else's is
  404 for a read, as if it did not exist, and 403 or 404 for an action; in a list, only their own appear;
- 403: refused for the role.
Anonymous callers get 401 from the API and the sign-in page from the UI on every route that is not public.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlmodel import Session

from tests.conftest import HOME, Agency
from tests.ui.conftest import VisitSetup, end_workflows, recent_start, sign_in
from visitflow.db.tables import Patient, User
from visitflow.main import create_app
from visitflow.models import ReasonCode, Role
from visitflow.security import hash_password
from visitflow.settings import Settings

README = Path(__file__).parents[2] / "README.md"

ALLOWED, OWN, REFUSED, PUBLIC = "allowed", "own only", "403", "public"
A, C, S, B = Role.admin, Role.clinician, Role.supervisor, Role.biller
ROLES = (A, C, S, B)


def only(*roles: Role, own: tuple[Role, ...] = ()) -> dict[Role, str]:
    return {r: ALLOWED if r in roles else OWN if r in own else REFUSED for r in ROLES}


EVERYONE = only(A, C, S, B)
EVERYONE_CLINICIAN_OWN = only(A, S, B, own=(C,))
STAFF = only(A, S, B)
ADMIN = only(A)
BILLING = only(A, B)  # claims and claim files

TABLE: dict[tuple[str, str], dict[Role, str] | str] = {
    # --- public: no sign-in; nothing about patients
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/signin"): PUBLIC,
    ("POST", "/signin"): PUBLIC,
    ("POST", "/signout"): PUBLIC,
    ("GET", "/static/vendor/htmx.min.js"): PUBLIC,
    ("GET", "/static/ui"): PUBLIC,
    # --- API: reference data (changes: admins only)
    ("POST", "/api/patients"): ADMIN,
    ("GET", "/api/patients"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/api/patients/{item_id}"): EVERYONE_CLINICIAN_OWN,
    ("PATCH", "/api/patients/{item_id}"): ADMIN,
    ("POST", "/api/clinicians"): ADMIN,
    ("GET", "/api/clinicians"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/api/clinicians/{item_id}"): EVERYONE_CLINICIAN_OWN,
    ("PATCH", "/api/clinicians/{item_id}"): ADMIN,
    ("POST", "/api/payers"): ADMIN,
    ("GET", "/api/payers"): STAFF,
    ("GET", "/api/payers/{item_id}"): STAFF,
    ("PATCH", "/api/payers/{item_id}"): ADMIN,
    ("POST", "/api/authorizations"): ADMIN,
    ("GET", "/api/authorizations"): STAFF,
    ("GET", "/api/authorizations/{auth_id}"): STAFF,
    ("PATCH", "/api/authorizations/{auth_id}"): ADMIN,
    ("POST", "/api/payer-rates"): ADMIN,
    ("GET", "/api/payer-rates"): STAFF,
    # --- API: visits
    ("POST", "/api/visits"): only(A, S),
    ("GET", "/api/visits"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/api/visits/{visit_id}"): EVERYONE_CLINICIAN_OWN,
    ("POST", "/api/visits/{visit_id}/punches"): only(A, S, own=(C,)),
    ("POST", "/api/visits/{visit_id}/punches/{seq}/adjustments"): only(S, own=(C,)),
    ("POST", "/api/visits/{visit_id}/note"): only(own=(C,)),
    ("POST", "/api/visits/{visit_id}/signature"): only(own=(C,)),
    # A hold is decided by the role it names: supervisors the exceptions, billing the payer denials routed to it.
    ("POST", "/api/visits/{visit_id}/exceptions"): only(S, B),
    ("POST", "/api/visits/{visit_id}/deadline"): only(S),
    ("POST", "/api/visits/{visit_id}/reassign"): only(S),
    ("POST", "/api/visits/{visit_id}/reschedule"): only(A, S),
    ("POST", "/api/visits/{visit_id}/cancel"): only(A, S),
    ("POST", "/api/visits/{visit_id}/send-back"): only(S, B),
    ("POST", "/api/visits/{visit_id}/missed"): only(A, S),
    ("GET", "/api/missed-visits"): only(A, S),
    ("PUT", "/api/patients/{item_id}/supervision"): only(A, S),
    ("GET", "/api/supervision"): only(A, S),
    ("POST", "/api/releases"): only(B),
    ("POST", "/api/claims/check"): STAFF,
    ("GET", "/api/claims"): BILLING,
    ("GET", "/api/claims/{claim_id}"): BILLING,
    ("POST", "/api/claims/{claim_id}/state"): BILLING,
    ("POST", "/api/claims/{claim_id}/void"): BILLING,
    ("POST", "/api/claims/{claim_id}/bill-on-replacement"): BILLING,
    ("POST", "/api/claims/{claim_id}/resubmit"): BILLING,
    ("GET", "/api/claim-files"): BILLING,
    ("GET", "/api/claim-files/{file_id}"): BILLING,
    ("GET", "/api/claim-files/{file_id}/download"): BILLING,
    ("POST", "/api/claim-files/{file_id}/submitted"): BILLING,
    ("POST", "/api/remittances"): only(A, B),
    ("GET", "/api/remittances"): only(A, B),
    ("GET", "/api/remittances/{remittance_id}"): only(A, B),
    ("POST", "/api/claim-files/{file_id}/rewrite"): BILLING,
    ("POST", "/api/orders"): ADMIN,
    ("GET", "/api/orders"): only(A, S),
    ("GET", "/api/orders/pending"): only(A, S),
    ("GET", "/api/orders/{order_id}"): only(A, S),
    ("PATCH", "/api/orders/{order_id}"): ADMIN,
    ("POST", "/api/orders/{order_id}/signature"): ADMIN,
    ("POST", "/api/orders/{order_id}/return"): ADMIN,
    ("GET", "/api/changes"): STAFF,
    ("GET", "/api/changes/{change_id}"): STAFF,
    ("POST", "/api/event-endpoints"): ADMIN,
    ("GET", "/api/event-endpoints"): ADMIN,
    ("PATCH", "/api/event-endpoints/{endpoint_id}"): ADMIN,
    ("GET", "/api/event-endpoints/{endpoint_id}/deliveries"): ADMIN,
    ("POST", "/api/event-endpoints/{endpoint_id}/test"): ADMIN,
    ("POST", "/api/bulk/authorizations"): ADMIN,
    ("POST", "/api/bulk/visits"): only(A, S),
    ("GET", "/api/tasks"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/api/notifications"): EVERYONE_CLINICIAN_OWN,
    # --- API: user accounts and the audit trail (admins only)
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("GET", "/api/users/{user_id}"): ADMIN,
    ("PATCH", "/api/users/{user_id}"): ADMIN,
    ("POST", "/api/users/{user_id}/password"): ADMIN,
    ("POST", "/api/users/{user_id}/unlock"): ADMIN,
    ("GET", "/api/users/{user_id}/tokens"): ADMIN,
    ("POST", "/api/users/{user_id}/tokens"): ADMIN,
    ("DELETE", "/api/users/{user_id}/tokens/{token_id}"): ADMIN,
    ("GET", "/api/audit"): ADMIN,
    ("GET", "/api/audit.csv"): ADMIN,
    # --- UI pages and their parts
    ("GET", "/"): EVERYONE,
    ("GET", "/tasks"): only(own=(C,)),
    ("GET", "/tasks/list"): only(own=(C,)),
    ("GET", "/visits"): STAFF,
    ("GET", "/visits/{visit_id}"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/visits/{visit_id}/status"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/visits/{visit_id}/work"): EVERYONE_CLINICIAN_OWN,
    ("POST", "/visits/{visit_id}/note"): only(own=(C,)),
    ("POST", "/visits/{visit_id}/sign"): only(own=(C,)),
    ("POST", "/visits/{visit_id}/punches/adjust"): only(S, own=(C,)),
    ("POST", "/visits/{visit_id}/punches/add"): only(S, own=(C,)),
    ("GET", "/visits/{visit_id}/decision"): only(S, B),
    ("POST", "/visits/{visit_id}/decision"): only(S, B),
    ("GET", "/visits/{visit_id}/deadline"): only(S),
    ("POST", "/visits/{visit_id}/deadline"): only(S),
    ("GET", "/visits/{visit_id}/reassign"): only(S),
    ("POST", "/visits/{visit_id}/reassign"): only(S),
    ("POST", "/visits/{visit_id}/send-back"): only(S, B),
    ("POST", "/visits/{visit_id}/missed"): only(A, S),
    ("GET", "/supervision"): only(A, S),
    ("POST", "/supervision"): only(A, S),
    ("GET", "/supervision/patients"): only(A, S),
    ("GET", "/notices"): EVERYONE_CLINICIAN_OWN,
    ("GET", "/escalations"): only(S),
    ("GET", "/escalations/overdue"): only(S),
    ("GET", "/escalations/exceptions"): only(S),
    ("GET", "/escalations/team"): only(S),
    ("GET", "/escalations/clinicians"): only(S),
    ("GET", "/billing"): only(B),
    ("GET", "/billing/list"): only(B),
    ("POST", "/billing/release"): only(B),
    ("GET", "/claims"): BILLING,
    ("GET", "/claims/{claim_id}"): BILLING,
    ("POST", "/claims/{claim_id}/state"): BILLING,
    ("POST", "/claims/{claim_id}/void"): BILLING,
    ("POST", "/claims/{claim_id}/bill-on-replacement"): BILLING,
    ("POST", "/claims/{claim_id}/resubmit"): BILLING,
    ("GET", "/claim-files"): BILLING,
    ("GET", "/claim-files/{file_id}"): BILLING,
    ("GET", "/claim-files/{file_id}/download"): BILLING,
    ("POST", "/claim-files/{file_id}/submitted"): BILLING,
    ("POST", "/claim-files/{file_id}/rewrite"): BILLING,
    ("GET", "/holds"): STAFF,
    ("GET", "/holds/list"): STAFF,
    ("GET", "/dashboard"): STAFF,
    ("GET", "/dashboard/charts"): STAFF,
    ("GET", "/revenue/charts"): STAFF,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("POST", "/admin/users/{user_id}/role"): ADMIN,
    ("POST", "/admin/users/{user_id}/active"): ADMIN,
    ("POST", "/admin/users/{user_id}/password"): ADMIN,
    ("POST", "/admin/users/{user_id}/unlock"): ADMIN,
    ("POST", "/admin/users/{user_id}/tokens"): ADMIN,
    ("POST", "/admin/users/{user_id}/tokens/{token_id}/revoke"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
    ("GET", "/remittances"): only(A, B),
    ("POST", "/remittances"): only(A, B),
    ("GET", "/remittances/{remittance_id}"): only(A, B),
    ("GET", "/orders"): only(A, S),
    ("POST", "/orders"): ADMIN,
    ("POST", "/orders/{order_id}/sign"): ADMIN,
    ("POST", "/orders/{order_id}/return"): ADMIN,
    ("POST", "/orders/frequencies"): ADMIN,
    ("GET", "/changes"): STAFF,
    ("GET", "/changes/{change_id}"): STAFF,
    ("GET", "/intake"): only(A, S),
    ("POST", "/intake/{kind}"): only(A, S),
    ("GET", "/admin/events"): ADMIN,
    ("POST", "/admin/events"): ADMIN,
    ("POST", "/admin/events/{endpoint_id}/active"): ADMIN,
    ("POST", "/admin/events/{endpoint_id}/test"): ADMIN,
    ("GET", "/admin/events/{endpoint_id}/deliveries"): ADMIN,
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    routes = set()
    for route in iter_route_contexts(app.routes):
        for method in route.methods or {"GET"}:  # a mount (static files) answers GET
            if method != "HEAD":
                routes.add((method, route.path))
    return routes


@pytest.fixture
def app(client, database_url: str, tmp_path) -> FastAPI:
    return create_app(Settings(database_url=database_url, task_queue="visits-test", secret_key="access-test",
                               data_dir=tmp_path), temporal=client)


def test_every_route_is_in_the_table(app: FastAPI):
    routes = app_routes(app)
    assert sorted(routes - TABLE.keys()) == [], "new routes: say who may use them in TABLE and in README.md"
    assert sorted(TABLE.keys() - routes) == [], "routes in TABLE that the app no longer has"


def readme_row(method: str, path: str, access: dict[Role, str] | str) -> str:
    cells = [access] * 4 if isinstance(access, str) else [access[r] for r in ROLES]
    return f"| `{method} {path}` | " + " | ".join(cells) + " |"


def test_the_readme_shows_the_same_table():
    words = {ALLOWED, OWN, REFUSED, PUBLIC}
    shown = {line for line in README.read_text().splitlines()
             if line.startswith("| `") and (cells := [c.strip() for c in line.strip("|").split("|")])
             and len(cells) == 5 and set(cells[1:]) <= words}
    expected = {readme_row(*key, access) for key, access in TABLE.items()}
    assert sorted(expected - shown) == [] and sorted(shown - expected) == [], \
        "README.md's role x route table differs from this module's TABLE"


# --- the walk -------------------------------------------------------------------------------------------


class World:
    """One of everything the routes take, as an own and a not-own example for the clinician."""

    def __init__(self, agency: Agency, engine, visits: VisitSetup) -> None:
        self.agency, self.engine, self.visits = agency, engine, visits
        with Session(engine, expire_on_commit=False) as s:
            self.stranger = Patient(first_name="Nobody", last_name=f"Stranger{agency.tag}", address_line="1 Elm",
                                    city="Austin", state="TX", zip_code="78703")
            self.account = User(username=f"target-{agency.tag}", display_name="Target", role=Role.biller,
                                password_hash=hash_password("pw"))
            s.add_all([self.stranger, self.account])
            s.commit()
        self.start = recent_start(3)
        self.day = self.start.astimezone(ZoneInfo(Settings().agency_timezone)).date()  # its day at the agency
        self.authorization = agency.authorize(self.start.date() - timedelta(days=30),
                                              self.start.date() + timedelta(days=30))
        self.shared: dict[str, str] = {}

    async def prepare(self) -> None:
        self.shared["mine"] = await self.visits.schedule(self.start)
        self.shared["theirs"] = await self.visits.schedule(self.start, clinician_id=self.agency.other_clinician.id)

    async def visit_for(self, method: str, path: str) -> str:
        # An API action changes the visit (a cancel, a reschedule): each gets a visit of its own.
        if method != "GET" and path.startswith("/api/visits/"):
            return await self.visits.schedule(self.start)
        return self.shared["mine"]

    def params(self, path: str, visit_id: str, own: bool) -> dict[str, Any]:
        a = self.agency
        item = {"/api/patients/": (a.patient.id, self.stranger.id),
                "/api/clinicians/": (a.clinician.id, a.other_clinician.id),
                "/api/payers/": (a.payer.id, a.payer.id)}
        values: dict[str, Any] = {
            "visit_id": visit_id if own else self.shared["theirs"], "seq": 1, "auth_id": self.authorization.id,
            "user_id": self.account.id, "token_id": 2_000_000_000, "claim_id": 2_000_000_000,
            "file_id": 2_000_000_000, "remittance_id": 2_000_000_000, "order_id": 2_000_000_000,
            "change_id": 2_000_000_000, "endpoint_id": 2_000_000_000, "kind": "visits"}
        for prefix, (mine, theirs) in item.items():
            if path.startswith(prefix):
                values["item_id"] = mine if own else theirs
        return values

    def body(self, method: str, path: str) -> dict[str, Any] | None:
        """A body that passes validation, so the check of who may act is what answers."""
        if method == "GET" or not path.startswith("/api/"):
            return None
        at = (self.start + timedelta(minutes=2)).isoformat()
        later = (self.start + timedelta(days=3)).isoformat()
        bodies: dict[str, dict[str, Any]] = {
            "/api/orders": {"kind": "verbal", "patient_id": self.agency.patient.id, "practitioner_npi": "1234567893",
                            "practitioner_name": "Dr. Rivera", "frequencies": ["PCA 3W2"],
                            "effective_from": self.day.isoformat(), "sent_on": self.day.isoformat()},
            "{order_id}/signature": {"signed_on": self.day.isoformat()},
            "{order_id}/return": {"reason": "wrong patient"},
            "/api/visits": {"patient_id": self.agency.patient.id, "clinician_id": self.agency.clinician.id,
                            "payer_id": self.agency.payer.id, "service_code": "T1019", "scheduled_start": later,
                            "scheduled_end": (self.start + timedelta(days=3, hours=1)).isoformat()},
            "/punches": {"kind": "clock_in", "at": at, "method": "gps", "location": {"lat": HOME[0], "lon": HOME[1]}},
            "/adjustments": {"adjusted_at": at, "reason_code": ReasonCode.forgot_to_clock.value},
            "/note": {"fields": {"tasks_performed": "Bathing", "client_condition": "Stable"}},
            "/signature": {"attestation": True},
            "/exceptions": {"key": "EVV-02:punch-1", "decision": "approved", "reason": "checked"},
            "/deadline": {"stage": "note", "new_deadline": later, "reason": "family emergency"},
            "/reassign": {"clinician_id": self.agency.other_clinician.id, "reason": "covering"},
            "/reschedule": {"scheduled_start": later, "scheduled_end": later, "reason": "moved"},
            "/cancel": {"reason": "hospitalized"},
            "/send-back": {"message": "add the client's condition"},
            "/missed": {"reason": "not_home"},
            "/supervision": {"care": "aide_only"},
            "/api/releases": {"visit_ids": [self.shared["mine"]]},
            "/api/claims/check": {"x12": "ISA*not an 837~"},
            "/api/payer-rates": {"payer_id": self.agency.payer.id, "service_code": "T1019", "modifiers": ["U1"],
                                 "rate_per_unit_cents": 650},
            "/state": {"state": "accepted"},
            "/void": {"reason": "billed to the wrong payer"},
            "/api/remittances": {"x12": "ISA*not an 835~"},
        }
        return next((body for suffix, body in bodies.items() if path.endswith(suffix)), {})

    def not_theirs(self) -> list[str]:
        """What must never show up in a clinician's own-only list: the other clinician's things."""
        a = self.agency
        return [self.shared["theirs"], self.stranger.last_name, f'"first_name":"Casey","last_name":"Aide{a.tag}"']


def refused_for_anonymous(path: str, response: httpx.Response) -> bool:
    if path.startswith("/api/"):
        return response.status_code == 401
    # UI: the sign-in page (a redirect, or htmx's 401) or, for a form post without a session, the CSRF refusal.
    return (response.status_code in (401, 403)
            or (response.status_code == 303 and response.headers["location"].startswith("/signin")))


def passed_the_checks(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return False
    return not (response.status_code == 303 and response.headers["location"].startswith("/signin"))


@pytest_asyncio.fixture
async def browsers(app: FastAPI, agency: Agency) -> AsyncIterator[dict[Role, tuple[httpx.AsyncClient, str]]]:
    """One signed-in browser per role, with its CSRF token; the API calls use the role's bearer token."""
    clients: dict[Role, tuple[httpx.AsyncClient, str]] = {}
    try:
        for role in ROLES:
            web = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                    base_url="http://testserver")
            clients[role] = (web, await sign_in(web, agency.users[role.value].username))
        yield clients
    finally:
        for web, _ in clients.values():
            await web.aclose()


async def call(browser: tuple[httpx.AsyncClient, str] | None, agency: Agency, role: Role | None, method: str,
               url: str, body: dict[str, Any] | None, anonymous: httpx.AsyncClient) -> httpx.Response:
    if browser is None:
        web, headers = anonymous, {}
    elif url.startswith("/api/"):
        web, headers = browser[0], {"Authorization": f"Bearer {agency.token(role.value)}"}
    else:
        web, headers = browser[0], {"X-CSRF-Token": browser[1]}
    if url.startswith("/api/") and method != "GET":
        return await web.request(method, url, json=body, headers=headers)
    return await web.request(method, url, data={} if method != "GET" else None, headers=headers)


async def test_every_role_on_every_route_gets_what_the_table_says(app, browsers, agency, engine, client):
    visits = VisitSetup(client, engine, app.state.settings, agency)
    world = World(agency, engine, visits)
    await world.prepare()
    problems: list[str] = []
    scheduled_here: list[str] = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anonymous:
        for (method, path), access in TABLE.items():
            if access == PUBLIC:
                if method == "GET":  # the POSTs sign in and out: the walk's browsers must stay signed in
                    url = path + ("/app.css" if path == "/static/ui" else "")
                    r = await anonymous.get(url)
                    if r.status_code in (401, 403):
                        problems.append(f"{method} {path} as anonymous: {r.status_code}, but it is public")
                continue
            visit_id = await world.visit_for(method, path) if "{visit_id}" in path else None
            body = world.body(method, path)
            mine = path.format(**world.params(path, visit_id, own=True))
            theirs = path.format(**world.params(path, visit_id, own=False))

            r = await call(None, agency, None, method, mine, body, anonymous)
            if not refused_for_anonymous(path, r):
                problems.append(f"{method} {path} as anonymous: {r.status_code}, not refused")
            # Refusals first: they change nothing, so the allowed calls after them find the visit as it was.
            order = sorted(ROLES, key=lambda role: access[role] != REFUSED)
            for role in order:
                browser, expected = browsers[role], access[role]
                r = await call(browser, agency, role, method, mine, body, anonymous)
                if r.status_code == 201 and path == "/api/visits":
                    scheduled_here.append(r.json()["id"])
                if expected == REFUSED and r.status_code != 403:
                    problems.append(f"{method} {path} as {role}: {r.status_code}, expected 403 ({r.text[:120]})")
                elif expected != REFUSED and not passed_the_checks(r):
                    problems.append(f"{method} {path} as {role}: {r.status_code}, expected {expected} "
                                    f"({r.text[:120]})")
                if expected == OWN and theirs != mine:
                    other = await call(browser, agency, role, method, theirs, body, anonymous)
                    refusals = (404,) if method == "GET" else (403, 404)
                    if other.status_code not in refusals:
                        problems.append(f"{method} {path} as {role} on someone else's: {other.status_code}")
                elif expected == OWN and method == "GET":
                    leaked = [marker for marker in world.not_theirs() if marker in r.text]
                    if leaked:
                        problems.append(f"{method} {path} as {role} lists someone else's: {leaked}")
                elif expected == ALLOWED and method == "GET" and theirs != mine:  # not just their own
                    other = await call(browser, agency, role, method, theirs, body, anonymous)
                    if not passed_the_checks(other) or other.status_code == 404:
                        problems.append(f"{method} {path} as {role} on another clinician's: {other.status_code}")
    await end_workflows(client, visits.started + scheduled_here)
    assert problems == [], "\n".join(problems)
