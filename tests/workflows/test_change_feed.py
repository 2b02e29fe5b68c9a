"""CHG-01 in the workflows: a change id in a signal gets the visit's outcome written against it; event deliveries
retry with backoff for as long as the receiver is down (time skipped), then deliver once or give up in words."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from tests.receiver import Receiver, receivers  # noqa: F401 (a fixture)
from tests.workflows.test_visit_workflow import authorize_around, deliver, in_state, recent, record, start, until
from visitflow.db.session import write_session
from visitflow.db.tables import Authorization, ChangeVisit, EventDelivery, EventEndpoint
from visitflow.models import AuthorizationChanged, EventDeliveryRequest, VisitState
from visitflow.services.changes import event_body, event_id_of, event_of, record_change
from visitflow.workflows.events import EventDeliveryWorkflow, delivery_workflow_id
from visitflow.workflows.visit import VisitWorkflow


def outcome_of(engine, change_id: int, visit_id: str) -> ChangeVisit | None:
    with Session(engine) as s:
        return s.get(ChangeVisit, (change_id, visit_id))


async def test_a_signalled_change_gets_the_visits_outcome_with_the_dollars(client, agency, engine, t0):
    spec = agency.spec(recent(t0))
    auth = authorize_around(agency, spec, units_per_week=100)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    await until(handle, in_state(VisitState.claim_ready))
    with write_session(engine) as s:
        row = s.get(Authorization, auth.id)
        row.units_per_week = 2
        s.add(row)
        change = record_change(s, actor="olivia", kind="authorization_changed", subject=f"authorization {auth.id}",
                               summary="cut", fields=[{"field": "units_per_week", "before": 100, "after": 2}],
                               patient_id=agency.patient.id, payer_id=agency.payer.id)
        s.commit()
        change_id = change.id
    await handle.signal(VisitWorkflow.authorization_changed, AuthorizationChanged(
        authorization_id=auth.id, change="changed (units_per_week=2)", at=datetime.now(UTC), change_id=change_id))
    snap = await until(handle, in_state(VisitState.on_hold))
    assert any(f"(change #{change_id})" in e.detail for e in snap.timeline)
    for _ in range(100):
        found = outcome_of(engine, change_id, spec.visit_id)
        if found is not None:
            break
        await asyncio.sleep(0.05)
    assert found.outcome == "held" and (found.state_before, found.state_after) == ("claim_ready", "on_hold")
    assert found.units_before == 8 and found.cents_before == 8 * agency.payer.rate_per_unit_cents
    assert "AUTH-02" in found.detail
    await record(handle, "change_feed_held")


def _endpoint(engine, url: str, secret: str) -> int:
    with write_session(engine) as s:
        endpoint = EventEndpoint(url=url, secret=secret, created_at=datetime.now(UTC), created_by="test",
                                 active=False)  # inactive for record_change: this test starts its own delivery
        s.add(endpoint)
        s.commit()
        s.refresh(endpoint)
        endpoint_id = endpoint.id
    return endpoint_id


async def _delivery(client, engine, endpoint_id: int):
    with write_session(engine) as s:
        endpoint = s.get(EventEndpoint, endpoint_id)
        change = record_change(s, actor="olivia", kind="payer_changed", subject="payer 1", summary="renamed",
                               fields=[{"field": "name", "before": "A", "after": "B"}], endpoint_ids=[endpoint_id])
        endpoint.active = True
        s.add(endpoint)
        s.commit()
        event = event_of(change)
    handle = await client.start_workflow(
        EventDeliveryWorkflow.run,
        EventDeliveryRequest(endpoint_id=endpoint_id, event_id=event["event_id"], body=event_body(event)),
        id=delivery_workflow_id(endpoint_id, event["event_id"]), task_queue="visits-test")
    return handle, change.id


def delivery_row(engine, endpoint_id: int, change_id: int) -> EventDelivery:
    with Session(engine) as s:
        return s.get(EventDelivery, (endpoint_id, event_id_of(change_id)))


async def test_a_receiver_down_for_minutes_gets_the_event_once_when_it_is_back(client, engine, receivers):
    receiver = Receiver("a-long-enough-secret", fail_first=7)  # 2+4+8+...+128 s of backoff: over four minutes
    endpoint_id = _endpoint(engine, await receivers(receiver), receiver.secret)
    handle, change_id = await _delivery(client, engine, endpoint_id)
    assert await handle.result() == "delivered"  # the test server skips the backoff timers
    assert receiver.attempts == [f"chg_{change_id}"] * 8 and len(receiver.accepted) == 1
    row = delivery_row(engine, endpoint_id, change_id)
    assert (row.state, row.attempts, row.last_status) == ("delivered", 7, 200)
    history = await handle.fetch_history()
    started = history.events[0].event_time.ToDatetime()
    assert history.events[-1].event_time.ToDatetime() - started >= timedelta(minutes=4)


async def test_a_receiver_that_never_answers_well_is_given_up_after_three_days(client, engine, receivers):
    receiver = Receiver("a-long-enough-secret", fail_first=10**9)
    endpoint_id = _endpoint(engine, await receivers(receiver), receiver.secret)
    handle, change_id = await _delivery(client, engine, endpoint_id)
    assert await handle.result() == "given_up"
    row = delivery_row(engine, endpoint_id, change_id)
    assert row.state == "given_up" and row.delivered_at is None and row.last_status == 503
    assert 400 <= len(receiver.attempts) <= 460 and receiver.accepted == []  # every 10 minutes, for three days


async def test_a_switched_off_endpoint_stops_its_retries(client, engine, receivers):
    receiver = Receiver("a-long-enough-secret", fail_first=10**9)
    endpoint_id = _endpoint(engine, await receivers(receiver), receiver.secret)
    handle, change_id = await _delivery(client, engine, endpoint_id)
    while len(receiver.attempts) < 2:
        await asyncio.sleep(0.05)
    with write_session(engine) as s:
        s.get(EventEndpoint, endpoint_id).active = False
        s.commit()
    assert await handle.result() == "given_up"
    assert "switched off" in delivery_row(engine, endpoint_id, change_id).last_error
    with Session(engine) as s:
        assert s.exec(select(EventDelivery).where(EventDelivery.change_id == change_id)).one().state == "given_up"
