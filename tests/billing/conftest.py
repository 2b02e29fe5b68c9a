"""Fixtures of the claims tests: the app with the agency's billing identity, on the real test server and database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from tests.conftest import HOME, Agency
from visitflow.claims.models import Address, Contact
from visitflow.claims.models import Agency as BillingIdentity
from visitflow.db.session import write_session
from visitflow.db.tables import Clinician, Patient
from visitflow.main import create_app
from visitflow.settings import Settings

IDENTITY = BillingIdentity(
    name="Bluebonnet Home Care", npi="1234567893", tax_id="741234567",
    address=Address(line1="100 Congress Ave", city="Austin", state="TX", postal_code="787011234"),
    submitter_id="BLUEBONNET", submitter_name="Bluebonnet Home Care", receiver_id="TXMEDICAID",
    receiver_name="Texas Medicaid", contact=Contact(name="Bea Biller", phone="5125550100"))
NOTE = {"tasks_performed": "Bathing", "client_condition": "Stable"}
GPS = {"method": "gps", "location": {"lat": HOME[0], "lon": HOME[1]}}


def billing_settings(database_url: str, tmp_path, **over) -> Settings:
    return Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path,
                    **({"agency": IDENTITY} | over))


@pytest_asyncio.fixture
async def app(client, database_url, tmp_path):
    app = create_app(billing_settings(database_url, tmp_path, secret_key="claims-test"), temporal=client)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def web(app):
    """A browser-like client of the same app: keeps the session cookie."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest_asyncio.fixture
async def api(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def billable(agency: Agency) -> Agency:
    """The test agency with what a claim needs of its patient (birth date, gender, diagnoses) and an NPI."""
    with write_session(agency.engine) as s:
        patient = s.get(Patient, agency.patient.id)
        patient.birth_date, patient.gender, patient.diagnosis_codes = date(1941, 3, 2), "F", ["R26.89", "Z74.1"]
        clinician = s.get(Clinician, agency.clinician.id)
        clinician.npi = "1245319599"
        s.add_all([patient, clinician])
        s.commit()
    return agency


def as_user(agency: Agency, who: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {agency.token(who)}"}
    return headers | ({"Idempotency-Key": key} if key else {})


async def claim_ready_visit(api, agency: Agency, start: datetime, service_code: str = "T1019",
                            modifiers: list[str] | None = None, visit_id: str | None = None) -> str:
    """Scheduled (with the source system's `visit_id`, if given), punched, documented and signed through the API,
    then waited on until claim-ready."""
    import asyncio

    r = await api.post("/api/visits", headers=as_user(agency, "admin"), json={
        **({"id": visit_id} if visit_id else {}),
        "patient_id": agency.patient.id, "clinician_id": agency.clinician.id, "payer_id": agency.payer.id,
        "service_code": service_code, "modifiers": modifiers or [], "scheduled_start": start.isoformat(),
        "scheduled_end": (start + timedelta(hours=2)).isoformat()})
    assert r.status_code in (200, 201), r.text
    visit = r.json()
    me = as_user(agency, "clinician")
    for kind, at in (("clock_in", visit["scheduled_start"]), ("clock_out", visit["scheduled_end"])):
        r = await api.post(f"/api/visits/{visit['id']}/punches", headers=me, json={"kind": kind, "at": at, **GPS})
        assert r.status_code == 200, r.text
    r = await api.post(f"/api/visits/{visit['id']}/note", headers=me, json={"fields": NOTE})
    assert r.status_code == 200, r.text
    r = await api.post(f"/api/visits/{visit['id']}/signature", headers=me, json={"attestation": True})
    assert r.status_code == 200, r.text
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        got = (await api.get(f"/api/visits/{visit['id']}", headers=as_user(agency, "supervisor"))).json()
        if got["state"] == "claim_ready":
            return visit["id"]
        assert loop.time() < deadline, f"{visit['id']} is {got['state']}: {got['holds']}"
        await asyncio.sleep(0.05)
