"""The office's event endpoints page, /admin/events: which systems hear about changes, and how delivery goes.

Every action calls the same service functions as /api/event-endpoints (`visitflow.services.changes`) and answers
with the endpoint's card as it is now, or the form with the problem beside its field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from visitflow.db.tables import EVENT_TYPES, EventEndpoint, EventEndpointCreate, EventEndpointUpdate, User
from visitflow.deps import RowId, SessionDep, TemporalDep, WriteSessionDep, let_go
from visitflow.models import Role
from visitflow.services.changes import (
    add_endpoint,
    change_endpoint,
    endpoint_deliveries,
    get_endpoint,
    list_endpoints,
    request_key_of,
    send_test_event,
)
from visitflow.services.errors import ServiceError
from visitflow.services.users import field_problems
from visitflow.ui.deps import get_ui, render, role_page
from visitflow.ui.forms import FORM, FormState, read_form

router = APIRouter(include_in_schema=False)
AdminPage = Annotated[User, role_page(Role.admin)]
RECENT = 10  # deliveries shown on each endpoint's card
EVENT_TYPE_WORDS = {"change.recorded": "Each change recorded (who, when, before → after)",
                    "change.visit_outcome": "What a change did to each open visit (held, cleared, units, dollars)",
                    "endpoint.test": "Test event"}
DELIVERY_WORDS = {"pending": "Sending…", "delivered": "Delivered", "given_up": "Given up"}
WORDS = {"EVENT_TYPES": EVENT_TYPES, "EVENT_TYPE_WORDS": EVENT_TYPE_WORDS, "DELIVERY_WORDS": DELIVERY_WORDS}


def _card(session: Session, endpoint: EventEndpoint, **extra: Any) -> dict[str, Any]:
    return {**WORDS, "ep": endpoint, "deliveries": endpoint_deliveries(session, endpoint.id, RECENT), **extra}


def _card_response(request: Request, session: Session, endpoint_id: int, status: int = 200, **extra: Any) -> Response:
    session.rollback()  # read the endpoint as the action left it
    return render(request, "_event_endpoint.html", _card(session, get_endpoint(session, endpoint_id), **extra),
                  status=status)


@router.get("/admin/events")
def events_page(request: Request, session: SessionDep, admin: AdminPage) -> Response:
    cards = [_card(session, e) for e in list_endpoints(session)]
    return render(request, "events.html", {**WORDS, "cards": cards, "f": FormState(values={
        "event_types": list(EVENT_TYPES)})})


@router.post("/admin/events")
async def add(request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    form = await request.form()
    f = read_form(form, ["url", "description", "secret"])
    chosen = [str(t) for t in form.getlist("event_types")]
    f.values["event_types"] = chosen
    try:
        added = add_endpoint(session, EventEndpointCreate(
            url=f.v("url").strip(), description=f.v("description").strip(), secret=f.v("secret").strip() or None,
            event_types=chosen), admin.username, request_key_of(admin.id, f.key))
        session.commit()
    except ValidationError as err:
        f.errors = field_problems(err)
    except ServiceError as err:
        f.errors[err.field or FORM] = err.message
    f.values["secret"] = ""  # never sent back into the page
    if f.errors:
        session.rollback()
        return render(request, "_form_endpoint_add.html", {**WORDS, "f": f}, status=422)
    endpoint = get_endpoint(session, added.id)
    return render(request, "_form_endpoint_add.html", {
        **WORDS, "f": FormState(values={"event_types": list(EVENT_TYPES)}), "added": _card(
            session, endpoint, made_secret=added.secret, flash=f"Added {endpoint.url}.")})


@router.post("/admin/events/{endpoint_id}/active")
async def switch(endpoint_id: RowId, request: Request, session: WriteSessionDep, admin: AdminPage) -> Response:
    f = read_form(await request.form(), ["active"])
    on = f.v("active") == "yes"
    change_endpoint(session, endpoint_id, EventEndpointUpdate(active=on))  # no such endpoint: the 404 page
    session.commit()
    return _card_response(request, session, endpoint_id,
                          flash="Switched on: new events are sent to it." if on else
                          "Switched off: nothing more is sent to it, and its retries stop.")


@router.post("/admin/events/{endpoint_id}/test")
async def test(endpoint_id: RowId, request: Request, session: SessionDep, temporal: TemporalDep,
               admin: AdminPage) -> Response:
    f = read_form(await request.form(), [])
    let_go(session)
    try:
        delivery = await send_test_event(request.app.state.engine, temporal, get_ui(request).settings, endpoint_id,
                                         admin.username, request_key_of(admin.id, f.key))
    except ServiceError as err:
        return _card_response(request, session, endpoint_id, err.status if err.status < 500 else 503,
                              test_error=err.message)
    return _card_response(request, session, endpoint_id, flash=f"Test event {delivery.event_id} sent; its delivery "
                                                               "shows below.")


@router.get("/admin/events/{endpoint_id}/deliveries")
def deliveries(endpoint_id: RowId, request: Request, session: SessionDep, admin: AdminPage) -> Response:
    """The card's delivery list again (it refreshes itself while a delivery is still being sent)."""
    return render(request, "_event_deliveries.html", _card(session, get_endpoint(session, endpoint_id)))
