"""The audit trail: every sign-in (and failed one), every look at a patient or a visit, every action.

One ASGI middleware, the outermost, records each such request once its response is known: who (the user the
auth dependencies put on `request.state.user`; for a sign-in, the name that was typed), what (an action in
plain words, from the route), the visit and patient it concerns, the answer's status, when, and from which
address. Recording never turns an answered request into an error: a failed write is logged, and the answer
stands. Each record is one short INSERT, written after the answer has gone out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import anyio
from sqlalchemy import ColumnElement, insert, inspect
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visitflow.db.session import write_session
from visitflow.db.tables import AuditEvent, User, Visit

log = logging.getLogger("visitflow.audit")

SIGN_IN_PATH = "/signin"
_SIGN_IN_FORM_BYTES = 16_384  # a sign-in form is a few dozen bytes; read no more than this to find the name
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NOT_AUDITED = ("/static/", "/healthz", "/docs", "/redoc", "/openapi.json")
_MAX_ROW_ID = 2_147_483_647
# A page's form that names its patient in the form, not the path, puts the patient's id here on request.state.
PATIENT_STATE = "audit_patient_id"

# Reads that show a patient's information. Every other GET (lists of work, dashboards, polling) is not
# recorded: it would bury the views that matter under page refreshes.
AUDITED_READS: dict[str, str] = {
    "/api/visits/{visit_id}": "viewed_visit",
    "/visits/{visit_id}": "viewed_visit",
    "/api/patients": "listed_patients",
    "/api/patients/{item_id}": "viewed_patient",
    "/api/audit": "searched_audit_trail",  # the trail names patients too; who looked at it is recorded
    "/api/audit.csv": "downloaded_audit_trail",
    "/admin/audit": "searched_audit_trail",
    # Claims name patients, their Medicaid ids and diagnoses: who read one, or took a file away, is recorded.
    "/api/claims/{claim_id}": "viewed_claim",
    "/claims/{claim_id}": "viewed_claim",
    "/api/claim-files/{file_id}/download": "downloaded_claim_file",
    "/claim-files/{file_id}/download": "downloaded_claim_file",
    # A remittance lists the payer's answer for each member's visits.
    "/api/remittances/{remittance_id}": "viewed_remittance",
    "/remittances/{remittance_id}": "viewed_remittance",
}

# Actions in the agency's words, by method and route (tests/api/test_audit.py checks every route has one).
# Should one slip through anyway, it is recorded under its endpoint's name rather than not at all.
ACTIONS: dict[tuple[str, str], str] = {
    ("POST", "/signout"): "signed_out",
    ("POST", "/api/visits"): "scheduled_visit",
    ("POST", "/api/visits/{visit_id}/punches"): "recorded_punch",
    ("POST", "/api/visits/{visit_id}/punches/{seq}/adjustments"): "adjusted_punch",
    ("POST", "/api/visits/{visit_id}/note"): "submitted_note",
    ("POST", "/api/visits/{visit_id}/signature"): "signed_note",
    ("POST", "/api/visits/{visit_id}/exceptions"): "decided_exception",
    ("POST", "/api/visits/{visit_id}/deadline"): "extended_deadline",
    ("POST", "/api/visits/{visit_id}/reassign"): "reassigned_visit",
    ("POST", "/api/visits/{visit_id}/reschedule"): "rescheduled_visit",
    ("POST", "/api/visits/{visit_id}/cancel"): "cancelled_visit",
    ("POST", "/api/visits/{visit_id}/send-back"): "sent_back_visit",
    ("POST", "/api/visits/{visit_id}/missed"): "marked_visit_missed",
    ("PUT", "/api/patients/{item_id}/supervision"): "set_aide_supervision",
    ("POST", "/supervision"): "set_aide_supervision",
    ("POST", "/api/releases"): "released_visits",
    ("POST", "/api/claims/check"): "checked_claim_file",
    ("POST", "/api/claims/{claim_id}/state"): "recorded_claim_answer",
    ("POST", "/claims/{claim_id}/state"): "recorded_claim_answer",
    ("POST", "/api/claims/{claim_id}/void"): "voided_claim",
    ("POST", "/claims/{claim_id}/void"): "voided_claim",
    ("POST", "/api/claims/{claim_id}/bill-on-replacement"): "billed_held_claim_on_replacement",
    ("POST", "/claims/{claim_id}/bill-on-replacement"): "billed_held_claim_on_replacement",
    ("POST", "/api/claims/{claim_id}/resubmit"): "resent_rejected_claim",
    ("POST", "/claims/{claim_id}/resubmit"): "resent_rejected_claim",
    ("POST", "/api/remittances"): "imported_remittance",
    ("POST", "/api/orders"): "entered_order",
    ("POST", "/orders"): "entered_order",
    ("PATCH", "/api/orders/{order_id}"): "changed_order",
    ("POST", "/api/orders/{order_id}/signature"): "recorded_order_signature",
    ("POST", "/orders/{order_id}/sign"): "recorded_order_signature",
    ("POST", "/api/orders/{order_id}/return"): "recorded_order_return",
    ("POST", "/orders/{order_id}/return"): "recorded_order_return",
    ("POST", "/orders/frequencies"): "changed_order",
    ("POST", "/api/event-endpoints"): "added_event_endpoint",
    ("PATCH", "/api/event-endpoints/{endpoint_id}"): "changed_event_endpoint",
    ("POST", "/api/event-endpoints/{endpoint_id}/test"): "sent_test_event",
    ("POST", "/admin/events"): "added_event_endpoint",
    ("POST", "/admin/events/{endpoint_id}/active"): "changed_event_endpoint",
    ("POST", "/admin/events/{endpoint_id}/test"): "sent_test_event",
    ("POST", "/api/bulk/authorizations"): "loaded_authorizations",
    ("POST", "/api/bulk/visits"): "loaded_visits",
    ("POST", "/intake/{kind}"): "loaded_csv",
    ("POST", "/remittances"): "imported_remittance",
    ("POST", "/api/claim-files/{file_id}/submitted"): "marked_claim_file_submitted",
    ("POST", "/claim-files/{file_id}/submitted"): "marked_claim_file_submitted",
    ("POST", "/api/payer-rates"): "added_payer_rate",
    ("POST", "/api/claim-files/{file_id}/rewrite"): "rewrote_claim_file",
    ("POST", "/claim-files/{file_id}/rewrite"): "rewrote_claim_file",
    ("POST", "/api/patients"): "added_patient",
    ("PATCH", "/api/patients/{item_id}"): "changed_patient",
    ("POST", "/api/clinicians"): "added_clinician",
    ("PATCH", "/api/clinicians/{item_id}"): "changed_clinician",
    ("POST", "/api/payers"): "added_payer",
    ("PATCH", "/api/payers/{item_id}"): "changed_payer",
    ("POST", "/api/authorizations"): "added_authorization",
    ("PATCH", "/api/authorizations/{auth_id}"): "changed_authorization",
    ("POST", "/visits/{visit_id}/note"): "submitted_note",
    ("POST", "/visits/{visit_id}/sign"): "signed_note",
    ("POST", "/visits/{visit_id}/punches/add"): "recorded_punch",
    ("POST", "/visits/{visit_id}/punches/adjust"): "adjusted_punch",
    ("POST", "/visits/{visit_id}/decision"): "decided_exception",
    ("POST", "/visits/{visit_id}/deadline"): "extended_deadline",
    ("POST", "/visits/{visit_id}/reassign"): "reassigned_visit",
    ("POST", "/visits/{visit_id}/send-back"): "sent_back_visit",
    ("POST", "/visits/{visit_id}/missed"): "marked_visit_missed",
    ("POST", "/billing/release"): "released_visits",
    ("POST", "/api/users"): "added_user",
    ("PATCH", "/api/users/{user_id}"): "changed_user",
    ("POST", "/api/users/{user_id}/password"): "reset_password",
    ("POST", "/api/users/{user_id}/unlock"): "unlocked_user",
    ("POST", "/api/users/{user_id}/tokens"): "issued_api_token",
    ("DELETE", "/api/users/{user_id}/tokens/{token_id}"): "revoked_api_token",
    ("POST", "/admin/users"): "added_user",
    ("POST", "/admin/users/{user_id}/role"): "changed_user_role",
    ("POST", "/admin/users/{user_id}/active"): "changed_user_active",
    ("POST", "/admin/users/{user_id}/password"): "reset_password",
    ("POST", "/admin/users/{user_id}/unlock"): "unlocked_user",
    ("POST", "/admin/users/{user_id}/tokens"): "issued_api_token",
    ("POST", "/admin/users/{user_id}/tokens/{token_id}/revoke"): "revoked_api_token",
}

SIGN_IN_OUTCOMES = {303: "signed_in", 429: "sign_in_locked"}  # anything else: sign_in_failed


class AuditMiddleware:
    """Records audited requests (see the module's docstring) into `AuditEvent`, after the response."""

    def __init__(self, app: ASGIApp, engine: Engine, behind_proxy: bool = False) -> None:
        self.app = app
        self.engine = engine
        self.behind_proxy = behind_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_NOT_AUDITED):
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})  # so what the route puts on request.state is visible here afterwards
        headers = Headers(scope=scope)
        attempted_username = None
        if scope["method"] == "POST" and scope["path"] == SIGN_IN_PATH:
            attempted_username, receive = await _typed_username(headers, receive)
        status = 500  # unless the app answers: an exception escaping it becomes a 500 further out

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            with anyio.CancelScope(shield=True):  # a client hanging up must not lose the record
                await self.record(scope, headers, status, attempted_username)

    async def record(self, scope: Scope, headers: Headers, status: int, attempted_username: str | None) -> None:
        try:
            event = self.event(scope, headers, status, attempted_username)
            if event is not None:
                await anyio.to_thread.run_sync(self.write, event)
        except Exception:
            log.exception("could not record audit event for %s %s; the request itself was answered",
                          scope["method"], scope["path"])

    def event(self, scope: Scope, headers: Headers, status: int, attempted_username: str | None
              ) -> dict[str, Any] | None:
        """The audit record for this request, or None when it is not audited."""
        method, path = scope["method"], scope["path"]
        route = getattr(scope.get("route"), "path", None)
        if method in _SAFE_METHODS:
            # htmx GETs are partials and polling; the full page they belong to was recorded when it was opened.
            if method != "GET" or route not in AUDITED_READS or headers.get("hx-request") == "true":
                return None
            action = AUDITED_READS[route]
        elif method == "POST" and path == SIGN_IN_PATH:
            action = SIGN_IN_OUTCOMES.get(status, "sign_in_failed")
        elif route is not None:
            action = ACTIONS.get((method, route)) or getattr(scope.get("route"), "name", None) or "unknown_action"
        else:
            action = "unknown_address"  # no such route: worth seeing when someone probes the API
        user_id, username = _who(scope["state"].get("user"))
        params = scope.get("path_params") or {}
        visit_id = params.get("visit_id")
        visit_id = _text(visit_id, 64) if visit_id and len(visit_id) <= 64 else None  # longer: no visit has it
        patient_id = _row_id(params.get("item_id")) if route and route.startswith("/api/patients/") else None
        if patient_id is None:
            patient_id = _row_id(scope["state"].get(PATIENT_STATE))
        return {
            "at": datetime.now(UTC), "user_id": user_id,
            "username": _text(username or attempted_username, 80), "action": action[:40],
            "method": _text(method, 10), "path": _text(path, 500), "status": status, "visit_id": visit_id,
            "patient_id": patient_id, "client_ip": _text(self.client_address(scope, headers), 64),
        }

    def client_address(self, scope: Scope, headers: Headers) -> str | None:
        if self.behind_proxy:
            # Our proxy appends the address it saw; entries before it were sent by the client and prove nothing.
            forwarded = [part.strip() for part in ",".join(headers.getlist("x-forwarded-for")).split(",")]
            if forwarded[-1]:
                return forwarded[-1]
        client = scope.get("client")
        return client[0] if client else None

    def write(self, event: dict[str, Any]) -> None:
        values = dict(event)
        if values["user_id"] is not None and values["username"] is None:
            values["username"] = select(User.username).where(User.id == values["user_id"]).scalar_subquery()
        if values["visit_id"] is not None and values["patient_id"] is None:
            # Whose record was seen or changed, filled in the same statement: the admin searches by patient.
            values["patient_id"] = select(Visit.patient_id).where(Visit.id == values["visit_id"]).scalar_subquery()
        with write_session(self.engine) as session:
            session.exec(insert(AuditEvent).values(**values))
            session.commit()


async def _typed_username(headers: Headers, receive: Receive) -> tuple[str | None, Receive]:
    """The username field of a sign-in form, and a `receive` that hands the app the body unchanged."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None, receive
    chunks: list[bytes] = []
    size, more = 0, True
    while more and size <= _SIGN_IN_FORM_BYTES:
        message = await receive()
        if message["type"] != "http.request":  # the client left; let the app see that too
            return None, _replay(chunks, False, receive, message)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
    username = None
    if not more:
        username = (parse_qs(b"".join(chunks).decode("utf-8", "replace")).get("username") or [None])[0]
    return (username.strip() or None) if username else None, _replay(chunks, more, receive)


def _replay(chunks: list[bytes], more: bool, original: Receive, last: Message | None = None) -> Receive:
    """Hand the app what was already read, as it came off the socket; then the rest of the real stream."""
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]
    if last is not None:
        pending.append(last)

    async def receive() -> Message:
        return pending.pop(0) if pending else await original()

    return receive


def _who(user: User | None) -> tuple[int | None, str | None]:
    """The user's id and, if still loaded, name; never a database call: their session may have ended (and a
    commit or rollback in it expired what was loaded). A missing name is filled in by the INSERT."""
    if user is None:
        return None, None
    state = inspect(user)
    user_id = state.dict.get("id") or (state.identity[0] if state.identity else None)
    return user_id, state.dict.get("username")


def _text(value: Any, limit: int) -> str | None:
    """Text any database column can hold: no NUL, no lone surrogates, cut to the column's length."""
    if value is None:
        return None
    text = str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:limit]


def _row_id(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 1 <= number <= _MAX_ROW_ID else None


# --- the admin's search -------------------------------------------------------------------------


@dataclass
class AuditSearch:
    """What an admin looks for: any combination of who, which patient or visit, what, and when."""

    username: str | None = None
    patient_id: int | None = None
    visit_id: str | None = None
    action: str | None = None
    since: datetime | None = None  # from this moment on
    until: datetime | None = None  # up to, not including, this moment

    def conditions(self) -> list[ColumnElement[bool]]:
        conditions = [column == value for column, value in (
            (AuditEvent.username, self.username), (AuditEvent.patient_id, self.patient_id),
            (AuditEvent.visit_id, self.visit_id), (AuditEvent.action, self.action)) if value is not None]
        if self.since is not None:
            conditions.append(AuditEvent.at >= self.since)
        if self.until is not None:
            conditions.append(AuditEvent.at < self.until)
        return conditions


def search(session: Session, wanted: AuditSearch, limit: int, before: int | None = None) -> list[AuditEvent]:
    """Newest first, `limit` at most, older than event `before` when given (keyset paging: no COUNT, no OFFSET)."""
    query = select(AuditEvent).where(*wanted.conditions())
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return list(session.exec(query.order_by(AuditEvent.id.desc()).limit(limit)).all())


def every_match(engine: Engine, wanted: AuditSearch, before: int | None = None, batch: int = 500
                ) -> Iterator[AuditEvent]:
    """All matching events, newest first, a batch per short transaction (for an export of any size)."""
    while True:
        with Session(engine) as session:
            rows = search(session, wanted, batch, before)
        yield from rows
        if len(rows) < batch:
            return
        before = rows[-1].id
