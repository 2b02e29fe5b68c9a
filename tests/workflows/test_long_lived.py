"""A visit held for a year stays light: its history is bounded and everything it knew carries on.

Time skipping runs a year of periodic re-checks in seconds. The visit waits on a missing authorization
(AUTH-01), so every re-check finds the same hold; each fresh run (continue-as-new) carries the punches, the
note, the signature and the timeline, and an action retried across a fresh run is still not applied twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import register_search_attributes, time_skipping_server_binary
from tests.workflows.test_visit_workflow import authorize_around, deliver, in_state, recent, start, until
from visitflow.models import AuthorizationChanged, ExtendDeadline, Reassign, Release, Timers, VisitState
from visitflow.temporal import build_worker
from visitflow.workflows.visit import FRESH_RUN_AFTER_EVENTS, VisitWorkflow


@pytest_asyncio.fixture(scope="module")
async def env(engine) -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own: skipping a year on the shared one would also wake every visit the
    other tests left waiting, a year of their re-checks."""
    async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server_binary(), data_converter=pydantic_data_converter) as own:
        await register_search_attributes(own.client)
        async with build_worker(own.client, "visits-test", engine):
            yield own


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


async def history_length(handle) -> int:
    return len((await handle.fetch_history()).events)


async def test_a_visit_held_for_a_year_keeps_its_history_short(client, agency, env: WorkflowEnvironment, t0):
    # Daily re-checks keep the test quick; the six-hourly default only makes a fresh run come sooner.
    spec = agency.spec(recent(t0), timers=Timers(hold_recheck_every=timedelta(days=1)))
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    held = await until(handle, in_state(VisitState.on_hold))
    assert [h.rule_id for h in held.holds] == ["AUTH-01"]
    first_run = (await handle.describe()).run_id

    started = time.monotonic()
    for week in range(53):  # a week at a time (short calls to the test server), looking at the history monthly
        await env.sleep(timedelta(days=7))
        if week % 4 == 3:
            assert await history_length(client.get_workflow_handle(handle.id)) < FRESH_RUN_AFTER_EVENTS + 100
    print(f"a simulated year of daily re-checks took {time.monotonic() - started:.1f} s")

    current = client.get_workflow_handle(handle.id)
    described = await current.describe()
    assert described.run_id != first_run, "the visit never went on in a fresh run"
    snap = await current.query(VisitWorkflow.snapshot)
    assert snap.state == VisitState.on_hold and [h.rule_id for h in snap.holds] == ["AUTH-01"]
    assert [p.kind.value for p in snap.punches] == ["clock_in", "clock_out"]
    assert snap.note is not None and snap.signature is not None
    kinds = [e.kind for e in snap.timeline]
    assert kinds[0] == "scheduled" and kinds.count("hold") == 1  # re-checks that found nothing new wrote nothing

    # The authorization arrives after a year: the visit moves on in its current run and is released once.
    auth = authorize_around(agency, spec)
    await current.signal(VisitWorkflow.authorization_changed,
                         AuthorizationChanged(authorization_id=auth.id, change="added", at=datetime.now(UTC)))
    await until(current, in_state(VisitState.claim_ready))
    released = await current.execute_update(VisitWorkflow.release, Release(actor=agency.actor("biller"),
                                                                           batch_id="year"), id="release")
    assert released.state == VisitState.released and released.release_batch_id == "year"


async def test_an_action_taken_before_a_fresh_run_is_not_applied_again_after_it(client, agency, env, t0):
    spec = agency.spec(t0 + timedelta(days=400), timers=Timers(hold_recheck_every=timedelta(days=1)))
    handle = await start(client, spec)
    first_run = handle.result_run_id
    first = await handle.execute_update(VisitWorkflow.reassign, Reassign(
        actor=agency.actor("supervisor"), clinician_id=agency.other_clinician.id, reason="Devon moved"),
        id="reassign-once")
    assert first.spec.clinician_id == agency.other_clinician.id
    # Many small actions (each an Update and a projection) make the history long enough for a fresh run.
    for n in range(FRESH_RUN_AFTER_EVENTS // 8):
        await handle.execute_update(VisitWorkflow.extend_deadline, ExtendDeadline(
            actor=agency.actor("supervisor"), stage="note", reason=f"extension {n}",
            new_deadline=spec.scheduled_end + timedelta(days=2, minutes=n)))
    current = client.get_workflow_handle(handle.id)
    assert (await current.describe()).run_id != first_run, "the visit never went on in a fresh run"
    with pytest.raises(WorkflowUpdateFailedError) as refused:  # the same Update id, after the fresh run
        await current.execute_update(VisitWorkflow.reassign, Reassign(
            actor=agency.actor("supervisor"), clinician_id=agency.clinician.id, reason="Devon moved"),
            id="reassign-once")
    assert "already taken" in str(refused.value.cause)
    snap = await current.query(VisitWorkflow.snapshot)
    assert snap.spec.clinician_id == agency.other_clinician.id
    assert [e.kind for e in snap.timeline].count("reassigned") == 1
    await current.terminate("test finished")
