"""A billing denial (DEN-01) is cleared by the role the hold names: billing clears CO-16/MA130 from the visit page
("Fixed — bill again") or the API, and the answer shows the visit as the re-check left it; a supervisor is told
whose hold it is. Real app, Temporal test server, database."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_claims_to_cash import import_835, release, submit, visit_state
from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.ui.conftest import htmx, sign_in
from visitflow.db.tables import Claim, ClaimLine


async def denied_for_billing(api, agency, engine, visit_ids: list[str]) -> list[str]:
    """Released, submitted, and denied by the payer for missing billing facts (CO-16, MA130): DEN-01 keys."""
    out = await release(api, agency, visit_ids)
    await submit(api, agency, out["files"][0]["id"])
    with Session(engine) as s:
        lines = {line.visit_id: line for line in s.exec(select(ClaimLine).where(ClaimLine.visit_id.in_(visit_ids)))}
        claims = {v: s.get(Claim, line.claim_id) for v, line in lines.items()}
    answers = {}
    for v, line in lines.items():
        answers.setdefault(claims[v].control_number, []).append(LineAnswer(
            v, "T1019", line.charge_cents, 0, line.units, line.service_date,
            adjustments=[("CO", "16", line.charge_cents)], remarks=["MA130"]))
    era = write_835([ClaimAnswer(number, f"TX-{uuid.uuid4().hex[:6]}", found) for number, found in answers.items()],
                    trace=f"EFT-{uuid.uuid4().hex[:8]}")
    assert sorted((await import_835(api, agency, era))["returned_to_work"]) == sorted(visit_ids)
    keys = []
    for v in visit_ids:
        held = await visit_state(api, agency, v, "on_hold")
        [hold] = held["holds"]
        assert hold["rule_id"] == "DEN-01" and hold["role"] == "biller" and hold["approvable"], hold
        keys.append(hold["key"])
    return keys


async def test_billing_clears_its_denial_in_the_ui_and_the_api(api, web, app, billable, t0, engine):
    agency = billable
    start = t0 - timedelta(hours=4)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    in_ui = await claim_ready_visit(api, agency, start)
    in_api = await claim_ready_visit(api, agency, start - timedelta(days=1))
    ui_key, api_key = await denied_for_billing(api, agency, engine, [in_ui, in_api])

    # The supervisor opening the decision form (a link, a page left open) is told whose hold it is.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as supervisor_web:
        await sign_in(supervisor_web, agency.users["supervisor"].username)
        told = await supervisor_web.get(f"/visits/{in_ui}/decision", params={"key": ui_key})
        assert told.status_code == 200 and "waits for billing to act" in told.text, told.text
        assert "no longer waiting" not in told.text
        page = (await supervisor_web.get(f"/visits/{in_ui}")).text
        assert "Fixed — bill again" not in page
    refused = await api.post(f"/api/visits/{in_api}/exceptions", headers=as_user(agency, "supervisor"),
                             json={"key": api_key, "decision": "approved", "reason": "looks fine"})
    assert refused.status_code == 403 and "for a biller to decide" in refused.json()["detail"], refused.text

    # The biller's visit page offers the fix's confirmation under "Your part".
    token = await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/visits/{in_ui}")).text
    work = page[page.index('id="work"'):]
    assert "Fix what the payer denied" in work and "Fixed — bill again" in work, work[:3000]
    assert f'value="{ui_key}"' in work and ">Reject<" not in work
    form = await web.get(f"/visits/{in_ui}/decision", params={"key": ui_key})
    assert "Fixed — bill again" in form.text, form.text

    # No reason: the form again, with the problem in words; then cleared, and the panel says it is ready.
    key = uuid.uuid4().hex
    empty = await web.post(f"/visits/{in_ui}/decision", headers=htmx(token), data={
        "key": ui_key, "decision": "approved", "reason": " ", "idempotency_key": key})
    assert empty.status_code == 422 and "Say what was fixed" in empty.text, empty.text
    cleared = await web.post(f"/visits/{in_ui}/decision", headers=htmx(token), data={
        "key": ui_key, "decision": "approved", "reason": "member id corrected", "idempotency_key": key})
    assert cleared.status_code == 200, cleared.text
    assert f"Cleared: DEN-01 on visit {in_ui}. It is ready to bill again." in cleared.text, cleared.text
    assert "Release for billing" in cleared.text
    again = await web.post(f"/visits/{in_ui}/decision", headers=htmx(token), data={
        "key": ui_key, "decision": "approved", "reason": "member id corrected", "idempotency_key": key})
    assert again.status_code == 200 and "Cleared: DEN-01" in again.text, again.text
    await visit_state(api, agency, in_ui, "claim_ready")

    # Through the API: a denial is never "rejected"; cleared, the answer is the visit after its re-check, and the
    # same request again (same key) answers the same.
    biller = as_user(agency, "biller", f"k-{uuid.uuid4().hex}")
    rejected = await api.post(f"/api/visits/{in_api}/exceptions", headers=as_user(agency, "biller"),
                              json={"key": api_key, "decision": "rejected", "reason": "wrong"})
    assert rejected.status_code == 422 and "never rejected" in rejected.json()["detail"], rejected.text
    body = {"key": api_key, "decision": "approved", "reason": "member id corrected"}
    first = await api.post(f"/api/visits/{in_api}/exceptions", headers=biller, json=body)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "claim_ready" and first.json()["holds"] == [], first.json()["holds"]
    second = await api.post(f"/api/visits/{in_api}/exceptions", headers=biller, json=body)
    assert second.status_code == 200 and second.json()["state"] == "claim_ready"

    # Both go out again on replacement claims.
    again = await release(api, agency, [in_ui, in_api])
    assert sorted(again["released"]) == sorted([in_ui, in_api]) and again["files"][0]["valid"], again["files"]
