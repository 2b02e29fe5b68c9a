"""The agency's user accounts: adding people, their role and clinician link, passwords, sign-in lockout and
API tokens. One implementation of each operation, used by the API, the admin page and the CLI.

Every operation takes the caller's session, checks, writes and commits; a refusal raises `ServiceError` with the
HTTP status it maps to and a sentence saying why, and writes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import func, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from visitflow.db.session import write_session
from visitflow.db.tables import ApiToken, Clinician, PasswordReset, User, UserCreate, UserUpdate
from visitflow.models import Role
from visitflow.security import hash_password, token_digest, verify_password
from visitflow.services.errors import ServiceError
from visitflow.services.sessions import end_sessions_of
from visitflow.settings import Settings

TOKEN_PREFIX_CHARS = 10  # "vf_" and 7 random characters: enough to tell a person's tokens apart
_TOKEN_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is noted at most this often per token


def now_utc() -> datetime:
    return datetime.now(UTC)


def normalise_username(username: str) -> str:
    """How usernames are stored and compared: "Carla" and " carla " are the same person."""
    return username.strip().lower()


def field_problems(err: ValidationError) -> dict[str, str]:
    """A pydantic rejection as one sentence per field, for the admin page and the CLI."""
    problems: dict[str, str] = {}
    for e in err.errors():
        name = str(e["loc"][-1]) if e.get("loc") else "form"
        message = str(e["msg"]).removeprefix("Value error, ")
        problems.setdefault(name, message[0].upper() + message[1:] + ("" if message.endswith(".") else "."))
    return problems


# --- reading ---------------------------------------------------------------------------------------------


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise ServiceError(404, f"user {user_id} not found")
    return user


def find_user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == normalise_username(username))).first()
    if user is None:
        raise ServiceError(404, f"there is no user named {normalise_username(username)!r}")
    return user


def list_users(session: Session, after: str | None = None, limit: int | None = None,
               named: str | None = None) -> list[User]:
    """People by username; with `limit`, a page of them after the username `after` (keyset, by the unique index);
    with `named`, only those whose username or name holds it."""
    query = select(User).order_by(User.username)
    if named:
        query = query.where(or_(User.username.contains(named.lower()), User.display_name.icontains(named)))
    if after:
        query = query.where(User.username > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


def count_users(engine: Engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(User)).one()


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or now_utc())


# --- adding and changing people --------------------------------------------------------------------------


def add_user(session: Session, new: UserCreate) -> User:
    if session.exec(select(User).where(User.username == new.username)).first() is not None:
        raise ServiceError(409, f"the username {new.username!r} is taken (usernames ignore upper and lower case)",
                        "username")
    _check_link(session, new.role, new.clinician_id)
    user = User(username=new.username, display_name=new.display_name, role=new.role,
                clinician_id=new.clinician_id, password_hash=hash_password(new.password))
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def change_user(session: Session, user_id: int, changes: UserUpdate) -> User:
    """Display name, role, clinician link and active, as sent (fields not sent stay as they are).

    Deactivating ends the person's sessions at once; their API tokens stop working with the account.
    """
    user = get_user(session, user_id)
    sent = changes.model_dump(exclude_unset=True)
    if not sent:
        raise ServiceError(422, "nothing to change: send at least one field")
    for required in ("display_name", "role", "active"):
        if required in sent and sent[required] is None:
            raise ServiceError(422, f"{required} cannot be empty", required)
    role = sent.get("role", user.role)
    clinician_id = sent.get("clinician_id", user.clinician_id)
    _check_link(session, role, clinician_id)
    active = sent.get("active", user.active)
    if user.role == Role.admin and user.active and (role != Role.admin or not active):
        _keep_one_admin(session, user)
    was_active = user.active
    user.sqlmodel_update(sent)
    if was_active and not active:
        end_sessions_of(session, user.id)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def set_active(session: Session, user_id: int, active: bool) -> User:
    return change_user(session, user_id, UserUpdate(active=active))


def reset_password(session: Session, user_id: int, reset: PasswordReset) -> User:
    """A new password set by an admin. Sessions signed in with the old one end, and a lock is lifted:
    the admin has just vouched for the person at the keyboard."""
    user = get_user(session, user_id)
    user.password_hash = hash_password(reset.password)
    user.failed_signins, user.locked_until = 0, None
    end_sessions_of(session, user.id)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def unlock(session: Session, user_id: int) -> User:
    user = get_user(session, user_id)
    user.failed_signins, user.locked_until = 0, None
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def _check_link(session: Session, role: Role, clinician_id: int | None) -> None:
    """A clinician's account is linked to their clinician record (their visits); nobody else's is."""
    if role == Role.clinician:
        if clinician_id is None:
            raise ServiceError(422, "a clinician's account must be linked to their clinician record (clinician_id)",
                            "clinician_id")
        if session.get(Clinician, clinician_id) is None:
            raise ServiceError(422, f"clinician {clinician_id} does not exist", "clinician_id")
    elif clinician_id is not None:
        raise ServiceError(422, f"only clinicians are linked to a clinician record, not a {role.value} "
                             "(send clinician_id null)", "clinician_id")


def _keep_one_admin(session: Session, leaving: User) -> None:
    # The other admins' rows are locked, so two admins removing each other at once cannot both succeed.
    others = session.exec(select(User.id).where(User.role == Role.admin, User.active, User.id != leaving.id)
                          .with_for_update()).all()
    if not others:
        raise ServiceError(409, f"{leaving.username} is the last active admin; make someone else an admin first, "
                             "or nobody could manage users")


# --- API tokens ------------------------------------------------------------------------------------------


def issue_token(session: Session, user_id: int, name: str) -> tuple[ApiToken, str]:
    """A new API token for the user: returns the stored row and the token, which is never shown again."""
    user = get_user(session, user_id)
    name = name.strip()
    if not name or len(name) > 80:
        raise ServiceError(422, "name the token after what will use it, in at most 80 characters, e.g. 'EVV "
                             "aggregator sync'", "name")
    if not user.active:
        raise ServiceError(409, f"{user.username} is deactivated; activate the account before issuing a token")
    raw = "vf_" + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=token_digest(raw), prefix=raw[:TOKEN_PREFIX_CHARS],
                     created_at=now_utc())
    session.add(token)
    session.commit()
    session.refresh(token)
    return token, raw


def tokens_of(session: Session, user_ids: list[int]) -> list[ApiToken]:
    """The tokens of these people (revoked ones too: they are part of the record), for the admin page."""
    return list(session.exec(select(ApiToken).where(ApiToken.user_id.in_(user_ids)).order_by(ApiToken.id)))


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    get_user(session, user_id)
    return list(session.exec(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)))


def revoke_token(session: Session, token_id: int, user_id: int | None = None) -> ApiToken:
    """Revoke (idempotent: revoking again changes nothing). With `user_id`, the token must be theirs."""
    token = session.get(ApiToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise ServiceError(404, f"API token {token_id} not found" + (f" for user {user_id}" if user_id else ""))
    if token.revoked_at is None:
        token.revoked_at = now_utc()
        session.add(token)
        session.commit()
        session.refresh(token)
    return token


def token_user(session: Session, engine: Engine, raw: str) -> User | None:
    """The active user a bearer token belongs to, or None (unknown, revoked, or the user is deactivated)."""
    row = session.exec(select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(
        ApiToken.token_hash == token_digest(raw), ApiToken.revoked_at.is_(None), User.active)).first()
    if row is None:
        return None
    token, user = row
    now = now_utc()
    if token.last_used_at is None or now - token.last_used_at >= _TOKEN_TOUCH_EVERY:
        with write_session(engine) as s:
            s.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
            s.commit()
    return user


# --- signing in ------------------------------------------------------------------------------------------


@dataclass
class SignIn:
    """What a sign-in attempt came to: `user` on success; else how long to make the person wait before
    answering, or, when the account is locked, until when."""

    user: User | None = None
    delay: timedelta = timedelta(0)
    locked_until: datetime | None = None


_DUMMY_HASH: str | None = None


def attempt_sign_in(session: Session, engine: Engine, settings: Settings, username: str, password: str) -> SignIn:
    """Check a username and password, counting consecutive failures per account.

    An unknown or deactivated name is answered exactly like a wrong password (and takes as long to check).
    A locked account is refused without looking at the password, so guessing during the lock learns nothing.
    """
    global _DUMMY_HASH
    now = now_utc()
    user = session.exec(select(User).where(User.username == normalise_username(username), User.active)).first()
    if user is None:
        _DUMMY_HASH = _DUMMY_HASH or hash_password(secrets.token_hex(8))
        verify_password(_DUMMY_HASH, password)
        return SignIn(delay=settings.signin_failure_delay)
    if is_locked(user, now):
        return SignIn(locked_until=user.locked_until)
    ok = verify_password(user.password_hash, password)
    # Counted under the write lock, so failures sent in parallel are each counted.
    with write_session(engine) as s:
        row = s.exec(select(User).where(User.id == user.id).with_for_update()).one()
        if ok:
            row.failed_signins, row.locked_until, row.last_signed_in_at = 0, None, now
        else:
            row.failed_signins += 1
            failures = row.failed_signins
            if failures >= settings.signin_max_failures:
                # The count starts again when the lock ends: the person gets the same chances as before.
                row.failed_signins, row.locked_until = 0, now + settings.signin_lockout
        locked_until = row.locked_until
        s.add(row)
        s.commit()
    if ok:
        return SignIn(user=user)
    if locked_until is not None:
        return SignIn(locked_until=locked_until)
    return SignIn(delay=settings.signin_failure_delay * min(2 ** (failures - 1), 8))
