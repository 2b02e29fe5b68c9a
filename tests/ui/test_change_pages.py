"""The "What changed" page and the CSV upload page as the office and billing use them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import Session, func, select

from tests.ui.conftest import htmx, sign_in
from visitflow.db.tables import Authorization, Visit


async def test_the_office_loads_authorizations_and_billing_reads_what_changed(web, ui_app, visits, engine):
    agency = visits.agency
    t = agency.tag
    head = "source_id,auth_number,patient_id,payer_id,service_code,start_date,end_date,units_per_week\n"

    def row(n: int, units: int, payer_id: int = agency.payer.id) -> str:
        return f"ui-{t}-{n},UI{t}{n},{agency.patient.id},{payer_id},T1019,2026-01-01,2026-12-31,{units}\n"

    token = await sign_in(web, agency.users["admin"].username)
    page = await web.get("/intake")
    assert page.status_code == 200 and 'hx-post="/intake/authorizations"' in page.text
    good = head + row(1, 20) + row(2, 30)
    sent = await web.post("/intake/authorizations", headers=htmx(token),
                          files={"file": ("auths.csv", good, "text/csv")})
    assert sent.status_code == 200 and "auths.csv: 2 rows — 2 new, 0 changed, 0 already as sent." in sent.text
    again = await web.post("/intake/authorizations", headers=htmx(token),
                           files={"file": ("auths.csv", head + row(1, 20) + row(2, 25), "text/csv")})
    assert "1 changed, 1 already as sent" in again.text
    bad = head + row(3, 5) + row(4, 5, payer_id=999999) + "ui-x,,1,1,T1019,2026-01-01,x,1\n"
    refused = await web.post("/intake/authorizations", headers=htmx(token),
                             files={"file": ("bad.csv", bad, "text/csv")})
    assert refused.status_code == 422 and "Nothing from bad.csv was applied" in refused.text
    assert "Line 3, payer_id: payer 999999 does not exist" in refused.text and "Line 4, end_date" in refused.text
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(Authorization).where(
            Authorization.source_id == f"ui-{t}-3")).one() == 0
    none = await web.post("/intake/authorizations", headers=htmx(token), files={})
    assert none.status_code == 422 and "Choose the CSV file" in none.text
    # A spreadsheet saved as itself, not as CSV: told so on the page, in words.
    binary = await web.post("/intake/authorizations", headers=htmx(token),
                            files={"file": ("auths.xls", b"\xd0\xcf\x11\xe0\x00\x00" + head.encode(), "text/csv")})
    assert binary.status_code == 422 and "auths.xls is not a text file" in binary.text and '"detail"' not in binary.text

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ui_app), base_url="http://testserver") as other:
        await sign_in(other, agency.users["biller"].username)
        await _billing_reads_what_changed(other, agency)


async def _billing_reads_what_changed(web, agency) -> None:
    assert (await web.get("/intake")).status_code == 403
    listed = await web.get("/changes", params={"patient": agency.patient.id})
    assert listed.status_code == 200
    assert "units_per_week: 30 → 25" in listed.text and "Authorization added" in listed.text
    assert listed.text.index("30 → 25") < listed.text.index("Authorization added")  # newest first
    change_id = int(listed.text.split('href="/changes/')[1].split('"')[0])
    detail = await web.get(f"/changes/{change_id}")
    assert detail.status_code == 200 and "Before → after" in detail.text
    assert (await web.get("/changes/2000000000")).status_code == 404
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    later = await web.get("/changes", params={"patient": agency.patient.id, "since": tomorrow})
    assert "No change matches these filters" in later.text
    wrong = await web.get("/changes", params={"since": "last week"})
    assert wrong.status_code == 200 and "Give a date like 2026-03-31." in wrong.text


async def test_a_supervisor_loads_tomorrows_schedule(web, visits, engine):
    agency = visits.agency
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    ids = [f"sch-{agency.tag}-{n}" for n in range(3)]
    visits.started.extend(ids)
    text = "source_id,patient_id,clinician_id,payer_id,service_code,scheduled_start,scheduled_end\n" + "".join(
        f"{vid},{agency.patient.id},{agency.clinician.id},{agency.payer.id},T1019,"
        f"{(start + timedelta(hours=3 * n)).isoformat()},{(start + timedelta(hours=3 * n + 2)).isoformat()}\n"
        for n, vid in enumerate(ids))
    token = await sign_in(web, agency.users["supervisor"].username)
    page = await web.get("/intake")
    assert 'hx-post="/intake/visits"' in page.text and 'hx-post="/intake/authorizations"' not in page.text
    sent = await web.post("/intake/visits", headers=htmx(token), files={"file": ("tomorrow.csv", text, "text/csv")})
    assert sent.status_code == 200 and "3 new" in sent.text, sent.text
    refused = await web.post("/intake/authorizations", headers=htmx(token),
                             files={"file": ("a.csv", "source_id\n", "text/csv")})
    assert refused.status_code == 403
    for _ in range(200):
        with Session(engine) as s:
            if s.exec(select(func.count()).select_from(Visit).where(Visit.id.in_(ids))).one() == 3:
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the scheduled visits never reached the read model")
