"""The event endpoints page (/admin/events) as the office uses it: add one (a made secret shown once), a resent form
adds nothing more, a test event reaches a real receiver and its delivery shows, switch off and on; and in a browser."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import expect
from sqlmodel import Session, func, select

from tests.receiver import Receiver, receivers  # noqa: F401 (a fixture)
from tests.ui.conftest import csrf_of, htmx, sign_in
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401 (fixtures)
from visitflow.db.tables import EventEndpoint, EventEndpointUpdate
from visitflow.services.changes import change_endpoint


def _switch_off(engine, endpoint_ids) -> None:
    """Later tests' changes are not sent to a receiver that has stopped."""
    with Session(engine) as s:
        for endpoint_id in endpoint_ids:
            change_endpoint(s, endpoint_id, EventEndpointUpdate(active=False))
        s.commit()


async def until_text(web, path: str, text: str, timeout: float = 20) -> str:
    for _ in range(int(timeout * 10)):
        page = await web.get(path)
        if text in page.text:
            return page.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never showed on {path}: {page.text[-2000:]}")


async def test_the_office_adds_an_endpoint_tests_it_and_switches_it_off(web, ui_app, agency, engine, receivers):
    token = await sign_in(web, agency.users["admin"].username)
    page = await web.get("/admin/events")
    assert page.status_code == 200 and 'hx-post="/admin/events"' in page.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1)
    receiver = Receiver("unknown until made")
    url = await receivers(receiver)

    bad = await web.post("/admin/events", headers=htmx(token), data={
        "url": "ftp://nowhere", "event_types": ["change.recorded"], "idempotency_key": key})
    assert bad.status_code == 422 and "Must be an http:// or https:// address" in bad.text
    none = await web.post("/admin/events", headers=htmx(token), data={"url": url, "idempotency_key": key})
    assert none.status_code == 422 and "Choose at least one event type" in none.text
    short = await web.post("/admin/events", headers=htmx(token), data={
        "url": url, "secret": "short", "event_types": ["change.recorded"], "idempotency_key": key})
    assert short.status_code == 422 and "at least 16 characters" in short.text and 'value="short"' not in short.text

    form = {"url": f"  {url} ", "description": f"EHR {agency.tag}", "event_types": ["change.recorded",
                                                                                   "change.visit_outcome"],
            "idempotency_key": key}
    added = await web.post("/admin/events", headers=htmx(token), data=form)
    assert added.status_code == 200 and "not shown again" in added.text, added.text
    secret = re.search(r'<code class="token" id="endpoint-(\d+)-secret">([^<]+)</code>', added.text)
    endpoint_id, receiver.secret = int(secret.group(1)), secret.group(2)
    # The answer was lost and the office sends the form again: the same endpoint, not a second one.
    again = await web.post("/admin/events", headers=htmx(token), data=form)
    assert again.status_code == 200 and f'id="endpoint-{endpoint_id}-secret">{receiver.secret}<' in again.text
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(EventEndpoint).where(EventEndpoint.url == url)).one() == 1
        assert s.get(EventEndpoint, endpoint_id).secret == receiver.secret
    try:
        listed = await web.get("/admin/events")
        assert url in listed.text and receiver.secret not in listed.text  # never shown again
        test_key = re.search(rf'hx-post="/admin/events/{endpoint_id}/test"[^>]*>\s*<input type="hidden" '
                             r'name="idempotency_key" value="([^"]+)"', listed.text).group(1)
        sent = await web.post(f"/admin/events/{endpoint_id}/test", headers=htmx(token),
                              data={"idempotency_key": test_key})
        resent = await web.post(f"/admin/events/{endpoint_id}/test", headers=htmx(token),
                                data={"idempotency_key": test_key})
        assert sent.status_code == resent.status_code == 200 and "Test event test_" in sent.text
        for _ in range(200):
            if receiver.accepted:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        [event] = receiver.accepted
        assert event["type"] == "endpoint.test" and receiver.bad_signatures == 0
        shown = await until_text(web, f"/admin/events/{endpoint_id}/deliveries", "Delivered")
        assert event["event_id"] in shown and "answered 200" in shown

        off = await web.post(f"/admin/events/{endpoint_id}/active", headers=htmx(token), data={"active": "no"})
        assert off.status_code == 200 and "Switched off" in off.text and "Send a test event" not in off.text
        refused = await web.post(f"/admin/events/{endpoint_id}/test", headers=htmx(token), data={})
        assert refused.status_code == 409 and "switched off" in refused.text
        on = await web.post(f"/admin/events/{endpoint_id}/active", headers=htmx(token), data={"active": "yes"})
        assert on.status_code == 200 and "Send a test event" in on.text
        missing = await web.post("/admin/events/999999/active", headers=htmx(token), data={"active": "no"})
        assert missing.status_code == 404
    finally:
        _switch_off(engine, [endpoint_id])
    assert csrf_of(page.text)


@pytest.mark.browser
async def test_in_a_browser_the_office_adds_an_endpoint_and_sees_a_delivery_arrive(
        live_url, browser, agency, engine, receivers):  # noqa: F811
    expect.set_options(timeout=WAIT_MS)
    receiver = Receiver("browser-secret-0123456789abc")
    url = await receivers(receiver)
    office = await Person.sign_in(browser, live_url, agency.users["admin"].username)
    page = office.page
    await page.get_by_role("link", name="Event endpoints").first.click()
    await expect(page.get_by_role("heading", name="Event endpoints", exact=True)).to_be_visible()
    await page.get_by_label("Address (URL)").fill(url)
    await page.get_by_label("What it is").fill(f"Billing system {agency.tag}")
    await page.get_by_label("Secret").fill(receiver.secret)
    await page.get_by_role("button", name="Add the endpoint").click()
    card = page.locator("#endpoints li.card", has_text=url)
    await expect(card).to_be_visible()
    await expect(page.locator("#flash")).to_contain_text(f"Added {url}")
    endpoint_id = int((await card.get_attribute("id")).removeprefix("endpoint-"))
    try:
        await card.get_by_role("button", name="Send a test event").click()
        await expect(page.locator(f"#endpoint-{endpoint_id}")).to_contain_text("Delivered")  # it refreshes itself
        assert [e["type"] for e in receiver.accepted] == ["endpoint.test"] and receiver.bad_signatures == 0
        await expect(page.locator(f"#endpoint-{endpoint_id}")).to_contain_text("answered 200")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.locator(f"#endpoint-{endpoint_id}").get_by_role("button", name="Switch off").click()
        await expect(page.locator(f"#endpoint-{endpoint_id}")).to_contain_text("Switched off")
    finally:
        _switch_off(engine, [endpoint_id])
        await office.leave()
