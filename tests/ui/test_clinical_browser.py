"""Clinicians' and supervisors' pages in a real browser (issue 7), at phone and desktop widths.

People keep a page open past its 5 s refresh before they act, act with the keyboard, and act again after
the page has changed under them; the pages must follow the workflow, never offer what is already done, and
speak the agency's words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect

from tests.ui.conftest import FAR, VisitSetup, recent_start
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401 (fixtures)
from tests.ui.test_clinical_routes import two_exceptions
from visitflow.ui.present import Clock

pytestmark = pytest.mark.browser

WIDTHS = [390, 1280]
PAST_A_REFRESH_MS = 6_500  # lists and panels refresh every 5 s


async def fits(page: Page, width: int) -> None:
    if width <= 390:  # nothing scrolls sideways on a phone
        assert await page.evaluate("document.documentElement.scrollWidth") <= width


async def decide_by_keyboard(page: Page, reason: str) -> None:
    """Type the reason into the panel's first decision form and press Enter (its first button: Approve)."""
    field = page.locator("#work form.decision").first.get_by_label("Reason for your decision")
    await field.focus()
    await page.keyboard.type(reason)
    await page.keyboard.press("Enter")


@pytest.mark.parametrize("width", WIDTHS)
async def test_after_approving_one_of_two_exceptions_the_panel_offers_only_the_other(
        live_url, browser, agency, visits: VisitSetup, width):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    visit_id = await two_exceptions(visits)
    supervisor = await Person.sign_in(browser, live_url, agency.users["supervisor"].username, width=width)
    page = supervisor.page
    await page.goto(f"{live_url}/visits/{visit_id}")
    decisions = page.locator("#work form.decision")
    await expect(decisions).to_have_count(2)
    await page.wait_for_timeout(PAST_A_REFRESH_MS)  # the page has been open a while: it refreshed under us

    await decide_by_keyboard(page, "Parked at the clinic lot")
    await expect(page.locator("#work")).to_contain_text(f"Approved: EVV-02 on visit {visit_id}.")
    # The panel is the visit after the workflow's re-check: only the other exception is left to decide.
    await expect(decisions).to_have_count(1)
    await expect(decisions.locator('input[name="key"]')).to_have_value("EVV-02:punch-2")
    await expect(page.locator("#work")).not_to_contain_text("being checked again")
    await fits(page, width)
    await supervisor.shot(f"supervisor-one-decided-{width}")

    await page.wait_for_timeout(PAST_A_REFRESH_MS)  # still there after the next refresh
    await expect(decisions).to_have_count(1)
    await decide_by_keyboard(page, "Same lot at clock-out")
    await expect(page.locator("#work")).to_contain_text(f"Approved: EVV-02 on visit {visit_id}.")
    await expect(decisions).to_have_count(0)
    # The visit moves on: both approved, every gate passes, it is ready to bill.
    await expect(page.locator("#visit-status .state-line")).to_contain_text("Ready to bill")
    await expect(page.locator("#visit-status")).not_to_contain_text("Open holds")
    await supervisor.leave()


@pytest.mark.parametrize("width", WIDTHS)
async def test_my_tasks_shows_work_due_now_apart_from_upcoming_visits(
        live_url, browser, agency, visits: VisitSetup, width):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    missed = await visits.schedule(recent_start(hours_ago=24 * 4))  # never clocked in, no note: escalated
    tomorrow = await visits.schedule(datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1))
    clinician = await Person.sign_in(browser, live_url, agency.users["clinician"].username, width=width)
    page = clinician.page
    await expect(page.get_by_role("heading", name="To do now")).to_be_visible()
    await page.wait_for_timeout(PAST_A_REFRESH_MS)

    task = page.locator("#task-list li.card").filter(has=page.get_by_role(
        "link", name=re.compile(rf"Write the visit note .*visit {missed}")))
    await expect(task).to_be_visible()
    for chip in ("Missed: not clocked in", "Overdue", "Escalated to your supervisor"):
        await expect(task).to_contain_text(chip)
    await expect(task).to_contain_text(re.compile(r"\d+ d( \d+ h)? late"))
    upcoming = page.locator("ul.upcoming li.card").filter(has_text=tomorrow)
    await expect(upcoming).to_be_visible()
    await expect(upcoming).not_to_contain_text("Write the visit note")
    start = (await visits.projected(tomorrow)).scheduled_start
    await expect(upcoming).to_contain_text(Clock(visits.settings.agency_timezone).when(start))
    text = await page.locator("main").inner_text()
    for wrong in ("0 min late", "UTC", "T1019", "just now"):
        assert wrong not in text, wrong
    await fits(page, width)
    await clinician.shot(f"clinician-my-tasks-split-{width}")

    # Keyboard: Tab to the task's link and open it.
    link = task.get_by_role("link")
    await link.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name=re.compile(rf"^Visit {missed}"))).to_be_visible()
    await clinician.leave()


@pytest.mark.parametrize("width", WIDTHS)
async def test_a_clinician_reads_each_hold_once_in_plain_words(
        live_url, browser, agency, visits: VisitSetup, width):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR, document=True)
    await visits.projected(visit_id, "on_hold")
    clinician = await Person.sign_in(browser, live_url, agency.users["clinician"].username, width=width)
    page = clinician.page
    await page.goto(f"{live_url}/visits/{visit_id}")
    holds = page.locator("#visit-status ul.holds > li")
    await expect(holds).to_have_count(1)
    await page.wait_for_timeout(PAST_A_REFRESH_MS)  # refreshed: still told once
    await expect(holds).to_have_count(1)
    await expect(holds.get_by_role("heading", name="Punch far from the client's address")).to_be_visible()
    await expect(page.locator("#visit-status .gate").filter(has_text="EVV verified")).to_contain_text(
        "1 open hold, listed below")
    text = await page.locator("main").inner_text()
    assert text.lower().count("clock-in punch") == 1
    for developer_word in ("EVV-02", "T1019", "-> supervisor", "UTC", "gps"):
        assert developer_word not in text, developer_word
    await expect(page.get_by_role("link", name=re.compile("workflow in Temporal"))).to_have_count(0)
    await fits(page, width)
    await clinician.shot(f"clinician-visit-hold-once-{width}")
    await clinician.leave()
