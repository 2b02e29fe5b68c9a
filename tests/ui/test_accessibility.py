"""axe-core (from npm) in a real browser finds no serious or critical accessibility problem on any page.

Each role's pages are opened as that person would open them, at desktop and phone widths, with a visit on
them that has holds, punches and a timeline, and axe checks what is on screen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.ui.conftest import FAR, VisitSetup, end_order_chases, recent_start
from tests.ui.test_browser import WAIT_MS, Person, browser, live_url  # noqa: F401  (fixtures)
from tests.ui.test_order_pages import enter as enter_order

pytestmark = pytest.mark.browser

AXE = Path(__file__).parents[2] / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")

PAGES = {  # who opens which pages ("{visit}" is a visit on hold with an EVV exception)
    "clinician": ["/tasks", "/visits/{visit}", "/notices"],
    "supervisor": ["/escalations", "/holds", "/dashboard", "/visits", "/visits/{visit}", "/supervision", "/notices"],
    "biller": ["/billing", "/holds", "/claims", "/claim-files", "/dashboard", "/visits", "/visits/{visit}",
               "/changes"],
    "admin": ["/dashboard", "/visits?patient=Alice", "/admin/users", "/admin/audit", "/orders", "/intake",
              "/admin/events"],
}


async def serious_problems(page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    violations = await page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']})
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))
    }""")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {v['where']}" for v in violations
            if v["impact"] in SERIOUS]


@pytest.mark.parametrize("width", [1280, 390])
async def test_no_page_has_a_serious_accessibility_problem(live_url, browser, agency, visits: VisitSetup,  # noqa: F811
                                                           width):
    assert AXE.is_file(), "axe-core is missing: run `npm ci` (make test does)"
    expect.set_options(timeout=WAIT_MS)
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR, document=True)
    await visits.projected(visit_id, "on_hold")
    order_id = await enter_order(visits, 3)  # the orders page with a row and its forms
    problems: list[str] = []

    page = await (await browser.new_context(viewport={"width": width, "height": 900})).new_page()
    await page.goto(f"{live_url}/signin")
    problems += [f"/signin: {p}" for p in await serious_problems(page)]
    await page.context.close()

    for role, paths in PAGES.items():
        person = await Person.sign_in(browser, live_url, agency.users[role].username, width=width)
        for path in paths:
            url = path.format(visit=visit_id)
            response = await person.page.goto(f"{live_url}{url}")
            assert response.status == 200, f"{role} {url}: {response.status}"
            problems += [f"{role} {url}: {p}" for p in await serious_problems(person.page)]
        await person.leave()
    await end_order_chases(visits.client, visits.engine, [order_id])
    assert not problems, "\n".join(problems)
