"""Orders pending signature, for the office: how old each is, whose signature it waits for, and the visits (and
dollars) waiting on it; the office records the signature or the return here (ORD-02, ORD-03). Supervisors read."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import quote_plus

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session

from visitflow.db.session import write_session
from visitflow.db.tables import PhysicianOrder, PhysicianOrderCreate, PhysicianOrderUpdate, User
from visitflow.deps import MAX_ROW_ID, SessionDep, TemporalDep, WriteSessionDep, let_go
from visitflow.models import Role
from visitflow.services import orders
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import get_ui, render, role_page
from visitflow.ui.forms import FormState, read_form

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
    return render(request, "orders.html", {**_page_context(session, request, user, rows[:PAGE], after, more,
                                                            FormState(), request.query_params.get("done", "")),
                                           "ff": FormState()})


def _page_context(session, request: Request, user: User, rows, after, more, f: FormState, done: str = "") -> dict:
    return {"rows": rows, "kinds": orders.ORDER_KINDS, "can_act": user.role == Role.admin, "first": after is None,
            "next_after": f"{more.sent_on.isoformat()}:{more.id}" if more else None,
            "today": orders.agency_today(get_ui(request).settings), "f": f, "done": done[:200]}


ORDER_FIELDS = ["kind", "patient_id", "practitioner_name", "practitioner_npi", "frequencies", "effective_from",
                "effective_to", "sent_on", "document_ref"]


@router.post("/orders")
async def enter(request: Request, session: SessionDep, temporal: TemporalDep, user: Office) -> Response:
    """The office enters an order it sent for signature: its chase starts and the visits it covers re-check."""
    form = await request.form()
    f = read_form(form, ORDER_FIELDS)
    values = {name: f.v(name).strip() for name in ORDER_FIELDS}
    values["frequencies"] = [line.strip() for line in f.v("frequencies").splitlines() if line.strip()]
    for optional in ("effective_to", "document_ref"):
        values[optional] = values[optional] or None
    try:
        body = PhysicianOrderCreate.model_validate(values)
    except ValidationError as err:
        for problem in err.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "form"
            f.errors.setdefault(name if name in ORDER_FIELDS else "form",
                                problem["msg"].removeprefix("Value error, "))
        return _again(request, session, user, f)
    engine = request.app.state.engine
    let_go(session)
    with write_session(engine) as s:
        # The same order entered twice (a double click, a resend) is one order.
        same = orders.same_order(s, body)
        if same is not None:
            return RedirectResponse(f"/orders?done=Order+{same.id}+was+already+entered.", 303)
        try:
            order = orders.new_order(s, body, actor_of(user))
        except ServiceError as err:
            f.errors[err.field if err.field in ORDER_FIELDS else "form"] = err.message
            return _again(request, session, user, f, err.status)
        change = orders.record_order_change(s, user.username, order, None)  # CHG-01
        s.commit()
        order_id, change_id = order.id, change.id if change else None
    with Session(engine) as reader:  # the writer's lock is let go before Temporal is called
        stored = reader.get(PhysicianOrder, order_id)
        await orders.after_order_stored(reader, temporal, get_ui(request).settings, stored, "order entered",
                                        change_id=change_id)
    return RedirectResponse(f"/orders?done=Order+{order_id}+entered%3A+its+signature+is+being+chased.", 303)


@router.post("/orders/frequencies")
async def change_frequencies(request: Request, session: WriteSessionDep, temporal: TemporalDep,
                             user: Office) -> Response:
    """A changed order (the practitioner ordered more or fewer visits): the open visits it touches re-check, and
    the change is recorded (CHG-01), as `PATCH /api/orders/{id}` does."""
    form = await request.form()
    ff = read_form(form, ["order_id", "frequencies"])
    order_id = int(ff.v("order_id").strip()) if ff.v("order_id").strip().isdigit() else None
    if order_id is None or not 1 <= order_id <= MAX_ROW_ID:
        ff.errors["order_id"] = "Give the order's number (the # in the list)."
    lines = [line.strip() for line in ff.v("frequencies").splitlines() if line.strip()]
    if not lines:
        ff.errors["frequencies"] = "Give the order's frequencies, one discipline a line."
    if not ff.errors:
        try:
            order, rechecked = await orders.change_order_rechecking(
                session, temporal, get_ui(request).settings, order_id, PhysicianOrderUpdate(frequencies=lines),
                actor_of(user))
        except ValidationError as err:
            ff.errors["frequencies"] = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        except ServiceError as err:
            ff.errors[err.field if err.field in ("order_id", "frequencies") else "order_id"] = err.message
        else:
            n = len(rechecked)
            return RedirectResponse(f"/orders?done=Order+{order.id}+now+orders+{quote_plus('; '.join(lines))}%3A+"
                                    f"{n}+open+visit{'' if n == 1 else 's'}+checked+again.", 303)
    session.rollback()
    return _again(request, session, user, FormState(), ff=ff)


def _again(request: Request, session, user: User, f: FormState, status: int = 422,
           ff: FormState | None = None) -> Response:
    rows = orders.pending_orders(session, orders.agency_today(get_ui(request).settings), PAGE + 1, None)
    more = rows[PAGE - 1].order if len(rows) > PAGE else None
    return render(request, "orders.html", {**_page_context(session, request, user, rows[:PAGE], None, more, f),
                                           "ff": ff or FormState()}, status=status)


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
