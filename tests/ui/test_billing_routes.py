"""The biller's pages read at a glance: ready visits grouped by payer with counts and dollars, holds with the
dollars they keep from billing and how long they have waited, send-back offered only where the clinician can
fix the cause, and codes and rule ids in plain words. Real app, Temporal test server and database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from tests.conftest import Agency
from tests.ui.conftest import NOTE, VisitSetup, end_workflows, htmx, recent_start, sign_in
from visitflow.db.tables import Payer, Visit, VisitHold
from visitflow.models import PunchKind, SignNote, SubmitNote
from visitflow.services.commands import act
from visitflow.workflows.visit import VisitWorkflow


def money(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def payer_group(html: str, payer: str) -> str:
    """One payer's group on Ready to bill: its heading row and its visits."""
    start = html.index(f">{payer} <span")
    return html[html.rindex("<tbody", 0, start):html.index("</tbody>", start)]


def hold_group(html: str, rule_id: str) -> str:
    """One rule's group on Holds: from its heading to the next group."""
    start = html.index(f'<section class="panel hold-group" aria-labelledby="group-{rule_id}"')
    end = html.find('<section class="panel hold-group"', start + 1)
    return html[start:end if end != -1 else None]


def set_rate(engine, payer: Payer, cents: int) -> None:
    with Session(engine) as s:
        row = s.get(Payer, payer.id)
        row.rate_per_unit_cents = cents
        s.add(row)
        s.commit()


def units_of(engine, visit_id: str) -> int:
    with Session(engine) as s:
        units = s.get(Visit, visit_id).billable_units
    assert units, f"visit {visit_id} has no billable units"
    return units


async def signed_without_clock_out(visits: VisitSetup, start: datetime) -> str:
    """A visit documented and signed whose caregiver never clocked out: EVV-01, the clinician's to fix."""
    visit_id = await visits.schedule(start)
    day = start.date()
    visits.agency.authorize(day - timedelta(days=30), day + timedelta(days=30), units_per_week=200)
    await visits.punch(visit_id, PunchKind.clock_in, start + timedelta(minutes=2))
    clinician = visits.agency.actor("clinician")
    await act(visits.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=clinician, fields=NOTE))
    await act(visits.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=clinician, attestation=True))
    await visits.projected(visit_id, "on_hold")
    return visit_id


async def test_ready_visits_come_grouped_by_payer_with_each_groups_count_and_dollars(
        web, agency, visits: VisitSetup, client, engine, ui_settings):
    other = Agency(engine)  # a second payer, with its own patient and clinician
    other_visits = VisitSetup(client, engine, ui_settings, other)
    set_rate(engine, agency.payer, 583)
    set_rate(engine, other.payer, 612)
    try:
        mine = [await visits.delivered(recent_start(hours), document=True) for hours in (30, 6)]
        theirs = await other_visits.delivered(recent_start(8), document=True)
        for visit_id in mine:
            await visits.projected(visit_id, "claim_ready")
        await other_visits.projected(theirs, "claim_ready")
        token = await sign_in(web, agency.users["biller"].username)

        page = (await web.get("/billing")).text
        mine_cents = sum(units_of(engine, v) * 583 for v in mine)
        theirs_cents = units_of(engine, theirs) * 612
        group = payer_group(page, agency.payer.name)
        assert f"2 visits · {money(mine_cents)}" in group
        assert all(v in group for v in mine) and theirs not in group
        # Each visit's amount is its units at its payer's rate, carried on the box for the running total.
        for visit_id in mine:
            cents = units_of(engine, visit_id) * 583
            assert re.search(rf'value="{visit_id}" form="release-form" data-cents="{cents}"', group)
            assert money(cents) in group
        assert f"1 visit · {money(theirs_cents)}" in payer_group(page, other.payer.name)

        # A payer filter: one group, and the page total is that payer's.
        filtered = (await web.get(f"/billing/list?payer={agency.payer.id}", headers=htmx(token))).text
        assert "2 visits ready to bill for these filters." in filtered
        assert f"{money(mine_cents)} in all." in filtered and other.payer.name not in filtered
        assert filtered.count('class="payer-group"') == 1
        # The service in words, not only its code.
        assert "T1019 Personal care, per 15 min" in filtered
    finally:
        await end_workflows(client, other_visits.started)


async def test_the_live_list_answers_for_itself_and_sits_outside_the_release_form(web, agency, visits):
    visit_id = await visits.delivered(recent_start(), document=True)
    await visits.projected(visit_id, "claim_ready")
    await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/billing?payer={agency.payer.id}")).text
    form = page[page.index('<form id="release-form"'):page.index("</form>", page.index('<form id="release-form"'))]
    # A refresh of the list must never take the form's target (it swapped the list into the outcome area).
    assert 'id="ready-list"' not in form and 'id="release-outcome"' not in form
    region = re.search(r'<section id="ready-list"[^>]*>', page).group(0)
    assert 'hx-target="this"' in region and 'hx-swap="outerHTML"' in region and "data-keeps-ticks" in region
    assert f'name="visit_ids" value="{visit_id}" form="release-form"' in page
    assert page.index('id="release-outcome"') > page.index("</form>", page.index('<form id="release-form"'))


async def test_holds_show_dollars_at_risk_and_age_on_every_group(web, agency, visits: VisitSetup, engine):
    set_rate(engine, agency.payer, 583)
    held = [await visits.delivered(recent_start(hours), document=True, authorize=False) for hours in (5, 7, 9)]
    for visit_id in held:
        await visits.projected(visit_id, "on_hold")
    now = datetime.now(UTC)
    with Session(engine) as s:  # as if the holds had opened 3 h, 1 h and 30 min ago
        for visit_id, age in zip(held, (timedelta(hours=3), timedelta(hours=1), timedelta(minutes=30)), strict=True):
            for hold in s.exec(select(VisitHold).where(VisitHold.visit_id == visit_id)).all():
                hold.opened_at = now - age
                s.add(hold)
        s.commit()
    await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/holds?payer={agency.payer.id}")).text
    group = hold_group(page, "AUTH-01")
    heading = group[group.index("<h2"):group.index("</h2>")]
    # The heading names the problem; the rule id is a small tag after it.
    assert re.search(r'>No authorization covers the visit <span class="rule rule-tag">AUTH-01</span>$', heading)
    at_risk = sum(units_of(engine, v) * 583 for v in held)
    assert "3 visits held" in group and f"{money(at_risk)} at risk" in group
    assert "oldest 3 h, typically 1 h" in group
    # The reason reads as words; the rule id is not repeated in it.
    assert "<strong>Why:</strong> no active authorization" in group and "Why:</strong> AUTH-01" not in group
    assert "T1019 Personal care, per 15 min" in group


async def test_send_back_is_offered_only_where_the_clinician_can_fix_the_cause(web, agency, visits: VisitSetup):
    auth_held = await visits.delivered(recent_start(5), document=True, authorize=False)  # AUTH-01: billing's
    await visits.projected(auth_held, "on_hold")
    no_clock_out = await signed_without_clock_out(visits, recent_start(7))  # EVV-01: the clinician's
    token = await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/holds?payer={agency.payer.id}")).text

    auth_group = hold_group(page, "AUTH-01")
    assert auth_held in auth_group and "Who must act: Billing" in auth_group
    assert "Send back to the clinician" not in auth_group
    evv_group = hold_group(page, "EVV-01")
    assert no_clock_out in evv_group and "Who must act: Clinician" in evv_group
    assert f'hx-post="/visits/{no_clock_out}/send-back"' in evv_group

    # The visit page says the same.
    assert "Send back to the clinician" not in (await web.get(f"/visits/{auth_held}")).text
    assert "Send back to the clinician" in (await web.get(f"/visits/{no_clock_out}")).text

    # Asked anyway, the answer says why not, and the visit keeps its signature.
    refused = await web.post(f"/visits/{auth_held}/send-back", headers=htmx(token),
                             data={"message": "Please look at this"})
    assert refused.status_code == 409
    assert (f"Nothing holding visit {auth_held} is for the clinician to fix: No authorization covers the visit "
            "(billing).") in refused.text
    with Session(visits.engine) as s:
        assert s.get(Visit, auth_held).state == "on_hold"

    row = re.search(rf'<li id="(hold-{re.escape(no_clock_out)}-[^"]+)"', page).group(1)
    empty = await web.post(f"/visits/{no_clock_out}/send-back", headers=htmx(token), data={
        "message": "", "context": "row", "row": row})
    assert empty.status_code == 422 and "Tell the clinician what to fix." in empty.text
    sent = await web.post(f"/visits/{no_clock_out}/send-back", headers=htmx(token), data={
        "message": "Add the missing clock-out", "context": "row", "row": row})
    assert sent.status_code == 200 and "went back to" in sent.text
    await visits.projected(no_clock_out, "documented")

    web.cookies.clear()
    await sign_in(web, agency.users["clinician"].username)
    tasks = (await web.get("/tasks/list")).text
    assert "Sent back</span>" in tasks and "What to fix: Add the missing clock-out" in tasks
    revise = await web.get(f"/visits/{no_clock_out}")
    assert "Revise the visit note" in revise.text and "Bathing, meal preparation</textarea>" in revise.text


async def test_a_visit_ready_to_bill_shows_its_dollars_and_the_release_rule_as_a_tag(web, agency, visits, engine):
    set_rate(engine, agency.payer, 583)
    visit_id = await visits.delivered(recent_start(), document=True)
    await visits.projected(visit_id, "claim_ready")
    await sign_in(web, agency.users["biller"].username)
    page = (await web.get(f"/visits/{visit_id}")).text
    units = units_of(engine, visit_id)
    assert f"{units} units ({money(units * 583)} at {agency.payer.name}'s rate)" in page
    assert 'A visit is released once, into one batch. <span class="rule rule-tag">REL-01</span>' in page


async def test_bad_page_links_are_refused_in_words(web, agency):
    token = await sign_in(web, agency.users["biller"].username)
    for url in ("/billing?after=0", "/billing/list?after=x", "/holds?after=-1", "/holds/list?after=many"):
        answer = await web.get(url, headers=htmx(token) if "list" in url else {})
        assert answer.status_code == 422, url
        assert "That page link is not valid; start again from the first page." in answer.text, url


async def test_a_visit_held_twice_by_one_rule_counts_once(web, agency, visits: VisitSetup, engine):
    set_rate(engine, agency.payer, 583)
    start = recent_start(6)
    visit_id = await visits.schedule(start)  # never clocked in or out: EVV-01 twice (units from the schedule)
    day = start.date()
    agency.authorize(day - timedelta(days=30), day + timedelta(days=30), units_per_week=200)
    clinician = agency.actor("clinician")
    await act(visits.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=clinician, fields=NOTE))
    await act(visits.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=clinician, attestation=True))
    await visits.projected(visit_id, "on_hold")
    await sign_in(web, agency.users["biller"].username)
    group = hold_group((await web.get(f"/holds?payer={agency.payer.id}")).text, "EVV-01")
    assert "1 visit held (2 holds)" in group
    assert f"{money(units_of(engine, visit_id) * 583)} at risk" in group  # once, not once per hold
