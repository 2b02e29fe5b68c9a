"""The office's finding a visit, and the dashboard with short deadlines, in a real browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import expect

from tests.ui.conftest import VisitSetup, recent_start
from tests.ui.test_browser import WAIT_MS, Person, _Server, browser  # noqa: F401 (fixtures)
from visitflow.main import create_app

pytestmark = pytest.mark.browser


@pytest_asyncio.fixture(scope="module")
async def short_deadlines_url(ui_settings, env, worker, engine) -> AsyncIterator[str]:
    """The app as an agency runs it with deadlines of seconds (VISITFLOW_NOTE_DUE=20s), as in a demo."""
    settings = ui_settings.model_copy(update={"note_due": timedelta(seconds=20),
                                              "note_escalate_after": timedelta(minutes=90)})
    app = create_app(settings, temporal=env.client)
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
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("width", [390, 1280])
async def test_the_office_finds_a_visit_by_patient_name_and_opens_it(short_deadlines_url, browser, agency,  # noqa: F811
                                                                   visits: VisitSetup, width):
    expect.set_options(timeout=WAIT_MS)
    visit_id = await visits.schedule(recent_start(hours_ago=30), visit_id=f"office-{agency.tag}-{width}")
    office = await Person.sign_in(browser, short_deadlines_url, agency.users["admin"].username, width=width)
    page = office.page
    await page.get_by_role("link", name="Visits").first.click()
    await page.get_by_label("Patient").fill(f"alice test{agency.tag}")  # typed the way people type names
    await page.keyboard.press("Enter")
    result = page.get_by_role("link", name=visit_id)
    await expect(result).to_be_visible()
    await result.click()
    await expect(page.get_by_role("heading", name=re.compile(rf"^Visit {visit_id}"))).to_be_visible()

    await page.goto(f"{short_deadlines_url}/dashboard")
    lag = page.locator("body")
    await expect(lag).to_contain_text("within 20 s")
    assert not re.search(r"\d\.\d{4,}", await lag.inner_text()), "a duration is shown as a raw fraction"
    await office.leave()
