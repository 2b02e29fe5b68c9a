"""Orders pending signature, for the office: how old each is, whose signature it waits for, and the visits (and
dollars) waiting on it; the office records the signature or the return here (ORD-02, ORD-03). Supervisors read."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from visitflow.db.tables import User
from visitflow.deps import MAX_ROW_ID, SessionDep, TemporalDep, let_go
from visitflow.models import Role
from visitflow.services import orders
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import get_ui, render, role_page

router = APIRouter(include_in_schema=False)

OfficeReader = Annotated[User, role_page(Role.admin, Role.supervisor)]
Office = Annotated[User, role_page(Role.admin)]
PAGE = 50


@router.get("/orders")
def orders_page(request: Request, session: SessionDep, user: OfficeReader,
                after: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}:\d{1,10}$")] = None) -> Response:
    cursor = None
    if after:
        day, order_id = after.split(":")
        try:
            cursor = (date.fromisoformat(day), int(order_id))
        except ValueError:
            raise HTTPException(422, "That page of orders does not exist.") from None
    settings = get_ui(request).settings
    rows = orders.pending_orders(session, orders.agency_today(settings), PAGE + 1, cursor)
    more = rows[PAGE - 1].order if len(rows) > PAGE else None
    return render(request, "orders.html", {
        "rows": rows[:PAGE], "kinds": orders.ORDER_KINDS, "can_act": user.role == Role.admin, "first": after is None,
        "next_after": f"{more.sent_on.isoformat()}:{more.id}" if more else None,
        "today": orders.agency_today(settings)})


def _order_id(order_id: int) -> int:
    if not 1 <= order_id <= MAX_ROW_ID:
        raise HTTPException(404, f"There is no order {order_id}.")
    return order_id


async def _answer(request: Request, order_id: int, call) -> Response:
    try:
        outcome = await call
    except ServiceError as err:
        return render(request, "_order_outcome.html", {"order_id": order_id, "error": err.message}, status=err.status
                      if err.status < 500 else 503)
    return render(request, "_order_outcome.html", {"order_id": order_id, "outcome": outcome})


@router.post("/orders/{order_id}/sign")
async def sign(order_id: int, request: Request, session: SessionDep, temporal: TemporalDep,
               user: Office) -> Response:
    order_id = _order_id(order_id)
    form = await request.form()
    let_go(session)
    try:
        signed_on = date.fromisoformat(str(form.get("signed_on", "")))
    except ValueError:
        return render(request, "_order_outcome.html",
                      {"order_id": order_id, "error": "Give the date the practitioner signed (YYYY-MM-DD)."},
                      status=422)
    ref = str(form.get("document_ref", "")).strip()[:120] or None
    return await _answer(request, order_id, orders.sign_order(
        request.app.state.engine, temporal, get_ui(request).settings, order_id, signed_on, ref, actor_of(user),
        idempotency_key=str(form.get("idempotency_key") or "") or None))


@router.post("/orders/{order_id}/return")
async def return_(order_id: int, request: Request, session: SessionDep, temporal: TemporalDep,
                  user: Office) -> Response:
    order_id = _order_id(order_id)
    form = await request.form()
    let_go(session)
    return await _answer(request, order_id, orders.return_order(
        request.app.state.engine, temporal, get_ui(request).settings, order_id, str(form.get("reason", ""))[:1000],
        actor_of(user), idempotency_key=str(form.get("idempotency_key") or "") or None))
