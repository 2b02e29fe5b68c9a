"""A real browser (Debian's Chromium, headless) drives one visit from note to release through the UI.

The app runs under uvicorn as a task on the test session's event loop, wired to the Temporal test server
and the test worker. Steps wait on what a person would see (Playwright's expect), never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import ARTIFACTS
from tests.ui.conftest import FAR, VisitSetup, recent_start
from visitflow.main import create_app

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ARTIFACTS / "screenshots"
WAIT_MS = 20_000  # lists refresh every 5 s; a workflow step plus a poll fits well inside this


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the test session owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@pytest_asyncio.fixture(scope="module")
async def live_url(ui_settings, env, worker, engine) -> AsyncIterator[str]:
    app = create_app(ui_settings, temporal=env.client)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held until uvicorn takes it over
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # surfaces why the server could not start
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    await task


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed at /usr/bin/chromium. Install it with "
                    "`apt-get install -y chromium` (scripts/test.sh does this before running the tests).")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        await chromium.close()


class Person:
    """One person at their own browser: their own cookies, and a record of any script errors."""

    def __init__(self, context: BrowserContext, page: Page, base: str) -> None:
        self.context, self.page, self.base = context, page, base
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error"
                and not msg.text.startswith("Failed to load resource") else None)

    @classmethod
    async def sign_in(cls, browser: Browser, base: str, username: str, width: int = 1280) -> Person:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        person = cls(context, await context.new_page(), base)
        page = person.page
        await page.goto(f"{base}/signin")
        await page.get_by_label("Username").fill(username)
        await page.get_by_label("Password").fill("pw")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return person

    async def shot(self, name: str) -> None:
        """Save a screenshot of the page, after checking its ids are unique (labels and htmx rely on them)."""
        duplicates = await self.page.evaluate("""() => {
            const ids = [...document.querySelectorAll('[id]')].map(e => e.id)
            return ids.filter((id, i) => ids.indexOf(id) !== i)
        }""")
        assert not duplicates, f"{name}: duplicate ids {duplicates}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    async def leave(self) -> None:
        await self.page.get_by_role("button", name="Sign out").click()
        await expect(self.page.get_by_text("You are signed out.")).to_be_visible()
        await self.context.close()
        assert not self.errors, self.errors


async def test_a_visit_goes_from_note_to_release_through_the_ui(live_url, browser, agency, visits: VisitSetup):
    expect.set_options(timeout=WAIT_MS)
    # The caregiver's phone clocked in 2.3 km from the home (EVV-02) and out at the home.
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR)
    clinician_user = agency.users["clinician"]

    # --- the clinician writes and signs the note --------------------------------------------------
    sign_in_page = await (await browser.new_context()).new_page()
    await sign_in_page.goto(f"{live_url}/signin")
    await expect(sign_in_page.get_by_role("heading", name="Sign in to VisitFlow")).to_be_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    await sign_in_page.screenshot(path=str(SHOTS / "signin.png"), full_page=True)
    await sign_in_page.context.close()

    clinician = await Person.sign_in(browser, live_url, clinician_user.username)
    page = clinician.page
    await expect(page.get_by_role("heading", name="My tasks")).to_be_visible()
    task = page.get_by_role("link", name=re.compile(rf"Write the visit note .*visit {visit_id}"))
    await expect(task).to_be_visible()
    await clinician.shot("clinician-my-tasks")
    # At phone width the pages still fit: no sideways scrolling.
    await page.set_viewport_size({"width": 375, "height": 812})
    await expect(task).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await clinician.shot("clinician-my-tasks-phone")
    await page.set_viewport_size({"width": 1280, "height": 900})
    await task.click()
    await expect(page.get_by_role("heading", name=re.compile(rf"^Visit {visit_id}"))).to_be_visible()

    tasks_text = "Bathing, meal preparation, light housekeeping"
    await page.get_by_label("Tasks performed").fill(tasks_text)
    await page.get_by_role("button", name="Submit the note").click()
    problem = page.get_by_text("Client condition is required for this discipline.")
    await expect(problem).to_be_visible()
    await expect(page.get_by_label("Tasks performed")).to_have_value(tasks_text)  # nothing typed is lost
    await expect(page.get_by_label("Client condition")).to_be_focused()
    await clinician.shot("clinician-note-error")

    # The draft lives in this browser until the note is accepted: a reload brings it back.
    condition = "Alert and cheerful; ate a full lunch"
    await page.get_by_label("Client condition").fill(condition)
    await page.reload()
    await expect(page.get_by_label("Client condition")).to_have_value(condition)
    await expect(page.get_by_label("Tasks performed")).to_have_value(tasks_text)
    await expect(page.get_by_text("Restored your unsent draft from this device.")).to_be_visible()
    await page.get_by_role("button", name="Submit the note").click()
    await expect(page.get_by_role("button", name="Sign the note")).to_be_visible()
    # Accepted: the draft is cleared from this browser (as the new panel settles).
    draft_key = f"visitflow:draft:{clinician_user.id}:{visit_id}"
    await page.wait_for_function("key => localStorage.getItem(key) === null", arg=draft_key)

    await page.get_by_role("button", name="Sign the note").click()
    await expect(page.get_by_text("Tick the box to confirm the attestation before you sign.")).to_be_visible()
    await page.get_by_label("I attest that this note is accurate").check()
    await page.get_by_role("button", name="Sign the note").click()
    await expect(page.locator("#work").get_by_text("Signed. The visit is being checked for billing.")).to_be_visible()
    # The status region follows the workflow live: the gates ran and EVV is held for the supervisor.
    evv_gate = page.locator("#visit-status .gate").filter(has_text="EVV verified")
    await expect(evv_gate).to_contain_text("held")
    await expect(evv_gate).to_contain_text("1 open hold, listed below")
    await expect(page.locator("#visit-status .holds")).to_contain_text("Punch far from the client's address")
    await expect(page.locator("#visit-status .gate").filter(has_text="Signed")).to_contain_text("passed")
    await clinician.shot("clinician-visit-signed")

    await page.set_viewport_size({"width": 375, "height": 812})
    await page.goto(f"{live_url}/visits/{visit_id}")
    await expect(page.get_by_role("heading", name="Where the visit stands")).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await clinician.shot("clinician-visit-phone")
    await clinician.leave()

    # --- the supervisor clears the EVV exception ------------------------------------------------------
    supervisor = await Person.sign_in(browser, live_url, agency.users["supervisor"].username)
    page = supervisor.page
    await expect(page.get_by_role("heading", name="Escalations", exact=True)).to_be_visible()
    await page.get_by_label("Clinician", exact=True).fill(f"{agency.clinician.first_name} {agency.clinician.last_name}")
    await page.get_by_role("button", name="Show", exact=True).click()
    await expect(page).to_have_url(re.compile(rf"/escalations\?clinician={agency.clinician.id}$"))
    row = page.locator("#exceptions-list li").filter(has_text=f"Visit {visit_id}")
    await expect(row).to_contain_text("EVV-02")
    team_row = page.locator("#team tr").filter(has_text=agency.clinician.last_name)
    await expect(team_row.locator('td[data-label="Exceptions"]')).to_have_text("1")
    await row.locator("summary", has_text="Approve or reject").click()  # the form arrives as it opens
    await row.get_by_label("Reason for your decision").fill("Parked at the clinic lot across the street")
    await supervisor.shot("supervisor-escalations")
    await row.get_by_role("button", name=re.compile(r"^Approve")).click()
    await expect(page.locator("#flash")).to_contain_text(f"Approved: EVV-02 on visit {visit_id}.")
    await expect(page.locator("#team")).not_to_contain_text(agency.clinician.last_name)  # refreshed: nothing left
    await supervisor.leave()

    # --- the biller sees it ready to bill and releases it ---------------------------------------------
    biller = await Person.sign_in(browser, live_url, agency.users["biller"].username)
    page = biller.page
    await expect(page.get_by_role("heading", name="Ready to bill", exact=True)).to_be_visible()
    await page.get_by_label("Payer", exact=True).select_option(label=agency.payer.name)
    await page.get_by_role("button", name="Filter").click()
    pick = page.get_by_label(re.compile(rf"Release visit {visit_id} for"))
    await expect(pick).to_be_visible()  # arrives by polling once the workflow reaches claim_ready
    await pick.check()
    await biller.shot("biller-ready-to-bill")
    await page.get_by_role("button", name="Release selected visits").click()
    await expect(page.locator("#release-outcome")).to_contain_text("Released 1 visit in batch")
    await expect(page.locator("#release-outcome")).to_contain_text(visit_id)
    await expect(page.locator("#ready-list")).to_contain_text("0 visits ready to bill for these filters.")
    await biller.shot("biller-released")

    await page.goto(f"{live_url}/visits/{visit_id}")
    status = page.locator("#visit-status")
    await expect(status.locator(".state-line")).to_contain_text("Released")
    for step in ("Note submitted", "Note signed", "Exception approved", "Ready to bill", "Released for billing"):
        await expect(status.locator(".timeline")).to_contain_text(step)
    # The workflow's inner workings are for office staff and supervisors, not billers.
    await expect(page.get_by_role("link", name=re.compile("Open this visit's workflow in Temporal"))).to_have_count(0)
    await biller.shot("visit-page")
    await page.goto(f"{live_url}/holds")
    await expect(page.get_by_role("heading", name="Holds", exact=True)).to_be_visible()
    await biller.shot("biller-holds")
    await page.goto(f"{live_url}/dashboard")
    await expect(page.get_by_role("heading", name="Backlog aging")).to_be_visible()
    await biller.shot("dashboard")
    await biller.leave()
