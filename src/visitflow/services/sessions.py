"""Server-side sign-in sessions: the browser's cookie carries a random token, the database says whether it
still stands.

A session ends on sign-out, after `session_idle_timeout` without a request, `session_max_age` after
sign-in, or when its user is deactivated; from then on the token signs nobody in, even from a copied cookie.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from visitflow.db.session import write_session
from visitflow.db.tables import User, UserSession
from visitflow.security import token_digest
from visitflow.settings import Settings

# last_seen_at is written at most this often per session: a page polling every few seconds must not cost a
# database write each time. The idle timeout is therefore honoured to within this much.
TOUCH_EVERY = timedelta(minutes=1)
_USER_AGENT_CHARS = 300


def now_utc() -> datetime:
    return datetime.now(UTC)


def start_session(engine: Engine, user: User, client_address: str | None, user_agent: str | None) -> str:
    """A new session for this user; returns the token for the cookie (only its digest is stored)."""
    token = secrets.token_urlsafe(32)
    now = now_utc()
    with write_session(engine) as s:
        s.add(UserSession(user_id=user.id, token_hash=token_digest(token), created_at=now, last_seen_at=now,
                          client_address=client_address[:64] if client_address else None,
                          user_agent=user_agent[:_USER_AGENT_CHARS] if user_agent else None))
        s.commit()
    return token


def session_user(session: Session, engine: Engine, settings: Settings, token: str | None) -> User | None:
    """The active user this token signs in, or None when the session is unknown, ended or expired.

    Reads with the caller's session (so the User belongs to it); the rare writes (noting activity at most
    once a minute, ending an expired session) go through a short write transaction of their own.
    """
    if not token:
        return None
    now = now_utc()
    row = session.exec(select(UserSession, User).join(User, User.id == UserSession.user_id)
                       .where(UserSession.token_hash == token_digest(token))).first()
    if row is None:
        return None
    live, user = row
    if live.ended_at is not None:
        return None
    expires_at = min(live.last_seen_at + settings.session_idle_timeout, live.created_at + settings.session_max_age)
    if now >= expires_at or not user.active:
        _end(engine, UserSession.id == live.id, min(now, expires_at))
        return None
    if now - live.last_seen_at >= TOUCH_EVERY:
        with write_session(engine) as s:
            # Conditional, so two requests arriving together write once.
            s.execute(update(UserSession)
                      .where(UserSession.id == live.id, UserSession.last_seen_at <= now - TOUCH_EVERY)
                      .values(last_seen_at=now))
            s.commit()
    return user


def end_session(engine: Engine, token: str | None) -> None:
    """Sign-out: this browser's session ends on the server, so its cookie is worthless from now on."""
    if token:
        _end(engine, UserSession.token_hash == token_digest(token), now_utc())


def end_sessions_of(session: Session, user_id: int) -> None:
    """End every open session of a user, in the caller's transaction (deactivation, password reset)."""
    session.execute(update(UserSession).where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
                    .values(ended_at=now_utc()))


def _end(engine: Engine, which, at: datetime) -> None:
    with write_session(engine) as s:
        s.execute(update(UserSession).where(which, UserSession.ended_at.is_(None)).values(ended_at=at))
        s.commit()
