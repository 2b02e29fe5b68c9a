"""The remittance pages as a biller uses them: upload the payer's 835, read what each line came to, open it later."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.ui.conftest import htmx, sign_in
from tests.workflows.test_denials import released_visit
from tests.workflows.test_remittance_import import claim_for


@pytest.fixture
def t0() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_a_biller_imports_an_835_and_sees_the_denial_go_back_to_the_clinician(web, visits, client, engine, t0):
    agency = visits.agency
    _handle, spec = await released_visit(client, agency, t0)
    visits.started.append(spec.visit_id)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    trace = f"EFT-{uuid.uuid4().hex[:8]}"
    era = write_835([ClaimAnswer(claim.control_number, "TX-77", [LineAnswer(
        spec.visit_id, "T1019", 4800, 0, 8, spec.scheduled_start.date(), adjustments=[("CO", "252", 4800)])]),
        ClaimAnswer("OTHER-AGENCY-1", "TX-78", [LineAnswer(None, "T1019", 1200, 1200, 2, spec.scheduled_start.date())])],
        trace=trace)
    token = await sign_in(web, agency.users["biller"].username)

    page = await web.get("/remittances")
    assert page.status_code == 200 and 'hx-encoding="multipart/form-data"' in page.text

    sent = await web.post("/remittances", headers=htmx(token), files={"file": ("era-1215.835", era, "text/plain")})
    assert sent.status_code == 200, sent.text
    assert (f"Imported TEXAS MEDICAID's ACH {trace} of $12.00: 0 lines paid, 0 paid less and 1 denied (back in work), "
            "1 unmatched.") in sent.text
    assert "CO-252: documentation or an attachment is needed to decide the claim ($48.00)" in sent.text
    assert "Back in work with the clinician (revise the note and sign again)" in sent.text
    assert "no claim OTHER-AGENCY-1 in VisitFlow" in sent.text
    assert sent.headers["HX-Trigger"] == "remittances-changed"

    # The same file again (a double click, a second try): told so, nothing changes.
    again = await web.post("/remittances", headers=htmx(token), files={"file": ("era-1215.835", era, "text/plain")})
    assert f"This payment (TEXAS MEDICAID's ACH {trace}) was imported before" in again.text
    assert "nothing changed" in again.text
    # The payer's clearinghouse sends it again under new control numbers: the same payment, nothing changes.
    copy = era.replace("*000002001*", "*000002002*").replace("IEA*1*000002001", "IEA*1*000002002")
    resent = await web.post("/remittances", headers=htmx(token), files={"file": ("era-1215-2.835", copy, "text/plain")})
    assert copy != era and f"{trace}) was imported before" in resent.text

    # The money charts show the denial by its reason, in dollars, on the billing page and the dashboard.
    for page in ("/billing", "/dashboard", "/revenue/charts"):
        shown = await web.get(page)
        assert shown.status_code == 200 and "Revenue at risk" in shown.text and "CO-252" in shown.text, page

    listed = await web.get("/remittances")
    assert trace in listed.text and '<th scope="col" class="num">Paid less</th>' in listed.text
    remittance_id = int(listed.text.split('href="/remittances/')[1].split('"')[0])
    detail = await web.get(f"/remittances/{remittance_id}")
    assert detail.status_code == 200 and f'href="/visits/{spec.visit_id}"' in detail.text and "era-1215.835" in detail.text


async def test_a_wrong_file_is_refused_in_words_and_others_may_not_import(web, visits):
    agency = visits.agency
    token = await sign_in(web, agency.users["biller"].username)
    wrong = await web.post("/remittances", headers=htmx(token), files={"file": ("notes.txt", b"hello", "text/plain")})
    assert wrong.status_code == 422 and "notes.txt is not a readable 835 file" in wrong.text
    empty = await web.post("/remittances", headers=htmx(token), files={"file": ("", b"", "text/plain")})
    assert empty.status_code == 422 and "Choose the 835 file" in empty.text
    missing = await web.get("/remittances/999999")
    assert missing.status_code == 404


async def test_a_binary_or_cut_short_file_is_refused_on_the_page_in_words(web, visits):
    agency = visits.agency
    token = await sign_in(web, agency.users["biller"].username)
    picture = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))
    binary = await web.post("/remittances", headers=htmx(token), files={"file": ("scan.png", picture, "image/png")})
    assert binary.status_code == 422 and binary.headers["content-type"].startswith("text/html"), binary.text
    assert 'role="alert"' in binary.text and "scan.png is not a text file" in binary.text
    assert '"detail"' not in binary.text
    # A typed field is still checked before any route: a NUL there cannot be stored.
    typed = await web.post("/remittances", headers=htmx(token), data={"note": "a\x00b"},
                           files={"file": ("era.835", b"ISA", "text/plain")})
    assert typed.status_code == 422 and "NUL" in typed.text
    era = write_835([ClaimAnswer("VF-NONE-1", "TX-1", [LineAnswer(None, "T1019", 1200, 1200, 2,
                                                                   datetime.now(UTC).date())])],
                    trace=f"EFT-{uuid.uuid4().hex[:8]}")
    cut = era[:era.index("SVC*") + 8]
    short = await web.post("/remittances", headers=htmx(token), files={"file": ("era.835", cut, "text/plain")})
    assert short.status_code == 422 and "era.835 cannot be applied: the file is incomplete" in short.text
    assert "Interchange Control Trailer" in short.text
    listed = await web.get("/remittances")
    assert "VF-NONE-1" not in listed.text


async def test_a_biller_voids_a_claim_that_never_went_out(web, visits, client, engine, t0):
    agency = visits.agency
    _handle, spec = await released_visit(client, agency, t0)
    claim = claim_for(engine, agency, [spec.visit_id], spec, state="created")
    token = await sign_in(web, agency.users["biller"].username)
    page = await web.get(f"/claims/{claim.id}")
    assert page.status_code == 200 and "Void this claim" in page.text and "only marked voided" in page.text

    blank = await web.post(f"/claims/{claim.id}/void", data={"reason": "", "csrf_token": token})
    assert blank.status_code == 422 and "say why the claim is voided" in blank.text
    sent = await web.post(f"/claims/{claim.id}/void", data={"reason": "visit did not happen", "csrf_token": token})
    assert sent.status_code == 303 and sent.headers["location"] == f"/claims/{claim.id}?done=voided"
    after = await web.get(sent.headers["location"])
    assert "The claim is now voided." in after.text and "visit did not happen" in after.text
    assert "Void this claim" not in after.text
