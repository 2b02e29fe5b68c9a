"""Claims that must not be dead ends (issue 8): a claim held for CLM-05 is billed on the claim that already bills
its days, or voided with its visits back in billing; a voided claim's unsent file never goes out; a visit shows
its claims; the claims list counts lines; the 999 / 277CA answer is read whatever its capitals."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_claims_to_cash import (
    import_835,
    receivables_agree_with_a_rebuild,
    release,
    submit,
    visit_state,
)
from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.ui.conftest import sign_in
from visitflow.db.tables import Claim, ClaimFile, ClaimLine, RemittanceLine

CHICAGO = ZoneInfo("America/Chicago")


def same_day_pair(start: datetime) -> tuple[datetime, datetime]:
    """Two starts half an hour apart on one date of service in the agency's day (tests run at any hour)."""
    earlier = start - timedelta(minutes=30)
    if earlier.astimezone(CHICAGO).date() == start.astimezone(CHICAGO).date():
        return start, earlier
    return start, start + timedelta(minutes=30)


def line_of(engine, visit_id: str) -> ClaimLine:
    with Session(engine) as s:
        return s.exec(select(ClaimLine).where(ClaimLine.visit_id == visit_id, ClaimLine.live)).one()


async def pay(api, agency, engine, claim: dict, visit_id: str, payer_number: str) -> None:
    line = line_of(engine, visit_id)
    await import_835(api, agency, write_835([ClaimAnswer(claim["control_number"], payer_number, [LineAnswer(
        visit_id, "T1019", line.charge_cents, line.charge_cents, line.units, line.service_date)])],
        trace=f"EFT-{uuid.uuid4().hex[:8]}"))


async def test_a_held_claim_is_billed_on_a_replacement_of_the_paid_claim(api, web, billable, t0, engine):
    agency = billable
    first_start, second_start = same_day_pair(t0 - timedelta(hours=3))
    agency.authorize(first_start.date() - timedelta(days=7), first_start.date() + timedelta(days=7),
                     units_per_week=500)
    paid_visit = await claim_ready_visit(api, agency, first_start)
    late_visit = await claim_ready_visit(api, agency, second_start)
    first = await release(api, agency, [paid_visit])
    [original] = first["claims"]
    await submit(api, agency, first["files"][0]["id"])
    await pay(api, agency, engine, original, paid_visit, "TX-8001")

    # The same day's service, released later: held (CLM-05), and releasing it again changes nothing.
    second = await release(api, agency, [late_visit])
    [held] = second["claims"]
    assert held["state"] == "held" and second["files"] == []
    again = await release(api, agency, [late_visit])
    assert [a["visit_id"] for a in again["already_released"]] == [late_visit]

    biller = as_user(agency, "biller", f"k-{uuid.uuid4().hex}")
    r = await api.post(f"/api/claims/{held['id']}/bill-on-replacement", headers=biller)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["claim"]["state"] == "replaced"
    [replacement] = body["replacement"]["claims"]
    assert body["billed_on"] == replacement["id"] and replacement["visits"] == 2
    [file] = body["replacement"]["files"]
    assert file["valid"], file["findings"]
    with Session(engine) as s:
        new = s.get(Claim, replacement["id"])
        assert (new.frequency, new.replaces_claim_id) == ("7", original["id"])
        assert s.get(Claim, original["id"]).state == "replaced"
        content = s.get(ClaimFile, new.claim_file_id).content
        assert {line.claim_id for line in s.exec(select(ClaimLine).where(
            ClaimLine.visit_id.in_([paid_visit, late_visit]), ClaimLine.live))} == {new.id}
    assert f"CLM*{new.control_number}*" in content and ":7*" in content and "REF*F8*TX-8001~" in content
    assert f"REF*6R*{paid_visit}~" in content and f"REF*6R*{late_visit}~" in content

    # Pressed again (a resend, a second tab): the same answer, nothing more made.
    twice = await api.post(f"/api/claims/{held['id']}/bill-on-replacement", headers=as_user(agency, "biller"))
    assert twice.status_code == 200 and twice.json()["replacement"]["claims"] == body["replacement"]["claims"]
    # The original is replaced: voiding it says which claim to void instead.
    void_old = await api.post(f"/api/claims/{original['id']}/void", json={"reason": "wrong payer"},
                              headers=as_user(agency, "biller"))
    assert void_old.status_code == 409 and f"replaced by claim {new.control_number}" in void_old.json()["detail"]
    assert "void that one instead" in void_old.json()["detail"]
    paid_claim = await api.post(f"/api/claims/{new.id}/bill-on-replacement", headers=as_user(agency, "biller"))
    assert paid_claim.status_code == 409 and "not held" in paid_claim.json()["detail"]

    # The visit shows its claims: the held one it left, the replacement that bills it now.
    seen = (await api.get(f"/api/visits/{late_visit}", headers=as_user(agency, "biller"))).json()
    assert [(c["claim_id"], c["claim_state"], c["live"]) for c in seen["claims"]] == [
        (held["id"], "replaced", False), (new.id, "created", True)]
    await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/claims/{held['id']}")
    assert page.status_code == 200 and "Bill on a replacement" not in page.text
    listed = (await api.get("/api/claims", params={"patient": agency.patient.id},
                            headers=as_user(agency, "biller"))).json()
    assert {c["id"]: c["lines"] for c in listed["items"]} == {new.id: 2, held["id"]: 1, original["id"]: 1}
    receivables_agree_with_a_rebuild(engine)


async def test_voiding_a_held_claim_sends_its_visits_back_and_an_unsent_original_takes_them(
        api, web, billable, t0, engine):
    agency = billable
    first_start, second_start = same_day_pair(t0 - timedelta(hours=4))
    agency.authorize(first_start.date() - timedelta(days=7), first_start.date() + timedelta(days=7),
                     units_per_week=500)
    unsent_visit = await claim_ready_visit(api, agency, first_start)
    late_visit = await claim_ready_visit(api, agency, second_start)
    first = await release(api, agency, [unsent_visit])
    [original] = first["claims"]
    [held] = (await release(api, agency, [late_visit]))["claims"]
    assert held["state"] == "held"

    # Voided: the payer never had it, so its visit goes back to billing, claim-ready and releasable.
    biller = as_user(agency, "biller")
    voided = await api.post(f"/api/claims/{held['id']}/void", json={"reason": "bill it with the other visit"},
                            headers=biller)
    assert voided.status_code == 200, voided.text
    assert voided.json()["claim"]["state"] == "voided" and voided.json()["void"] is None
    back = await visit_state(api, agency, late_visit, "claim_ready")
    assert back["release_batch_id"] is None
    assert any(e["kind"] == "back_to_billing" for e in back["timeline"])
    again = await api.post(f"/api/claims/{held['id']}/void", json={"reason": "bill it with the other visit"},
                           headers=biller)
    assert again.status_code == 200 and again.json()["claim"]["state"] == "voided"

    # Released again it is held again (the original still bills that day); billed on it, the original was never
    # sent: the payer has nothing to replace, so the original takes the line and its file is written again.
    rereleased = await release(api, agency, [late_visit])
    assert rereleased["released"] == [late_visit]
    [held_again] = rereleased["claims"]
    assert held_again["state"] == "held"
    token = await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/claims/{held_again['id']}")).text
    assert "Bill on a replacement" in page and "already billed on claim" in page
    pressed = await web.post(f"/claims/{held_again['id']}/bill-on-replacement", headers={"X-CSRF-Token": token})
    assert pressed.status_code == 303 and pressed.headers["location"] == f"/claims/{original['id']}?done=billed"
    # A double click: the same claim, nothing more made.
    resent = await web.post(f"/claims/{held_again['id']}/bill-on-replacement", headers={"X-CSRF-Token": token})
    assert resent.status_code == 303 and resent.headers["location"] == pressed.headers["location"]
    shown = (await web.get(pressed.headers["location"])).text
    assert "visits are billed on this claim now" in shown and late_visit in shown
    r = await api.post(f"/api/claims/{held_again['id']}/bill-on-replacement", headers=biller)
    assert r.status_code == 200, r.text
    assert r.json()["replacement"] is None and r.json()["billed_on"] == original["id"]
    assert r.json()["claim"]["state"] == "replaced"
    with Session(engine) as s:
        claim = s.get(Claim, original["id"])
        file = s.get(ClaimFile, claim.claim_file_id)
        lines = s.exec(select(ClaimLine).where(ClaimLine.claim_id == claim.id)).all()
    assert claim.state == "created" and sorted(x.visit_id for x in lines) == sorted([unsent_visit, late_visit])
    assert claim.total_cents == sum(x.charge_cents for x in lines) == file.total_cents
    assert file.valid, file.findings
    assert f"REF*6R*{late_visit}~" in file.content and ":1*" in file.content
    receivables_agree_with_a_rebuild(engine)


async def test_the_file_of_a_voided_unsent_claim_does_not_go_out(api, billable, t0, engine, web):
    agency = billable
    start = t0 - timedelta(hours=5)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    alone = await claim_ready_visit(api, agency, start)
    kept = await claim_ready_visit(api, agency, start - timedelta(days=1))
    dropped = await claim_ready_visit(api, agency, start - timedelta(days=2))
    biller = as_user(agency, "biller")

    # Its only claim voided before it was sent: the file can be neither downloaded nor marked submitted.
    single = await release(api, agency, [alone])
    [claim], [file] = single["claims"], single["files"]
    assert (await api.post(f"/api/claims/{claim['id']}/void", json={"reason": "visit did not happen"},
                           headers=biller)).status_code == 200
    download = await api.get(f"/api/claim-files/{file['id']}/download", headers=biller)
    assert download.status_code == 409 and "voided before it was sent" in download.json()["detail"]
    sent = await api.post(f"/api/claim-files/{file['id']}/submitted", headers=biller)
    assert sent.status_code == 409 and "voided before it was sent" in sent.json()["detail"]
    rewrite = await api.post(f"/api/claim-files/{file['id']}/rewrite", headers=biller)
    assert rewrite.status_code == 409 and "nothing to send" in rewrite.json()["detail"]
    await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/claim-files/{file['id']}")
    assert "every claim in it was voided before it was sent" in page.text and "Download" not in page.text

    # One of two claims voided: the file is written again without it and goes out with the other.
    pair = await release(api, agency, [kept, dropped])
    [file] = pair["files"]
    by_visit = {line_of(engine, v).claim_id: v for v in (kept, dropped)}
    drop_id = next(c for c, v in by_visit.items() if v == dropped)
    keep_id = next(c for c, v in by_visit.items() if v == kept)
    assert (await api.post(f"/api/claims/{drop_id}/void", json={"reason": "wrong payer"},
                           headers=biller)).status_code == 200
    with Session(engine) as s:
        row = s.get(ClaimFile, file["id"])
        dropped_number = s.get(Claim, drop_id).control_number
        keep_claim = s.get(Claim, keep_id)
    assert row.valid, row.findings
    assert row.claim_count == 1 and row.total_cents == keep_claim.total_cents
    assert f"CLM*{dropped_number}*" not in row.content and f"CLM*{keep_claim.control_number}*" in row.content
    download = await api.get(f"/api/claim-files/{file['id']}/download", headers=biller)
    assert download.status_code == 200 and download.text == row.content
    await submit(api, agency, file["id"])
    with Session(engine) as s:
        assert (s.get(Claim, drop_id).state, s.get(Claim, keep_id).state) == ("voided", "submitted")

    # The payer answers the voided claim anyway: not applied, and the reason says it was voided.
    line = line_of(engine, kept)
    await import_835(api, agency, write_835([ClaimAnswer(dropped_number, "TX-9001", [LineAnswer(
        dropped, "T1019", line.charge_cents, line.charge_cents, line.units, line.service_date - timedelta(days=1))])],
        trace=f"EFT-{uuid.uuid4().hex[:8]}"))
    with Session(engine) as s:
        [answer] = s.exec(select(RemittanceLine).where(RemittanceLine.claim_control_number == dropped_number)).all()
    assert answer.outcome == "not_applied" and "was voided" in answer.problem
    assert "newer claim took its place" not in answer.problem
    receivables_agree_with_a_rebuild(engine)


async def test_a_visit_shows_the_claim_that_paid_it(api, billable, t0, engine, web):
    agency = billable
    start = t0 - timedelta(hours=6)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    outcome = await release(api, agency, [visit])
    [claim] = outcome["claims"]
    await submit(api, agency, outcome["files"][0]["id"])
    await pay(api, agency, engine, claim, visit, "TX-7001")
    line = line_of(engine, visit)
    seen = (await api.get(f"/api/visits/{visit}", headers=as_user(agency, "biller"))).json()
    assert seen["claims"] == [{
        "claim_id": claim["id"], "control_number": claim["control_number"], "claim_state": "paid",
        "frequency": "1", "live": True, "line_state": "paid", "charge_cents": line.charge_cents,
        "paid_cents": line.charge_cents, "denial": []}]
    # Who does not see claims does not see them on the visit either.
    clinician = (await api.get(f"/api/visits/{visit}", headers=as_user(agency, "clinician"))).json()
    assert clinician["claims"] == []
    token = await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/visits/{visit}")
    assert f'href="/claims/{claim["id"]}"' in page.text and f"paid ${line.charge_cents / 100:,.2f}" in page.text

    # A state posted for a paid claim, whose page has no answer form (an old tab, a forged post): the reason shows.
    forged = await web.post(f"/claims/{claim['id']}/state", data={"state": "accepted"},
                            headers={"X-CSRF-Token": token})
    assert forged.status_code == 409 and "a paid claim cannot become accepted" in forged.text
    assert 'role="alert"' in forged.text


async def test_the_payers_answer_is_read_whatever_its_capitals(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=7)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit = await claim_ready_visit(api, agency, start)
    outcome = await release(api, agency, [visit])
    [claim] = outcome["claims"]
    await submit(api, agency, outcome["files"][0]["id"])
    biller = as_user(agency, "biller")
    unknown = await api.post(f"/api/claims/{claim['id']}/state", json={"state": "Approved"}, headers=biller)
    assert unknown.status_code == 422 and "one of accepted, rejected" in unknown.json()["detail"]
    accepted = await api.post(f"/api/claims/{claim['id']}/state", json={"state": " Accepted "}, headers=biller)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "accepted"
