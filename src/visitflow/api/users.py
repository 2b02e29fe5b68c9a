"""User administration for admins: accounts, roles, clinician links, passwords, lockouts and API tokens.

Every route is a thin wrapper over `visitflow.services.users`; no route ever returns a password hash or a token
digest, and a new token's text appears only in the answer that issued it.
"""


from fastapi import APIRouter, status

from visitflow.db.tables import (
    ApiTokenCreate,
    ApiTokenIssued,
    ApiTokenPublic,
    PasswordReset,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from visitflow.deps import AdminUser, RowId, SessionDep, WriteSessionDep
from visitflow.services.users import (
    add_user,
    change_user,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    reset_password,
    revoke_token,
    unlock,
)

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=list[UserPublic])
def list_all(session: SessionDep, _admin: AdminUser):
    return list_users(session)


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create(body: UserCreate, session: WriteSessionDep, _admin: AdminUser):
    return add_user(session, body)


@router.get("/{user_id}", response_model=UserPublic)
def get_one(user_id: RowId, session: SessionDep, _admin: AdminUser):
    return get_user(session, user_id)


@router.patch("/{user_id}", response_model=UserPublic)
def change(user_id: RowId, body: UserUpdate, session: WriteSessionDep, _admin: AdminUser):
    """Display name, role, clinician link, active. Deactivating ends the user's sessions and stops their
    API tokens at once."""
    return change_user(session, user_id, body)


@router.post("/{user_id}/password", response_model=UserPublic)
def set_password(user_id: RowId, body: PasswordReset, session: WriteSessionDep, _admin: AdminUser):
    """Reset the password: the user's open sessions end and a sign-in lock is lifted."""
    return reset_password(session, user_id, body)


@router.post("/{user_id}/unlock", response_model=UserPublic)
def lift_lock(user_id: RowId, session: WriteSessionDep, _admin: AdminUser):
    return unlock(session, user_id)


@router.get("/{user_id}/tokens", response_model=list[ApiTokenPublic])
def tokens(user_id: RowId, session: SessionDep, _admin: AdminUser):
    return list_tokens(session, user_id)


@router.post("/{user_id}/tokens", response_model=ApiTokenIssued, status_code=status.HTTP_201_CREATED)
def issue(user_id: RowId, body: ApiTokenCreate, session: WriteSessionDep, _admin: AdminUser):
    """Issue a token; its text is in this answer only (store it now: VisitFlow keeps just a digest)."""
    token, raw = issue_token(session, user_id, body.name)
    return ApiTokenIssued(**token.model_dump(), token=raw)


@router.delete("/{user_id}/tokens/{token_id}", response_model=ApiTokenPublic)
def revoke(user_id: RowId, token_id: RowId, session: WriteSessionDep, _admin: AdminUser):
    """Revoke a token: the next request with it gets 401. Revoking a revoked token changes nothing."""
    return revoke_token(session, token_id, user_id)
