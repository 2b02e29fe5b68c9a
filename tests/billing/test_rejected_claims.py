"""No claim is a dead end: a claim the payer never had (not sent yet, or rejected by the 999 / 277CA) that is voided
sends its visits back to billing, once; a rejected claim, fixed, is sent again as the same claim in a new checked
file."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_claims_to_cash import release, submit, visit_state
from tests.billing.test_claims_to_cash import receivables_agree_with_a_rebuild
from tests.billing.test_held_and_voided_claims import same_day_pair
from tests.ui.conftest import sign_in
from visitflow.db.session import write_session
from visitflow.db.tables import Claim, ClaimEvent, ClaimFile, Patient


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


async def test_a_rejected_claim_is_sent_again_once_fixed(api, web, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=5)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    claim = await rejected_claim(api, agency, visit)
    biller = as_user(agency, "biller")

    # Not fixed yet (the patient's diagnoses are gone): the new file is blocked and says why; the claim stays
    # rejected, and the claim page shows the reason.
    with write_session(engine) as s:
        patient = s.get(Patient, agency.patient.id)
        patient.diagnosis_codes = []
        s.add(patient)
        s.commit()
    blocked = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=biller)
    assert blocked.status_code == 409, blocked.text
    assert "stays rejected" in blocked.json()["detail"] and "no diagnosis code" in blocked.json()["detail"]
    with Session(engine) as s:
        row = s.get(Claim, claim["id"])
        resend_file = s.get(ClaimFile, row.claim_file_id)
    assert row.state == "rejected" and resend_file.id != claim["file_id"] and not resend_file.valid
    token = await sign_in(web, agency.users["biller"].username)
    page = await web.post(f"/claims/{claim['id']}/resubmit", headers={"X-CSRF-Token": token})
    assert page.status_code == 409 and "no diagnosis code" in page.text and 'id="resend-error"' in page.text

    # Fixed: sent again, the same claim and control number, an original (frequency 1) in the same new file, valid.
    fixed = await api.patch(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "admin"),
                            json={"diagnosis_codes": ["R26.89"]})
    assert fixed.status_code == 200, fixed.text
    assert "Send again" in (await web.get(f"/claims/{claim['id']}")).text
    key = f"k-{uuid.uuid4().hex}"
    sent = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=as_user(agency, "biller", key))
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["state"] == "created" and body["control_number"] == claim["control_number"]
    assert body["file"]["id"] == resend_file.id and body["file"]["valid"], body["file"]
    assert body["history"][-1]["from_state"] == "rejected" and body["history"][-1]["to_state"] == "created"
    assert body["history"][-1]["actor"] == agency.users["biller"].username
    assert f"file {resend_file.id}" in body["history"][-1]["note"]
    with Session(engine) as s:
        content = s.get(ClaimFile, resend_file.id).content
        old = s.get(ClaimFile, claim["file_id"])
    assert f"CLM*{claim['control_number']}*" in content and ":1*" in content and "REF*F8" not in content
    assert old.submitted_at is not None and old.id != resend_file.id

    # Pressed again (same key, a new key, the page's button): the same claim, nothing more made.
    replayed = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=as_user(agency, "biller", key))
    assert replayed.status_code == 200 and replayed.json() == body
    twice = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=biller)
    assert twice.status_code == 200 and twice.json()["file"]["id"] == resend_file.id
    pressed = await web.post(f"/claims/{claim['id']}/resubmit", headers={"X-CSRF-Token": token})
    assert pressed.status_code == 303 and pressed.headers["location"] == f"/claims/{claim['id']}?done=resent"
    with Session(engine) as s:
        moves = s.exec(select(ClaimEvent).where(ClaimEvent.claim_id == claim["id"],
                                                ClaimEvent.from_state == "rejected",
                                                ClaimEvent.to_state == "created")).all()
    assert len(moves) == 1

    # It goes out like any file: marked submitted, the claim is submitted again.
    await submit(api, agency, resend_file.id)
    with Session(engine) as s:
        assert s.get(Claim, claim["id"]).state == "submitted"
    # Asked again once it is submitted: it was sent again, and the answer is the claim as it is, nothing made.
    other = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=biller)
    assert other.status_code == 200 and other.json()["state"] == "submitted"
    receivables_agree_with_a_rebuild(engine)


async def test_only_a_rejected_claim_is_sent_again(api, billable, t0):
    agency = billable
    start = t0 - timedelta(hours=6)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    [claim] = (await release(api, agency, [visit]))["claims"]
    r = await api.post(f"/api/claims/{claim['id']}/resubmit", headers=as_user(agency, "biller"))
    assert r.status_code == 409 and "is created, not rejected" in r.json()["detail"]
    missing = await api.post("/api/claims/2000000000/resubmit", headers=as_user(agency, "biller"))
    assert missing.status_code == 404


async def test_a_blocked_resend_is_finished_from_its_file_or_voided(api, billable, t0, engine):
    """The new file of a rejected claim is a file like any other: written again from its page once fixed, the claim
    goes with it (a valid file never holds a rejected claim); voided instead, the file never goes out."""
    agency = billable
    start = t0 - timedelta(hours=8)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    first, second = [await claim_ready_visit(api, agency, start - timedelta(days=d)) for d in (0, 1)]
    biller = as_user(agency, "biller")
    claims = [await rejected_claim(api, agency, v) for v in (first, second)]

    def break_patient(codes: list[str]) -> None:
        with write_session(engine) as s:
            patient = s.get(Patient, agency.patient.id)
            patient.diagnosis_codes = codes
            s.add(patient)
            s.commit()

    break_patient([])
    for claim in claims:
        assert (await api.post(f"/api/claims/{claim['id']}/resubmit", headers=biller)).status_code == 409
    with Session(engine) as s:
        files = [s.get(Claim, c["id"]).claim_file_id for c in claims]
    break_patient(["R26.89"])
    rewritten = await api.post(f"/api/claim-files/{files[0]}/rewrite", headers=biller)
    assert rewritten.status_code == 200 and rewritten.json()["valid"], rewritten.text
    [shown] = rewritten.json()["claims"]
    assert shown["state"] == "created"

    voided = await api.post(f"/api/claims/{claims[1]['id']}/void", json={"reason": "wrong payer"}, headers=biller)
    assert voided.status_code == 200, voided.text
    sent = await api.post(f"/api/claim-files/{files[1]}/submitted", headers=biller)
    assert sent.status_code == 409 and "voided before it was sent" in sent.json()["detail"]
    assert backs(await visit_state(api, agency, second, "claim_ready")) == 1
