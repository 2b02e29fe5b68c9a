"""The audit trail through the UI: sign-ins, the visit page and actions are recorded, polling is not; the admin's
audit page."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import Session

from tests.ui.conftest import VisitSetup, csrf_of, htmx, recent_start, sign_in
from visitflow.audit import AuditSearch, search
from visitflow.db.tables import AuditEvent
from visitflow.main import create_app
from visitflow.settings import Settings


def recorded(engine, **wanted) -> list[AuditEvent]:
    with Session(engine) as s:
        return search(s, AuditSearch(**wanted), 100)


async def test_sign_ins_and_failed_ones_are_recorded(web: httpx.AsyncClient, agency, engine):
    user = agency.users["biller"]
    token = csrf_of((await web.get("/signin")).text)
    wrong = await web.post("/signin", data={"username": user.username, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    nobody = f"nobody-{agency.tag}"
    unknown = await web.post("/signin", data={"username": f"  {nobody} ", "password": "pw", "csrf_token": token})
    assert unknown.status_code == 401
    await sign_in(web, user.username)

    signed_in, failed = recorded(engine, username=user.username)
    assert (signed_in.action, signed_in.status, signed_in.user_id) == ("signed_in", 303, user.id)
    assert (signed_in.method, signed_in.path, signed_in.client_ip) == ("POST", "/signin", "127.0.0.1")
    assert (failed.action, failed.status, failed.user_id) == ("sign_in_failed", 401, None)
    [attempt] = recorded(engine, username=nobody)  # the name as typed, trimmed
    assert (attempt.action, attempt.user_id, attempt.status) == ("sign_in_failed", None, 401)

    home = await web.get("/billing")
    signed_out = await web.post("/signout", data={"csrf_token": csrf_of(home.text)})
    assert signed_out.status_code == 303
    assert recorded(engine, username=user.username)[0].action == "signed_out"  # with who it was


async def test_a_sign_in_to_a_locked_account_is_recorded_as_such(env, database_url, tmp_path, agency, engine):
    settings = Settings(database_url=database_url, secret_key="lock-test", data_dir=tmp_path,
                        signin_max_failures=1, signin_failure_delay="0s")
    transport = httpx.ASGITransport(app=create_app(settings, temporal=env.client))
    user = agency.users["supervisor"]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as web:
        token = csrf_of((await web.get("/signin")).text)
        for status in (429, 429):  # the first failure locks (at most one here); the next is refused unchecked
            r = await web.post("/signin", data={"username": user.username, "password": "nope", "csrf_token": token})
            assert r.status_code == status
    assert [(e.action, e.status, e.user_id) for e in recorded(engine, username=user.username)] == [
        ("sign_in_locked", 429, None)] * 2


async def test_the_visit_page_and_actions_are_recorded_but_not_polling(web, agency, engine, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start())
    token = await sign_in(web, agency.users["clinician"].username)
    assert (await web.get(f"/visits/{visit_id}")).status_code == 200
    for partial in (f"/visits/{visit_id}/status", f"/visits/{visit_id}/work", f"/visits/{visit_id}"):
        assert (await web.get(partial, headers=htmx(token))).status_code == 200, partial
    assert (await web.get("/tasks/list", headers=htmx(token))).status_code == 200
    noted = await web.post(f"/visits/{visit_id}/note", headers=htmx(token), data={
        "note_tasks_performed": "Bathing", "note_client_condition": "Stable"})
    assert noted.status_code == 200, noted.text

    clinician = agency.users["clinician"]
    [note, view] = [e for e in recorded(engine, username=clinician.username) if e.action != "signed_in"]
    assert (view.action, view.method, view.path, view.status) == ("viewed_visit", "GET", f"/visits/{visit_id}", 200)
    assert (view.user_id, view.visit_id, view.patient_id) == (clinician.id, visit_id, agency.patient.id)
    assert (note.action, note.status, note.visit_id, note.patient_id) == (
        "submitted_note", 200, visit_id, agency.patient.id)


async def test_the_admin_searches_the_trail_on_its_page(web, agency, engine, visits: VisitSetup):
    visit_id = await visits.schedule(recent_start(-24))
    biller = agency.users["biller"]
    await sign_in(web, biller.username)
    assert (await web.get(f"/visits/{visit_id}")).status_code == 200
    r = await web.get("/admin/audit")
    assert r.status_code == 403 and "This page is for" in r.text
    await web.post("/signout", data={"csrf_token": csrf_of(r.text)})

    await sign_in(web, agency.users["admin"].username)
    page = await web.get("/admin/audit", params={"user": biller.username, "since": "2020-01-01"})
    assert page.status_code == 200
    assert '<a href="/admin/audit" aria-current="page">Audit</a>' in page.text
    rows = re.findall(r"<tr>\s*<td data-label=\"When\">.*?</tr>", page.text, re.S)
    assert [re.search(r'data-label="What">(\w+)<', row).group(1) for row in rows] == [
        "signed_out", "searched_audit_trail", "viewed_visit", "signed_in"]
    assert f'<a href="/visits/{visit_id}">{visit_id}</a>' in rows[2]
    csv_link = unescape(re.search(r'href="(/api/audit\.csv\?[^"]*)"', page.text).group(1))
    query = parse_qs(urlsplit(csv_link).query)
    assert query["user"] == [biller.username] and query["since"][0].startswith("2020-01-01T00:00:00-06:00")
    csv = await web.get(csv_link)
    assert csv.status_code == 200 and csv.text.count(f",{biller.username},") == 4

    by_visit = await web.get("/admin/audit", params={"visit_id": visit_id, "action": "viewed_visit"})
    assert by_visit.text.count('data-label="What">viewed_visit<') == 1
    bad = await web.get("/admin/audit", params={"patient_id": "twelve", "until": "someday"})
    assert bad.status_code == 422
    assert "Enter the patient&#39;s number, e.g. 12." in bad.text and "Enter a date, e.g. 2026-11-26." in bad.text
    backwards = await web.get("/admin/audit", params={"since": "2026-11-27", "until": "2026-11-26"})
    assert backwards.status_code == 422 and "The last day must not be before the first day." in backwards.text
