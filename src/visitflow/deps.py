"""FastAPI dependencies, as Annotated types: the session, the Temporal client, the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from sqlmodel import Session
from temporalio.client import Client

from visitflow.db.session import write_session
from visitflow.db.tables import User, Visit
from visitflow.models import Role, roles_phrase
from visitflow.services import queries
from visitflow.services.sessions import session_user
from visitflow.services.users import token_user
from visitflow.settings import Settings
from visitflow.ui.auth import session_token


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


def let_go(session: Session) -> None:
    """End the session's read transaction and hand its database connection back to the pool, keeping what
    was read. Called before a request waits on something else (Temporal): a request waiting on a visit must
    not hold one of the pool's few connections, or retries during an outage exhaust them."""
    session.expunge_all()
    session.rollback()


def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


# Row ids fit a 32-bit integer column on every database; anything else is a 422, not a database error.
MAX_ROW_ID = 2_147_483_647
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RefId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]

def get_write_session(request: Request) -> Iterator[Session]:
    """For routes that read, then write: the transaction holds the write lock from its first statement
    (on SQLite a read-then-write transaction would otherwise fail when the worker commits in between), and on
    SQLite it queues with the worker's writers in this process instead of polling for the lock, which a busy
    worker would never leave free long enough to win."""
    with write_session(request.app.state.engine) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
WriteSessionDep = Annotated[Session, Depends(get_write_session)]


def stored_visit_id(visit_id: str, session: SessionDep, request: Request) -> str:
    """A visit id from a route's path, as stored, for reading: v-8001 finds V-8001 (queries.visit_id_as_stored).
    The id as typed is tried first, by primary key: the row is then in the session for the route, so a visit
    asked for as stored costs no extra read. An action goes to the id as typed: a visit scheduled a moment ago
    is not in the read model yet, and if another visit had its id in another case (V-1 and v-1) the action
    would land on that one. The release, which only takes visits the read model shows claim-ready, looks its
    ids up itself. An action's connection goes back to the pool before the route waits on Temporal."""
    if request.method not in ("GET", "HEAD"):
        let_go(session)
        return visit_id
    if session.get(Visit, visit_id) is not None:
        return visit_id
    return queries.visit_id_as_stored(session, visit_id)


VisitId = Annotated[str, Depends(stored_visit_id)]


TemporalDep = Annotated[Client, Depends(get_temporal)]

_bearer = HTTPBearer(auto_error=False, description="API token of a VisitFlow user")


def get_current_user(request: Request, session: SessionDep,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    """The caller, by API token or by a signed-in UI session; 401 when the token is revoked, the session
    ended or expired, or the account is deactivated."""
    engine = request.app.state.engine
    if credentials is not None:
        user = token_user(session, engine, credentials.credentials)
    else:
        user = session_user(session, engine, request.app.state.settings, session_token(request))
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in or send a valid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    request.state.user = user  # the audit trail records who made the request
    let_go(session)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role):
    def check(user: CurrentUser) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"only {roles_phrase(roles)} can do this (you are {roles_phrase([user.role])})")
        return user
    return Depends(check)


AdminUser = Annotated[User, require_role(Role.admin)]
BillerUser = Annotated[User, require_role(Role.biller)]
StaffUser = Annotated[User, require_role(Role.admin, Role.supervisor, Role.biller)]
BillingUser = Annotated[User, require_role(Role.admin, Role.biller)]  # claims and claim files
