"""Visit ids come from source systems, in their own case: v-8001 asked for by the API or the UI is the visit
V-8001 (one index read); an id two visits share in different cases is never guessed, and a 404 names it."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_claims_to_cash import release
from tests.ui.conftest import sign_in


async def test_a_visit_id_in_another_case_finds_the_visit(api, web, billable, t0):
    agency = billable
    start = t0 - timedelta(hours=3)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    stored = f"V-{uuid.uuid4().hex[:8].upper()}"
    await claim_ready_visit(api, agency, start, visit_id=stored)
    typed = stored.lower()

    got = await api.get(f"/api/visits/{typed}", headers=as_user(agency, "biller"))
    assert got.status_code == 200 and got.json()["id"] == stored, got.text
    await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/visits/{typed}")
    assert page.status_code == 200 and stored in page.text
    assert (await web.get(f"/visits/{typed}x")).status_code == 404  # still a 404 for an id no visit has

    # Released as a source system sends it back: the visit V-… is released and billed.
    outcome = await release(api, agency, [typed])
    assert outcome["released"] == [stored] and outcome["rejected"] == [], outcome
    assert outcome["files"][0]["valid"], outcome["files"]


async def test_an_id_two_visits_share_in_different_cases_is_never_guessed(api, billable, t0):
    agency = billable
    start = t0 - timedelta(hours=5)
    agency.authorize(start.date() - timedelta(days=7), start.date() + timedelta(days=7), units_per_week=500)
    tag = uuid.uuid4().hex[:8]
    upper, lower = f"AB-{tag}", f"ab-{tag}"
    for visit_id in (upper, lower):
        await claim_ready_visit(api, agency, start, visit_id=visit_id)
        start -= timedelta(days=1)
    for typed, found in ((upper, upper), (lower, lower)):  # each as stored: itself
        got = await api.get(f"/api/visits/{typed}", headers=as_user(agency, "biller"))
        assert got.status_code == 200 and got.json()["id"] == found
    mixed = f"Ab-{tag}"
    missing = await api.get(f"/api/visits/{mixed}", headers=as_user(agency, "biller"))
    assert missing.status_code == 404 and mixed in missing.json()["detail"], missing.text
