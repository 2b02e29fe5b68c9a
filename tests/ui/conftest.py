"""The UI wired to the real Temporal test server (time skipping), the real worker and the real database.

Everything runs on the session's event loop: the app is driven in-process through httpx's ASGI transport
(route tests) or served by uvicorn as a task on that loop (browser tests), so the Temporal client is only
ever used from the loop it was made on.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tests.conftest import HOME, Agency
from visitflow.db.tables import Visit
from visitflow.main import create_app
from visitflow.models import GeoPoint, PunchInput, PunchKind, PunchMethod, RecordPunch, SignNote, SubmitNote
from visitflow.services.commands import ScheduleRequest, act, schedule_visit
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

NOTE = {"tasks_performed": "Bathing, meal preparation", "client_condition": "Alert, ate well"}
FAR = GeoPoint(lat=30.2950, lon=-97.7404)  # about 2.3 km north of the test patient's home
AT_HOME = GeoPoint(lat=HOME[0], lon=HOME[1])


@pytest.fixture(scope="session")
def ui_settings(database_url: str, tmp_path_factory) -> Settings:
    return Settings(database_url=database_url, task_queue="visits-test", secret_key="ui-test-secret",
                    data_dir=tmp_path_factory.mktemp("ui-data"), temporal_ui_url="http://temporal.test:8233")


@pytest_asyncio.fixture(scope="session")
async def ui_app(ui_settings: Settings, env, worker, engine: Engine) -> AsyncIterator[FastAPI]:
    app = create_app(ui_settings, temporal=env.client)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def web(ui_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client: keeps the session cookie; knows nothing but what the pages say."""
    transport = httpx.ASGITransport(app=ui_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "the page has no CSRF meta tag"
    return match.group(1)


async def sign_in(web: httpx.AsyncClient, username: str, password: str = "pw") -> str:
    """Sign in through the form; returns the session's CSRF token, as htmx would send it."""
    page = await web.get("/signin")
    response = await web.post("/signin", data={"username": username, "password": password,
                                               "csrf_token": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    home = await web.get(response.headers["location"])
    assert home.status_code == 200, home.text
    return csrf_of(home.text)


def htmx(token: str) -> dict[str, str]:
    return {"HX-Request": "true", "X-CSRF-Token": token}


async def end_workflows(client: Client, visit_ids: list[str]) -> None:
    """Terminate the visits' workflows, so later tests that skip time do not also run their timers."""
    for visit_id in visit_ids:
        try:
            await client.get_workflow_handle(visit_workflow_id(visit_id)).terminate("UI test finished")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # already released: nothing to end
                raise


async def end_order_chases(client: Client, engine: Engine, order_ids: list[int]) -> None:
    """Terminate the orders' signature chases (ORD-03), for the same reason."""
    from visitflow.db.tables import PhysicianOrder
    from visitflow.workflows.order import order_workflow_id

    with Session(engine) as s:
        entered = dict(s.exec(select(PhysicianOrder.id, PhysicianOrder.created_at)
                              .where(PhysicianOrder.id.in_(order_ids))).all())
    for order_id, at in entered.items():
        try:
            await client.get_workflow_handle(order_workflow_id(order_id, at)).terminate("test finished")
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:  # signed or returned: nothing to end
                raise


@dataclass
class VisitSetup:
    """Schedules visits for an agency as the office and its EVV devices would, outside the UI."""

    client: Client
    engine: Engine
    settings: Settings
    agency: Agency
    started: list[str] = field(default_factory=list)

    async def schedule(self, start: datetime, hours: float = 2, **over) -> str:
        with Session(self.engine) as s:
            snap, _ = await schedule_visit(s, self.client, self.settings, ScheduleRequest(
                id=over.pop("visit_id", f"ui-{uuid.uuid4().hex[:8]}"), patient_id=self.agency.patient.id,
                clinician_id=over.pop("clinician_id", self.agency.clinician.id), payer_id=self.agency.payer.id,
                service_code="T1019", modifiers=[], scheduled_start=start,
                scheduled_end=start + timedelta(hours=hours)), self.agency.actor("admin"))
        self.started.append(snap.spec.visit_id)
        await self.projected(snap.spec.visit_id)
        return snap.spec.visit_id

    async def punch(self, visit_id: str, kind: PunchKind, at: datetime, where: GeoPoint | None = AT_HOME,
                    method: PunchMethod = PunchMethod.gps) -> None:
        await act(self.client, visit_id, VisitWorkflow.record_punch, RecordPunch(
            actor=self.agency.actor("clinician"), now=datetime.now(UTC),
            punch=PunchInput(kind=kind, at=at, method=method, location=where)))

    async def delivered(self, start: datetime, clock_in_at: GeoPoint = AT_HOME, document: bool = False,
                        authorize: bool = True) -> str:
        """A visit the caregiver clocked in and out of; documented and signed too when asked."""
        visit_id = await self.schedule(start)
        if authorize:
            day = start.date()
            self.agency.authorize(day - timedelta(days=30), day + timedelta(days=30), units_per_week=200)
        await self.punch(visit_id, PunchKind.clock_in, start + timedelta(minutes=2), clock_in_at)
        await self.punch(visit_id, PunchKind.clock_out, start + timedelta(hours=2, minutes=-1))
        if document:
            clinician = self.agency.actor("clinician")
            await act(self.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=clinician, fields=NOTE))
            await act(self.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=clinician, attestation=True))
        return visit_id

    async def projected(self, visit_id: str, state: str | None = None, timeout: float = 15.0) -> Visit:
        """Wait (real time) until the read model shows the visit (in `state`, when given)."""
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with Session(self.engine) as s:
                row = s.get(Visit, visit_id)
                if row is not None and (state is None or row.state == state):
                    return row
            if loop.time() > deadline:
                raise AssertionError(f"visit {visit_id} is {row.state if row else 'not projected'}, not {state}")
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def visits(client: Client, engine: Engine, ui_settings: Settings, agency: Agency
                 ) -> AsyncIterator[VisitSetup]:
    setup = VisitSetup(client, engine, ui_settings, agency)
    yield setup
    await end_workflows(client, setup.started)


def recent_start(hours_ago: float = 4) -> datetime:
    """A visit that ended a little while ago, on the wall clock (the UI stamps punches with it)."""
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(second=0, microsecond=0)
