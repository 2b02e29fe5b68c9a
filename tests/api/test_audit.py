"""The audit trail through the API, on the real database: what is recorded, the append-only table, the admin's
search and CSV, and minimum-necessary access to patients."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import iter_route_contexts
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from tests.api.test_api import as_user, schedule, until_listed
from tests.conftest import HOME, Agency
from visitflow.audit import ACTIONS, SIGN_IN_PATH, AuditSearch, search
from visitflow.db.tables import AuditEvent, Patient
from visitflow.main import create_app
from visitflow.settings import Settings


def test_every_action_has_a_name_in_plain_words(client, database_url, tmp_path):
    app = create_app(Settings(database_url=database_url, data_dir=tmp_path), temporal=client)
    actions = {(method, route.path) for route in iter_route_contexts(app.routes) for method in route.methods or ()
               if method not in ("GET", "HEAD")}
    unnamed = actions - ACTIONS.keys() - {("POST", SIGN_IN_PATH)}  # sign-in is named by its outcome
    assert sorted(unnamed) == [], "add these routes to visitflow.audit.ACTIONS"


def recorded(engine, **wanted) -> list[AuditEvent]:
    with Session(engine) as s:
        return search(s, AuditSearch(**wanted), 100)


@asynccontextmanager
async def serving(client, database_url: str, data_dir, **settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url, task_queue="visits-test", data_dir=data_dir, **settings),
                     temporal=client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest_asyncio.fixture
async def api(client, database_url, tmp_path):
    async with serving(client, database_url, tmp_path) as http:
        yield http


@pytest_asyncio.fixture
async def proxied_api(client, database_url, tmp_path):
    """The app as deployed behind the agency's reverse proxy."""
    async with serving(client, database_url, tmp_path, behind_proxy=True) as http:
        yield http


@pytest.fixture
def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_a_visit_view_and_an_action_are_recorded_with_who_where_and_ids(api, agency, engine, t0):
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    await until_listed(api, agency, visit["id"])
    assert (await api.get(f"/api/visits/{visit['id']}", headers=as_user(agency, "supervisor"))).status_code == 200
    r = await api.post(f"/api/visits/{visit['id']}/punches", headers=as_user(agency, "clinician"), json={
        "kind": "clock_in", "at": visit["scheduled_start"], "method": "gps",
        "location": {"lat": HOME[0], "lon": HOME[1]}})
    assert r.status_code == 200, r.text
    assert (await api.post(f"/api/visits/{visit['id']}/cancel", headers=as_user(agency, "biller"),
                           json={"reason": "x"})).status_code == 403

    refused, punched, viewed = recorded(engine, visit_id=visit["id"])
    supervisor, clinician = agency.users["supervisor"], agency.users["clinician"]
    assert (viewed.action, viewed.method, viewed.path, viewed.status) == (
        "viewed_visit", "GET", f"/api/visits/{visit['id']}", 200)
    assert (viewed.user_id, viewed.username) == (supervisor.id, supervisor.username)
    assert (viewed.patient_id, viewed.client_ip) == (agency.patient.id, "127.0.0.1")
    assert viewed.at > datetime.now(UTC) - timedelta(minutes=1)
    assert (punched.action, punched.status, punched.user_id, punched.patient_id) == (
        "recorded_punch", 200, clinician.id, agency.patient.id)
    assert (refused.action, refused.status, refused.username) == ("cancelled_visit", 403,
                                                                  agency.users["biller"].username)
    [scheduled] = recorded(engine, username=agency.users["admin"].username)
    assert (scheduled.action, scheduled.status, scheduled.user_id) == ("scheduled_visit", 201,
                                                                       agency.users["admin"].id)
    # Lists of work are not patient views: only the visit page was recorded as one.
    assert (await api.get("/api/visits", headers=as_user(agency, "supervisor"))).status_code == 200
    assert [e.action for e in recorded(engine, username=supervisor.username)] == ["viewed_visit"]


async def test_patient_views_are_recorded(api, agency, engine):
    admin = as_user(agency, "admin")
    assert (await api.get("/api/patients", headers=admin, params={"limit": 5})).status_code == 200
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=admin)).status_code == 200
    assert (await api.get("/api/patients/999999", headers=admin)).status_code == 404
    missing, viewed, listed = recorded(engine, username=agency.users["admin"].username)
    assert (listed.action, listed.patient_id, listed.status) == ("listed_patients", None, 200)
    assert (viewed.action, viewed.patient_id, viewed.status) == ("viewed_patient", agency.patient.id, 200)
    assert (missing.action, missing.patient_id, missing.status) == ("viewed_patient", 999999, 404)


async def test_odd_requests_are_recorded_as_far_as_they_can_be(api, agency, engine):
    supervisor = as_user(agency, "supervisor")
    assert (await api.get("/api/visits/" + "x" * 2000, headers=supervisor)).status_code in (404, 422)
    [too_long] = recorded(engine, username=agency.users["supervisor"].username)
    assert (too_long.action, too_long.visit_id, too_long.path) == ("viewed_visit", None, "/api/visits/" + "x" * 488)

    # A probe at an address that does not exist: nobody was signed in by a route, but the attempt is kept.
    assert (await api.post(f"/api/no-such-{agency.tag}", headers=supervisor, json={})).status_code == 404
    probe = recorded(engine, action="unknown_address")[0]
    assert (probe.method, probe.path, probe.status, probe.user_id) == ("POST", f"/api/no-such-{agency.tag}", 404, None)


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(api, proxied_api, agency, engine):
    forged = {**as_user(agency, "biller"), "X-Forwarded-For": "10.9.9.9"}
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=forged)).status_code == 200
    [direct] = recorded(engine, username=agency.users["biller"].username)
    assert direct.client_ip == "127.0.0.1"  # no proxy: the header is just something the client wrote

    # Behind the proxy, its own entry (the last) is the address; what the client put before it is not.
    forwarded = {**as_user(agency, "supervisor"), "X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert (await proxied_api.get(f"/api/patients/{agency.patient.id}", headers=forwarded)).status_code == 200
    [proxied] = recorded(engine, username=agency.users["supervisor"].username)
    assert proxied.client_ip == "203.0.113.7"


@contextmanager
def audit_store_refusing_inserts(engine):
    """A real database failure on the audit write: a trigger refuses new rows for the duration."""
    if engine.dialect.name == "sqlite":
        create = ["CREATE TRIGGER test_audit_down BEFORE INSERT ON auditevent "
                  "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"]
        drop = ["DROP TRIGGER test_audit_down"]
    else:
        create = ["CREATE FUNCTION test_audit_down() RETURNS trigger LANGUAGE plpgsql AS $$ "
                  "BEGIN RAISE EXCEPTION 'audit store down'; END $$",
                  "CREATE TRIGGER test_audit_down BEFORE INSERT ON auditevent "
                  "FOR EACH ROW EXECUTE FUNCTION test_audit_down()"]
        drop = ["DROP TRIGGER test_audit_down ON auditevent", "DROP FUNCTION test_audit_down()"]
    with engine.begin() as conn:
        for statement in create:
            conn.execute(text(statement))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for statement in drop:
                conn.execute(text(statement))


async def test_a_failed_audit_write_does_not_fail_the_request(api, agency, engine, caplog):
    with audit_store_refusing_inserts(engine), caplog.at_level(logging.ERROR, logger="visitflow.audit"):
        r = await api.get(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "admin"))
    assert r.status_code == 200 and r.json()["id"] == agency.patient.id
    assert "could not record audit event for GET /api/patients/" in caplog.text
    assert recorded(engine, username=agency.users["admin"].username) == []


async def test_the_database_refuses_to_change_or_remove_audit_events(api, agency, engine):
    assert (await api.get("/api/patients", headers=as_user(agency, "admin"))).status_code == 200
    [event] = recorded(engine, username=agency.users["admin"].username)
    attempts = [f"UPDATE auditevent SET username = 'someone-else' WHERE id = {event.id}",
                f"DELETE FROM auditevent WHERE id = {event.id}"]
    if engine.dialect.name != "sqlite":
        attempts.append("TRUNCATE auditevent")
    for statement in attempts:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    assert [(e.id, e.username) for e in recorded(engine, username=agency.users["admin"].username)] == [
        (event.id, agency.users["admin"].username)]


async def test_admins_search_the_trail_newest_first_with_filters_and_pages(api, agency, engine):
    admin, biller = as_user(agency, "admin"), as_user(agency, "biller")
    started = datetime.now(UTC)
    for _ in range(3):
        assert (await api.get(f"/api/patients/{agency.patient.id}", headers=biller)).status_code == 200
    assert (await api.get("/api/patients", headers=biller)).status_code == 200
    name = agency.users["biller"].username

    page = (await api.get("/api/audit", headers=admin, params={"user": name})).json()
    assert [e["action"] for e in page["items"]] == ["listed_patients"] + ["viewed_patient"] * 3
    assert [e["id"] for e in page["items"]] == sorted((e["id"] for e in page["items"]), reverse=True)
    assert page["next_before"] is None

    first = (await api.get("/api/audit", headers=admin, params={"user": name, "limit": 3})).json()
    assert len(first["items"]) == 3 and first["next_before"] == first["items"][-1]["id"]
    rest = (await api.get("/api/audit", headers=admin, params={
        "user": name, "limit": 3, "before": first["next_before"]})).json()
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in page["items"]]
    assert rest["next_before"] is None

    by_patient = (await api.get("/api/audit", headers=admin, params={
        "patient_id": agency.patient.id, "action": "viewed_patient", "user": name})).json()["items"]
    assert len(by_patient) == 3 and {e["patient_id"] for e in by_patient} == {agency.patient.id}
    window = {"user": name, "since": started.isoformat(), "until": (started + timedelta(hours=1)).isoformat()}
    assert len((await api.get("/api/audit", headers=admin, params=window)).json()["items"]) == 4
    earlier = {"user": name, "until": started.isoformat()}
    assert (await api.get("/api/audit", headers=admin, params=earlier)).json()["items"] == []
    naive = {"user": name, "since": started.replace(tzinfo=None).isoformat()}  # read as UTC
    assert len((await api.get("/api/audit", headers=admin, params=naive)).json()["items"]) == 4

    r = await api.get("/api/audit", headers=admin, params={"since": started.isoformat(),
                                                           "until": started.isoformat()})
    assert r.status_code == 422 and r.json()["detail"] == "since must be before until"
    assert (await api.get("/api/audit", headers=admin, params={"limit": 501})).status_code == 422
    assert (await api.get("/api/audit", headers=admin, params={"patient_id": "x"})).status_code == 422
    for who in ("clinician", "supervisor", "biller"):
        for path in ("/api/audit", "/api/audit.csv"):
            r = await api.get(path, headers=as_user(agency, who))
            assert r.status_code == 403 and "only an admin" in r.json()["detail"], (who, path)


async def test_the_csv_has_every_match_and_no_formulas(api, agency, engine):
    admin = as_user(agency, "admin")
    forged = f"=HYPERLINK(\"http://evil.test\")-{agency.tag}"
    # A sign-in attempt from outside the sign-in page: refused (no CSRF token), recorded with the typed name.
    r = await api.post("/signin", data={"username": forged, "password": "guess"})
    assert r.status_code == 403
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "biller"))).status_code == 200

    r = await api.get("/api/audit.csv", headers=admin, params={"user": forged})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith('attachment; filename="visitflow-audit-')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["action"], row["status"], row["user_id"]) for row in rows] == [("sign_in_failed", "403", "")]
    assert rows[0]["username"] == "'" + forged  # shown as text in a spreadsheet, never run

    r = await api.get("/api/audit.csv", headers=admin, params={"patient_id": agency.patient.id})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["action"], row["username"]) for row in rows] == [
        ("viewed_patient", agency.users["biller"].username)]
    assert (await api.get("/api/audit.csv", headers=admin, params={"since": "yesterday"})).status_code == 422


def another_patient(engine) -> Patient:
    with Session(engine, expire_on_commit=False) as s:
        patient = Patient(first_name="Bo", last_name="Elsewhere", medicaid_id="999888777", address_line="1 Oak St",
                          city="Austin", state="TX", zip_code="78702")
        s.add(patient)
        s.commit()
        return patient


async def test_a_clinician_sees_only_the_patients_of_their_own_visits(api, agency, engine, t0):
    stranger = another_patient(engine)
    mine, other = as_user(agency, "clinician"), as_user(agency, "other")
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=mine)).status_code == 404  # no visit yet
    visit = await schedule(api, agency, t0 + timedelta(days=1))
    await until_listed(api, agency, visit["id"])

    listed = (await api.get("/api/patients", headers=mine, params={"limit": 500})).json()
    assert [p["id"] for p in listed] == [agency.patient.id]
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=mine)).json()["medicaid_id"] == "518273645"
    r = await api.get(f"/api/patients/{stranger.id}", headers=mine)
    assert r.status_code == 404 and r.json()["detail"] == f"patient {stranger.id} not found"
    # The other clinician has no visit with either patient: for them neither exists.
    assert (await api.get("/api/patients", headers=other)).json() == []
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=other)).status_code == 404
    # Staff see every patient.
    for who in ("admin", "supervisor", "biller"):
        assert (await api.get(f"/api/patients/{stranger.id}", headers=as_user(agency, who))).status_code == 200

    # Their own clinician record only; payers and authorizations are not part of their work.
    assert [c["id"] for c in (await api.get("/api/clinicians", headers=mine)).json()] == [agency.clinician.id]
    assert (await api.get(f"/api/clinicians/{agency.other_clinician.id}", headers=mine)).status_code == 404
    for path in ("/api/payers", f"/api/payers/{agency.payer.id}", "/api/authorizations"):
        r = await api.get(path, headers=mine)
        assert r.status_code == 403 and "not shown to a clinician" in r.json()["detail"], path
    # Their work queue is their own visits only.
    assert visit["id"] in [t["visit_id"] for t in (await api.get("/api/tasks", headers=mine)).json()["tasks"]]
    assert visit["id"] not in [t["visit_id"] for t in (await api.get("/api/tasks", headers=other)).json()["tasks"]]


async def test_reassigning_a_visit_moves_its_patient_to_the_new_clinician(api, agency: Agency, t0):
    visit = await schedule(api, agency, t0 + timedelta(days=1))
    await until_listed(api, agency, visit["id"])
    r = await api.post(f"/api/visits/{visit['id']}/reassign", headers=as_user(agency, "supervisor"), json={
        "clinician_id": agency.other_clinician.id, "reason": "Covering"})
    assert r.status_code == 200, r.text
    loop_deadline = datetime.now(UTC) + timedelta(seconds=15)
    while (await api.get(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "other"))).status_code != 200:
        assert datetime.now(UTC) < loop_deadline, "the reassigned visit never reached the read model"
        await asyncio.sleep(0.05)
    assert (await api.get(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "clinician"))
            ).status_code == 404
