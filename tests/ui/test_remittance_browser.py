"""A biller imports the payer's 835 in a real Chromium: chooses the file, imports it, reads where each denial
went, and imports it again by mistake without changing anything. At phone and desktop widths."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from playwright.async_api import expect

from tests.remittance_files import ClaimAnswer, LineAnswer, write_835
from tests.ui.conftest import VisitSetup
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401  (fixtures: the live app)
from tests.workflows.test_denials import released_visit
from tests.workflows.test_remittance_import import claim_for

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [390, 1280])
async def test_a_biller_imports_the_payers_835(live_url, browser, agency, visits: VisitSetup, client, engine,  # noqa: F811
                                               tmp_path, width):
    expect.set_options(timeout=WAIT_MS)
    _handle, spec = await released_visit(client, agency, datetime.now(UTC).replace(microsecond=0))
    visits.started.append(spec.visit_id)
    claim = claim_for(engine, agency, [spec.visit_id], spec)
    trace = f"EFT-{uuid.uuid4().hex[:8]}"
    era = tmp_path / "era-1215.835"
    era.write_text(write_835([ClaimAnswer(claim.control_number, "TX-88", [LineAnswer(
        spec.visit_id, "T1019", 4800, 0, 8, spec.scheduled_start.date(), adjustments=[("CO", "197", 4800)],
        remarks=["M62"])])], trace=trace))

    biller = await Person.sign_in(browser, live_url, agency.users["biller"].username, width=width)
    page = biller.page
    await page.goto(f"{live_url}/billing")
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Remittances").click()
    await expect(page.get_by_role("heading", name="Remittances", exact=True)).to_be_visible()
    await page.get_by_label("835 file from the payer or clearinghouse").set_input_files(str(era))
    await page.get_by_role("button", name="Import").click()
    outcome = page.locator("#import-outcome")
    await expect(outcome).to_contain_text(f"Imported TEXAS MEDICAID's NON {trace}")
    await expect(outcome).to_contain_text("CO-197: prior authorization absent ($48.00)")
    await expect(outcome).to_contain_text("Back in work with billing (correct and rebill)")
    # The list below updates itself with the new remittance.
    await expect(page.locator("#remittance-rows")).to_contain_text(trace)

    # Imported again by mistake: said so, nothing changes.
    await page.get_by_label("835 file from the payer or clearinghouse").set_input_files(str(era))
    await page.get_by_role("button", name="Import").click()
    await expect(outcome).to_contain_text(f"This payment (TEXAS MEDICAID's NON {trace}) was imported before")
    await outcome.get_by_role("link", name="Open the remittance").click()
    await expect(page.get_by_role("heading", name=f"TEXAS MEDICAID: NON {trace}")).to_be_visible()
    await expect(page.get_by_role("link", name=spec.visit_id)).to_be_visible()
    await biller.leave()
