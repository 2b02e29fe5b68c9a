"""Who is signed in to the UI, and proof that a state-changing request came from our own pages.

The cookie is Starlette's signed session cookie (itsdangerous): HttpOnly, SameSite=Lax. It holds two
random values: the sign-in session's token and the CSRF token. Whether someone is signed in is decided on
the server, by the `UserSession` row the token's digest names (visitflow.services.sessions): signing out, expiry and
deactivation end that row, so a copied cookie stops working at once. Starlette's middleware stays for what
it does well, signing the cookie (a forged one never reaches the database) and keeping the CSRF token.

Every POST/PUT/PATCH/DELETE that rides on that cookie must also carry the session's CSRF token, in the
`X-CSRF-Token` header (htmx sends it from `hx-headers` on <body>) or in a `csrf_token` form field (plain
forms: sign-in, sign-out).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visitflow.db.tables import User
from visitflow.services.sessions import end_session, start_session
from visitflow.settings import Settings

log = logging.getLogger("visitflow.ui")

SESSION_COOKIE = "visitflow_session"
SESSION_TOKEN_KEY = "session"  # the sign-in session's token, in the signed cookie
CSRF_SESSION_KEY = "csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_MAX_FORM_BYTES = 1_000_000  # a visit note is long, but not this long


def session_secret(settings: Settings) -> str:
    """The configured secret, or one generated once into data_dir/secret_key (mode 600) and reused after."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(48))
    log.info("generated a new session secret in %s", path)
    return path.read_text().strip()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def session_token(request: Request) -> str | None:
    return request.session.get(SESSION_TOKEN_KEY) if "session" in request.scope else None


def sign_in(request: Request, user: User) -> None:
    # A fresh session on sign-in: nothing from before (including the CSRF token) carries over.
    end_session(request.app.state.engine, session_token(request))
    request.session.clear()
    request.session[SESSION_TOKEN_KEY] = start_session(
        request.app.state.engine, user, request.client.host if request.client else None,
        request.headers.get("user-agent"))
    csrf_token(request)


def sign_out(request: Request) -> None:
    end_session(request.app.state.engine, session_token(request))
    request.session.clear()


class CSRFMiddleware:
    """Rejects (403) state-changing requests that ride on the session cookie without the session's token.

    Runs inside SessionMiddleware. API clients that send a bearer token are not exposed to CSRF (a
    browser never attaches that header on its own), and anonymous API calls have no session to abuse,
    so both pass through to the API's own 401/403 handling.
    """

    def __init__(self, app: ASGIApp, reject: Callable[[Scope, str], Response]) -> None:
        self.app = app
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        session = scope.get("session") or {}
        if scope["path"].startswith("/api/") and ("authorization" in headers or not session.get(SESSION_TOKEN_KEY)):
            await self.app(scope, receive, send)
            return
        sent = headers.get(CSRF_HEADER)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if sent is None and content_type == "application/x-www-form-urlencoded":
            body = await _read_body(receive)
            if body is None:
                await self.reject(scope, "The form was too large to accept.")(scope, receive, send)
                return
            sent = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [None])[0]
            receive = _replay(body, receive)
        expected = session.get(CSRF_SESSION_KEY)
        if not expected or not sent or not hmac.compare_digest(sent.encode(), str(expected).encode()):
            reason = ("This page has expired or did not come from VisitFlow, so nothing was changed. "
                      "Reload the page and try again.")
            await self.reject(scope, reason)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, original: Receive) -> Receive:
    """Hand the body we already read to the app once, as if it came off the socket; then the real stream."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive
