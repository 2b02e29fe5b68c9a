"""A supervisor works /escalations in a real browser: the reassign, extend-deadline and decision forms arrive when
their disclosure opens, not with the page, and the clinician filter finds a clinician as their name is typed."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import expect

from tests.ui.conftest import FAR, VisitSetup, recent_start
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


async def test_a_supervisor_finds_a_clinician_then_extends_a_late_note_and_decides_an_exception(  # noqa: F811
        live_url, browser, agency, visits: VisitSetup, env):
    expect.set_options(timeout=WAIT_MS)
    late_id = await visits.schedule(recent_start(hours_ago=24 * 4))  # no note for four days: escalated
    held_id = await visits.delivered(recent_start(), clock_in_at=FAR, document=True)  # EVV-02 to decide
    await visits.projected(late_id)
    await visits.projected(held_id, "on_hold")
    supervisor = await Person.sign_in(browser, live_url, agency.users["supervisor"].username)
    page = supervisor.page

    # The filter: typing the start of a last name lists the clinicians it fits; one click opens their list.
    await page.goto(f"{live_url}/escalations")
    await page.get_by_label("Clinician", exact=True).press_sequentially(f"aide{agency.tag}")
    matches = page.locator("#esc-who-matches")
    await expect(matches).to_contain_text("2 clinicians match")
    await matches.get_by_role("link", name=f"Devon Aide{agency.tag} (PCA)").click()
    await expect(page).to_have_url(re.compile(rf"/escalations\?clinician={agency.clinician.id}$"))
    await expect(page.get_by_label("Clinician", exact=True)).to_have_value(f"Devon Aide{agency.tag}")

    # No row carries a form until it is opened.
    late_row = page.locator(f"#overdue-{late_id}-note")
    await expect(late_row).to_contain_text("Escalated to you")
    assert await page.locator("#overdue-list form, #exceptions-list form").count() == 0

    # Extend the late note's deadline: the form arrives for the note, the row says when it is now due.
    await late_row.locator("summary", has_text="Extend the deadline").click()
    form = late_row.locator("form[hx-post$='/deadline']")
    zone = ZoneInfo(visits.settings.agency_timezone)
    later = (await env.get_current_time() + timedelta(days=2)).astimezone(zone)  # the workflow's clock judges it
    await form.get_by_label("New note deadline").fill(later.strftime("%Y-%m-%dT%H:%M"))
    await form.get_by_label("Reason").fill("Caregiver ill")
    await form.get_by_role("button", name=re.compile(r"^Extend the deadline")).click()
    await expect(late_row).to_contain_text(f"The note for visit {late_id} is now due")

    # Decide the exception: the decision form arrives when "Approve or reject" opens.
    held_row = page.locator("#exceptions-list li").filter(has_text=f"Visit {held_id}")
    await expect(held_row).to_contain_text("EVV-02")
    await held_row.locator("summary", has_text="Approve or reject").click()
    await held_row.get_by_label("Reason for your decision").fill("Parked at the clinic lot across the street")
    await supervisor.shot("supervisor-decision-opened")
    await held_row.get_by_role("button", name=re.compile(r"^Approve")).click()
    await expect(page.locator(f"[id^='exception-{held_id}']")).to_contain_text(f"Approved: EVV-02 on visit {held_id}.")
    await visits.projected(held_id, "claim_ready")
    await page.goto(f"{live_url}/escalations?clinician={agency.clinician.id}")
    await expect(page.locator("#exceptions-list")).to_be_visible()
    await expect(page.locator("#exceptions-list li").filter(has_text=f"Visit {held_id}")).to_have_count(0)
    await supervisor.leave()
