"""/api/users against the real app and database: only admins manage users; usernames ignore case; a clinician's
account is linked to a clinician and nobody else's is; passwords, locks and API tokens; never a hash."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlmodel import Session

from tests.conftest import Agency
from visitflow.db.tables import ApiToken, User
from visitflow.main import create_app
from visitflow.security import verify_password
from visitflow.settings import Settings


@pytest_asyncio.fixture
async def api(client, database_url, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path)
    app = create_app(settings, temporal=client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def as_user(agency: Agency, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {agency.token(who)}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_person(agency: Agency, **over) -> dict:
    return {"username": f"Pat-{uuid.uuid4().hex[:6]}", "display_name": "Pat Office", "role": "supervisor",
            "password": "correct horse battery", **over}


SECRET_FIELDS = {"password", "password_hash", "token_hash", "api_token_hash"}


@pytest.mark.parametrize("who", ["clinician", "supervisor", "biller"])
async def test_every_users_route_is_for_admins_only(api, agency, who):
    target = agency.users["clinician"].id
    routes = [("GET", "/api/users", None), ("POST", "/api/users", new_person(agency)),
              ("GET", f"/api/users/{target}", None), ("PATCH", f"/api/users/{target}", {"active": False}),
              ("POST", f"/api/users/{target}/password", {"password": "a new password"}),
              ("POST", f"/api/users/{target}/unlock", None), ("GET", f"/api/users/{target}/tokens", None),
              ("POST", f"/api/users/{target}/tokens", {"name": "sync"}),
              ("DELETE", f"/api/users/{target}/tokens/1", None)]
    for method, path, body in routes:
        response = await api.request(method, path, json=body, headers=as_user(agency, who))
        assert response.status_code == 403, (method, path, response.text)
        assert "only an admin can do this" in response.json()["detail"]
        assert (await api.request(method, path, json=body)).status_code == 401  # and nobody without a token
    with Session(agency.engine) as s:
        assert s.get(User, target).active  # nothing was changed on the way


async def test_an_admin_adds_a_user_and_never_sees_a_hash(api, agency, engine):
    body = new_person(agency, username="  Sam.Second@Agency ")
    created = await api.post("/api/users", json=body, headers=as_user(agency, "admin"))
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["username"] == "sam.second@agency" and user["role"] == "supervisor" and user["active"]
    assert user["failed_signins"] == 0 and user["locked_until"] is None and user["last_signed_in_at"] is None
    assert not SECRET_FIELDS & set(user)

    listed = (await api.get("/api/users", headers=as_user(agency, "admin"))).json()
    assert any(u["id"] == user["id"] for u in listed)
    assert all(not SECRET_FIELDS & set(u) for u in listed)
    assert (await api.get(f"/api/users/{user['id']}", headers=as_user(agency, "admin"))).json() == user

    # The same name in other letters is the same name.
    again = await api.post("/api/users", json={**body, "username": "SAM.SECOND@AGENCY"},
                           headers=as_user(agency, "admin"))
    assert again.status_code == 409 and "is taken" in again.json()["detail"]
    with Session(engine) as s:
        assert verify_password(s.get(User, user["id"]).password_hash, body["password"])


@pytest.mark.parametrize("over, status, words", [
    ({"role": "clinician"}, 422, "must be linked to their clinician record"),
    ({"role": "clinician", "clinician_id": 2_000_000_000}, 422, "clinician 2000000000 does not exist"),
    ({"role": "biller", "clinician_id": "own"}, 422, "only clinicians are linked"),
    ({"password": "short"}, 422, "password: String should have at least 8 characters"),
    ({"username": "two words"}, 422, "username: use letters, digits"),
    ({"display_name": "   "}, 422, "display_name: must not be blank"),
    ({"role": "owner"}, 422, "role: Input should be"),
])
async def test_bad_new_users_are_refused_with_the_reason(api, agency, over, status, words):
    if over.get("clinician_id") == "own":
        over = {**over, "clinician_id": agency.clinician.id}
    response = await api.post("/api/users", json=new_person(agency, **over), headers=as_user(agency, "admin"))
    assert response.status_code == status and words in response.json()["detail"], response.text


async def test_role_link_and_display_name_change_and_are_checked(api, agency):
    admin = as_user(agency, "admin")
    user = (await api.post("/api/users", json=new_person(agency), headers=admin)).json()
    path = f"/api/users/{user['id']}"

    becomes_clinician = await api.patch(path, json={"role": "clinician"}, headers=admin)
    assert becomes_clinician.status_code == 422 and "must be linked" in becomes_clinician.json()["detail"]
    linked = await api.patch(path, json={"role": "clinician", "clinician_id": agency.other_clinician.id,
                                         "display_name": " Pat, PCA "}, headers=admin)
    assert linked.status_code == 200
    assert (linked.json()["role"], linked.json()["clinician_id"], linked.json()["display_name"]) == \
        ("clinician", agency.other_clinician.id, "Pat, PCA")
    # Leaving the clinician role means saying the link goes too.
    kept_link = await api.patch(path, json={"role": "biller"}, headers=admin)
    assert kept_link.status_code == 422 and "send clinician_id null" in kept_link.json()["detail"]
    biller = await api.patch(path, json={"role": "biller", "clinician_id": None}, headers=admin)
    assert biller.status_code == 200 and biller.json()["clinician_id"] is None

    assert (await api.patch(path, json={}, headers=admin)).status_code == 422
    assert (await api.patch(path, json={"active": None}, headers=admin)).status_code == 422
    assert (await api.patch("/api/users/2000000000", json={"active": False}, headers=admin)).status_code == 404
    assert (await api.get("/api/users/0", headers=admin)).status_code == 422


async def test_password_reset_replaces_the_password_and_lifts_a_lock(api, agency, engine):
    user = agency.users["biller"]
    with Session(engine) as s:
        row = s.get(User, user.id)
        row.failed_signins, row.locked_until = 3, datetime.now(UTC) + timedelta(minutes=5)
        s.add(row)
        s.commit()
    short = await api.post(f"/api/users/{user.id}/password", json={"password": "2short"},
                           headers=as_user(agency, "admin"))
    assert short.status_code == 422
    reset = await api.post(f"/api/users/{user.id}/password", json={"password": "a brand new one"},
                           headers=as_user(agency, "admin"))
    assert reset.status_code == 200 and reset.json()["locked_until"] is None
    assert reset.json()["failed_signins"] == 0
    with Session(engine) as s:
        assert verify_password(s.get(User, user.id).password_hash, "a brand new one")


async def test_tokens_are_issued_listed_used_and_revoked(api, agency, engine):
    admin = as_user(agency, "admin")
    biller = agency.users["biller"]
    issued = await api.post(f"/api/users/{biller.id}/tokens", json={"name": "Clearinghouse"}, headers=admin)
    assert issued.status_code == 201
    token = issued.json()
    raw = token["token"]
    assert raw.startswith("vf_") and token["prefix"] == raw[:10] and not SECRET_FIELDS & set(token)

    assert (await api.get("/api/tasks", headers=bearer(raw))).status_code == 200
    listed = (await api.get(f"/api/users/{biller.id}/tokens", headers=admin)).json()
    mine = next(t for t in listed if t["id"] == token["id"])
    assert "token" not in mine and not SECRET_FIELDS & set(mine)
    assert mine["last_used_at"] is not None and mine["revoked_at"] is None
    assert any(t["name"] == "test token" for t in listed)  # the one the test agency was given

    # Someone else's token id under this user is not found; a revoked token is refused at once.
    other_user = agency.users["supervisor"].id
    assert (await api.delete(f"/api/users/{other_user}/tokens/{token['id']}", headers=admin)).status_code == 404
    revoked = await api.delete(f"/api/users/{biller.id}/tokens/{token['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await api.get("/api/tasks", headers=bearer(raw))).status_code == 401
    again = await api.delete(f"/api/users/{biller.id}/tokens/{token['id']}", headers=admin)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert (await api.get("/api/tasks", headers=as_user(agency, "biller"))).status_code == 200  # others still work

    blank = await api.post(f"/api/users/{biller.id}/tokens", json={"name": "  "}, headers=admin)
    assert blank.status_code == 422
    with Session(engine) as s:
        assert s.get(ApiToken, token["id"]).token_hash != raw  # stored as a digest only


async def test_a_deactivated_user_gets_no_new_token_and_old_ones_wait(api, agency):
    admin = as_user(agency, "admin")
    who = agency.users["other"]
    await api.patch(f"/api/users/{who.id}", json={"active": False}, headers=admin)
    refused = await api.post(f"/api/users/{who.id}/tokens", json={"name": "x"}, headers=admin)
    assert refused.status_code == 409 and "deactivated" in refused.json()["detail"]
    assert (await api.get("/api/tasks", headers=as_user(agency, "other"))).status_code == 401
    await api.patch(f"/api/users/{who.id}", json={"active": True}, headers=admin)
    assert (await api.get("/api/tasks", headers=as_user(agency, "other"))).status_code == 200
