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


def payer_settings(engine, agency, **values) -> None:
    from visitflow.db.session import write_session
    from visitflow.db.tables import Payer

    with write_session(engine) as s:
        payer = s.get(Payer, agency.payer.id)
        for name, value in values.items():
            setattr(payer, name, value)
        s.add(payer)
        s.commit()


def live_lines(engine, visit_ids: list[str]) -> dict[str, int]:
    from collections import Counter

    with Session(engine) as s:
        return Counter(s.exec(select(ClaimLine.visit_id).where(ClaimLine.visit_id.in_(visit_ids),
                                                               ClaimLine.live)).all())


async def test_a_retried_and_a_raced_release_bill_each_visit_once(api, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=3)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    ids = [await claim_ready_visit(api, agency, start - timedelta(minutes=i)) for i in range(3)]
    key = f"k-{uuid.uuid4().hex}"
    # Two billers' screens release the same visits at once (two batches), and one of them retries its request.
    import asyncio

    first, second, retried = await asyncio.gather(
        api.post("/api/releases", json={"visit_ids": ids}, headers=as_user(agency, "biller", key)),
        api.post("/api/releases", json={"visit_ids": ids[::-1]},
                 headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}")),
        api.post("/api/releases", json={"visit_ids": ids}, headers=as_user(agency, "biller", key)))
    # Of the two copies with one key, one acts; the other gets its answer, or 409 while it is still running.
    keyed = sorted([first, retried], key=lambda r: r.status_code)
    assert keyed[0].status_code == 200 and keyed[1].status_code in (200, 409), (first.text, retried.text)
    assert second.status_code == 200, second.text
    a, b = keyed[0].json(), second.json()
    assert sorted(a["released"] + b["released"]) == sorted(ids)  # each visit in exactly one batch
    assert live_lines(engine, ids) == {v: 1 for v in ids}
    again = await api.post("/api/releases", json={"visit_ids": ids}, headers=as_user(agency, "biller", key))
    assert again.json()["claims"] == a["claims"] and again.json()["files"] == a["files"]
    with Session(engine) as s:
        claims = s.exec(select(Claim).where(Claim.patient_id == agency.patient.id)).all()
    # Same patient, same payer, same day in two batches: the second batch's claim is held (CLM-05), not filed.
    if a["released"] and b["released"]:
        states = sorted(c.state for c in claims)
        assert states == ["created", "held"], states
        held = next(c for c in claims if c.state == "held")
        detail = (await api.get(f"/api/claims/{held.id}", headers=as_user(agency, "biller"))).json()
        assert "CLM-05" in detail["history"][0]["note"] and "already billed on claim" in detail["history"][0]["note"]
        assert held.claim_file_id is None
    else:
        assert [c.state for c in claims] == ["created"]


async def test_a_release_whose_request_died_is_finished_by_its_workflow(api, app, billable, t0, engine, client):
    from visitflow.db.tables import ReleaseBatch

    agency = billable
    start = t0 - timedelta(hours=3)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    ids = [await claim_ready_visit(api, agency, start - timedelta(minutes=i)) for i in range(3)]
    import asyncio

    request = asyncio.ensure_future(api.post("/api/releases", json={"visit_ids": ids},
                                             headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}")))
    batch = None
    while batch is None:  # the batch is stored before anything is released
        await asyncio.sleep(0.005)
        with Session(engine) as s:
            batch = s.exec(select(ReleaseBatch).where(ReleaseBatch.created_by == agency.users["biller"].username)
                           ).first()
    request.cancel()  # the API process dies: nobody waits for the answer, nobody retries
    from visitflow.services.commands import resume_unfinished_releases

    # Wherever it died (before or after starting the workflow), the worker's start-up check finishes the batch:
    # it joins a running workflow, or starts the one the API never started.
    await resume_unfinished_releases(engine, client, app.state.settings, older_than=timedelta(0))
    from visitflow.services.commands import release_outcome

    outcome = await release_outcome(client, batch.id)
    assert sorted(outcome.released) == sorted(ids) and len(outcome.claims) == 1 and outcome.files[0].valid
    assert live_lines(engine, ids) == {v: 1 for v in ids}
    with Session(engine) as s:
        assert s.get(ReleaseBatch, batch.id).completed_at is not None


async def test_week_and_month_claims_and_the_fee_schedule(api, billable, t0, engine):
    """A weekly payer gets one claim per patient-week; a fee schedule entry prices its service and modifiers."""
    agency = billable
    payer_settings(engine, agency, billing_period="week", rate_per_unit_cents=600)
    admin = as_user(agency, "admin")
    r = await api.post("/api/payer-rates", headers=admin, json={
        "payer_id": agency.payer.id, "service_code": "t1019", "modifiers": ["u2"], "rate_per_unit_cents": 725})
    assert r.status_code == 201 and r.json()["service_code"] == "T1019" and r.json()["modifiers"] == ["U2"], r.text
    dup = await api.post("/api/payer-rates", headers=admin, json={
        "payer_id": agency.payer.id, "service_code": "T1019", "modifiers": ["U2"], "rate_per_unit_cents": 1})
    assert dup.status_code == 409 and "already has a rate" in dup.json()["detail"]
    # Visits on three days in the same Monday-to-Sunday week, and one in the week before.
    from datetime import date as date_

    today = t0.date()
    monday = today - timedelta(days=today.weekday())
    days = [d for d in (monday, monday + timedelta(days=1), monday + timedelta(days=2)) if d < today][:2]
    if len(days) < 2:  # early in the week: use last week's Monday and Tuesday instead
        days = [monday - timedelta(days=7), monday - timedelta(days=6)]
    earlier = days[0] - timedelta(days=7)
    agency.authorize(earlier - timedelta(days=1), today + timedelta(days=1), units_per_week=500)
    agency.authorize(earlier - timedelta(days=1), today + timedelta(days=1), units_per_week=500, modifiers=["U2"])
    from datetime import UTC, time
    from datetime import datetime as dt

    def at(d: date_):  # 16:00 UTC = mid-morning in the agency's zone: the local date is d
        return dt.combine(d, time(16, 0), tzinfo=UTC)

    week = [await claim_ready_visit(api, agency, at(days[0])),
            await claim_ready_visit(api, agency, at(days[1]), modifiers=["U2"])]
    before = await claim_ready_visit(api, agency, at(earlier))
    # Ready to bill already shows the dollars the claims will bill: the fee schedule's rate for T1019:U2.
    from visitflow.services.queries import BillingFilter, ready_to_bill

    with Session(engine) as s:
        ready = ready_to_bill(s, BillingFilter(payer_id=agency.payer.id), 1)
    shown = {row.visit_id: row for group in ready.page.items for row in group.rows}
    assert shown[week[1]].amount_cents == shown[week[1]].units * 725
    assert shown[week[0]].amount_cents == shown[week[0]].units * 600
    assert ready.amount_cents == sum(row.amount_cents for row in shown.values())
    r = await api.post("/api/releases", json={"visit_ids": [*week, before]},
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
    outcome = r.json()
    assert sorted(outcome["released"]) == sorted([*week, before]), outcome
    assert sorted(c["visits"] for c in outcome["claims"]) == [1, 2] and len(outcome["files"]) == 1
    assert outcome["files"][0]["valid"], outcome["files"][0]["findings"]
    with Session(engine) as s:
        lines = {line.visit_id: line for line in s.exec(select(ClaimLine).where(ClaimLine.visit_id.in_(
            [*week, before])))}
        claims = {c.id: c for c in s.exec(select(Claim).where(Claim.id.in_([c["id"] for c in outcome["claims"]])))}
    assert lines[week[0]].claim_id == lines[week[1]].claim_id != lines[before].claim_id
    weekly = claims[lines[week[0]].claim_id]
    assert weekly.period_start.weekday() == 0 and (weekly.period_end - weekly.period_start).days == 6
    assert lines[week[0]].charge_cents == lines[week[0]].units * 600  # no entry for T1019 without modifiers
    assert lines[week[1]].charge_cents == lines[week[1]].units * 725  # the fee schedule's T1019:U2
    assert weekly.total_cents == lines[week[0]].charge_cents + lines[week[1]].charge_cents

    # Monthly: the next release of this payer's visits goes on one claim per patient-month.
    payer_settings(engine, agency, billing_period="month")
    month_visits = [await claim_ready_visit(api, agency, at(d)) for d in sorted({days[0], earlier})
                    if d.month == days[0].month]
    if len(month_visits) >= 1:
        r = await api.post("/api/releases", json={"visit_ids": month_visits},
                           headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
        claims = r.json()["claims"]
        assert len(claims) == 1
        with Session(engine) as s:
            claim = s.get(Claim, claims[0]["id"])
        assert claim.period_start.day == 1 and claim.period_start.month == days[0].month
        # Same member, date and service as the weekly claim: held by CLM-05 rather than billed twice.
        assert claim.state == "held"


async def test_a_batch_stored_by_an_api_that_died_before_its_workflow_started_is_finished(
        api, app, billable, t0, engine, client):
    """The API stored the batch and died before starting the workflow; nobody retried. The worker's start-up
    finds the batch and finishes it."""
    from datetime import UTC, datetime

    from visitflow.db.session import write_session
    from visitflow.db.tables import ReleaseBatch
    from visitflow.services.commands import resume_unfinished_releases

    agency = billable
    start = t0 - timedelta(hours=3)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    visit_id = await claim_ready_visit(api, agency, start)
    batch_id = f"b-orphan-{uuid.uuid4().hex[:8]}"
    with write_session(engine) as s:
        s.add(ReleaseBatch(id=batch_id, created_by=agency.users["biller"].username,
                           created_at=datetime.now(UTC) - timedelta(minutes=5), visit_ids=[visit_id]))
        s.commit()
    resumed = await resume_unfinished_releases(engine, client, app.state.settings)
    assert batch_id in resumed
    from visitflow.services.commands import release_outcome

    outcome = await release_outcome(client, batch_id)
    assert outcome.released == [visit_id] and outcome.files[0].valid
    assert live_lines(engine, [visit_id]) == {visit_id: 1}
    assert batch_id not in await resume_unfinished_releases(engine, client, app.state.settings)
