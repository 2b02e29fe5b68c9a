"""Side effects of an order's chase (ORD-03), and the order facts the gates load (ORD-01, ORD-02, AUTH-03).

Activities are safe to repeat: a notice carries a dedupe key, an outcome is written as a state, and a visit
signalled twice only checks its gates twice.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from visitflow.activities.visits import heartbeating
from visitflow.db.session import write_session
from visitflow.db.tables import Clinician, Notification, PhysicianOrder, Visit
from visitflow.models import OPEN_STATES, OrderNotice, OrderOutcome, ReferenceDataChanged, VisitState
from visitflow.rules.facts import OrderedVisit, OrderFacts

# Visits that count against a frequency: every visit that is planned or happened, not one called off.
NOT_COUNTED = ("cancelled", "missed")


def order_facts(order: PhysicianOrder) -> OrderFacts:
    return OrderFacts(id=order.id, kind=order.kind, patient_id=order.patient_id,
                      practitioner_name=order.practitioner_name, effective_from=order.effective_from,
                      effective_to=order.effective_to, frequencies=list(order.frequencies),
                      signed_on=order.signed_on, status=order.status)


def orders_in_effect(session: Session, patient_id: int, day: date) -> list[OrderFacts]:
    """The patient's orders (not returned) in effect on `day`: found by the (patient, effective_from) index."""
    rows = session.exec(select(PhysicianOrder).where(
        PhysicianOrder.patient_id == patient_id, PhysicianOrder.effective_from <= day,
        or_(PhysicianOrder.effective_to.is_(None), PhysicianOrder.effective_to >= day),
        PhysicianOrder.status != "returned").order_by(PhysicianOrder.id)).all()
    return [order_facts(o) for o in rows]


def visits_under(session: Session, patient_id: int, orders: list[OrderFacts]) -> list[OrderedVisit]:
    """The patient's live visits in the dates of `orders`, with their discipline (AUTH-03 counts them)."""
    if not orders:
        return []
    start = min(o.effective_from for o in orders)
    ends = [o.effective_to for o in orders]
    conditions = [Visit.patient_id == patient_id, Visit.service_date >= start, Visit.state.not_in(NOT_COUNTED)]
    if all(e is not None for e in ends):
        conditions.append(Visit.service_date <= max(ends))
    rows = session.exec(select(Visit.id, Clinician.discipline, Visit.service_date, Visit.scheduled_start)
                        .join(Clinician, Clinician.id == Visit.clinician_id).where(*conditions)).all()
    return [OrderedVisit(visit_id=v, discipline=d, service_date=day, scheduled_start=start_at)
            for v, d, day, start_at in rows]


def gated_visits_of_order(session: Session, order: PhysicianOrder | OrderFacts,
                          before: tuple[date, date | None] | None = None) -> list[str]:
    """Open visits past their signature (so checking their gates) in the order's dates, found by the patient index.

    `before` is the order's (effective_from, effective_to) before a change: visits in those dates re-check too.
    """
    waiting = [s.value for s in OPEN_STATES if s not in (VisitState.scheduled, VisitState.documented)]
    spans = [(order.effective_from, order.effective_to)] + ([before] if before else [])
    start = min(f for f, _ in spans)
    end = None if any(t is None for _, t in spans) else max(t for _, t in spans)
    conditions = [Visit.patient_id == order.patient_id, Visit.service_date >= start, Visit.state.in_(waiting)]
    if end is not None:
        conditions.append(Visit.service_date <= end)
    return list(session.exec(select(Visit.id).where(*conditions).order_by(Visit.id)).all())


class OrderActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @activity.defn(name="order_notice")
    @heartbeating
    def order_notice(self, notice: OrderNotice) -> None:
        """A reminder to the office or an escalation to a supervisor, sent once; counted on the order."""
        with write_session(self.engine) as s:
            order = s.exec(select(PhysicianOrder).where(PhysicianOrder.id == notice.order_id)
                           .with_for_update()).first()
            if order is None:
                return  # nothing to chase
            if notice.kind == "order_escalation":
                order.escalated_at = order.escalated_at or notice.at
            else:
                order.reminders_sent = max(order.reminders_sent, notice.number)
            s.add(order)
            s.commit()
        with write_session(self.engine) as s:
            # The inbox is keyed by visit; an order's notices go under "order-<id>" there.
            s.add(Notification(visit_id=f"order-{notice.order_id}", role=notice.role, kind=notice.kind,
                               message=notice.message, created_at=datetime.now(UTC),
                               dedupe_key=f"order-{notice.order_id}:{notice.kind}:{notice.number}"))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()  # sent by an earlier attempt

    @activity.defn(name="record_order_outcome")
    @heartbeating
    def record_order_outcome(self, outcome: OrderOutcome) -> list[str]:
        """Write the signature (or the return) on the order; answer the open visits it touches."""
        with write_session(self.engine) as s:
            order = s.exec(select(PhysicianOrder).where(PhysicianOrder.id == outcome.order_id)
                           .with_for_update()).first()
            if order is None:
                return []
            if order.status != outcome.status:
                order.status = outcome.status
                order.signed_on = outcome.signed_on
                order.signature_recorded_by = outcome.by if outcome.status == "signed" else None
                order.returned_reason = outcome.returned_reason
                if outcome.document_ref:
                    order.document_ref = outcome.document_ref
                order.version += 1
                order.updated_at = datetime.now(UTC)
                s.add(order)
                s.commit()
            return gated_visits_of_order(s, order)

    @activity.defn(name="recheck_order_visits")
    async def recheck_order_visits(self, order_id: int, visit_ids: list[str], change: str) -> int:
        """Signal each visit to check its gates again now (ORD-01, ORD-02, AUTH-03); answers how many were open."""
        from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

        client = activity.client()
        payload = ReferenceDataChanged(what=f"order {order_id}", change=change, at=datetime.now(UTC))
        signalled = 0
        for visit_id in visit_ids:
            try:
                await client.get_workflow_handle(visit_workflow_id(visit_id)).signal(
                    VisitWorkflow.reference_data_changed, payload)
                signalled += 1
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:  # closed since: nothing to re-check
                    raise
        return signalled

    def all(self) -> list:
        return [self.order_notice, self.record_order_outcome, self.recheck_order_visits]
