"""The office's user administration page, /admin/users: who can sign in, as what, and with which API tokens.

Every action goes through `visitflow.services.users` (the same operations as /api/users and `visitflow users`) and
answers with the person's card as it is now, or the same form with the problem beside its field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from visitflow.db.tables import ApiToken, PasswordReset, User, UserCreate, UserUpdate
from visitflow.deps import RowId, SessionDep, WriteSessionDep
from visitflow.models import Role
from visitflow.services import queries
from visitflow.services.errors import ServiceError
from visitflow.services.users import (
    add_user,
    change_user,
    field_problems,
    get_user,
    is_locked,
    issue_token,
    list_tokens,
    list_users,
    tokens_of,
    reset_password,
    revoke_token,
    set_active,
    unlock,
)
from visitflow.ui.deps import render, role_page
from visitflow.ui.forms import FORM, FormState, read_form

router = APIRouter(include_in_schema=False)
AdminPage = Annotated[User, role_page(Role.admin)]


def _clinician_names(session: Session) -> dict[int, str]:
    return {c.id: queries.clinician_label(c) for c in queries.clinicians(session)}


def _card(session: Session, user: User, **extra: Any) -> dict[str, Any]:
    tokens = list_tokens(session, user.id)
    return {"u": user, "tokens": tokens, "locked": is_locked(user), "clinicians": queries.clinicians(session),
            "clinician_names": _clinician_names(session), "roles": list(Role), "forms": {}, **extra}


def _card_response(request: Request, session: Session, user_id: int, status: int = 200, **extra: Any) -> Response:
    session.rollback()  # read the user as the operation left it
    return render(request, "_user_card.html", _card(session, get_user(session, user_id), **extra), status=status)


def _refused(request: Request, session: Session, user_id: int, form: str, f: FormState, err: ServiceError) -> Response:
    f.errors[err.field if err.field in f.values else FORM] = _sentence(err.message)
    return _card_response(request, session, user_id, err.status, forms={form: f}, open=form)


def _sentence(message: str) -> str:
    message = message[0].upper() + message[1:]
    return message if message.endswith(".") else message + "."


@router.get("/admin/users")
def users_page(request: Request, session: SessionDep, admin: AdminPage,
               after: Annotated[str | None, Query(max_length=80)] = None,
               q: Annotated[str | None, Query(max_length=80)] = None) -> Response:
    return render(request, "users.html", {"f": FormState(), **_list_context(session, after, (q or "").strip())})


USERS_PAGE = 50


def _list_context(session: Session, after: str | None = None, named: str = "") -> dict[str, Any]:
    # One more than shown says whether there is a next page.
    users = list_users(session, after, USERS_PAGE + 1, named or None)
    shown = users[:USERS_PAGE]
    tokens: dict[int, list[ApiToken]] = {}
    for t in tokens_of(session, [u.id for u in shown]):
        tokens.setdefault(t.user_id, []).append(t)
    return {"cards": [{"u": u, "tokens": tokens.get(u.id, []), "locked": is_locked(u), "forms": {}} for u in shown],
            "clinicians": queries.clinicians(session), "clinician_names": _clinician_names(session),
            "roles": list(Role), "after": after, "q": named,
            "next_after": shown[-1].username if len(users) > USERS_PAGE else None}


@router.post("/admin/users")
async def add(request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["username", "display_name", "role", "clinician_id", "password"])
    if f.v("role") not in {r.value for r in Role}:
        f.errors["role"] = "Choose a role."
    try:
        user = add_user(session, UserCreate(
            username=f.v("username"), display_name=f.v("display_name") or f.v("username"),
            role=f.v("role") or None, password=f.v("password"),
            clinician_id=int(f.v("clinician_id")) if f.v("clinician_id").isdigit() else None))
    except ValidationError as err:
        f.errors = {**field_problems(err), **f.errors}
    except ServiceError as err:
        f.errors[err.field or FORM] = _sentence(err.message)
    f.values["password"] = ""  # never sent back into the page
    if f.errors:
        return render(request, "_form_user_add.html", {"f": f, **_list_context(session)},
                      status=409 if "is taken" in f.e("username") else 422)
    session.rollback()
    return render(request, "_form_user_add.html", {
        "f": FormState(), "oob_list": True, "flash": f"Added {user.display_name} ({user.username}).",
        **_list_context(session)})


@router.post("/admin/users/{user_id}/role")
async def change_role(user_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["role", "clinician_id", "display_name"])
    try:
        role = Role(f.v("role"))
    except ValueError:
        f.errors["role"] = "Choose a role."
        return _card_response(request, session, user_id, 422, forms={"role": f}, open="role")
    clinician_id = int(f.v("clinician_id")) if f.v("clinician_id").isdigit() and role == Role.clinician else None
    try:
        changes = UserUpdate(role=role, clinician_id=clinician_id,
                             **({"display_name": f.v("display_name")} if f.v("display_name") else {}))
        user = change_user(session, user_id, changes)
    except ValidationError as err:
        f.errors.update(field_problems(err))
        return _card_response(request, session, user_id, 422, forms={"role": f}, open="role")
    except ServiceError as err:
        return _refused(request, session, user_id, "role", f, err)
    return _card_response(request, session, user_id, flash=f"{user.display_name} is now {role.value}.")


@router.post("/admin/users/{user_id}/active")
async def change_active(user_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["active"])
    active = f.v("active") == "yes"
    try:
        user = set_active(session, user_id, active)
    except ServiceError as err:
        return _refused(request, session, user_id, "active", f, err)
    message = (f"{user.display_name} can sign in again." if active else
               f"{user.display_name} is deactivated: signed out everywhere, API tokens refused.")
    return _card_response(request, session, user_id, flash=message)


@router.post("/admin/users/{user_id}/password")
async def set_password(user_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["password"])
    try:
        user = reset_password(session, user_id, PasswordReset(password=f.v("password")))
    except ValidationError as err:
        f.errors.update(field_problems(err))
        f.values["password"] = ""
        return _card_response(request, session, user_id, 422, forms={"password": f}, open="password")
    except ServiceError as err:
        return _refused(request, session, user_id, "password", f, err)
    return _card_response(request, session, user_id,
                          flash=f"New password set for {user.display_name}; their open sessions ended.")


@router.post("/admin/users/{user_id}/unlock")
def lift_lock(user_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    try:
        user = unlock(session, user_id)
    except ServiceError as err:
        return _refused(request, session, user_id, "unlock", FormState(), err)
    return _card_response(request, session, user_id, flash=f"{user.display_name} can sign in again.")


@router.post("/admin/users/{user_id}/tokens")
async def new_token(user_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["name"])
    try:
        token, raw = issue_token(session, user_id, f.v("name"))
    except ServiceError as err:
        return _refused(request, session, user_id, "tokens", f, err)
    return _card_response(request, session, user_id, issued={"name": token.name, "token": raw}, open="tokens",
                          flash=f"Issued the API token “{token.name}”. Copy it now: it is not shown again.")


@router.post("/admin/users/{user_id}/tokens/{token_id}/revoke")
def revoke(user_id: RowId, token_id: RowId, request: Request, session: WriteSessionDep,
           admin: AdminPage) -> Response:
    try:
        token = revoke_token(session, token_id, user_id)
    except ServiceError as err:
        return _refused(request, session, user_id, "tokens", FormState(), err)
    return _card_response(request, session, user_id, open="tokens",
                          flash=f"Revoked the API token “{token.name}”: requests with it are refused from now on.")
