"""Physician orders against the real Temporal test server (time skipping) and the real database: the signature
chase (ORD-03), visits held until an order covers them and is signed (ORD-01, ORD-02), and the ordered frequency
(AUTH-03) re-checked when the order changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

from tests.conftest import Agency
from tests.workflows.test_visit_workflow import deliver, in_state, recent, start, until
from visitflow.db.session import write_session
from visitflow.db.tables import Notification, Payer, PhysicianOrder, PhysicianOrderCreate, PhysicianOrderUpdate
from visitflow.models import Discipline, OrderOutcome, VisitState
from visitflow.services import orders
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.order import order_workflow_id

NPI = "1234567893"  # passes the Luhn check with the 80840 prefix


def settings(**over) -> Settings:
    return Settings(task_queue="visits-test", order_reminder_every=over.pop("every", timedelta(days=7)),
                    order_escalate_after=over.pop("escalate", timedelta(days=21)), **over)


def require_orders(agency: Agency, signed_before_billing: bool = True) -> None:
    with write_session(agency.engine) as s:
        payer = s.get(Payer, agency.payer.id)
        payer.orders_required = [Discipline.PCA]
        payer.signed_orders_before_billing = signed_before_billing
        s.add(payer)
        s.commit()


async def enter_order(client, agency: Agency, cfg: Settings, sent_on, frequencies=("PCA 3W4",),
                      effective_from=None) -> int:
    with write_session(agency.engine) as s:
        order = orders.new_order(s, PhysicianOrderCreate(
            kind="plan_of_care", patient_id=agency.patient.id, practitioner_npi=NPI,
            practitioner_name="Dr. Rivera", frequencies=list(frequencies),
            effective_from=effective_from or sent_on - timedelta(days=10),
            effective_to=sent_on + timedelta(days=50), sent_on=sent_on), agency.actor("admin"))
        s.commit()
        order_id = order.id
        await orders.after_order_stored(s, client, cfg, order, "order entered")
    return order_id


def chase_id(engine, order_id: int) -> str:
    with Session(engine) as s:
        return order_workflow_id(order_id, s.get(PhysicianOrder, order_id).created_at)


def notices(engine, order_id: int) -> list[tuple[str, str]]:
    with Session(engine) as s:
        rows = s.exec(select(Notification).where(Notification.visit_id == f"order-{order_id}")
                      .order_by(Notification.id)).all()
        return [(n.kind, n.role.value) for n in rows]


async def test_unsigned_order_is_reminded_then_escalated_and_signing_stops_the_chase(
        env: WorkflowEnvironment, client, agency, engine, t0):
    cfg = settings(every=timedelta(days=7), escalate=timedelta(days=10))
    order_id = await enter_order(client, agency, cfg, t0.date())
    handle = client.get_workflow_handle(chase_id(engine, order_id), result_type=OrderOutcome)
    sent_at = datetime.combine(t0.date(), datetime.min.time(), UTC)

    await env.sleep(sent_at + timedelta(days=7, hours=1) - t0)
    assert notices(engine, order_id) == [("order_reminder", "admin")]
    await env.sleep(timedelta(days=3))  # day 10: escalated to a supervisor once
    assert notices(engine, order_id) == [("order_reminder", "admin"), ("order_escalation", "supervisor")]
    await env.sleep(timedelta(days=4))  # day 14: the second reminder
    assert notices(engine, order_id)[-1] == ("order_reminder", "admin")
    with Session(engine) as s:
        row = s.get(PhysicianOrder, order_id)
        assert row.reminders_sent == 2 and row.escalated_at is not None

    outcome = await orders.sign_order(engine, client, cfg, order_id, t0.date() + timedelta(days=12), "DOC-77",
                                      agency.actor("admin"), idempotency_key="sign-1")
    assert outcome.status == "signed" and outcome.by == agency.actor("admin").username
    # The same request again (same key) gets the first outcome; a new one is told it is signed already.
    again = await orders.sign_order(engine, client, cfg, order_id, t0.date() + timedelta(days=12), "DOC-77",
                                    agency.actor("admin"), idempotency_key="sign-1")
    assert again == outcome
    with pytest.raises(ServiceError) as info:
        await orders.sign_order(engine, client, cfg, order_id, t0.date(), None, agency.actor("admin"))
    assert info.value.status == 409 and "already signed" in info.value.message
    result = await handle.result()
    assert result.status == "signed"
    before = notices(engine, order_id)
    await env.sleep(timedelta(days=30))
    assert notices(engine, order_id) == before  # signed: no more reminders
    with Session(engine) as s:
        row = s.get(PhysicianOrder, order_id)
        assert (row.status, row.signed_on, row.document_ref) == ("signed", t0.date() + timedelta(days=12), "DOC-77")


async def test_signature_and_return_are_checked(client, agency, engine, t0):
    cfg = settings()
    order_id = await enter_order(client, agency, cfg, t0.date())
    with pytest.raises(ServiceError) as info:
        await orders.sign_order(engine, client, cfg, order_id, t0.date() - timedelta(days=1), None,
                                agency.actor("admin"))
    assert info.value.status == 422 and info.value.field == "signed_on" and "before the order was sent" in str(
        info.value.message)
    with pytest.raises(ServiceError) as info:
        await orders.sign_order(engine, client, cfg, order_id, t0.date(), None, agency.actor("supervisor"))
    assert info.value.status == 403
    with pytest.raises(ServiceError) as info:
        await orders.return_order(engine, client, cfg, order_id, "  ", agency.actor("admin"))
    assert info.value.status == 422 and info.value.field == "reason"
    outcome = await orders.return_order(engine, client, cfg, order_id, "wrong frequency", agency.actor("admin"))
    assert outcome.status == "returned"
    with Session(engine) as s:
        assert s.get(PhysicianOrder, order_id).returned_reason == "wrong frequency"


async def test_a_visit_waits_for_its_order_and_moves_on_when_it_is_signed(client, agency, engine, t0):
    require_orders(agency)
    cfg = settings()
    spec = agency.spec(recent(t0))
    agency.authorize(spec.scheduled_start.date() - timedelta(days=30), spec.scheduled_start.date()
                     + timedelta(days=30), units_per_week=100)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    snap = await until(handle, lambda s: s.state == VisitState.on_hold)
    assert [h.rule_id for h in snap.holds] == ["ORD-01"]
    assert "no physician order covers this PCA visit" in snap.holds[0].message

    order_id = await enter_order(client, agency, cfg, t0.date() - timedelta(days=2))
    snap = await until(handle, lambda s: [h.rule_id for h in s.holds] == ["ORD-02"])
    assert f"#{order_id}" in snap.holds[0].message and snap.holds[0].key == f"ORD-02:order-{order_id}"

    # The workflow shows the hold a moment before its projection has written it: the office's list reads the latter.
    for _ in range(200):
        with Session(engine) as s:
            pending = [p for p in orders.pending_orders(s, t0.date()) if p.order.id == order_id]
        if pending[0].visits_waiting:
            break
        await asyncio.sleep(0.05)
    assert pending[0].visits_waiting == 1 and pending[0].dollars_waiting_cents == 8 * 600
    assert pending[0].age_days == 2

    signed_on = t0.astimezone(ZoneInfo(cfg.agency_timezone)).date()  # the agency's today, not UTC's
    await orders.sign_order(engine, client, cfg, order_id, signed_on, None, agency.actor("admin"))
    await until(handle, in_state(VisitState.claim_ready))


async def test_a_frequency_change_rechecks_the_visits_it_touches(client, agency, engine, t0):
    require_orders(agency, signed_before_billing=False)
    cfg = settings()
    first_day = recent(t0, hours_ago=30)
    agency.authorize(first_day.date() - timedelta(days=30), first_day.date() + timedelta(days=30),
                     units_per_week=100)
    order_id = await enter_order(client, agency, cfg, t0.date(), frequencies=["PCA 1W4"],
                                 effective_from=first_day.date() - timedelta(days=1))
    one, two = agency.spec(first_day), agency.spec(first_day + timedelta(hours=24))
    handles = [await start(client, one), await start(client, two)]
    for handle, spec in zip(handles, (one, two), strict=True):
        await deliver(handle, agency, spec)
    await until(handles[0], in_state(VisitState.claim_ready))
    snap = await until(handles[1], lambda s: [h.rule_id for h in s.holds] == ["AUTH-03"])
    assert "visit 2 of order week 1" in snap.holds[0].message and "allows 1 PCA visit" in snap.holds[0].message

    with write_session(engine) as s:
        order, before = orders.change_order(s, order_id, PhysicianOrderUpdate(frequencies=["PCA 1W4, PRN 1"]),
                                            agency.actor("admin"))
        s.commit()
        rechecked = await orders.after_order_stored(s, client, cfg, order, "order changed", before)
    assert two.visit_id in rechecked
    await until(handles[1], in_state(VisitState.claim_ready))  # the PRN visit takes the extra visit
    await until(handles[0], in_state(VisitState.claim_ready))
    await client.get_workflow_handle(chase_id(engine, order_id)).terminate("test finished")


async def test_an_order_whose_chase_never_started_is_chased_when_the_worker_starts(client, agency, engine, t0):
    """The API stored the order and died before starting its OrderWorkflow: the worker's start-up finds it."""
    cfg = settings()
    with write_session(engine) as s:
        s.expire_on_commit = False
        order = orders.new_order(s, PhysicianOrderCreate(
            kind="interim", patient_id=agency.patient.id, practitioner_npi=NPI, practitioner_name="Dr. Rivera",
            frequencies=["PCA 2W2"], effective_from=t0.date(), sent_on=t0.date()), agency.actor("admin"))
        s.commit()
    assert await orders.resume_order_chases(engine, client, cfg, older_than=timedelta(0)) >= 1
    handle = client.get_workflow_handle(order_workflow_id(order.id, order.created_at), result_type=OrderOutcome)
    first = await handle.describe()
    assert first.status.name == "RUNNING"
    # Started again (a second worker starting), it is the same chase, not a second one.
    await orders.resume_order_chases(engine, client, cfg, older_than=timedelta(0))
    assert (await handle.describe()).run_id == first.run_id
    await orders.return_order(engine, client, cfg, order.id, "not our patient", agency.actor("admin"))
    assert (await handle.result()).status == "returned"
