"""In a real browser: the office sets a patient's aide supervision (SUP-01) from /supervision, and the supervising
RN finds the prompt among her notices."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from playwright.async_api import expect

from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401 (fixtures)
from tests.ui.test_supervision_pages import nurse  # noqa: F401 (fixture)
from visitflow.services.supervision import agency_today

pytestmark = pytest.mark.browser


async def test_the_office_sets_supervision_and_the_rn_is_prompted(live_url, browser, agency, nurse,  # noqa: F811
                                                                   ui_settings):
    expect.set_options(timeout=WAIT_MS)
    patient = f"Alice Test{agency.tag}"
    office = await Person.sign_in(browser, live_url, agency.users["admin"].username)
    page = office.page
    await page.get_by_role("link", name="Supervision").click()
    await page.get_by_label("Find the patient").fill(f"test{agency.tag}")  # typed the way people type names
    picker = page.get_by_label("Patient", exact=True)
    await expect(picker.locator(f'option[value="{agency.patient.id}"]')).to_have_count(1)
    await picker.select_option(str(agency.patient.id))
    await page.get_by_label(re.compile("Aide with skilled services")).check()
    await page.get_by_label(re.compile("Supervising RN or therapist")).select_option(str(nurse.id))
    # The last supervisory visit 12 days ago: the next is due in 2 days, inside the 3 days' prompt.
    last = agency_today(ui_settings) - timedelta(days=12)
    await page.get_by_label(re.compile("Last supervisory visit")).fill(last.isoformat())
    await page.get_by_role("button", name="Set the supervision").click()
    await expect(page.get_by_role("status").filter(has_text=f"Aide supervision set for {patient}")).to_be_visible()
    board = page.locator("#supervision-board")
    await expect(board.get_by_role("row", name=re.compile(patient))).to_contain_text(f"Nurse{agency.tag}")
    await office.shot("supervision-set")
    await office.leave()

    rn = await Person.sign_in(browser, live_url, f"rn-{agency.tag}")
    page = rn.page
    await page.get_by_role("link", name=re.compile("^Notices")).click()
    prompt = page.get_by_text(re.compile(rf"Supervisory visit (due|lapsed): {patient}"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_MS / 1000
    while not await prompt.count():  # the page is not live: the RN looks again, as people do
        assert loop.time() < deadline, "the supervising RN was never prompted"
        await asyncio.sleep(0.5)
        await page.reload()
    await expect(prompt.first).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile(r"^Notices \d+"))).to_be_visible()  # counted in the nav
    await rn.shot("notices-rn")
    await rn.leave()
