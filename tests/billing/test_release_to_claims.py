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
