"""POST /api/claims/check with the app and the real database (sign-in, roles, audit)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest_asyncio

from tests.conftest import Agency
from visitflow.api import x12_body
from visitflow.main import create_app
from visitflow.settings import Settings

CHECK = "/api/claims/check"
AS_OF = {"as_of": "2026-11-29"}


@pytest_asyncio.fixture
async def api(database_url, tmp_path):
    settings = Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path)
    app = create_app(settings)  # checking a file never calls Temporal
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def as_user(agency: Agency, who: str) -> dict:
    return {"Authorization": f"Bearer {agency.token(who)}"}


async def test_staff_check_a_file_sent_as_text(api, agency, sample):
    for who in ("admin", "biller", "supervisor"):
        r = await api.post(CHECK, params=AS_OF, content=sample("clean_837p.txt"),
                           headers={**as_user(agency, who), "content-type": "text/plain"})
        assert r.status_code == 200, r.text
        assert r.json() == {"kind": "837P", "claims": 3, "lines": 5, "findings": [], "timely_filing": {
            "limit_days": 95, "as_of": "2026-11-29", "soonest_deadline": "2027-02-27", "days_left": 90}}


async def test_findings_come_back_with_rule_segment_line_and_words(api, agency, sample):
    r = await api.post(CHECK, params={**AS_OF, "filing_limit_days": 365}, json={"x12": sample("clm02_bad_npi.txt")},
                       headers=as_user(agency, "biller"))
    assert r.status_code == 200, r.text
    assert r.json()["findings"] == [{
        "rule_id": "CLM-02", "segment_id": "NM1", "segment_number": 21, "line": 23, "element": "NM109", "claim": None,
        "message": "NPI 1245319589 (entity 82) fails the NPI check digit: a digit is wrong or two are swapped"}]
    assert r.json()["timely_filing"]["limit_days"] == 365


async def test_a_stray_accented_letter_is_a_finding_on_its_element(api, agency, sample):
    text = sample("clean_837p.txt").replace("GARCIA*ROSA", "GARCÍA*ROSA", 1)
    for body in (text.encode("utf-8"), text.encode("latin-1")):
        r = await api.post(CHECK, params=AS_OF, content=body,
                           headers={**as_user(agency, "biller"), "content-type": "text/plain; charset=utf-8"})
        assert r.status_code == 200, r.text
        [finding] = r.json()["findings"]
        assert (finding["rule_id"], finding["element"], finding["line"]) == ("CLM-06", "NM103", 15)
        assert "invalid character" in finding["message"] and "GARCÍA" in finding["message"]


async def test_clinicians_and_strangers_may_not_check(api, agency, sample):
    r = await api.post(CHECK, content=sample("clean_837p.txt"), headers=as_user(agency, "clinician"))
    assert r.status_code == 403
    assert (await api.post(CHECK, content=sample("clean_837p.txt"))).status_code == 401


async def test_bad_input_is_a_clear_4xx(api, agency, sample):
    biller = as_user(agency, "biller")
    cases = [
        ({"content": sample("not_x12.txt"), "headers": {"content-type": "text/plain"}}, 422,
         "not a readable 837 file: First line does not begin with 'ISA'"),
        ({"content": sample("remit_835.txt")}, 422, "not an 837P (005010X222A1) or 837I (005010X223A2) file"),
        ({"json": {"file": "ISA*..."}}, 422, 'expected {"x12": "<the file>"}'),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body: not JSON"),
        ({"content": "ISA*é".encode(), "headers": {"content-type": "text/plain"}}, 422, "ISA line is only"),
        ({"content": b"  \n", "headers": {"content-type": "text/plain"}}, 422, "the file is empty"),
        ({"content": b"ISA", "headers": {"content-type": "application/xml"}}, 415, "text/plain"),
        ({"content": b"x" * (x12_body.MAX_FILE_BYTES + 1), "headers": {"content-type": "text/plain"}}, 413, "bytes"),
    ]
    for request, status, words in cases:
        headers = {**biller, **request.pop("headers", {})}
        r = await api.post(CHECK, headers=headers, **request)
        assert r.status_code == status, (request, r.text)
        assert words in r.json()["detail"], r.text
    r = await api.post(CHECK, params={"filing_limit_days": 0}, content=sample("clean_837p.txt"), headers=biller)
    assert r.status_code == 422


async def test_filing_days_count_to_the_agencys_today_by_default(api, agency, sample):
    r = await api.post(CHECK, content=sample("clean_837p.txt"), headers=as_user(agency, "biller"))
    today = datetime.now(ZoneInfo(Settings().agency_timezone)).date()
    assert r.json()["timely_filing"]["as_of"] == today.isoformat()
    assert r.json()["timely_filing"]["days_left"] == (date(2027, 2, 27) - today).days
