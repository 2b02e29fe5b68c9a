"""From claim-ready to paid, through the API: one visit paid; another denied, fixed by its clinician, rebilled on a
replacement claim (frequency 7) and paid."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from visitflow.db.session import write_session
from visitflow.db.tables import Claim, ClaimAgingDay, ClaimFile, ClaimLine, DenialMonth
from visitflow.services.revenue import rebuild_revenue_rollups, revenue_at_risk


async def release(api, agency, visit_ids: list[str]) -> dict:
    r = await api.post("/api/releases", json={"visit_ids": visit_ids},
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
    assert r.status_code == 200, r.text
    return r.json()


async def submit(api, agency, file_id: int) -> None:
    r = await api.post(f"/api/claim-files/{file_id}/submitted", headers=as_user(agency, "biller"))
    assert r.status_code == 200, r.text


async def import_835(api, agency, text: str) -> dict:
    r = await api.post("/api/remittances", content=text,
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}") | {"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    return r.json()


async def visit_state(api, agency, visit_id: str, wanted: str) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        got = (await api.get(f"/api/visits/{visit_id}", headers=as_user(agency, "supervisor"))).json()
        if got["state"] == wanted:
            return got
        assert loop.time() < deadline, f"{visit_id} is {got['state']}, not {wanted}: {got['holds']}"
        await asyncio.sleep(0.05)


def receivables_agree_with_a_rebuild(engine) -> None:
    """Receivables kept by every claim and remittance writer equal a rebuild from the claims."""
    def receivables():
        with Session(engine) as s:
            return sorted((r.day, r.open_cents, r.open_claims) for r in s.exec(select(ClaimAgingDay))
                          if r.open_claims)
    kept = receivables()
    with write_session(engine) as s:
        rebuild_revenue_rollups(s)
        s.commit()
    assert receivables() == kept


async def test_paid_and_denied_then_fixed_replaced_and_paid(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=3)
    day = start.date()
    agency.authorize(day - timedelta(days=7), day + timedelta(days=7), units_per_week=500)
    paid_visit = await claim_ready_visit(api, agency, start)
    denied_visit = await claim_ready_visit(api, agency, start - timedelta(days=1))

    first = await release(api, agency, [paid_visit, denied_visit])
    assert sorted(first["released"]) == sorted([paid_visit, denied_visit]) and first["files"][0]["valid"]
    await submit(api, agency, first["files"][0]["id"])
    with Session(engine) as s:
        line_of = {line.visit_id: line for line in s.exec(select(ClaimLine).where(
            ClaimLine.visit_id.in_([paid_visit, denied_visit])))}
        claim_of = {v: s.get(Claim, line.claim_id) for v, line in line_of.items()}

    # The payer pays one and denies the other for documentation.
    era = write_835([
        ClaimAnswer(claim_of[paid_visit].control_number, "TX-1001", [LineAnswer(
            paid_visit, "T1019", line_of[paid_visit].charge_cents, line_of[paid_visit].charge_cents,
            line_of[paid_visit].units, line_of[paid_visit].service_date)]),
        ClaimAnswer(claim_of[denied_visit].control_number, "TX-1002", [LineAnswer(
            denied_visit, "T1019", line_of[denied_visit].charge_cents, 0, line_of[denied_visit].units,
            line_of[denied_visit].service_date, adjustments=[("CO", "252", line_of[denied_visit].charge_cents)],
            remarks=["N29"])]),
    ], trace=f"EFT-{uuid.uuid4().hex[:8]}")
    outcome = await import_835(api, agency, era)
    assert outcome["returned_to_work"] == [denied_visit]
    biller = as_user(agency, "biller")
    paid = (await api.get(f"/api/claims/{claim_of[paid_visit].id}", headers=biller)).json()
    assert paid["state"] == "paid" and paid["paid_cents"] == line_of[paid_visit].charge_cents
    denied = (await api.get(f"/api/claims/{claim_of[denied_visit].id}", headers=biller)).json()
    assert denied["state"] == "denied" and denied["payer_claim_number"] == "TX-1002"

    # The clinician finds it back in their work with the payer's reason in words, revises and signs again.
    back = await visit_state(api, agency, denied_visit, "documented")
    tasks = (await api.get("/api/tasks", headers=as_user(agency, "clinician"))).json()["tasks"]
    [task] = [t for t in tasks if t["visit_id"] == denied_visit]
    assert task["kind"] == "sign_note" and "documentation or an attachment is needed" in task["title"]
    assert back["timeline"][-1]["kind"] == "claim_denied"
    r = await api.post(f"/api/visits/{denied_visit}/note", headers=as_user(agency, "clinician"), json={
        "fields": {"tasks_performed": "Bathing, dressing, meal preparation", "client_condition": "Stable, alert"}})
    assert r.status_code == 200, r.text
    r = await api.post(f"/api/visits/{denied_visit}/signature", headers=as_user(agency, "clinician"),
                       json={"attestation": True})
    assert r.status_code == 200, r.text
    await visit_state(api, agency, denied_visit, "claim_ready")

    # Released again: a replacement claim (7) naming the payer's number, in a valid file.
    second = await release(api, agency, [denied_visit])
    assert second["released"] == [denied_visit] and second["files"][0]["valid"], second["files"]
    [replacement] = second["claims"]
    with Session(engine) as s:
        new = s.get(Claim, replacement["id"])
        old = s.get(Claim, claim_of[denied_visit].id)
        assert (new.frequency, new.replaces_claim_id, old.state) == ("7", old.id, "replaced")
        [live] = s.exec(select(ClaimLine).where(ClaimLine.visit_id == denied_visit, ClaimLine.live)).all()
        assert live.claim_id == new.id
        content = s.get(ClaimFile, new.claim_file_id).content
    assert f"CLM*{new.control_number}*" in content and ":7*" in content and "REF*F8*TX-1002~" in content

    await submit(api, agency, second["files"][0]["id"])
    outcome = await import_835(api, agency, write_835([ClaimAnswer(new.control_number, "TX-2001", [LineAnswer(
        denied_visit, "T1019", live.charge_cents, live.charge_cents, live.units, live.service_date)])],
        trace=f"EFT-{uuid.uuid4().hex[:8]}"))
    assert outcome["remittance"]["lines_paid"] == 1 and outcome["returned_to_work"] == []
    rebilled = (await api.get(f"/api/claims/{new.id}", headers=biller)).json()
    assert rebilled["state"] == "paid" and [e["to_state"] for e in rebilled["history"]] == [
        "created", "submitted", "paid"]

    # The money rollups moved with each claim and remittance, and agree with a rebuild from scratch.
    def rollups():
        with Session(engine) as s:
            return (sorted((r.day, r.open_cents, r.open_claims) for r in s.exec(select(ClaimAgingDay))
                           if r.open_claims),
                    sorted((r.month, r.code, r.cents, r.lines) for r in s.exec(select(DenialMonth))))
    kept = rollups()
    with Session(engine) as s:
        money = revenue_at_risk(s, datetime.now(UTC), datetime.now(ZoneInfo("America/Chicago")).date())
    assert money.denied_cents >= line_of[denied_visit].charge_cents
    assert any(d.code == "CO-252" and "documentation" in d.words for d in money.denied)
    with write_session(engine) as s:
        rebuild_revenue_rollups(s)
        s.commit()
    assert rollups() == kept


async def test_a_claim_billed_in_error_is_voided_once(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=5)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    paid_visit = await claim_ready_visit(api, agency, start)
    unsent_visit = await claim_ready_visit(api, agency, start - timedelta(days=2))
    outcome = await release(api, agency, [paid_visit])
    [claim] = outcome["claims"]
    await submit(api, agency, outcome["files"][0]["id"])
    with Session(engine) as s:
        line = s.exec(select(ClaimLine).where(ClaimLine.visit_id == paid_visit)).one()
    await import_835(api, agency, write_835([ClaimAnswer(claim["control_number"], "TX-3001", [LineAnswer(
        paid_visit, "T1019", line.charge_cents, line.charge_cents, line.units, line.service_date)])],
        trace=f"EFT-{uuid.uuid4().hex[:8]}"))

    biller = as_user(agency, "biller")
    nothing = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": " "}, headers=biller)
    assert nothing.status_code == 422 and "say why" in nothing.json()["detail"]
    voided = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "billed to the wrong payer"},
                            headers=biller)
    assert voided.status_code == 200, voided.text
    body = voided.json()
    assert body["claim"]["state"] == "voided" and body["void"]["files"][0]["valid"], body["void"]
    [void] = body["void"]["claims"]
    with Session(engine) as s:
        row = s.get(Claim, void["id"])
        content = s.get(ClaimFile, row.claim_file_id).content
        assert (row.frequency, row.replaces_claim_id) == ("8", claim["id"])
        assert s.exec(select(ClaimLine).where(ClaimLine.visit_id == paid_visit, ClaimLine.live)).all() == []
    assert f"CLM*{row.control_number}*" in content and ":8*" in content and "REF*F8*TX-3001~" in content
    again = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "billed to the wrong payer"},
                           headers=biller)
    assert again.status_code == 200 and again.json()["void"]["claims"] == body["void"]["claims"]

    # A claim the payer never saw is simply marked voided: no void claim, no file.
    unsent = await release(api, agency, [unsent_visit])
    [made] = unsent["claims"]
    quiet = await api.post(f"/api/claims/{made['id']}/void", json={"reason": "visit did not happen"}, headers=biller)
    assert quiet.status_code == 200 and quiet.json()["void"] is None and quiet.json()["claim"]["state"] == "voided"

    # Receivables kept by every writer still agree with a rebuild from the claims (a void is never a receivable).
    receivables_agree_with_a_rebuild(engine)
