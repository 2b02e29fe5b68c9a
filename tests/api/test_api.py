"""REST API against the real test server (time skipping) and the real database."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from tests.conftest import HOME, Agency

NOTE = {"tasks_performed": "Bathing", "client_condition": "Stable"}


def as_user(agency: Agency, who: str) -> dict:
    return {"Authorization": f"Bearer {agency.token(who)}"}


async def whole_queue(api, headers: dict) -> dict:
    """A work queue read to its end along `next` (a page holds 50 tasks; the test database is shared)."""
    queue, url = {"tasks": [], "holds_by_reason": {}}, "/api/tasks?limit=500"
    while url:
        page = (await api.get(url, headers=headers)).json()
        queue["tasks"] += page["tasks"]
        for rule, holds in page["holds_by_reason"].items():
            queue["holds_by_reason"].setdefault(rule, []).extend(holds)
        url = page["next"]
    return queue


async def schedule(api, agency: Agency, start: datetime, **extra) -> dict:
    body = {"patient_id": agency.patient.id, "clinician_id": agency.clinician.id, "payer_id": agency.payer.id,
            "service_code": "T1019", "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=2)).isoformat(), **extra}
    r = await api.post("/api/visits", json=body, headers=as_user(agency, "admin"))
    assert r.status_code in (200, 201), r.text
    return r.json()


async def until_state(api, agency: Agency, visit_id: str, state: str, timeout: float = 15) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        visit = (await api.get(f"/api/visits/{visit_id}", headers=as_user(agency, "supervisor"))).json()
        if visit["state"] == state:
            return visit
        assert loop.time() < deadline, f"{visit_id} is {visit['state']}: {visit['holds']}"
        await asyncio.sleep(0.05)


async def until_listed(api, agency: Agency, visit_id: str, timeout: float = 15) -> None:
    """The read model follows the workflow within moments of the start."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while visit_id not in [v["id"] for v in (await api.get(
            "/api/visits", headers=as_user(agency, "supervisor"), params={"limit": 500})).json()["items"]]:
        assert loop.time() < deadline, f"{visit_id} never reached the read model"
        await asyncio.sleep(0.05)


async def deliver(api, agency: Agency, visit: dict) -> None:
    me = as_user(agency, "clinician")
    for kind, when in (("clock_in", visit["scheduled_start"]), ("clock_out", visit["scheduled_end"])):
        r = await api.post(f"/api/visits/{visit['id']}/punches", headers=me, json={
            "kind": kind, "at": when, "method": "gps", "location": {"lat": HOME[0], "lon": HOME[1]}})
        assert r.status_code == 200, r.text
    assert (await api.post(f"/api/visits/{visit['id']}/note", json={"fields": NOTE}, headers=me)).status_code == 200
    r = await api.post(f"/api/visits/{visit['id']}/signature", json={"attestation": True}, headers=me)
    assert r.status_code == 200, r.text


async def test_idempotency_key_lands_a_retry_on_the_same_visit(api, agency, t0):
    headers = {**as_user(agency, "admin"), "Idempotency-Key": f"sched-{agency.tag}"}
    body = {"patient_id": agency.patient.id, "clinician_id": agency.clinician.id, "payer_id": agency.payer.id,
            "service_code": "t1019", "scheduled_start": (t0 + timedelta(days=1)).isoformat(),
            "scheduled_end": (t0 + timedelta(days=1, hours=2)).isoformat()}
    first = await api.post("/api/visits", json=body, headers=headers)
    second = await api.post("/api/visits", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)  # the first answer, again
    assert first.json() == second.json() and first.json()["service_code"] == "T1019"


async def test_authorization_cut_rechecks_a_claim_ready_visit_at_once(api, agency, t0):
    """AUTH-04: billing sees the change on a visit that was already claim-ready."""
    auth = agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date(), units_per_week=40)
    visit = await schedule(api, agency, t0 - timedelta(hours=4))
    await deliver(api, agency, visit)
    await until_state(api, agency, visit["id"], "claim_ready")

    admin = as_user(agency, "admin")
    assert (await api.patch(f"/api/authorizations/{auth.id}", json={}, headers=admin)).status_code == 422
    assert (await api.patch("/api/authorizations/999999", json={"units_per_week": 1}, headers=admin)).status_code == 404
    r = await api.patch(f"/api/authorizations/{auth.id}", json={"end_date": "2000-01-01"}, headers=admin)
    assert r.status_code == 422 and "end_date" in r.json()["detail"]
    r = await api.patch(f"/api/authorizations/{auth.id}", json={"units_per_week": 4}, headers=admin)
    assert r.status_code == 200 and r.json()["rechecked_visits"] == [visit["id"]] and r.json()["version"] == 2
    held = await until_state(api, agency, visit["id"], "on_hold")
    assert [h["rule_id"] for h in held["holds"]] == ["AUTH-02"]
    assert "authorization_changed" in [e["kind"] for e in held["timeline"]]
    biller = await whole_queue(api, as_user(agency, "biller"))
    assert any(h["visit_id"] == visit["id"] for h in biller["holds_by_reason"]["AUTH-02"])


async def test_clinicians_see_only_their_own_visits(api, agency, t0):
    visit = await schedule(api, agency, t0 + timedelta(days=2))
    await until_listed(api, agency, visit["id"])
    mine = (await api.get("/api/visits", headers=as_user(agency, "clinician"))).json()
    assert visit["id"] in [v["id"] for v in mine["items"]]
    theirs = (await api.get("/api/visits", headers=as_user(agency, "other"))).json()
    assert visit["id"] not in [v["id"] for v in theirs["items"]]
    r = await api.get(f"/api/visits/{visit['id']}", headers=as_user(agency, "other"))
    assert r.status_code == 404
    tasks = (await api.get("/api/tasks", headers=as_user(agency, "clinician"))).json()["tasks"]
    assert any(t["visit_id"] == visit["id"] and t["kind"] == "write_note" for t in tasks)


async def test_supervisor_reassigns_reschedules_and_extends(api, agency, t0, env):
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    sup = as_user(agency, "supervisor")
    r = await api.post(f"/api/visits/{visit['id']}/reassign", json={"clinician_id": 999999, "reason": "x"}, headers=sup)
    assert r.status_code == 422 and "does not exist" in r.json()["detail"]
    r = await api.post(f"/api/visits/{visit['id']}/reassign", headers=sup, json={
        "clinician_id": agency.other_clinician.id, "reason": "Covering"})
    assert r.status_code == 200 and r.json()["clinician_id"] == agency.other_clinician.id
    r = await api.post(f"/api/visits/{visit['id']}/reschedule", headers=as_user(agency, "biller"), json={
        "scheduled_start": t0.isoformat(), "scheduled_end": (t0 + timedelta(hours=1)).isoformat(), "reason": "x"})
    assert r.status_code == 403
    new_deadline = (await env.get_current_time()).replace(microsecond=0) + timedelta(days=4)  # workflow time
    r = await api.post(f"/api/visits/{visit['id']}/deadline", headers=sup, json={
        "stage": "note", "new_deadline": new_deadline.isoformat(), "reason": "Family emergency"})
    assert r.status_code == 200 and datetime.fromisoformat(r.json()["note_deadline"]) == new_deadline
    r = await api.post(f"/api/visits/{visit['id']}/deadline", headers=sup, json={
        "stage": "signature", "new_deadline": new_deadline.isoformat(), "reason": "x"})
    assert r.status_code == 409 and "not waiting for its signature" in r.json()["detail"]
    listed = (await api.get("/api/visits", headers=sup, params={
        "clinician": agency.other_clinician.id, "state": "scheduled"})).json()
    assert [v["id"] for v in listed["items"]] == [visit["id"]]
    assert (await api.get("/api/visits", headers=sup, params={"state": "nonsense"})).status_code == 422


async def test_reference_data_validation_and_roles(api, agency):
    admin = as_user(agency, "admin")
    r = await api.post("/api/clinicians", headers=admin, json={"first_name": "A", "last_name": "B",
                                                                "discipline": "RN", "npi": "12345abcde"})
    assert r.status_code == 422 and "NPI must be 10 digits" in r.json()["detail"]
    r = await api.post("/api/payers", headers=admin, json={"name": "X", "payer_code": "X", "rounding": "sometimes"})
    assert r.status_code == 422 and "rounding" in r.json()["detail"]
    r = await api.post("/api/authorizations", headers=admin, json={
        "auth_number": "PA-1", "patient_id": 999999, "payer_id": agency.payer.id, "service_code": "T1019",
        "start_date": "2026-01-01", "end_date": "2026-12-31"})
    assert r.status_code == 422 and r.json()["detail"] == "patient 999999 does not exist"
    r = await api.post("/api/patients", headers=as_user(agency, "biller"), json={})
    assert r.status_code == 403 and "only an admin can do this (you are a biller)" in r.json()["detail"]
    assert (await api.get("/api/visits")).status_code == 401
    r = await api.get("/api/visits", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


async def test_fixing_the_service_address_rechecks_held_visits(api, agency, t0):
    admin = as_user(agency, "admin")
    agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date())
    r = await api.patch(f"/api/patients/{agency.patient.id}", json={"latitude": None, "longitude": None},
                        headers=admin)
    assert r.status_code == 200 and r.json()["latitude"] is None
    visit = await schedule(api, agency, t0 - timedelta(hours=4))
    await deliver(api, agency, visit)
    held = await until_state(api, agency, visit["id"], "on_hold")
    assert [(h["rule_id"], h["role"]) for h in held["holds"]] == [("EVV-02", "admin")]
    assert any(t["visit_id"] == visit["id"] for t in (await whole_queue(api, admin))["tasks"])

    r = await api.patch(f"/api/patients/{agency.patient.id}", json={"first_name": None}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == "first_name cannot be empty"
    r = await api.patch(f"/api/patients/{agency.patient.id}", json={"latitude": 95}, headers=admin)
    assert r.status_code == 422
    r = await api.patch(f"/api/patients/{agency.patient.id}", json={"latitude": HOME[0], "longitude": HOME[1]},
                        headers=admin)
    assert r.status_code == 200 and r.json()["rechecked_visits"] == [visit["id"]]
    ready = await until_state(api, agency, visit["id"], "claim_ready")
    assert "reference_data_changed" in [e["kind"] for e in ready["timeline"]]


async def test_reminders_reach_the_clinicians_inbox(api, agency, env, t0):
    visit = await schedule(api, agency, t0 - timedelta(hours=2))
    await until_listed(api, agency, visit["id"])
    await env.sleep(timedelta(hours=25))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (inbox := (await api.get("/api/notifications", headers=as_user(agency, "clinician"))).json()):
        assert loop.time() < deadline, "no reminder arrived"
        await asyncio.sleep(0.05)
    assert inbox[0]["visit_id"] == visit["id"] and inbox[0]["kind"] == "note_reminder"
    assert "overdue" in inbox[0]["message"] or "was due" in inbox[0]["message"]
    assert (await api.get("/api/notifications", headers=as_user(agency, "other"))).json() == []


async def test_text_no_database_can_store_is_refused_with_a_reason(api, agency):
    admin = {**as_user(agency, "admin"), "content-type": "application/json"}
    body = ('{"first_name": "A\\u0000", "last_name": "B", "address_line": "1 Main", "city": "Austin", '
            '"state": "TX", "zip_code": "78701"}')
    r = await api.post("/api/patients", content=body, headers=admin)
    assert r.status_code == 422 and r.json()["detail"] == "text may not contain NUL characters"
    r = await api.post("/api/patients", content=body.replace("\\u0000", "\\ud800"), headers=admin)
    assert r.status_code == 422 and "lone UTF-16 surrogate" in r.json()["detail"]
    r = await api.post("/api/patients", content=body.replace("\\u0000", "\\ud83d\\ude00"), headers=admin)
    assert r.status_code == 201 and r.json()["first_name"] == "A\U0001F600"  # a real emoji is fine


async def test_ids_temporal_cannot_take_are_a_422_not_an_outage(api, agency):
    r = await api.get("/api/visits/" + "x" * 2000, headers=as_user(agency, "admin"))
    assert r.status_code in (404, 422), r.text
    r = await api.post("/api/releases", json={"visit_ids": ["x" * 65]}, headers=as_user(agency, "biller"))
    assert r.status_code == 422


async def test_a_nul_in_the_address_is_refused_with_a_reason(api, agency):
    """Every route with a path parameter, every method, a NUL in the parameter: a 422 that says why, never a
    500 (PostgreSQL refuses NUL characters). The same for a query parameter."""
    import re

    paths = {p: ops for p, ops in api._transport.app.openapi()["paths"].items() if "{" in p}
    assert len(paths) > 10
    for template, operations in [*paths.items(), ("/visits/{visit_id}", {"get": {}})]:  # and a UI page
        path = re.sub(r"\{[^}]+\}", "V%00-1", template)
        for method in operations:
            r = await api.request(method.upper(), path, json={}, headers=as_user(agency, "admin"))
            assert r.status_code == 422 and "NUL" in r.text, (method, path, r.status_code, r.text[:200])
    r = await api.get("/api/visits?clinician=1%00", headers=as_user(agency, "admin"))
    assert r.status_code == 422 and "NUL" in r.json()["detail"]


async def test_a_reassigned_visits_reminder_leaves_the_former_clinicians_inbox(api, agency, env, t0):
    visit = await schedule(api, agency, t0 - timedelta(hours=2))
    await until_listed(api, agency, visit["id"])
    await env.sleep(timedelta(hours=25))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (await api.get("/api/notifications", headers=as_user(agency, "clinician"))).json():
        assert loop.time() < deadline, "no reminder arrived"
        await asyncio.sleep(0.05)
    r = await api.post(f"/api/visits/{visit['id']}/reassign", headers=as_user(agency, "supervisor"),
                       json={"clinician_id": agency.other_clinician.id, "reason": "Devon moved to nights"})
    assert r.status_code == 200, r.text
    while (await api.get(f"/api/visits/{visit['id']}", headers=as_user(agency, "supervisor"))
           ).json()["clinician_id"] != agency.other_clinician.id or (await api.get(
               "/api/visits", headers=as_user(agency, "supervisor"), params={"clinician": agency.other_clinician.id})
           ).json()["items"] == []:
        assert loop.time() < deadline + 10, "the reassignment never reached the read model"
        await asyncio.sleep(0.05)
    assert (await api.get("/api/notifications", headers=as_user(agency, "clinician"))).json() == []
    tasks = (await api.get("/api/tasks", headers=as_user(agency, "other"))).json()["tasks"]
    assert [t["visit_id"] for t in tasks] == [visit["id"]]  # the work moved with the visit
