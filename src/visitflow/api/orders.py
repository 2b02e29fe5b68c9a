"""Physician orders: enter, change, record the signature or the return, and the office's list of orders pending
signature (ORD-01..03, AUTH-03). Entered and signed by the office (admins); supervisors may read."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sqlmodel import select

from visitflow.api.idempotency import IdempotencyDep
from visitflow.db.tables import (
    PhysicianOrder,
    PhysicianOrderCreate,
    PhysicianOrderPublic,
    PhysicianOrderUpdate,
    User,
)
from visitflow.deps import (
    MAX_ROW_ID,
    AdminUser,
    RowId,
    SessionDep,
    SettingsDep,
    TemporalDep,
    WriteSessionDep,
    let_go,
    require_role,
)
from visitflow.models import OrderOutcome, Role
from visitflow.services import orders
from visitflow.services.commands import actor_of

router = APIRouter(prefix="/api", tags=["orders"])

OfficeReader = Annotated[User, require_role(Role.admin, Role.supervisor)]


class OrderChanged(PhysicianOrderPublic):
    rechecked_visits: list[str] = []


class SignatureBody(BaseModel):
    signed_on: date = Field(description="the date the practitioner signed, as written on the order")
    document_ref: str | None = Field(default=None, max_length=120,
                                     description="where the signed copy is filed (document system id)")


class ReturnBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000, description="why the practitioner sent it back unsigned")


class PendingOrderPublic(BaseModel):
    order: PhysicianOrderPublic
    patient_name: str
    age_days: int
    visits_waiting: int
    dollars_waiting_cents: int


class PendingPage(BaseModel):
    items: list[PendingOrderPublic]
    next_after: str | None = Field(description="pass as `after` for the next page; none when this is the last")


@router.post("/orders", response_model=OrderChanged, status_code=status.HTTP_201_CREATED)
async def create_order(body: PhysicianOrderCreate, request: Request, session: WriteSessionDep,
                       temporal: TemporalDep, settings: SettingsDep, user: AdminUser, idempotency: IdempotencyDep):
    """Enter an order sent for signature: its chase starts (ORD-03) and the open visits it covers re-check."""
    order = orders.new_order(session, body, actor_of(user))
    change = orders.record_order_change(session, user.username, order, None)  # CHG-01
    public = PhysicianOrderPublic.model_validate(order)
    # The answer to a retry is stored with the row: created once, whatever dies when.
    answer = idempotency.answer(request, session, status.HTTP_201_CREATED, OrderChanged(**public.model_dump()))
    session.commit()
    await orders.after_order_stored(session, temporal, settings, order, "order entered",
                                    change_id=change.id if change else None)
    return answer


@router.get("/orders", response_model=list[PhysicianOrderPublic])
def list_orders(session: SessionDep, _user: OfficeReader,
                patient: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                status_: Annotated[str | None, Query(alias="status", pattern="^(sent|signed|returned)$")] = None,
                after: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0, limit: int = Query(100, ge=1, le=500)):
    """Orders by id (keyset: pass the last id as `after`), of one patient or status when asked."""
    query = select(PhysicianOrder).where(PhysicianOrder.id > after)
    if patient is not None:
        query = query.where(PhysicianOrder.patient_id == patient)
    if status_ is not None:
        query = query.where(PhysicianOrder.status == status_)
    return session.exec(query.order_by(PhysicianOrder.id).limit(limit)).all()


@router.get("/orders/pending", response_model=PendingPage)
def pending(session: SessionDep, settings: SettingsDep, _user: OfficeReader,
            after: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}:\d{1,10}$",
                                               description="`next_after` of the page before")] = None,
            limit: int = Query(50, ge=1, le=200)):
    """Orders pending signature, oldest first: age, practitioner, and the visits (and dollars) waiting on each."""
    cursor = None
    if after is not None:
        day, order_id = after.split(":")
        try:
            cursor = (date.fromisoformat(day), int(order_id))
        except ValueError:
            raise HTTPException(422, f"after={after!r} is not a page cursor (use next_after)") from None
    rows = orders.pending_orders(session, orders.agency_today(settings), limit, cursor)
    items = [PendingOrderPublic(order=PhysicianOrderPublic.model_validate(r.order), patient_name=r.patient_name,
                                age_days=r.age_days, visits_waiting=r.visits_waiting,
                                dollars_waiting_cents=r.dollars_waiting_cents) for r in rows]
    last = rows[-1].order if len(rows) == limit else None
    return PendingPage(items=items, next_after=f"{last.sent_on.isoformat()}:{last.id}" if last else None)


@router.get("/orders/{order_id}", response_model=PhysicianOrderPublic)
def get_order(order_id: RowId, session: SessionDep, _user: OfficeReader):
    order = session.get(PhysicianOrder, order_id)
    if order is None:
        raise HTTPException(404, f"order {order_id} not found")
    return order


@router.patch("/orders/{order_id}", response_model=OrderChanged)
async def change_order(order_id: RowId, body: PhysicianOrderUpdate, session: WriteSessionDep,
                       temporal: TemporalDep, settings: SettingsDep, user: AdminUser):
    """Change an order (a new frequency, a new end date): every open visit it touches checks its gates again."""
    order, rechecked = await orders.change_order_rechecking(session, temporal, settings, order_id, body,
                                                           actor_of(user))
    return OrderChanged(**PhysicianOrderPublic.model_validate(order).model_dump(), rechecked_visits=rechecked)


@router.post("/orders/{order_id}/signature", response_model=OrderOutcome)
async def sign_order(order_id: RowId, body: SignatureBody, request: Request, session: SessionDep,
                     temporal: TemporalDep, settings: SettingsDep, user: AdminUser, idempotency: IdempotencyDep):
    """Record the practitioner's signature: the chase ends and the visits waiting on the order move on."""
    let_go(session)
    return await orders.sign_order(request.app.state.engine, temporal, settings, order_id, body.signed_on,
                                   body.document_ref, actor_of(user), idempotency.key)


@router.post("/orders/{order_id}/return", response_model=OrderOutcome)
async def return_order(order_id: RowId, body: ReturnBody, request: Request, session: SessionDep,
                       temporal: TemporalDep, settings: SettingsDep, user: AdminUser, idempotency: IdempotencyDep):
    """The practitioner sent the order back unsigned: it no longer covers visits; they re-check."""
    let_go(session)
    return await orders.return_order(request.app.state.engine, temporal, settings, order_id, body.reason,
                                     actor_of(user), idempotency.key)
