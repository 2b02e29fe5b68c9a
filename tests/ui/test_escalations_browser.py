"""A supervisor reassigns a late note from /escalations in a real browser: the reassign form (with the agency's
clinicians) arrives when its disclosure opens, not with the page."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.ui.conftest import VisitSetup, recent_start
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


async def test_a_supervisor_opens_a_reassign_form_and_reassigns_a_late_note(live_url, browser, agency,  # noqa: F811
                                                                         visits: VisitSetup):
    expect.set_options(timeout=WAIT_MS)
    visit_id = await visits.schedule(recent_start(hours_ago=24 * 4))  # no note for four days: escalated
    await visits.projected(visit_id)
    supervisor = await Person.sign_in(browser, live_url, agency.users["supervisor"].username)
    page = supervisor.page
    await page.goto(f"{live_url}/escalations?clinician={agency.clinician.id}")
    row = page.locator(f"#overdue-{visit_id}-note")
    await expect(row).to_contain_text("Escalated to you")
    await expect(row).to_contain_text(agency.clinician.last_name)
    # The page carries no list of clinicians for reassigning: none of the late notes' forms is there yet.
    assert await page.locator("#overdue-list select[name=clinician_id]").count() == 0

    await row.locator("summary", has_text="Reassign").click()
    form = row.locator("form[hx-post$='/reassign']")
    choose = form.get_by_label("New clinician")
    await expect(choose).to_be_visible()
    # The visit's own clinician is not offered; the one taking over is.
    assert await choose.locator(f"option[value='{agency.clinician.id}']").count() == 0
    await choose.select_option(value=str(agency.other_clinician.id))
    await form.get_by_label("Reason").fill("Devon is on leave this week")
    await supervisor.shot("supervisor-reassign")
    await form.get_by_role("button", name=re.compile(r"^Reassign")).click()
    await expect(row).to_contain_text(f"Visit {visit_id} is now assigned to Casey Aide{agency.tag}")

    # The late note is now the new clinician's: under their name, and no longer under the former clinician's.
    await page.goto(f"{live_url}/escalations?clinician={agency.other_clinician.id}")
    await expect(page.locator(f"#overdue-{visit_id}-note")).to_contain_text(f"Casey Aide{agency.tag}")
    await page.goto(f"{live_url}/escalations?clinician={agency.clinician.id}")
    await expect(page.locator("#overdue-list")).to_be_visible()
    await expect(page.locator(f"#overdue-{visit_id}-note")).to_have_count(0)
    await supervisor.leave()
