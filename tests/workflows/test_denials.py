"""A payer's denial sends a released visit back into work: a new run of its workflow (same id), exactly once."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHandle

from tests.workflows.test_visit_workflow import (
    authorize_around,
    deliver,
    recent,
    record,
    rejection,
    start,
    until,
)
from visitflow.models import Denial, DenialKind, Release, ResolveHold, SignNote, VisitState
from visitflow.services.commands import reopen_denied_visit
from visitflow.services.errors import ServiceError
from visitflow.workflows.visit import VisitWorkflow


def denial(kind: DenialKind, key: str = "7:v", reasons=("CO-252: documentation is needed",)) -> Denial:
    return Denial(key=key, remittance_id=7, claim_control_number="VF000123", payer_claim_number="PAYER-99",
                  kind=kind, reasons=list(reasons), denied_cents=4800)


async def released_visit(client, agency, t0) -> tuple[WorkflowHandle, object]:
    spec = agency.spec(recent(t0))
    authorize_around(agency, spec, units_per_week=100)
    handle = await start(client, spec)
    await deliver(handle, agency, spec)
    await until(handle, lambda s: s.state == VisitState.claim_ready)
    await handle.execute_update(VisitWorkflow.release, Release(actor=agency.actor("biller"), batch_id="b1"),
                                id="release")
    await handle.result()
    return handle, spec


async def test_documentation_denial_goes_back_to_the_clinician_then_bills_again(client, agency, t0):
    handle, spec = await released_visit(client, agency, t0)
    den = denial(DenialKind.documentation, key=f"7:{spec.visit_id}")

    assert await reopen_denied_visit(client, "visits-test", spec.visit_id, den) is True
    # The same denial again (the 835 imported twice, a retried import) changes nothing.
    assert await reopen_denied_visit(client, "visits-test", spec.visit_id, den) is False

    fresh = client.get_workflow_handle_for(VisitWorkflow.run, handle.id)
    snap = await until(fresh, lambda s: s.state == VisitState.documented)
    assert snap.denial == den and snap.released_at is None and snap.release_batch_id is None
    assert snap.timeline[-1].kind == "claim_denied" and "CO-252" in snap.timeline[-1].detail
    [task] = snap.tasks
    assert task.kind == "sign_note" and "the payer denied the claim: CO-252" in task.title

    # The release that billed the denied claim cannot be replayed into this run; a new release can.
    biller = agency.actor("biller")
    err = await rejection(fresh.execute_update(VisitWorkflow.release, Release(actor=biller, batch_id="b2"),
                                               id="release"))
    assert "not claim_ready" in err.message
    await fresh.execute_update(VisitWorkflow.sign_note, SignNote(actor=agency.actor("clinician"), attestation=True))
    await until(fresh, lambda s: s.state == VisitState.claim_ready)
    again = await fresh.execute_update(VisitWorkflow.release, Release(actor=biller, batch_id="b3"), id="release")
    assert again.release_batch_id == "b3"
    result = await fresh.result()
    assert result.state == VisitState.released and result.denial == den
    await record(fresh, "denied_then_rebilled")
    # Denied once, released twice: the old denial never reopens it again.
    assert await reopen_denied_visit(client, "visits-test", spec.visit_id, den) is False


async def test_billing_denial_holds_for_the_biller_who_clears_it(client, agency, t0):
    handle, spec = await released_visit(client, agency, t0)
    den = denial(DenialKind.billing, key=f"8:{spec.visit_id}", reasons=["CO-197: prior authorization absent"])
    assert await reopen_denied_visit(client, "visits-test", spec.visit_id, den) is True

    fresh = client.get_workflow_handle_for(VisitWorkflow.run, handle.id)
    snap = await until(fresh, lambda s: s.state == VisitState.on_hold)
    [hold] = snap.holds
    assert hold.rule_id == "DEN-01" and hold.role.value == "biller" and "CO-197" in hold.message
    assert [t.kind for t in snap.tasks] == ["resolve_denial"]

    # A supervisor decides exceptions, not denials routed to billing.
    err = await rejection(fresh.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=hold.key, decision="approved", reason="looks fine")))
    assert err.type == "Forbidden"
    await fresh.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("biller"), key=hold.key, decision="approved", reason="authorization number corrected"))
    await until(fresh, lambda s: s.state == VisitState.claim_ready)


async def test_only_a_released_visit_can_come_back_denied(client, agency, t0):
    spec = agency.spec(recent(t0))
    await start(client, spec)
    with pytest.raises(ServiceError) as info:
        await reopen_denied_visit(client, "visits-test", spec.visit_id, denial(DenialKind.billing))
    assert info.value.status == 409 and "not released" in info.value.message
    with pytest.raises(ServiceError) as missing:
        await reopen_denied_visit(client, "visits-test", "no-such-visit", denial(DenialKind.billing))
    assert missing.value.status == 404


async def test_an_evv_denial_is_the_supervisors_to_clear_and_never_rejected(client, agency, t0):
    handle, spec = await released_visit(client, agency, t0)
    den = denial(DenialKind.evv, key=f"9:{spec.visit_id}", reasons=["N699: EVV data does not match"])
    assert await reopen_denied_visit(client, "visits-test", spec.visit_id, den) is True
    fresh = client.get_workflow_handle_for(VisitWorkflow.run, handle.id)
    snap = await until(fresh, lambda s: s.state == VisitState.on_hold)
    [hold] = snap.holds
    assert hold.rule_id == "DEN-01" and hold.role.value == "supervisor"

    err = await rejection(fresh.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("biller"), key=hold.key, decision="approved", reason="fixed")))
    assert err.type == "Forbidden" and "for a supervisor to decide" in err.message
    err = await rejection(fresh.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=hold.key, decision="rejected", reason="no")))
    assert err.type == "Invalid" and "never rejected" in err.message
    await fresh.execute_update(VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key=hold.key, decision="approved", reason="punches corrected"))
    await until(fresh, lambda s: s.state == VisitState.claim_ready)
