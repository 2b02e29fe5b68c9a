"""UI routes against the real app, Temporal test server and database: sign-in, CSRF, who sees what,
forms that keep what was typed and say what is wrong next to each field, and every role's pages."""

from __future__ import annotations

import logging
import os
import re
import stat
from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session

from tests.ui.conftest import FAR, VisitSetup, csrf_of, htmx, recent_start, sign_in
from visitflow.db.tables import Visit
from visitflow.main import create_app
from visitflow.models import PunchKind
from visitflow.services import queries
from visitflow.settings import Settings
from visitflow.ui import app as ui_app
from visitflow.ui import auth


def field_block(html: str, field_id: str) -> str:
    """The markup of one form field (its <div class="field">), to check an error sits beside it."""
    start = html.index(f'for="{field_id}"')
    block_start = html.rindex('<div class="field', 0, start)
    return html[block_start:html.index("</div>", start)]


# --- signing in and out -------------------------------------------------------------------------------


async def test_sign_in_with_the_right_password_and_not_with_a_wrong_one(web: httpx.AsyncClient, agency):
    page = await web.get("/signin")
    assert page.status_code == 200 and '<html lang="en">' in page.text
    token = csrf_of(page.text)
    username = agency.users["clinician"].username

    wrong = await web.post("/signin", data={"username": username, "password": "nope", "csrf_token": token})
    assert wrong.status_code == 401
    block = field_block(wrong.text, "signin-password")
    assert "do not match an active account" in block and 'aria-invalid="true"' in block
    assert f'value="{username}"' in wrong.text  # the username stays typed
    assert "nope" not in wrong.text  # a password is never echoed back

    right = await web.post("/signin", data={"username": username, "password": "pw", "csrf_token": token})
    assert right.status_code == 303 and right.headers["location"] == "/tasks"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    tasks = await web.get("/tasks")
    assert tasks.status_code == 200 and "My tasks" in tasks.text
    assert csrf_of(tasks.text) != token  # a fresh session (and token) on sign-in

    out = await web.post("/signout", data={"csrf_token": csrf_of(tasks.text)})
    assert out.status_code == 303
    again = await web.get("/tasks")
    assert again.status_code == 303 and again.headers["location"] == "/signin?next=/tasks"


async def test_blank_sign_in_fields_are_named_and_unknown_users_get_the_same_answer(web, agency):
    token = csrf_of((await web.get("/signin")).text)
    blank = await web.post("/signin", data={"username": "", "password": "", "csrf_token": token})
    assert blank.status_code == 401
    assert "Enter your username." in field_block(blank.text, "signin-username")
    assert "Enter your password." in field_block(blank.text, "signin-password")
    unknown = await web.post("/signin", data={"username": "nobody-here", "password": "pw", "csrf_token": token})
    assert unknown.status_code == 401 and "do not match an active account" in unknown.text


async def test_pages_ask_for_sign_in_and_htmx_is_redirected(web):
    page = await web.get("/escalations?clinician=3")
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/escalations%3Fclinician%3D3"
    partial = await web.get("/tasks/list", headers={"HX-Request": "true",
                                                   "HX-Current-URL": "http://testserver/tasks"})
    assert partial.status_code == 401 and partial.headers["HX-Redirect"] == "/signin?next=/tasks"
    # Only local paths are followed after sign-in: no open redirect.
    assert 'name="next" value="/"' in (await web.get("/signin?next=//evil.example")).text


# --- CSRF ---------------------------------------------------------------------------------------------


async def test_every_state_change_needs_the_sessions_csrf_token(web, agency, visits: VisitSetup):
    visit_id = await visits.schedule(recent_start())
    # Sign-in itself needs the token the sign-in page handed out.
    await web.get("/signin")
    no_token = await web.post("/signin", data={"username": agency.users["clinician"].username, "password": "pw"})
    assert no_token.status_code == 403 and "nothing was changed" in no_token.text

    token = await sign_in(web, agency.users["clinician"].username)
    note = {"note_tasks_performed": "x", "note_client_condition": "y"}
    for headers in ({"HX-Request": "true"}, {"HX-Request": "true", "X-CSRF-Token": "forged"}):
        rejected = await web.post(f"/visits/{visit_id}/note", data=note, headers=headers)
        assert rejected.status_code == 403
        assert rejected.headers["HX-Retarget"] == "#flash" and "Reload the page" in rejected.text
    assert (await web.post("/signout", data={"csrf_token": "forged"})).status_code == 403
    # The REST API, when it rides on the same session cookie, is protected too ...
    api = await web.post(f"/api/visits/{visit_id}/note", json={"fields": {}})
    assert api.status_code == 403 and "nothing was changed" in api.json()["detail"]
    # ... while bearer-token clients (not exposed to CSRF) reach the API's own checks.
    bearer = await web.post(f"/api/visits/{visit_id}/note", json={"fields": {}},
                            headers={"Authorization": f"Bearer {agency.token('clinician')}"})
    assert bearer.status_code == 422 and "DOC-03" in bearer.json()["detail"]
    with Session(visits.engine) as s:
        assert s.get(Visit, visit_id).state == "scheduled"  # nothing got through
    accepted = await web.post(f"/visits/{visit_id}/note", data={**note}, headers=htmx(token))
    assert accepted.status_code == 200


# --- who sees what --------------------------------------------------------------------------------------


async def test_a_clinician_only_sees_their_own_visits(web, agency, visits: VisitSetup):
    visit_id = await visits.schedule(recent_start())
    token = await sign_in(web, agency.users["other"].username)
    for path in (f"/visits/{visit_id}", f"/visits/{visit_id}/status", f"/visits/{visit_id}/work"):
        response = await web.get(path)
        assert response.status_code == 404, path
        assert f"There is no visit {visit_id} for you to see." in response.text
    posted = await web.post(f"/visits/{visit_id}/note", data={"note_tasks_performed": "x"}, headers=htmx(token))
    assert posted.status_code == 404
    assert visit_id not in (await web.get("/tasks")).text
    # Another role's page is refused in words, not with a stack trace.
    billing = await web.get("/billing")
    assert billing.status_code == 403 and "This page is for billers." in billing.text
    assert f"You are signed in as {agency.users['other'].display_name} (clinician)." in billing.text


async def test_each_role_lands_on_its_pages(web, agency, visits: VisitSetup):
    await visits.schedule(recent_start())
    expected = {
        "clinician": {"/tasks": "My tasks"},
        "supervisor": {"/escalations": "Escalations", "/holds": "Holds", "/dashboard": "Dashboard"},
        "biller": {"/billing": "Ready to bill", "/holds": "Holds", "/dashboard": "Dashboard"},
        "admin": {"/dashboard": "Dashboard", "/holds": "Holds"},
    }
    for role, pages in expected.items():
        web.cookies.clear()
        await sign_in(web, agency.users[role].username)
        home = await web.get("/")
        assert home.headers["location"] == next(iter(pages)), role
        for path, heading in pages.items():
            page = await web.get(path)
            assert page.status_code == 200, (role, path, page.text[:500])
            assert f"<h1>{heading}</h1>" in page.text
            assert 'aria-current="page"' in page.text and '<main id="main"' in page.text
        if role != "clinician":
            assert (await web.get("/tasks")).status_code == 403


# --- clinician: note, signature, punches ----------------------------------------------------------------


async def test_note_errors_sit_next_to_their_fields_and_the_draft_is_kept(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start())
    token = await sign_in(web, agency.users["clinician"].username)
    tasks = await web.get("/tasks/list")
    assert visit_id in tasks.text and "Write the visit note" in tasks.text

    page = await web.get(f"/visits/{visit_id}")
    assert page.status_code == 200
    assert f'data-draft="{agency.users["clinician"].id}:{visit_id}"' in page.text  # localStorage draft key
    form_id = f"note-{visit_id}"
    typed = "Bathing & meal prep <b>not markup</b>"
    rejected = await web.post(f"/visits/{visit_id}/note", headers=htmx(token), data={
        "note_tasks_performed": typed, "note_client_condition": "   "})
    assert rejected.status_code == 422
    condition = field_block(rejected.text, f"{form_id}-note_client_condition")
    assert "Client condition is required for this discipline." in condition
    assert 'aria-invalid="true"' in condition
    tasks_field = field_block(rejected.text, f"{form_id}-note_tasks_performed")
    assert "required" not in tasks_field.split("</label>")[1].split("<textarea")[0]  # no error on the filled one
    assert "Bathing &amp; meal prep &lt;b&gt;not markup&lt;/b&gt;</textarea>" in rejected.text  # kept, escaped
    assert "data-kept" in rejected.text

    accepted = await web.post(f"/visits/{visit_id}/note", headers=htmx(token), data={
        "note_tasks_performed": typed, "note_client_condition": "Alert and cheerful"})
    assert accepted.status_code == 200
    assert accepted.headers["HX-Retarget"] == "#work" and accepted.headers["HX-Trigger"] == "visit-changed"
    assert f'data-draft-clear="{agency.users["clinician"].id}:{visit_id}"' in accepted.text
    assert "Sign the note" in accepted.text and 'hx-swap-oob="true"' in accepted.text

    unticked = await web.post(f"/visits/{visit_id}/sign", headers=htmx(token), data={})
    assert unticked.status_code == 422
    assert "Tick the box to confirm the attestation" in field_block(unticked.text, f"sign-{visit_id}-attestation")
    signed = await web.post(f"/visits/{visit_id}/sign", headers=htmx(token), data={"attestation": "yes"})
    assert signed.status_code == 200 and "Signed. The visit is being checked" in signed.text
    row = await visits.projected(visit_id, "claim_ready")
    assert row.snapshot["note"]["fields"]["tasks_performed"] == typed

    # Signing twice is the workflow's call; its reason comes back in words beside the button.
    again = await web.post(f"/visits/{visit_id}/sign", headers=htmx(token), data={"attestation": "yes"})
    assert again.status_code == 409 and "The note is already signed." in again.text


async def test_a_clinician_fixes_a_punch_with_a_reason_code(web, agency, visits: VisitSetup):
    start = recent_start()
    visit_id = await visits.schedule(start)
    await visits.punch(visit_id, PunchKind.clock_in, start + timedelta(minutes=40))
    token = await sign_in(web, agency.users["clinician"].username)
    form_id = f"adjust-{visit_id}"
    zone = ZoneInfo(visits.settings.agency_timezone)
    at = (start + timedelta(minutes=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    needs_text = await web.post(f"/visits/{visit_id}/punches/adjust", headers=htmx(token), data={
        "seq": "1", "adjusted_at": at, "reason_code": "other", "reason_text": ""})
    assert needs_text.status_code == 422
    assert "needs a short explanation." in field_block(needs_text.text, f"{form_id}-reason_text")
    assert f'value="{at}"' in needs_text.text  # the time typed stays

    bad_time = await web.post(f"/visits/{visit_id}/punches/adjust", headers=htmx(token), data={
        "seq": "1", "adjusted_at": "yesterday-ish", "reason_code": "data_entry_error"})
    assert "Enter a date and time" in field_block(bad_time.text, f"{form_id}-adjusted_at")

    fixed = await web.post(f"/visits/{visit_id}/punches/adjust", headers=htmx(token), data={
        "seq": "1", "adjusted_at": at, "reason_code": "data_entry_error"})
    assert fixed.status_code == 200 and "Punch corrected" in fixed.text

    missing = await web.post(f"/visits/{visit_id}/punches/add", headers=htmx(token), data={
        "kind": "clock_out", "at": "", "reason_code": ""})
    assert missing.status_code == 422
    assert "Enter the time of the missing punch." in field_block(missing.text, f"addpunch-{visit_id}-at")
    assert "Choose a reason code." in field_block(missing.text, f"addpunch-{visit_id}-reason_code")
    out_at = (start + timedelta(hours=2)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    added = await web.post(f"/visits/{visit_id}/punches/add", headers=htmx(token), data={
        "kind": "clock_out", "at": out_at, "reason_code": "forgot_to_clock"})
    assert added.status_code == 200 and "Manual punch added" in added.text

    status = await web.get(f"/visits/{visit_id}/status")
    punches = status.text.split("Punches against the schedule")[1].split("</table>")[0]
    assert "Data entry error" in punches and "Manual entry" in punches and "Forgot to clock in or out" in punches
    original, corrected_cell = re.findall(r'data-label="(?:Original|Corrected)">([^<]*)', punches)[:2]
    assert original.strip() != corrected_cell.strip()  # the original stays beside the correction


# --- supervisor -----------------------------------------------------------------------------------------


async def test_a_supervisor_decides_an_evv_exception_from_the_list(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR, document=True)
    await visits.projected(visit_id, "on_hold")
    token = await sign_in(web, agency.users["supervisor"].username)
    page = await web.get(f"/escalations?clinician={agency.clinician.id}")
    assert page.status_code == 200 and "EVV-02" in page.text and visit_id in page.text
    row = re.search(rf'<li id="(exception-{re.escape(visit_id)}-[^"]+)"', page.text).group(1)

    # The list carries no decision forms: each arrives when its disclosure opens, for this exception and row.
    assert f'hx-post="/visits/{visit_id}/decision"' not in page.text
    fragment = f"/visits/{visit_id}/decision?key=EVV-02%3Apunch-1&context=row&row={row}"
    assert f'hx-get="{fragment.replace("&", "&amp;")}"' in page.text
    form = await web.get(fragment, headers=htmx(token))
    assert form.status_code == 200 and f'id="decide-{visit_id}-EVV-02-punch-1-{row}"' in form.text
    assert 'name="key" value="EVV-02:punch-1"' in form.text and f'name="row" value="{row}"' in form.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', form.text).group(1)
    again = await web.get(fragment, headers=htmx(token))  # opened again an hour later: a key of its own
    assert re.search(r'name="idempotency_key" value="([^"]+)"', again.text).group(1) != key
    assert (await web.get("/visits/no-such-visit/decision?key=EVV-02%3Apunch-1", headers=htmx(token))
            ).status_code == 404
    assert (await web.get(f"/visits/{visit_id}/decision", headers=htmx(token))).status_code == 422  # which one?
    unknown = await web.get(f"/visits/{visit_id}/decision?key=EVV-09%3Anothing", headers=htmx(token))
    assert unknown.status_code == 200 and "no longer waiting for a decision" in unknown.text
    assert 'name="decision"' not in unknown.text and f'href="/visits/{visit_id}"' in unknown.text

    no_reason = await web.post(f"/visits/{visit_id}/decision", headers=htmx(token), data={
        "key": "EVV-02:punch-1", "decision": "approved", "reason": " ", "context": "row", "row": row})
    assert no_reason.status_code == 422
    assert "Give a reason for your decision" in no_reason.text and "HX-Retarget" not in no_reason.headers

    approved = await web.post(f"/visits/{visit_id}/decision", headers=htmx(token), data={
        "key": "EVV-02:punch-1", "decision": "approved", "reason": "Caregiver parked at the clinic lot",
        "context": "row", "row": row})
    assert approved.status_code == 200
    assert approved.headers["HX-Retarget"] == f"#{row}" and approved.headers["HX-Trigger"] == "queue-changed"
    assert f'<li id="{row}" class="card done">' in approved.text and "Approved: EVV-02" in approved.text
    await visits.projected(visit_id, "claim_ready")
    assert visit_id not in (await web.get(f"/escalations/exceptions?clinician={agency.clinician.id}")).text
    # A page left open still shows the exception; opening its form now says it was decided.
    late = await web.get(fragment, headers=htmx(token))
    assert late.status_code == 200 and "no longer waiting for a decision" in late.text
    assert 'name="decision"' not in late.text

    visit_page = await web.get(f"/visits/{visit_id}")
    assert "Exception approved" in visit_page.text and "Caregiver parked at the clinic lot" in visit_page.text


async def test_a_supervisor_sees_overdue_work_and_extends_or_reassigns_it(web, agency, visits: VisitSetup, env):
    visit_id = await visits.schedule(recent_start(hours_ago=24 * 4))  # no note for four days: escalated
    await visits.projected(visit_id)
    token = await sign_in(web, agency.users["supervisor"].username)

    async def overdue_html() -> str:
        import asyncio

        for _ in range(100):  # the workflow escalates as soon as it starts; its projection follows
            html = (await web.get(f"/escalations/overdue?clinician={agency.clinician.id}")).text
            if "Escalated to you" in html:
                return html
            await asyncio.sleep(0.05)
        raise AssertionError(html)

    html = await overdue_html()
    assert f"Note for visit {visit_id}" in html and " late" in html
    row = f"overdue-{visit_id}-note"
    team = await web.get("/escalations/team")
    assert f"/escalations?clinician={agency.clinician.id}" in team.text

    zone_now = await env.get_current_time()  # the workflow's clock: deadlines are judged by it
    zone = ZoneInfo(visits.settings.agency_timezone)
    past = (zone_now - timedelta(days=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    too_early = await web.post(f"/visits/{visit_id}/deadline", headers=htmx(token), data={
        "stage": "note", "new_deadline": past, "reason": "Caregiver ill", "context": "row", "row": row})
    assert too_early.status_code == 422
    assert "The new deadline must be in the future." in field_block(
        too_early.text, f"extend-{visit_id}-{row}-new_deadline")
    assert 'value="Caregiver ill"' in too_early.text

    # The list carries no forms; the extend-deadline form comes when its disclosure opens, for this row and the
    # deadline the visit waits on now, with a fresh key each time it is fetched.
    assert 'name="new_deadline"' not in html
    assert f'hx-get="/visits/{visit_id}/deadline?context=row&amp;row={row}"' in html
    extend = await web.get(f"/visits/{visit_id}/deadline?context=row&row={row}", headers=htmx(token))
    assert extend.status_code == 200 and f'id="extend-{visit_id}-{row}"' in extend.text
    assert 'name="stage" value="note"' in extend.text and f'name="row" value="{row}"' in extend.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', extend.text).group(1)
    extend_again = await web.get(f"/visits/{visit_id}/deadline?context=row&row={row}", headers=htmx(token))
    assert re.search(r'name="idempotency_key" value="([^"]+)"', extend_again.text).group(1) != key
    assert (await web.get("/visits/no-such-visit/deadline", headers=htmx(token))).status_code == 404

    # The list carries no clinicians; the reassign form comes when its disclosure opens, for this row.
    assert 'name="clinician_id"' not in html and f'hx-get="/visits/{visit_id}/reassign?context=row&amp;row={row}"' in html
    form = await web.get(f"/visits/{visit_id}/reassign?context=row&row={row}", headers=htmx(token))
    assert form.status_code == 200 and f'id="reassign-{visit_id}-{row}"' in form.text
    assert 'name="row" value="' + row + '"' in form.text and 'name="idempotency_key"' in form.text
    assert f'<option value="{agency.other_clinician.id}">Casey Aide{agency.tag}' in form.text
    assert f'<option value="{agency.clinician.id}">' not in form.text  # not to the clinician who has it
    assert (await web.get("/visits/no-such-visit/reassign", headers=htmx(token))).status_code == 404

    no_one = await web.post(f"/visits/{visit_id}/reassign", headers=htmx(token), data={
        "clinician_id": "", "reason": "", "context": "row", "row": row})
    assert no_one.status_code == 422
    assert "Choose the clinician" in no_one.text and "Say why the visit is reassigned" in no_one.text

    later = (zone_now + timedelta(days=2)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    extended = await web.post(f"/visits/{visit_id}/deadline", headers=htmx(token), data={
        "stage": "note", "new_deadline": later, "reason": "Caregiver ill", "context": "row", "row": row,
        "idempotency_key": key})
    assert extended.status_code == 200 and "is now due" in extended.text
    resent = await web.post(f"/visits/{visit_id}/deadline", headers=htmx(token), data={  # an answer lost: sent again
        "stage": "note", "new_deadline": later, "reason": "Caregiver ill", "context": "row", "row": row,
        "idempotency_key": key})
    assert resent.status_code == 200 and "is now due" in resent.text

    moved = await web.post(f"/visits/{visit_id}/reassign", headers=htmx(token), data={
        "clinician_id": str(agency.other_clinician.id), "reason": "Devon is on leave", "context": "row",
        "row": row})
    assert moved.status_code == 200 and f"is now assigned to Casey Aide{agency.tag}" in moved.text
    row_now = await visits.projected(visit_id)
    assert row_now.clinician_id == agency.other_clinician.id


async def test_a_supervisor_finds_a_clinician_by_typing_the_start_of_a_name(web, agency, engine):
    """The filter on /escalations takes a name, not a pick from every clinician: one match opens their list
    (the `clinician` URL parameter, as the team table's links use), several are listed (at most 20), none is
    said at the field."""
    from visitflow.db.tables import Clinician
    from visitflow.models import Discipline

    await sign_in(web, agency.users["supervisor"].username)
    tag = agency.tag
    # In any case, first name or last, one word or two: the one match goes to their list.
    for typed in (f"CASEY aide{tag}", f"  casey   Aide{tag.upper()} ", f"aide{tag} cas"):
        one = await web.get("/escalations", params={"who": typed})
        assert one.status_code == 303, typed
        assert one.headers["location"] == f"/escalations?clinician={agency.other_clinician.id}"
    page = await web.get(f"/escalations?clinician={agency.other_clinician.id}")
    assert page.status_code == 200 and f'name="who" value="Casey Aide{tag}"' in page.text
    assert "<select" not in page.text.split('role="search"')[1].split("</form>")[0]  # no list of every clinician

    both = await web.get("/escalations", params={"who": f"Aide{tag}"})
    assert both.status_code == 200 and "2 clinicians match" in both.text
    listed = both.text.split('id="esc-who-matches"')[1]
    links = re.findall(r'<a href="/escalations\?clinician=(\d+)">([^<]+)</a>', listed)
    assert links[:2] == [(str(agency.other_clinician.id), f"Casey Aide{tag} (PCA)"),
                         (str(agency.clinician.id), f"Devon Aide{tag} (PCA)")]

    nobody = await web.get("/escalations", params={"who": f"Nobody{tag}"})
    assert nobody.status_code == 422
    assert f"No clinician&#39;s first or last name starts with “Nobody{tag}”." in field_block(nobody.text, "esc-who")

    # The type-ahead, as it is typed: the same matches, at most 20 of them, by last name.
    with Session(engine) as s:
        s.add_all([Clinician(first_name=f"Zed{i:02d}", last_name=f"Many{tag}{i:02d}", discipline=Discipline.RN)
                   for i in range(22)])
        s.commit()
    typed = await web.get("/escalations/clinicians", params={"who": f"many{tag}"}, headers=htmx(""))
    assert typed.status_code == 200 and f"More than 20 clinicians match “many{tag}”" in typed.text
    names = re.findall(r'>Zed(\d\d) Many', typed.text)
    assert names == [f"{i:02d}" for i in range(20)]
    assert "No clinician" in (await web.get("/escalations/clinicians", params={"who": "qqq-no-one"})).text
    assert (await web.get("/escalations/clinicians", params={"who": ""})).text.strip() == ""
    # Characters a name can hold (an apostrophe, a hyphen) are read as text.
    with Session(engine) as s:
        s.add(Clinician(first_name="Maeve", last_name=f"O'Neil-{tag}", discipline=Discipline.RN))
        s.commit()
    assert f"Maeve O&#39;Neil-{tag}" in (await web.get("/escalations/clinicians", params={"who": f"o'neil-{tag}"})).text
    # Whatever is typed gets an answer, never a 500: wildcards are letters here, odd characters too (a NUL is
    # refused with a 422 before any route, as everywhere in the app).
    for odd in ("%", "_", "\U0010ffff", "\ud7ff", "x" * 500):
        answer = await web.get("/escalations/clinicians", params={"who": odd})
        assert answer.status_code == 200 and "Zed" not in answer.text, odd
        page = await web.get("/escalations", params={"who": odd})  # nobody by that name, or nothing left to match
        assert page.status_code in (200, 422) and "Overdue notes and signatures" in page.text, odd
    assert (await web.get("/escalations/clinicians", params={"who": "a\x00b"})).status_code == 422


# --- biller -------------------------------------------------------------------------------------------


async def test_a_biller_filters_releases_and_is_told_the_outcome(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start(), document=True)
    await visits.projected(visit_id, "claim_ready")
    token = await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/billing?payer={agency.payer.id}")
    assert visit_id in page.text and "1 visit ready to bill for these filters." in page.text
    key = re.search(r'name="release_key" value="([^"]+)"', page.text).group(1)
    bad_dates = await web.get(f"/billing?date_from=2024-05-02&date_to=2024-05-01&payer={agency.payer.id}")
    assert "The end date must not be before the start date." in field_block(bad_dates.text, "bill-date_to")
    assert "Enter a date" in field_block((await web.get("/billing?date_from=soon")).text, "bill-date_from")

    nothing = await web.post("/billing/release", headers=htmx(token), data={"payer": str(agency.payer.id)})
    assert nothing.status_code == 422 and "Tick at least one visit to release." in nothing.text

    released = await web.post("/billing/release", headers=htmx(token), data={
        "visit_ids": [visit_id], "release_key": key, "payer": str(agency.payer.id)})
    assert released.status_code == 200
    assert "Released 1 visit in batch" in released.text and visit_id in released.text
    assert 'id="ready-list"' in released.text and "0 visits ready to bill" in released.text  # fresh list
    # A double click (same key) lands in the same batch; a new release is told who released it first.
    twice = await web.post("/billing/release", headers=htmx(token), data={
        "visit_ids": [visit_id], "release_key": key})
    assert "Released 1 visit" in twice.text
    other = await web.post("/billing/release", headers=htmx(token), data={
        "visit_ids": [visit_id], "release_key": "another-click"})
    assert "Already released earlier" in other.text and agency.users["biller"].username in other.text
    await visits.projected(visit_id, "released")


async def test_a_release_form_resent_with_other_ticks_is_refused_not_answered_as_done(web, agency,
                                                                                     visits: VisitSetup):
    """The answer to a release was lost and the biller changed the ticks before sending the same form again: the
    first release is not passed off as this one; the visit now ticked is not released, and the page says why."""
    first, second = [await visits.delivered(recent_start(), document=True) for _ in range(2)]
    for visit_id in (first, second):
        await visits.projected(visit_id, "claim_ready")
    token = await sign_in(web, agency.users["biller"].username)
    key = re.search(r'name="release_key" value="([^"]+)"', (await web.get("/billing")).text).group(1)
    assert "Released 1 visit" in (await web.post("/billing/release", headers=htmx(token), data={
        "visit_ids": [first], "release_key": key})).text
    resent = await web.post("/billing/release", headers=htmx(token), data={"visit_ids": [second],
                                                                           "release_key": key})
    assert resent.status_code == 422 and "already sent for" in resent.text and first in resent.text
    assert "Released" not in resent.text
    await visits.projected(second, "claim_ready")  # still there to release


async def test_holds_are_grouped_by_the_problem_and_say_who_must_act(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start(), document=True, authorize=False)  # AUTH-01: no auth
    await visits.projected(visit_id, "on_hold")
    await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/holds?payer={agency.payer.id}")
    heading, group = page.text.split('<span class="rule rule-tag">AUTH-01</span>')
    assert heading.endswith("No authorization covers the visit ")  # the heading names the problem
    assert visit_id in group and "Who must act: Billing" in group and "no active authorization" in group
    # Billing resolves an authorization: nothing to send back (tests/ui/test_billing_routes.py has the rest).
    assert "Send back to the clinician" not in group.split("</section>")[0]


# --- the visit page and the dashboard -------------------------------------------------------------------


async def test_the_visit_page_shows_gates_punches_timeline_and_the_workflow(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR, document=True)
    await visits.projected(visit_id, "on_hold")
    await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/visits/{visit_id}")
    html = page.text
    gates = html.split('class="checklist"')[1].split("</ul>\n")[0]
    for label in ("Documented", "Signed", "Authorized"):
        assert re.search(rf'gate-passed">\s*<span class="gate-mark" aria-hidden="true">✓</span>\s*'
                         rf'<span class="gate-label">{label}', gates), label
    assert 'gate-held">' in gates and "1 open hold, listed below" in gates  # the hold itself is told once
    assert html.lower().count("clock-in punch") == 1 and "Punch far from the client&#39;s address" in html
    assert "Who must act: Clinical supervisor (may approve or reject)" in html
    assert "Mobile GPS" in html and "#1 Clock-in" in html
    for event in ("Scheduled", "EVV punch", "Note submitted", "Note signed", "Held"):
        assert f'<span class="what">{event}</span>' in html, event
    assert "temporal.test" not in html  # the workflow link is for office staff and supervisors
    status = await web.get(f"/visits/{visit_id}/status?since=10000")
    assert status.status_code == 204  # nothing newer: the live region is left alone


async def test_the_dashboard_draws_charts(web, agency, visits: VisitSetup):
    await visits.delivered(recent_start(), clock_in_at=FAR, document=True)
    await sign_in(web, agency.users["supervisor"].username)
    page = await web.get("/dashboard")
    html = page.text
    for heading in ("Visits by state", "Backlog aging", "Note lag", "Holds by reason", "Open escalations"):
        assert heading in html
    assert html.count("<svg") >= 9 and "median" in html and "90th percentile" in html
    assert re.search(r'<rect class="tone-\w+" x="0" y="3" height="16" rx="3" width="100.0%"', html)


# --- errors, secrets, htmx from node_modules ------------------------------------------------------------


async def test_errors_are_told_in_words_never_as_a_stack_trace(web, agency, monkeypatch):
    await sign_in(web, agency.users["clinician"].username)
    missing = await web.get("/no-such-page")
    assert missing.status_code == 404 and "There is no page at this address." in missing.text

    def broken(*_args, **_kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(queries, "clinician_tasks", broken)
    page = await web.get("/tasks")
    assert page.status_code == 500
    assert "VisitFlow could not finish this" in page.text
    assert "Traceback" not in page.text and "database on fire" not in page.text
    partial = await web.get("/tasks/list", headers={"HX-Request": "true"})
    assert partial.status_code == 500 and partial.headers["HX-Retarget"] == "#flash"
    bad_page = await web.get("/tasks?after=zero")
    assert bad_page.status_code == 422 and "That page link is not valid" in bad_page.text
    api = await web.get("/api/visits/nope", headers={"Authorization": "Bearer nope"})
    assert api.headers["content-type"].startswith("application/json")  # the API keeps its JSON


def test_the_session_secret_is_generated_once_and_kept_private(tmp_path):
    settings = Settings(secret_key="", data_dir=tmp_path / "data")
    first = auth.session_secret(settings)
    path = tmp_path / "data" / "secret_key"
    assert len(first) >= 40 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.session_secret(settings) == first
    assert auth.session_secret(Settings(secret_key="configured", data_dir=tmp_path / "data")) == "configured"


async def test_htmx_is_served_from_node_modules(web):
    page = await web.get("/signin")
    url = re.search(r'<script src="(/static/vendor/htmx\.min\.js\?v=[^"]+)"', page.text).group(1)
    script = await web.get(url)
    assert script.status_code == 200 and "htmx" in script.text[:2000]
    assert script.headers["content-type"].startswith("text/javascript")


async def test_the_app_starts_without_htmx_and_says_so(ui_settings, env, monkeypatch, caplog):
    monkeypatch.setattr(ui_app, "find_htmx", lambda: None)
    with caplog.at_level(logging.WARNING, logger="visitflow.ui"):
        app = create_app(ui_settings, temporal=env.client)
    assert "htmx is not installed" in caplog.text and "npm install" in caplog.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        page = await c.get("/signin")
        assert page.status_code == 200 and "htmx is not installed on this server" in page.text
        assert (await c.get("/static/vendor/htmx.min.js")).status_code == 404


@pytest.mark.parametrize("path", ["/static/ui/app.css", "/static/ui/app.js"])
async def test_own_static_files_are_served(web, path):
    response = await web.get(path)
    assert response.status_code == 200 and len(response.text) > 500
