"""Server-side sessions and sign-in protection, through the real app and database: a signed-out or expired
session is dead even when its cookie is replayed, usernames ignore case, failed sign-ins slow down and then
lock the account, and deactivation cuts off sessions and API tokens at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import update
from sqlmodel import Session, select

from tests.conftest import Agency
from tests.ui.conftest import csrf_of, htmx, sign_in
from visitflow.db.tables import User, UserSession
from visitflow.models import Role
from visitflow.main import create_app
from visitflow.settings import Settings

FAILURE_DELAY = 0.2  # seconds: long enough to measure, short enough for five failures in a test


@pytest_asyncio.fixture(scope="module")
async def guarded_app(ui_settings: Settings, env, worker) -> AsyncIterator[FastAPI]:
    """The app as configured in production, but with a failure delay a test can afford to wait through."""
    settings = ui_settings.model_copy(update={"signin_failure_delay": timedelta(seconds=FAILURE_DELAY)})
    app = create_app(settings, temporal=env.client)
    async with app.router.lifespan_context(app):
        yield app


def browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://testserver")


@pytest_asyncio.fixture
async def web2(guarded_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with browser(guarded_app) as client:
        yield client


async def try_password(web: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    page = await web.get("/signin")
    return await web.post("/signin", data={"username": username, "password": password,
                                           "csrf_token": csrf_of(page.text)})


def latest_session(engine, user: User) -> UserSession:
    with Session(engine) as s:
        return s.exec(select(UserSession).where(UserSession.user_id == user.id)
                      .order_by(UserSession.id.desc())).first()


def move_session(engine, row: UserSession, **values) -> None:
    with Session(engine) as s:
        s.execute(update(UserSession).where(UserSession.id == row.id).values(**values))
        s.commit()


def bearer(agency: Agency, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {agency.token(who)}"}


# --- sessions end on the server ---------------------------------------------------------------------------


async def test_a_signed_out_cookie_replayed_gets_nowhere(web, agency, engine):
    user = agency.users["clinician"]
    token = await sign_in(web, user.username)
    copied = dict(web.cookies)
    assert (await web.get("/api/tasks")).status_code == 200  # the cookie works on the API too, before

    out = await web.post("/signout", data={"csrf_token": token})
    assert out.status_code == 303
    assert latest_session(engine, user).ended_at is not None

    web.cookies.clear()
    for name, value in copied.items():
        web.cookies.set(name, value)  # someone kept a copy of the cookie from before sign-out
    page = await web.get("/tasks")
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/tasks"
    assert (await web.get("/api/tasks")).status_code == 401
    assert "Sign in to VisitFlow" in (await web.get("/signin")).text  # not bounced back as if signed in


async def test_an_idle_session_expires_and_stays_expired(web, agency, engine, ui_settings):
    user = agency.users["supervisor"]
    await sign_in(web, user.username)
    row = latest_session(engine, user)
    assert row.client_address and row.user_agent  # where the session came from, for whoever looks later
    idle = ui_settings.session_idle_timeout
    move_session(engine, row, last_seen_at=datetime.now(UTC) - idle - timedelta(seconds=5))

    assert (await web.get("/escalations")).status_code == 303
    assert (await web.get("/api/tasks")).status_code == 401
    ended = latest_session(engine, user)
    assert ended.ended_at is not None
    assert abs(ended.ended_at - (ended.last_seen_at + idle)) < timedelta(seconds=1)  # when it expired


async def test_a_busy_session_still_ends_after_its_maximum_age(web, agency, engine, ui_settings):
    user = agency.users["biller"]
    await sign_in(web, user.username)
    row = latest_session(engine, user)
    move_session(engine, row, created_at=datetime.now(UTC) - ui_settings.session_max_age - timedelta(seconds=1))
    assert (await web.get("/billing")).status_code == 303


async def test_activity_is_noted_at_most_about_once_a_minute(web, agency, engine):
    user = agency.users["biller"]
    await sign_in(web, user.username)
    row = latest_session(engine, user)
    assert (await web.get("/billing")).status_code == 200
    assert latest_session(engine, user).last_seen_at == row.last_seen_at  # no write for a request so soon

    two_minutes_ago = datetime.now(UTC) - timedelta(minutes=2)
    move_session(engine, row, last_seen_at=two_minutes_ago)
    assert (await web.get("/billing")).status_code == 200
    assert latest_session(engine, user).last_seen_at > two_minutes_ago + timedelta(minutes=1)


async def test_signing_in_again_ends_the_previous_session_of_that_browser(web, agency, engine):
    user = agency.users["clinician"]
    token = await sign_in(web, user.username)
    first = latest_session(engine, user)
    again = await web.post("/signin", data={"username": user.username, "password": "pw", "csrf_token": token})
    assert again.status_code == 303
    with Session(engine) as s:
        assert s.get(UserSession, first.id).ended_at is not None


# --- usernames ---------------------------------------------------------------------------------------------


async def test_usernames_ignore_case_and_surrounding_spaces(web, agency):
    username = agency.users["clinician"].username
    for typed in (username.capitalize(), f"  {username.upper()} "):
        web.cookies.clear()
        response = await try_password(web, typed, "pw")
        assert response.status_code == 303, typed
        assert (await web.get("/tasks")).status_code == 200


# --- guessing ----------------------------------------------------------------------------------------------


async def test_failures_slow_down_without_holding_up_anyone_else(web2, guarded_app, agency):
    username = agency.users["biller"].username
    started = time.perf_counter()
    first = await try_password(web2, username, "wrong")
    first_took = time.perf_counter() - started
    assert first.status_code == 401 and first_took >= FAILURE_DELAY

    # The second failure waits twice as long; meanwhile another person's page is served at once.
    async with browser(guarded_app) as other:
        started = time.perf_counter()
        failing = asyncio.create_task(try_password(web2, username, "wrong again"))
        await asyncio.sleep(0.05)
        assert (await other.get("/signin")).status_code == 200
        assert time.perf_counter() - started < 2 * FAILURE_DELAY  # the event loop was not blocked
        assert (await failing).status_code == 401
        assert time.perf_counter() - started >= 2 * FAILURE_DELAY
    assert (await try_password(web2, username, "pw")).status_code == 303  # and a success resets the count


async def test_five_failures_lock_the_account_until_an_admin_unlocks_it(web2, agency, engine, ui_settings):
    user = agency.users["supervisor"]
    for attempt in range(1, 5):
        assert (await try_password(web2, user.username, f"guess-{attempt}")).status_code == 401
    locked = await try_password(web2, user.username, "guess-5")
    assert locked.status_code == 429
    assert "This account is locked after too many failed sign-ins. Try again in 15 min" in locked.text
    # Even the right password is refused while the lock lasts.
    assert (await try_password(web2, user.username, "pw")).status_code == 429
    assert "locked" in (await try_password(web2, user.username.upper(), "pw")).text

    async with browser(web2._transport.app) as admin:  # noqa: SLF001 - the same app, another person
        listed = await admin.get(f"/api/users/{user.id}", headers=bearer(agency, "admin"))
        assert listed.json()["locked_until"] is not None
        unlocked = await admin.post(f"/api/users/{user.id}/unlock", headers=bearer(agency, "admin"))
        assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    assert (await try_password(web2, user.username, "pw")).status_code == 303


async def test_a_success_resets_the_count_of_failures(web2, agency, engine):
    user = agency.users["biller"]
    for _ in range(4):
        assert (await try_password(web2, user.username, "nope")).status_code == 401
    web2.cookies.clear()
    assert (await try_password(web2, user.username, "pw")).status_code == 303
    with Session(engine) as s:
        row = s.get(User, user.id)
        assert row.failed_signins == 0 and row.last_signed_in_at is not None
    web2.cookies.clear()
    for _ in range(4):
        assert (await try_password(web2, user.username, "nope")).status_code == 401  # not locked: counted afresh


async def test_an_unknown_name_is_answered_like_a_wrong_password_every_time(web2):
    for _ in range(6):
        response = await try_password(web2, "nobody-by-this-name", "pw")
        assert response.status_code == 401 and "do not match an active account" in response.text


# --- deactivation -------------------------------------------------------------------------------------------


async def test_deactivating_a_user_cuts_off_their_session_and_token_at_once(web, ui_app, agency):
    user = agency.users["clinician"]
    await sign_in(web, user.username)
    assert (await web.get("/api/tasks")).status_code == 200
    async with browser(ui_app) as office:
        assert (await office.get("/api/tasks", headers=bearer(agency, "clinician"))).status_code == 200
        off = await office.patch(f"/api/users/{user.id}", json={"active": False}, headers=bearer(agency, "admin"))
        assert off.status_code == 200 and off.json()["active"] is False
        assert (await office.get("/api/tasks", headers=bearer(agency, "clinician"))).status_code == 401
    assert (await web.get("/tasks")).status_code == 303
    assert (await web.get("/api/tasks")).status_code == 401
    # Reactivated, they sign in again; the session that was cut off stays ended.
    async with browser(ui_app) as office:
        await office.patch(f"/api/users/{user.id}", json={"active": True}, headers=bearer(agency, "admin"))
        assert (await office.get("/api/tasks", headers=bearer(agency, "clinician"))).status_code == 200
    assert (await web.get("/tasks")).status_code == 303


async def test_a_password_reset_signs_the_person_out_everywhere(web, ui_app, agency):
    user = agency.users["supervisor"]
    await sign_in(web, user.username)
    async with browser(ui_app) as office:
        reset = await office.post(f"/api/users/{user.id}/password", json={"password": "a fresh password"},
                                  headers=bearer(agency, "admin"))
        assert reset.status_code == 200
    assert (await web.get("/escalations")).status_code == 303
    web.cookies.clear()
    assert (await try_password(web, user.username, "pw")).status_code == 401
    assert (await try_password(web, user.username, "a fresh password")).status_code == 303


# --- the users page -----------------------------------------------------------------------------------------


async def test_the_users_page_is_for_office_staff_only(web, agency):
    await sign_in(web, agency.users["supervisor"].username)
    refused = await web.get("/admin/users")
    assert refused.status_code == 403 and "This page is for office staff." in refused.text
    web.cookies.clear()
    token = await sign_in(web, agency.users["admin"].username)
    page = await web.get(f"/admin/users?q={agency.tag}")  # a page of 50 people; found by name
    assert page.status_code == 200 and "<h1>Users</h1>" in page.text
    assert '<a href="/admin/users" aria-current="page">Users</a>' in page.text
    for who in ("clinician", "supervisor", "biller"):
        assert agency.users[who].username in page.text
    # Actions too, not only the page.
    web.cookies.clear()
    other = await sign_in(web, agency.users["biller"].username)
    posted = await web.post(f"/admin/users/{agency.users['clinician'].id}/active", data={"active": "no"},
                            headers=htmx(other))
    assert posted.status_code == 403
    assert token != other


async def test_an_admin_adds_a_person_and_manages_them_on_the_page(web, agency, engine):
    token = await sign_in(web, agency.users["admin"].username)
    name = f"Nurse-{agency.tag}"
    form = {"username": f"  {name} ", "display_name": "Nora Nurse, RN", "role": "clinician",
            "clinician_id": str(agency.other_clinician.id), "password": "a long password"}
    added = await web.post("/admin/users", data=form, headers=htmx(token))
    assert added.status_code == 200, added.text
    assert f"Added Nora Nurse, RN ({name.lower()})." in added.text and 'hx-swap-oob="true"' in added.text
    with Session(engine) as s:
        nora = s.exec(select(User).where(User.username == name.lower())).one()
    assert "a long password" not in added.text

    again = await web.post("/admin/users", data={**form, "username": name.upper()}, headers=htmx(token))
    assert again.status_code == 409 and "is taken" in again.text
    short = await web.post("/admin/users", data={**form, "username": f"x{agency.tag}", "password": "short",
                                                 "clinician_id": ""}, headers=htmx(token))
    assert short.status_code == 422 and "at least 8 characters" in short.text
    unlinked = await web.post("/admin/users", data={**form, "username": f"x{agency.tag}", "clinician_id": ""},
                              headers=htmx(token))
    assert unlinked.status_code == 422 and "must be linked to their clinician record" in unlinked.text

    # A wrong role change is refused beside its field; a right one is saved.
    wrong = await web.post(f"/admin/users/{nora.id}/role", data={"role": "clinician", "clinician_id": ""},
                           headers=htmx(token))
    assert wrong.status_code == 422 and "must be linked" in wrong.text
    moved = await web.post(f"/admin/users/{nora.id}/role",
                           data={"role": "supervisor", "clinician_id": str(agency.clinician.id),
                                 "display_name": "Nora Nurse"}, headers=htmx(token))
    assert moved.status_code == 200 and "Nora Nurse is now supervisor." in moved.text
    with Session(engine) as s:
        assert (s.get(User, nora.id).role, s.get(User, nora.id).clinician_id) == ("supervisor", None)

    # A token is shown once, works, and is revoked from the page.
    issued = await web.post(f"/admin/users/{nora.id}/tokens", data={"name": "Phone app"}, headers=htmx(token))
    assert issued.status_code == 200
    raw = issued.text.split('<code class="token">')[1].split("</code>")[0]
    assert raw.startswith("vf_") and raw not in (await web.get(f"/admin/users?q={agency.tag}")).text
    async with browser(web._transport.app) as app_client:  # noqa: SLF001
        assert (await app_client.get("/api/tasks", headers={"Authorization": f"Bearer {raw}"})).status_code == 200
        token_id = (await app_client.get(f"/api/users/{nora.id}/tokens",
                                         headers=bearer(agency, "admin"))).json()[0]["id"]
        revoked = await web.post(f"/admin/users/{nora.id}/tokens/{token_id}/revoke", headers=htmx(token))
        assert revoked.status_code == 200 and "Revoked the API token “Phone app”" in revoked.text
        assert (await app_client.get("/api/tasks", headers={"Authorization": f"Bearer {raw}"})).status_code == 401

    reset = await web.post(f"/admin/users/{nora.id}/password", data={"password": "another long one"},
                           headers=htmx(token))
    assert reset.status_code == 200 and "New password set" in reset.text
    off = await web.post(f"/admin/users/{nora.id}/active", data={"active": "no"}, headers=htmx(token))
    assert off.status_code == 200 and "is deactivated" in off.text and "Reactivate" in off.text


async def test_a_locked_account_shows_on_the_page_and_is_unlocked_there(web, agency, engine):
    user = agency.users["biller"]
    with Session(engine) as s:
        row = s.get(User, user.id)
        row.locked_until = datetime.now(UTC) + timedelta(minutes=10)
        s.add(row)
        s.commit()
    token = await sign_in(web, agency.users["admin"].username)
    assert "Locked until" in (await web.get(f"/admin/users?q={agency.tag}")).text
    unlocked = await web.post(f"/admin/users/{user.id}/unlock", headers=htmx(token))
    assert unlocked.status_code == 200 and "can sign in again" in unlocked.text
    with Session(engine) as s:
        assert s.get(User, user.id).locked_until is None


@pytest.mark.parametrize("path", ["/admin/users"])
async def test_the_users_page_asks_for_sign_in(web, path):
    response = await web.get(path)
    assert response.status_code == 303 and response.headers["location"] == f"/signin?next={path}"


async def test_the_users_page_shows_fifty_people_at_a_time_and_finds_one_by_name(web, agency, engine):
    tag = f"pg{agency.tag}"
    with Session(engine) as s:
        for n in range(55):
            s.add(User(username=f"aide{n:02d}-{tag}", display_name=f"Aide {n:02d}", role=Role.clinician,
                       password_hash="x"))
        s.commit()
    await sign_in(web, agency.users["admin"].username)
    first = await web.get(f"/admin/users?q={tag}")
    assert first.text.count(f"-{tag}</") >= 50 and f"aide49-{tag}" in first.text and f"aide50-{tag}" not in first.text
    assert f'after=aide49-{tag}' in first.text
    second = await web.get(f"/admin/users?q={tag}&after=aide49-{tag}")
    assert f"aide50-{tag}" in second.text and f"aide54-{tag}" in second.text and f"aide49-{tag}" not in second.text
    nobody = await web.get("/admin/users?q=no-such-person-anywhere")
    assert "holds “no-such-person-anywhere”" in nobody.text
