"""CHG-01 over HTTP: what changed and what it did to billing; where change events go; bulk intake."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel

from visitflow.api.idempotency import IdempotencyDep
from visitflow.db.tables import (
    EventDeliveryPublic,
    EventEndpointCreate,
    EventEndpointPublic,
    EventEndpointUpdate,
)
from visitflow.deps import (
    MAX_ROW_ID,
    AdminUser,
    RowId,
    SessionDep,
    SettingsDep,
    StaffUser,
    TemporalDep,
    WriteSessionDep,
    let_go,
)
from visitflow.models import Role, roles_phrase
from visitflow.services import intake
from visitflow.services.changes import (
    ChangeDetail,
    ChangeFilter,
    ChangeVisitOutcome,
    EndpointAdded,
    add_endpoint,
    change_detail,
    change_endpoint,
    change_outcomes,
    deliveries_of,
    endpoint_deliveries,
    get_endpoint,
    list_changes,
    list_endpoints,
    request_key_of,
    send_test_event,
)
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError

router = APIRouter(prefix="/api", tags=["changes"])


class ChangePage(BaseModel):
    items: list[ChangeDetail]
    next_after: int | None  # pass as `after` for the next (older) page; None on the last page


@router.get("/changes", response_model=ChangePage)
def get_changes(
        session: SessionDep, settings: SettingsDep, _user: StaffUser,
        payer: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        patient: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
        since: Annotated[date | None, Query(description="changes on or after this day (the agency's zone)")] = None,
        until: Annotated[date | None, Query(description="... and on or before this day")] = None,
        after: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID, description="next_after of the page before")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50) -> ChangePage:
    """CHG-01: every change that can move money, newest first, with what it did to each open visit it touched."""
    changes = list_changes(session, ChangeFilter(payer_id=payer, patient_id=patient, since=since, until=until,
                                                 before_id=after), limit + 1, settings.agency_timezone)
    more = len(changes) > limit
    changes = changes[:limit]
    outcomes = change_outcomes(session, [c.id for c in changes])
    return ChangePage(items=[ChangeDetail(**c.model_dump(), visits=[ChangeVisitOutcome(**v.model_dump())
                                                                     for v in outcomes[c.id]]) for c in changes],
                      next_after=changes[-1].id if more else None)


class ChangeWithDeliveries(ChangeDetail):
    deliveries: list[EventDeliveryPublic] = []


@router.get("/changes/{change_id}", response_model=ChangeWithDeliveries)
def get_change(change_id: RowId, session: SessionDep, _user: StaffUser) -> ChangeWithDeliveries:
    detail = change_detail(session, change_id)
    return ChangeWithDeliveries(**detail.model_dump(), deliveries=[EventDeliveryPublic.model_validate(d)
                                                                   for d in deliveries_of(session, change_id)])


# --- event endpoints -------------------------------------------------------------------------------


@router.post("/event-endpoints", response_model=EndpointAdded, response_model_exclude_none=True,
             status_code=status.HTTP_201_CREATED)
def create_event_endpoint(body: EventEndpointCreate, request: Request, session: WriteSessionDep, user: AdminUser,
                          idempotency: IdempotencyDep):
    """A system to receive events (README "Change events"): each is POSTed to `url`, signed with `secret` (made
    for you when you send none). `event_types` chooses which (default: all). This answer is the only time the
    secret is shown. Events recorded from now on are sent to it."""
    added = add_endpoint(session, body, user.username, request_key_of(user.id, idempotency.key))
    # The answer to a retry is stored with the row, in one transaction: added once, whatever dies when.
    answer = idempotency.answer(request, session, status.HTTP_201_CREATED,
                                added.model_dump(exclude={"secret"} if added.secret is None else set()))
    session.commit()
    return answer


@router.get("/event-endpoints", response_model=list[EventEndpointPublic])
def list_event_endpoints(session: SessionDep, _user: AdminUser):
    return list_endpoints(session)


@router.patch("/event-endpoints/{endpoint_id}", response_model=EventEndpointPublic)
def change_event_endpoint(endpoint_id: RowId, body: EventEndpointUpdate, session: WriteSessionDep,
                          _user: AdminUser):
    """Change the URL, the secret or the event types, or switch it off (a switched-off endpoint gets nothing more,
    and deliveries still retrying to it stop) or on again."""
    endpoint = change_endpoint(session, endpoint_id, body)
    session.commit()
    session.refresh(endpoint)
    return endpoint


@router.get("/event-endpoints/{endpoint_id}/deliveries", response_model=list[EventDeliveryPublic])
def list_endpoint_deliveries(endpoint_id: RowId, session: SessionDep, _user: AdminUser,
                             limit: Annotated[int, Query(ge=1, le=200)] = 20):
    """Its most recent deliveries, newest first: delivered, pending (retrying) or given up, with the attempts
    and the last error."""
    get_endpoint(session, endpoint_id)
    return endpoint_deliveries(session, endpoint_id, limit)


@router.post("/event-endpoints/{endpoint_id}/test", response_model=EventDeliveryPublic,
             status_code=status.HTTP_202_ACCEPTED)
async def send_endpoint_test(endpoint_id: RowId, session: SessionDep, temporal: TemporalDep, settings: SettingsDep,
                             user: AdminUser, idempotency: IdempotencyDep):
    """Send it an `endpoint.test` event now; the answer is its delivery (follow it on .../deliveries). With the
    same Idempotency-Key, the same event: sent once."""
    let_go(session)
    return await send_test_event(session.get_bind(), temporal, settings, endpoint_id, user.username,
                                 request_key_of(user.id, idempotency.key))


# --- bulk intake -----------------------------------------------------------------------------------

CSV_TYPES = ("text/csv", "application/csv", "text/plain")


async def _rows(request: Request, kind: str) -> list[tuple[int, dict[str, Any]]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if content_type in CSV_TYPES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ServiceError(422, "the file is not UTF-8 text") from None
        return intake.rows_from_csv(text, kind)
    if content_type == "application/json":
        try:
            items = json.loads(raw or b"null")
        except ValueError:
            raise ServiceError(422, "the body is not JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ServiceError(422, "send a JSON list of rows (objects)")
        return intake.rows_from_json(items)
    raise ServiceError(415, "send text/csv (a file with a header line) or application/json (a list of rows)")


@router.post("/bulk/authorizations", response_model=intake.IntakeResult,
             openapi_extra={"requestBody": {"content": {"text/csv": {}, "application/json": {}}}})
async def bulk_authorizations(request: Request, session: SessionDep, temporal: TemporalDep, settings: SettingsDep,
                              user: AdminUser) -> intake.IntakeResult:
    """Authorizations from another system, by its ids (`source_id`): all rows apply, or none (422 with every
    problem by line and field). The same file again changes nothing; a changed row updates its authorization."""
    let_go(session)
    return await intake.import_authorizations(session.get_bind(), temporal, settings,
                                              await _rows(request, "authorizations"), actor_of(user))


@router.post("/bulk/visits", response_model=intake.IntakeResult,
             openapi_extra={"requestBody": {"content": {"text/csv": {}, "application/json": {}}}})
async def bulk_visits(request: Request, session: SessionDep, temporal: TemporalDep, settings: SettingsDep,
                      user: StaffUser) -> intake.IntakeResult:
    """Scheduled visits from another system; `source_id` becomes the visit's id. All rows are checked first; a
    file with any bad row schedules nothing (422 with every problem by line and field)."""
    if user.role not in (Role.admin, Role.supervisor):
        raise HTTPException(403, "only an admin or a supervisor can schedule visits "
                                 f"(you are {roles_phrase([user.role])})")
    let_go(session)
    return await intake.import_visits(session.get_bind(), temporal, settings, await _rows(request, "visits"),
                                      actor_of(user))
