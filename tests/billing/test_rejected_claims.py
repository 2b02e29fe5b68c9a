"""No claim is a dead end: a claim the payer never had (not sent yet, or rejected by the 999 / 277CA) that is voided
sends its visits back to billing, once."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_claims_to_cash import release, submit, visit_state
from tests.billing.test_held_and_voided_claims import receivables_agree_with_a_rebuild, same_day_pair
from visitflow.db.tables import ClaimFile


async def rejected_claim(api, agency, visit_id: str) -> dict:
    """Released, its file marked submitted, and refused by the 999 / 277CA."""
    outcome = await release(api, agency, [visit_id])
    [claim], [file] = outcome["claims"], outcome["files"]
    assert file["valid"], file["findings"]
    await submit(api, agency, file["id"])
    r = await api.post(f"/api/claims/{claim['id']}/state", json={"state": "rejected", "note": "277CA: bad member id"},
                       headers=as_user(agency, "biller"))
    assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
    return claim | {"file_id": file["id"]}


def backs(visit: dict) -> int:
    return sum(1 for e in visit["timeline"] if e["kind"] == "back_to_billing")


async def test_voiding_a_rejected_claim_sends_its_visits_back_once(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=3)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    claim = await rejected_claim(api, agency, visit)

    biller = as_user(agency, "biller")
    voided = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "billed to the wrong payer"},
                            headers=biller)
    assert voided.status_code == 200, voided.text
    assert voided.json()["claim"]["state"] == "voided" and voided.json()["void"] is None
    back = await visit_state(api, agency, visit, "claim_ready")
    assert back["release_batch_id"] is None and backs(back) == 1
    # Resent (a double click, a lost answer): the same answer, and the visit went back once.
    for _ in range(2):
        again = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "billed to the wrong payer"},
                               headers=biller)
        assert again.status_code == 200 and again.json()["claim"]["state"] == "voided"
    assert backs(await visit_state(api, agency, visit, "claim_ready")) == 1
    # The file the payer refused is left as it went out.
    with Session(engine) as s:
        assert s.get(ClaimFile, claim["file_id"]).submitted_at is not None

    # Releasable again: a new claim in a new file, ready to send.
    again = await release(api, agency, [visit])
    assert again["released"] == [visit]
    [new] = again["claims"]
    assert new["state"] == "created" and new["id"] != claim["id"]
    assert again["files"][0]["valid"], again["files"][0]["findings"]
    receivables_agree_with_a_rebuild(engine)


async def test_voiding_a_claim_not_sent_yet_sends_its_visits_back(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=4)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    outcome = await release(api, agency, [visit])
    [claim], [file] = outcome["claims"], outcome["files"]
    assert claim["state"] == "created"

    biller = as_user(agency, "biller")
    for _ in range(2):
        voided = await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "visit did not happen"},
                                headers=biller)
        assert voided.status_code == 200 and voided.json()["claim"]["state"] == "voided", voided.text
    back = await visit_state(api, agency, visit, "claim_ready")
    assert back["release_batch_id"] is None and backs(back) == 1
    # Its file, with no claim left, never goes out (as before).
    sent = await api.post(f"/api/claim-files/{file['id']}/submitted", headers=biller)
    assert sent.status_code == 409 and "voided before it was sent" in sent.json()["detail"]
    assert (await release(api, agency, [visit]))["released"] == [visit]
    receivables_agree_with_a_rebuild(engine)


async def test_voiding_an_unsent_claim_that_took_a_held_claims_visits_sends_back_both(api, billable, t0, engine):
    """The unsent claim carries visits of two releases (CLM-05 put the held claim's visit on it): each goes back."""
    agency = billable
    first_start, second_start = same_day_pair(t0 - timedelta(hours=7))
    agency.authorize(first_start.date() - timedelta(days=7), first_start.date() + timedelta(days=7),
                     units_per_week=500)
    unsent_visit = await claim_ready_visit(api, agency, first_start)
    late_visit = await claim_ready_visit(api, agency, second_start)
    [original] = (await release(api, agency, [unsent_visit]))["claims"]
    [held] = (await release(api, agency, [late_visit]))["claims"]
    biller = as_user(agency, "biller")
    merged = await api.post(f"/api/claims/{held['id']}/bill-on-replacement", headers=biller)
    assert merged.status_code == 200 and merged.json()["billed_on"] == original["id"], merged.text

    voided = await api.post(f"/api/claims/{original['id']}/void", json={"reason": "wrong payer"}, headers=biller)
    assert voided.status_code == 200, voided.text
    for visit in (unsent_visit, late_visit):
        assert backs(await visit_state(api, agency, visit, "claim_ready")) == 1
    again = await release(api, agency, [unsent_visit, late_visit])
    assert sorted(again["released"]) == sorted([unsent_visit, late_visit])
    [new] = again["claims"]
    assert new["state"] == "created" and new["visits"] == 2
