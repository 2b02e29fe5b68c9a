"""Safe retries for every state-changing API request: the `Idempotency-Key` header.

A client that loses an answer (a timeout, a dropped connection, a 503) cannot know whether its request was
applied. It sends the same request again with the same key and gets the first answer: the same status and
the same body, and the action is not applied a second time.

Two layers make that hold whatever dies when:
- this module stores each keyed request's answer (`IdempotentRequest`), per user, method, path and key, and
  replays it to a retry; a retry with the same key but another body is refused (422), and one that arrives
  while the first is still running is told to retry in a moment (409 with `Retry-After`);
- the key also becomes the Temporal Update id of the visit action (`services.act`), so if the API dies after
  the workflow took the action but before the answer was stored, the retry gets the workflow's first outcome
  instead of acting again. Reference data creations store their answer in the same transaction as the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visitflow.db.session import write_session
from visitflow.db.tables import IdempotentRequest
from visitflow.deps import CurrentUser

log = logging.getLogger("visitflow.api")

HEADER = "Idempotency-Key"
# How long a running request holds its key. A request that died (the API was killed) leaves its claim
# behind; after this a retry takes the key over. Taking over a request that is only slow is safe too: visit
# actions are exactly-once by their Update ids, and creations store their answer with their row, first one wins.
CLAIM_FOR = timedelta(seconds=10)
_STATE_KEY = "idempotent_request_id"  # scope["state"]: the claim the answer is stored under
_DONE_KEY = "idempotent_request_done"  # set when the route stored its answer in its own transaction

RETRY_ADVICE = (
    "Every state-changing request accepts an `Idempotency-Key` header (any unique string up to 200 "
    "characters, e.g. a UUID made when the action starts). If an answer is lost (timeout, dropped "
    "connection, 502/503/504), send the same request with the same key: you get the first answer again, "
    "same status and body, and nothing is applied twice. A key reused with a different body is refused (422); "
    "a retry that arrives while the first request is still running gets 409 with Retry-After.")


@dataclass
class Idempotency:
    """The caller's key (None when the request has none) and the stored claim it holds."""

    key: str | None = None
    record_id: int | None = None

    def answer(self, request: Request, session: Session, status: int, content: Any) -> JSONResponse:
        """The route's JSON answer, stored under the key in `session`'s transaction (commit it with the row)."""
        response = JSONResponse(jsonable_encoder(content), status_code=status)
        if self.record_id is not None:
            record = session.get(IdempotentRequest, self.record_id, with_for_update=True)
            if record is not None and record.status is not None:
                # A copy of this request that took over the key finished first: its row stands, this
                # transaction is abandoned, and the caller gets that first answer.
                first = Replay(record)
                session.rollback()
                raise first
            if record is not None:
                _finish(record, response.status_code, response.media_type, response.body.decode())
                session.add(record)
                setattr(request.state, _DONE_KEY, True)
        return response


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# The headers of an answer that tell the client where to go or what to redraw: a replayed redirect without its
# Location (or an htmx answer without its retarget) leaves a resent form on a blank page.
STEERING_HEADERS = ("location", "hx-redirect", "hx-location", "hx-refresh", "hx-retarget", "hx-reswap",
                    "hx-trigger")


def _finish(record: IdempotentRequest, status: int, content_type: str | None, body: str,
            headers: dict[str, str] | None = None) -> None:
    record.status, record.content_type, record.body, record.locked_until = status, content_type, body, None
    steering = {name: value for name, value in (headers or {}).items() if name in STEERING_HEADERS}
    record.headers = json.dumps(steering) if steering else None


class Replay(Exception):
    """Raised by the dependency when a retry's answer is stored: the handler sends that answer again."""

    def __init__(self, record: IdempotentRequest) -> None:
        self.status, self.content_type, self.body = record.status, record.content_type, record.body
        self.headers: dict[str, str] = json.loads(record.headers) if record.headers else {}


def _claim(engine: Engine, user_id: int, method: str, path: str, key: str, digest: str) -> int:
    """Take the key for this request, or raise what a retry should hear instead."""
    now = datetime.now(UTC)
    where = (IdempotentRequest.user_id == user_id, IdempotentRequest.method == method,
             IdempotentRequest.path == path, IdempotentRequest.key == key)
    for _ in range(2):  # a concurrent first use of the same key wins the insert; then read what it wrote
        with write_session(engine) as s:
            record = s.exec(select(IdempotentRequest).where(*where).with_for_update()).first()
            if record is None:
                record = IdempotentRequest(user_id=user_id, method=method, path=path, key=key,
                                           request_digest=digest, created_at=now, locked_until=now + CLAIM_FOR)
                s.add(record)
                try:
                    s.commit()
                except IntegrityError:
                    s.rollback()
                    continue
                return record.id
            if record.request_digest != digest:
                raise HTTPException(422, f"this {HEADER} was already used for a different request; "
                                         "use a new key for a new request")
            if record.status is not None:
                raise Replay(record)
            if record.locked_until is not None and record.locked_until > now:
                raise HTTPException(409, f"a request with this {HEADER} is still being processed; "
                                         "retry in a moment to get its answer", headers={"Retry-After": "1"})
            record.locked_until = now + CLAIM_FOR  # the first attempt died mid-way: this one carries it on
            s.add(record)
            s.commit()
            return record.id
    raise HTTPException(409, f"a request with this {HEADER} is still being processed; retry in a moment",
                        headers={"Retry-After": "1"})


async def claim_idempotency(
        request: Request, user: CurrentUser,
        key: Annotated[str | None, Header(alias=HEADER, min_length=1, max_length=200,
                                          description=RETRY_ADVICE)] = None) -> Idempotency:
    """Dependency of every API route (given to each API router in `main`); runs after the caller is
    authenticated. Reads (GET) have nothing to repeat and ignore the key."""
    if key is None or request.method in ("GET", "HEAD", "OPTIONS"):
        return Idempotency()
    return Idempotency(key=key, record_id=await _hold(request, user.id, key))


IdempotencyDep = Annotated[Idempotency, Depends(claim_idempotency)]


async def claim_form_key(request: Request, user_id: int, key: str | None) -> None:
    """A page's form sent with its form key (drawn into the form when it is shown): held and answered like an API
    request's Idempotency-Key, so a double click or a resend after a lost answer gets the first answer again and
    acts once. For actions that are not a workflow Update (whose key is the Update id). Call `request.body()`
    before `request.form()` so the body is kept to compare a resend with."""
    if key is not None:
        await _hold(request, user_id, key)


async def _hold(request: Request, user_id: int, key: str) -> int:
    """Take `key` for this request (or raise what a retry should hear); `StoreAnswers` keeps the answer under it."""
    digest = _digest(await request.body())
    record_id = await run_in_threadpool(_claim, request.app.state.engine, user_id, request.method,
                                        request.url.path, key, digest)
    setattr(request.state, _STATE_KEY, record_id)
    return record_id


def replay(_request: Request, exc: Replay) -> Response:
    return Response(exc.body or "", status_code=exc.status, media_type=exc.content_type,
                    headers={**exc.headers, "Idempotent-Replayed": "true"})


def _store(engine: Engine, record_id: int, status: int, headers: dict[str, str], body: str,
           final: bool) -> None:
    with write_session(engine) as s:
        record = s.get(IdempotentRequest, record_id)
        if record is None or record.status is not None:
            return
        if final:
            _finish(record, status, headers.get("content-type"), body, headers)
        else:
            record.locked_until = None  # not an answer to keep: let a retry run again at once
        s.add(record)
        s.commit()


class StoreAnswers:
    """Stores the answer of every request that claimed a key, once the route has produced it.

    Answers are kept unless they ask the client to come back (5xx: it may or may not have been applied,
    and the retry finds out; or any answer with Retry-After).
    """

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        held: list[Message] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            if self._to_store(scope):
                held.append(message)  # the client hears the answer only once a retry would find it
            else:
                await send(message)

        await self.app(scope, receive, capture)
        # Stored once the route is all done and its database session closed (a session can hold SQLite's write
        # lock until then), and before the answer goes out: a client that resends the moment it has its answer
        # (or after losing it) gets the same answer, never a 409 "still being processed".
        await self._keep(scope, start, b"".join(chunks))
        for message in held:
            await send(message)

    @staticmethod
    def _to_store(scope: Scope) -> bool:
        state = scope.get("state") or {}
        return state.get(_STATE_KEY) is not None and not state.get(_DONE_KEY)

    async def _keep(self, scope: Scope, start: Message | None, body: bytes) -> None:
        if not self._to_store(scope) or start is None:
            return
        record_id = scope["state"][_STATE_KEY]
        headers = {k.decode().lower(): v.decode() for k, v in start.get("headers", [])}
        status = start["status"]
        final = status < 500 and "retry-after" not in headers
        try:
            await run_in_threadpool(_store, self.engine, record_id, status, headers,
                                    body.decode("utf-8", "replace"), final)
        except Exception:  # the answer still goes out; a retry then runs again, safely (Update ids)
            log.exception("could not store the answer for idempotent request %s", record_id)


def forget_old_answers(engine: Engine, keep: timedelta, batch: int = 5000) -> int:
    """Delete stored answers older than `keep`, a batch at a time (clients retry within minutes, not days)."""
    cutoff = datetime.now(UTC) - keep
    with write_session(engine) as s:
        ids = s.exec(select(IdempotentRequest.id).where(IdempotentRequest.created_at < cutoff)
                     .order_by(IdempotentRequest.created_at).limit(batch)).all()
        if ids:
            s.connection().execute(delete(IdempotentRequest).where(IdempotentRequest.id.in_(ids)))
        s.commit()
        return len(ids)
