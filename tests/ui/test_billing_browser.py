"""A biller works Ready to bill the way people do: the page stays open through its refreshes, a visit becomes
claim-ready by itself while they look, they tick with the keyboard, a refresh keeps their ticks and the running
total, and Release answers with its outcome. At phone and desktop widths, in a real Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.ui.conftest import VisitSetup, recent_start
from tests.ui.test_billing_routes import signed_without_clock_out
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401  (fixtures: the live app)

pytestmark = pytest.mark.browser


async def a_refresh(page: Page) -> None:
    """Wait until the live list has been replaced by its 5 s refresh (not merely until 5 s have gone by)."""
    await page.evaluate("document.getElementById('ready-list').dataset.seen = '1'")
    await page.wait_for_function(
        "() => { const list = document.getElementById('ready-list'); return list && !list.dataset.seen }",
        timeout=WAIT_MS)
    # One list and the outcome area, every time: the old refresh swapped a second list into the outcome area.
    assert await page.evaluate("document.querySelectorAll('#ready-list').length") == 1
    assert await page.evaluate("document.querySelectorAll('#release-outcome').length") == 1


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


async def cents_of(page: Page, visit_id: str) -> int:
    box = page.locator(f'input[name=visit_ids][value="{visit_id}"]')
    return int(await box.get_attribute("data-cents"))


@pytest.mark.parametrize("width", [390, 1280])
async def test_ready_to_bill_survives_its_refreshes_and_releases_what_was_ticked(
        live_url, browser, agency, visits: VisitSetup, width):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    first = await visits.delivered(recent_start(6), document=True)
    await visits.projected(first, "claim_ready")

    biller = await Person.sign_in(browser, live_url, agency.users["biller"].username, width=width)
    page = biller.page
    await page.goto(f"{live_url}/billing?payer={agency.payer.id}")
    await expect(page.get_by_role("heading", name="Ready to bill", exact=True)).to_be_visible()
    group = page.locator("tbody.payer-group").filter(has_text=agency.payer.name)
    await expect(group.locator(".group-head")).to_contain_text("1 visit · $")
    await a_refresh(page)
    await a_refresh(page)  # past two refreshes, the page still works

    # The keyboard ticks the first visit; the running count and dollars follow.
    summary = page.locator("#selection-summary")
    await expect(summary).to_have_text("Tick the visits to release.")
    first_box = page.get_by_label(re.compile(rf"Release visit {first} for"))
    await first_box.focus()
    await page.keyboard.press("Space")
    await expect(first_box).to_be_checked()
    first_cents = await cents_of(page, first)
    await expect(summary).to_have_text(f"1 visit ticked, {money(first_cents)} to release.")
    release = page.get_by_role("button", name="Release selected visits")
    await release.focus()  # focus leaves the list: it refreshes again, ticks and all

    # A second visit becomes claim-ready by itself while the page is open, and arrives in the list.
    second = await visits.delivered(recent_start(4), document=True)
    second_box = page.get_by_label(re.compile(rf"Release visit {second} for"))
    await expect(second_box).to_be_visible()
    await expect(group.locator(".group-head")).to_contain_text("2 visits · $")
    await expect(first_box).to_be_checked()  # the refresh that brought it kept the tick
    await a_refresh(page)
    await expect(first_box).to_be_checked()
    await expect(summary).to_have_text(f"1 visit ticked, {money(first_cents)} to release.")

    await second_box.focus()
    await page.keyboard.press("Space")
    both = first_cents + await cents_of(page, second)
    await expect(summary).to_have_text(f"2 visits ticked, {money(both)} to release.")
    await biller.shot(f"billing-ticked-{width}")
    if width < 760:  # a phone: the page fits, no sideways scrolling
        assert await page.evaluate("document.documentElement.scrollWidth") <= width

    await release.focus()
    await page.keyboard.press("Enter")
    outcome = page.locator("#release-outcome")
    await expect(outcome).to_contain_text("Released 2 visits in batch")
    await expect(outcome).to_contain_text(first)
    await expect(outcome).to_contain_text(second)
    await expect(page.locator("#ready-list")).to_contain_text("0 visits ready to bill for these filters.")
    await expect(summary).to_have_text("Tick the visits to release.")
    await a_refresh(page)  # the outcome stays put through the next refresh
    await expect(outcome).to_contain_text("Released 2 visits in batch")
    await biller.shot(f"billing-released-{width}")
    await visits.projected(first, "released")
    await visits.projected(second, "released")
    await biller.leave()


@pytest.mark.parametrize("width", [390, 1280])
async def test_holds_say_the_problem_the_dollars_and_the_age_and_send_back_only_what_the_clinician_can_fix(
        live_url, browser, agency, visits: VisitSetup, width):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    auth_held = await visits.delivered(recent_start(5), document=True, authorize=False)
    await visits.projected(auth_held, "on_hold")
    no_clock_out = await signed_without_clock_out(visits, recent_start(7))

    biller = await Person.sign_in(browser, live_url, agency.users["biller"].username, width=width)
    page = biller.page
    await page.goto(f"{live_url}/holds?payer={agency.payer.id}")
    auth_group = page.locator("section.hold-group").filter(
        has=page.get_by_role("heading", name="No authorization covers the visit AUTH-01"))
    await expect(auth_group.locator(".group-stats")).to_contain_text("1 visit held")
    await expect(auth_group.locator(".group-stats")).to_contain_text("at risk")
    await expect(auth_group.locator(".group-stats")).to_contain_text("oldest")
    await expect(auth_group.get_by_text("Send back to the clinician")).to_have_count(0)
    evv_group = page.locator("section.hold-group").filter(has=page.get_by_role("heading", name=re.compile("^EVV")))
    await expect(evv_group).to_contain_text(f"Visit {no_clock_out}")
    await biller.shot(f"holds-{width}")
    if width < 760:
        assert await page.evaluate("document.documentElement.scrollWidth") <= width

    # Past a refresh, the keyboard opens the send-back form on the clinician's hold and sends it.
    await page.evaluate("document.getElementById('holds-list').dataset.seen = '1'")
    await page.wait_for_function("() => !document.getElementById('holds-list').dataset.seen", timeout=WAIT_MS)
    summary = evv_group.locator("summary", has_text="Send back to the clinician").first
    await summary.focus()
    await page.keyboard.press("Enter")
    message = evv_group.get_by_label("What must the clinician fix?").first
    await message.focus()
    await page.keyboard.type("Add the missing clock-out")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator("#flash")).to_contain_text(f"Visit {no_clock_out} went back to")
    await visits.projected(no_clock_out, "documented")
    await biller.leave()


async def test_a_ticked_visit_that_a_refresh_moves_off_the_page_stays_ticked_and_is_released(
        live_url, browser, agency, visits: VisitSetup):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    visit_id = await visits.delivered(recent_start(6), document=True)
    await visits.projected(visit_id, "claim_ready")
    biller = await Person.sign_in(browser, live_url, agency.users["biller"].username)
    page = biller.page
    await page.goto(f"{live_url}/billing?payer={agency.payer.id}")
    box = page.get_by_label(re.compile(rf"Release visit {visit_id} for"))
    await box.focus()
    await page.keyboard.press("Space")
    cents = await cents_of(page, visit_id)
    summary = page.locator("#selection-summary")
    await expect(summary).to_have_text(f"1 visit ticked, {money(cents)} to release.")
    # Stands in for a refresh after which the visit sits on the next page (visits with earlier service dates
    # became ready ahead of it and filled this one):
    # the list comes back without it.
    await page.evaluate("""url => htmx.ajax('GET', url, {target: '#ready-list', swap: 'outerHTML'})""",
                        f"/billing/list?payer={agency.payer.id}&date_from=2100-01-01")
    await expect(page.locator("#ready-list")).to_contain_text("0 visits ready to bill for these filters.")
    await expect(summary).to_have_text(f"1 visit ticked, {money(cents)} to release (1 not on this page).")
    release = page.get_by_role("button", name="Release selected visits")
    await expect(release).to_be_visible()
    await release.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#release-outcome")).to_contain_text("Released 1 visit in batch")
    await expect(page.locator("#release-outcome")).to_contain_text(visit_id)
    await expect(summary).to_have_text("Tick the visits to release.")
    await visits.projected(visit_id, "released")
    await biller.leave()
