"""Importing an 835: paid lines paid, denials back into work with their reasons, the same file twice changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlmodel import Session, select

from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.workflows.test_denials import released_visit
from tests.workflows.test_visit_workflow import until
from visitflow.claims.remittance import read_835
from visitflow.db.session import write_session
from visitflow.db.tables import Claim, ClaimEvent, ClaimLine, ReleaseBatch, Remittance, RemittanceLine
from visitflow.models import VisitState
from visitflow.services.remittances import import_835
from visitflow.services.revenue import claim_moved
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow

SETTINGS = Settings(task_queue="visits-test")


def claim_for(engine, agency, visit_ids: list[str], spec, state: str = "submitted") -> Claim:
    """The claim the release made for these visits (written here as the release writes it)."""
    now = datetime.now(UTC)
    number = "VF" + uuid.uuid4().hex[:10].upper()
    with write_session(engine) as s:
        s.expire_on_commit = False
        batch = ReleaseBatch(id=f"b-{number}", created_by="biller", created_at=now, visit_ids=visit_ids,
                             completed_at=now)
        s.add(batch)
        s.flush()
        claim = Claim(control_number=number, release_batch_id=batch.id, payer_id=agency.payer.id,
                      patient_id=agency.patient.id, period_start=spec.scheduled_start.date(),
                      period_end=spec.scheduled_start.date(), state=state, total_cents=4800 * len(visit_ids),
                      created_at=now, created_by="biller", state_changed_at=now)
        s.add(claim)
        s.flush()
        claim_moved(s, claim, None, state)  # as every claim writer does: the receivables rollup sees it
        for n, visit_id in enumerate(visit_ids, 1):
            s.add(ClaimLine(claim_id=claim.id, line_number=n, visit_id=visit_id, patient_id=agency.patient.id,
                            service_date=spec.scheduled_start.date(), hcpcs="T1019", units=8, charge_cents=4800))
        s.commit()
        return claim


async def run_import(engine, client, agency, text: str):
    return await import_835(engine, client, SETTINGS, text, read_835(text), agency.actor("biller"), "remit.835")


async def test_paid_and_denied_lines_and_the_same_file_twice(client, agency, engine, t0):
    paid_handle, paid_spec = await released_visit(client, agency, t0)
    denied_handle, denied_spec = await released_visit(client, agency, t0)
    day = paid_spec.scheduled_start.date()
    paid_claim = claim_for(engine, agency, [paid_spec.visit_id], paid_spec)
    denied_claim = claim_for(engine, agency, [denied_spec.visit_id], denied_spec, state="created")
    text = write_835([
        ClaimAnswer(paid_claim.control_number, "PAY-1", [LineAnswer(
            paid_spec.visit_id, "T1019", 4800, 4400, 8, day, adjustments=[("CO", "45", 400)])]),
        ClaimAnswer(denied_claim.control_number, "PAY-2", [LineAnswer(
            denied_spec.visit_id, "T1019", 4800, 0, 8, day, adjustments=[("CO", "252", 4800)], remarks=["N29"])]),
        ClaimAnswer("NOT-OURS-1", "PAY-3", [LineAnswer("v-unknown", "T1019", 2400, 2400, 4, day)]),
    ], trace=f"EFT-{uuid.uuid4().hex[:8]}")

    outcome = await run_import(engine, client, agency, text)
    assert not outcome.already_imported
    assert outcome.returned_to_work == [denied_spec.visit_id] and outcome.still_to_return == []
    r = outcome.remittance
    assert (r.claims_matched, r.lines_paid, r.lines_denied, r.lines_unmatched) == (2, 1, 1, 1)
    by_outcome = {line.outcome: line for line in outcome.lines}
    assert by_outcome["unmatched"].problem == "no claim NOT-OURS-1 in VisitFlow"
    denied_row = by_outcome["denied"]
    assert denied_row.denial_kind == "documentation" and denied_row.returned_to_work_at is not None
    assert denied_row.reasons == ["CO-252: documentation or an attachment is needed to decide the claim ($48.00)",
                                  "N29: documentation, orders or notes are missing"]

    with Session(engine) as s:
        paid, denied = s.get(Claim, paid_claim.id), s.get(Claim, denied_claim.id)
        # Paid less than billed only by the fee schedule (CO-45): paid, nothing to fix.
        assert (paid.state, paid.paid_cents, paid.payer_claim_number) == ("paid", 4400, "PAY-1")
        assert (denied.state, denied.paid_cents, denied.payer_claim_number) == ("denied", 0, "PAY-2")
        line = s.exec(select(ClaimLine).where(ClaimLine.claim_id == denied.id)).one()
        assert (line.state, line.adjustments, line.live) == ("denied", ["CO-252", "N29"], True)
        # The created claim was evidently sent: the step nobody marked is in its history.
        history = [(e.from_state, e.to_state) for e in s.exec(
            select(ClaimEvent).where(ClaimEvent.claim_id == denied.id).order_by(ClaimEvent.id))]
        assert history == [("created", "submitted"), ("submitted", "denied")]

    # The denied visit is back with its clinician, the payer's words in the task.
    fresh = client.get_workflow_handle_for(VisitWorkflow.run, denied_handle.id)
    snap = await until(fresh, lambda s: s.state == VisitState.documented)
    assert "CO-252" in snap.tasks[0].title and snap.denial.payer_claim_number == "PAY-2"
    assert (await client.get_workflow_handle_for(VisitWorkflow.run, paid_handle.id).query(
        VisitWorkflow.snapshot)).state == VisitState.released

    # The same file again: nothing changes, nothing is sent back twice.
    again = await run_import(engine, client, agency, text)
    assert again.already_imported and again.remittance.id == r.id and again.returned_to_work == []
    with Session(engine) as s:
        assert len(s.exec(select(Remittance).where(Remittance.trace_number == r.trace_number)).all()) == 1
        assert len(s.exec(select(RemittanceLine).where(RemittanceLine.remittance_id == r.id)).all()) == 3
        assert len(s.exec(select(ClaimEvent).where(ClaimEvent.claim_id == denied_claim.id)).all()) == 2
    assert len((await fresh.query(VisitWorkflow.snapshot)).timeline) == len(snap.timeline)


async def test_a_claim_denied_without_lines_denies_each_of_its_visits(client, agency, engine, t0):
    handle, spec = await released_visit(client, agency, t0)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    text = write_835([ClaimAnswer(claim.control_number, "PAY-9", [], status="4",
                                  claim_adjustments=[("CO", "29", 4800)], charge_cents=4800, paid_cents=0)],
                     trace=f"EFT-{uuid.uuid4().hex[:8]}")
    outcome = await run_import(engine, client, agency, text)
    [row] = outcome.lines
    assert (row.outcome, row.denial_kind, row.visit_id) == ("denied", "billing", spec.visit_id)
    assert row.reasons == ["CO-29: the timely filing limit has passed ($48.00)"]
    fresh = client.get_workflow_handle_for(VisitWorkflow.run, handle.id)
    snap = await until(fresh, lambda s: s.state == VisitState.on_hold)
    assert [h.rule_id for h in snap.holds] == ["DEN-01"] and "CO-29" in snap.holds[0].message
