"""A biller's day in the UI: ready to bill with days left to file, a visit held for timely filing (CLM-07), the
release, the claim, the valid file downloaded and marked submitted. Real app, Temporal test server, database."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from sqlmodel import Session, select

from tests.billing.conftest import as_user, claim_ready_visit
from tests.billing.test_release_to_claims import payer_settings
from tests.ui.conftest import htmx, sign_in
from visitflow.db.tables import Claim, ClaimFile, ClaimLine


async def test_ready_to_bill_release_claim_file_submitted_in_the_ui(api, web, billable, t0, engine):
    agency = billable
    payer_settings(engine, agency, filing_limit_days=3, filing_warning_days=10)
    agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=1)).date(), units_per_week=500)
    recent = [await claim_ready_visit(api, agency, t0 - timedelta(hours=h)) for h in (3, 5)]
    late = await claim_ready_visit(api, agency, t0 - timedelta(days=6))
    token = await sign_in(web, agency.users["biller"].username)

    page = (await web.get("/billing", params={"payer": agency.payer.id})).text
    row = page[page.index(f'href="/visits/{late}"'):]
    row = row[:row.index("</tr>")]
    assert "Held: past the payer&#39;s timely filing limit" in row and "CLM-07" in row
    assert f'name="visit_ids" value="{late}"' not in page  # nothing to tick: release refuses it anyway
    # The visit's own page says the same, and offers no release for it; a visit near its limit says how near.
    own = (await web.get(f"/visits/{late}")).text
    assert "Held: past the payer's timely filing limit" in own and "Release this visit for billing" not in own
    near = (await web.get(f"/visits/{recent[0]}")).text
    assert "Release this visit for billing" in near and re.search(r"⚠</span> [23] days? left to file", near)
    for visit_id in recent:
        row = page[page.index(f'href="/visits/{visit_id}"'):]
        assert re.search(r"⚠</span> [23] days? left", row[:row.index("</tr>")]), row[:row.index("</tr>")]

    # Through the API too, the third visit is held for timely filing and the other two are billed.
    r = await api.post("/api/releases", json={"visit_ids": [late]},
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
    rejected = r.json()["rejected"]
    assert [x["visit_id"] for x in rejected] == [late] and rejected[0]["rule_id"] == "CLM-07"
    assert "timely filing limit" in rejected[0]["reason"] and r.json()["claims"] == []

    answer = await web.post("/billing/release", headers=htmx(token), data={
        "visit_ids": [*recent, late], "release_key": uuid.uuid4().hex, "payer": str(agency.payer.id)})
    assert answer.status_code == 200, answer.text
    box = answer.text[answer.text.find('class="outcome-box"'):][:3000]
    assert "Released 2 visits" in box and "passed the X12 check" in box, box
    assert f"{late}: CLM-07 the visit of" in answer.text
    with Session(engine) as s:
        line = s.exec(select(ClaimLine).where(ClaimLine.visit_id == recent[0])).one()
        claim = s.get(Claim, line.claim_id)
        file = s.get(ClaimFile, claim.claim_file_id)
        assert s.exec(select(ClaimLine).where(ClaimLine.visit_id == late)).first() is None

    listed = (await web.get("/claims", params={"patient": agency.patient.id})).text
    assert f'href="/claims/{claim.id}">{claim.control_number}</a>' in listed
    shown = (await web.get(f"/claims/{claim.id}")).text
    assert all(f'href="/visits/{v}"' in shown for v in recent)
    assert f"REF*6R*{recent[0]}~" in shown and "Status history" in shown

    files = (await web.get("/claim-files")).text
    assert f'href="/claim-files/{file.id}/download"' in files
    download = await web.get(f"/claim-files/{file.id}/download")
    assert download.status_code == 200 and download.text == file.content
    assert "attachment" in download.headers["content-disposition"]
    page = (await web.get(f"/claim-files/{file.id}")).text
    assert "Mark submitted" in page
    for _ in range(2):  # a double click records it once
        done = await web.post(f"/claim-files/{file.id}/submitted", headers={"X-CSRF-Token": token})
        assert done.status_code == 303 and done.headers["location"].endswith("?done=submitted")
    page = (await web.get(f"/claim-files/{file.id}?done=submitted")).text
    assert "Marked submitted" in page and f"by {agency.users['biller'].username}" in page
    with Session(engine) as s:
        assert s.get(Claim, claim.id).state == "submitted"
    shown = (await web.get(f"/claims/{claim.id}")).text
    assert "Record the answer" in shown


async def test_a_file_without_the_agency_identity_is_blocked_with_what_to_set(client, database_url, tmp_path,
                                                                             billable, t0, engine, api):
    import httpx

    from visitflow.main import create_app
    from visitflow.settings import Settings

    agency = billable
    app = create_app(Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path),
                     temporal=client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as api_unset:
        agency.authorize((t0 - timedelta(days=2)).date(), (t0 + timedelta(days=1)).date(), units_per_week=500)
        visit_id = await claim_ready_visit(api_unset, agency, t0 - timedelta(hours=3))
        r = await api_unset.post("/api/releases", json={"visit_ids": [visit_id]},
                                 headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
        files = r.json()["files"]
        assert len(files) == 1 and not files[0]["valid"]
        assert "billing identity is not configured" in files[0]["findings"][0]
        assert "[agency]" in files[0]["findings"][0] and "VISITFLOW_AGENCY__" in files[0]["findings"][0]
        refused = await api_unset.get(f"/api/claim-files/{files[0]['id']}/download",
                                      headers=as_user(agency, "biller"))
        assert refused.status_code == 409 and "blocked" in refused.json()["detail"]
        not_sent = await api_unset.post(f"/api/claim-files/{files[0]['id']}/submitted",
                                        headers=as_user(agency, "biller"))
        assert not_sent.status_code == 409
    assert len(r.json()["claims"]) == 1 and r.json()["claims"][0]["state"] == "created"
    # The agency's identity is set (the app restarted with it): the same file, written again, is valid.
    again = await api.post(f"/api/claim-files/{files[0]['id']}/rewrite", headers=as_user(agency, "biller"))
    assert again.status_code == 200 and again.json()["valid"] and again.json()["findings"] == [], again.text
    assert (await api.get(f"/api/claim-files/{files[0]['id']}/download",
                          headers=as_user(agency, "biller"))).status_code == 200


async def test_a_claim_missing_the_patients_diagnoses_blocks_its_file_until_fixed(api, web, agency, t0, engine):
    """The patient has no birth date or diagnoses yet: the file says so in words; fixed, it is written again."""
    agency.authorize((t0 - timedelta(days=2)).date(), (t0 + timedelta(days=1)).date(), units_per_week=500)
    visit_id = await claim_ready_visit(api, agency, t0 - timedelta(hours=3))
    r = await api.post("/api/releases", json={"visit_ids": [visit_id]},
                       headers=as_user(agency, "biller", f"k-{uuid.uuid4().hex}"))
    file = r.json()["files"][0]
    assert not file["valid"]
    assert any(f.endswith(": The patient has no diagnosis code (ICD-10); add one on the patient's record")
               for f in file["findings"]), file["findings"]
    assert not any("should have at least" in f for f in file["findings"]), file["findings"]  # pydantic's words
    assert any("the patient's birth date is missing" in f for f in file["findings"]), file["findings"]
    token = await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/claim-files/{file['id']}")).text
    assert "Blocked" in page and "Write the file again" in page and "no diagnosis code (ICD-10)" in page
    # A code that is not ICD-10 is named; one typed in lower case is the same code (ICD-10 ignores case).
    wrong = await api.patch(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "admin"),
                            json={"diagnosis_codes": ["R26.89", "XYZ"]})
    assert wrong.status_code == 422 and "'XYZ' is not an ICD-10 code" in wrong.json()["detail"], wrong.text
    assert "[A-Z]" not in wrong.json()["detail"]  # no pattern quoted at the caller
    fixed = await api.patch(f"/api/patients/{agency.patient.id}", headers=as_user(agency, "admin"),
                            json={"birth_date": "1941-03-02", "diagnosis_codes": [" r26.89"], "gender": "F"})
    assert fixed.status_code == 200 and fixed.json()["diagnosis_codes"] == ["R2689"], fixed.text
    done = await web.post(f"/claim-files/{file['id']}/rewrite", headers={"X-CSRF-Token": token})
    assert done.status_code == 303
    page = (await web.get(done.headers["location"])).text
    assert "it passes the check now" in page and "Mark submitted" in page
    with Session(engine) as s:
        assert s.get(ClaimFile, file["id"]).valid


def test_a_bad_agency_identity_stops_the_start_naming_the_field(monkeypatch, tmp_path):
    import pytest
    from pydantic import ValidationError

    from visitflow.settings import Settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "visitflow.toml").write_text(
        '[agency]\nname = "Bluebonnet"\nnpi = "1234567890"\ntax_id = "741234567"\nsubmitter_id = "BB"\n'
        'submitter_name = "Bluebonnet"\nreceiver_id = "TX"\nreceiver_name = "Texas"\n'
        '[agency.address]\nline1 = "1 Main"\ncity = "Austin"\nstate = "TX"\npostal_code = "78701"\n'
        '[agency.contact]\nname = "Bea"\nphone = "5125550100"\n')
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "agency.npi" in str(refused.value) and "check digit" in str(refused.value)
    monkeypatch.setenv("VISITFLOW_AGENCY__NPI", "1234567893")  # one field from the environment, over the file
    with pytest.raises(ValidationError, match="ZIP\\+4"):
        Settings()
    monkeypatch.setenv("VISITFLOW_AGENCY__ADDRESS__POSTAL_CODE", "787011234")
    assert Settings().agency.npi == "1234567893"
    assert Settings().claim_file_blocker() is None
