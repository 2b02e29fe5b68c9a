"""A biller in a real Chromium: release a visit from Ready to bill, follow the outcome to its 837P file, mark it
submitted, and find the claim with its history through the navigation."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import expect

from tests.billing.conftest import billing_settings, claim_ready_visit
from tests.ui.test_accessibility import serious_problems
from tests.ui.test_browser import WAIT_MS, Person, _Server, browser  # noqa: F401  (fixtures)
from visitflow.main import create_app

pytestmark = pytest.mark.browser


@pytest_asyncio.fixture
async def live_billing(client, database_url, tmp_path) -> AsyncIterator[str]:
    """The app with the agency's billing identity, served on a free port."""
    app = create_app(billing_settings(database_url, tmp_path, secret_key="claims-browser"), temporal=client)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


async def test_a_biller_releases_submits_the_file_and_finds_the_claim(live_billing, browser, api, billable,  # noqa: F811
                                                                      t0):
    expect.set_options(timeout=WAIT_MS)
    agency = billable
    agency.authorize((t0 - timedelta(days=2)).date(), (t0 + timedelta(days=1)).date(), units_per_week=500)
    visit_id = await claim_ready_visit(api, agency, t0 - timedelta(hours=3))

    biller = await Person.sign_in(browser, live_billing, agency.users["biller"].username)
    page = biller.page
    await page.goto(f"{live_billing}/billing?payer={agency.payer.id}")
    row = page.get_by_role("row").filter(has_text=visit_id)
    await expect(row).to_contain_text(re.compile(r"\d+ days left"))
    await page.get_by_label(re.compile(rf"Release visit {visit_id} for")).check()
    await page.get_by_role("button", name="Release selected visits").click()
    outcome = page.locator(".outcome-box")
    await expect(outcome).to_contain_text("Released 1 visit")
    await expect(outcome).to_contain_text("passed the X12 check")

    await outcome.get_by_role("link", name="its page").click()
    await expect(page.get_by_role("heading", name="Passed the X12 check and the claim edits")).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile(r"Download 837P-\d{9}\.txt"))).to_be_visible()
    problems = [f"file page: {p}" for p in await serious_problems(page)]
    await page.get_by_role("button", name="Mark submitted").click()
    await expect(page.get_by_role("status").filter(has_text="Marked submitted")).to_be_visible()
    await expect(page.get_by_role("button", name="Mark submitted")).to_have_count(0)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Claims").click()
    await page.get_by_label("Patient number").fill(str(agency.patient.id))
    await page.get_by_role("button", name="Show").click()
    await page.get_by_role("row").filter(has_text="Submitted").get_by_role("link").first.click()
    await expect(page.get_by_role("link", name=visit_id)).to_be_visible()
    history = page.locator("ol.timeline")
    await expect(history).to_contain_text("In a file, not sent yet")
    await expect(history).to_contain_text("Submitted")
    await expect(page.locator("pre.x12")).to_contain_text(f"REF*6R*{visit_id}~")
    problems += [f"claim page: {p}" for p in await serious_problems(page)]
    assert not problems, "\n".join(problems)
    assert not biller.errors, biller.errors
    await biller.leave()
