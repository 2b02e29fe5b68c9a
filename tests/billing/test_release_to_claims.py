"""A release becomes claims and checked 837P files, exactly once, whatever is retried, raced or killed."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from visitflow.db.tables import Claim, ClaimFile, ClaimLine


async def test_one_visit_released_becomes_a_claim_in_a_valid_837p(api, billable, t0, engine):
    agency = billable
    day = (t0 - timedelta(hours=3)).date()
    auth = agency.authorize(day - timedelta(days=7), day + timedelta(days=7), units_per_week=500)
    visit_id = await claim_ready_visit(api, agency, t0 - timedelta(hours=3))
    r = await api.post("/api/releases", json={"visit_ids": [visit_id]},
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
    assert r.status_code == 200, r.text
    outcome = r.json()
    assert outcome["released"] == [visit_id]
    assert len(outcome["claims"]) == 1 and outcome["claims"][0]["state"] == "created"
    assert len(outcome["files"]) == 1 and outcome["files"][0]["valid"], outcome["files"]
    with Session(engine) as s:
        claim = s.get(Claim, outcome["claims"][0]["id"])
        line = s.exec(select(ClaimLine).where(ClaimLine.claim_id == claim.id)).one()
        file = s.get(ClaimFile, claim.claim_file_id)
    assert line.visit_id == visit_id and line.live and line.authorization_number == auth.auth_number
    assert claim.total_cents == line.charge_cents == line.units * agency.payer.rate_per_unit_cents
    assert f"REF*6R*{visit_id}~" in file.content and f"REF*G1*{auth.auth_number}~" in file.content
    assert f"CLM*{claim.control_number}*" in file.content and "NM1*82*1*" in file.content
    # The biller finds the claim, reads it, downloads the file and marks it submitted.
    biller = as_user(agency, "biller")
    listed = (await api.get("/api/claims", params={"patient": agency.patient.id}, headers=biller)).json()
    assert [c["id"] for c in listed["items"]] == [claim.id] and listed["next_after"] is None
    detail = (await api.get(f"/api/claims/{claim.id}", headers=biller)).json()
    assert [line["visit_id"] for line in detail["line_items"]] == [visit_id]
    assert detail["line_items"][0]["visit_state"] == "released"
    assert [(e["from_state"], e["to_state"]) for e in detail["history"]] == [(None, "created")]
    assert detail["segments"][0].startswith("HL*2*1*22") and any(s.startswith("SV1*HC:T1019") for s in
                                                                   detail["segments"])
    download = await api.get(f"/api/claim-files/{file.id}/download", headers=biller)
    assert download.status_code == 200 and download.text == file.content
    assert download.headers["content-type"].startswith("text/plain")
    assert f'filename="837P-{file.interchange_control_number:09d}.txt"' in download.headers["content-disposition"]
    key = f"k-{uuid.uuid4().hex}"
    submitted = await api.post(f"/api/claim-files/{file.id}/submitted", headers=as_user(agency, "biller", key))
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["submitted_by"] == agency.users["biller"].username
    again = await api.post(f"/api/claim-files/{file.id}/submitted", headers=as_user(agency, "biller", key))
    assert again.json() == submitted.json() and again.headers.get("idempotent-replayed") == "true"
    twice = await api.post(f"/api/claim-files/{file.id}/submitted", headers=biller)
    assert twice.status_code == 409 and "already marked submitted" in twice.json()["detail"]
    accepted = await api.post(f"/api/claims/{claim.id}/state", json={"state": "accepted", "note": "277CA A1"},
                              headers=biller)
    assert accepted.status_code == 200, accepted.text
    assert [(e["from_state"], e["to_state"], e["actor"]) for e in accepted.json()["history"]] == [
        (None, "created", agency.users["biller"].username),
        ("created", "submitted", agency.users["biller"].username),
        ("submitted", "accepted", agency.users["biller"].username)]
    paid = await api.post(f"/api/claims/{claim.id}/state", json={"state": "paid"}, headers=biller)
    assert paid.status_code == 422 and "835" in paid.json()["detail"]
    clinician = await api.get("/api/claims", headers=as_user(agency, "clinician"))
    assert clinician.status_code == 403
