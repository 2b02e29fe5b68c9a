"""The clinicians', supervisors' and visit pages in the agency's words (issue 7), through the routes.

Real database, real Temporal test server and worker: visits are scheduled and punched as the office and the
caregivers' phones would, and the pages are read as a person's browser gets them.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlmodel import Session

from tests.ui.conftest import FAR, NOTE, VisitSetup, htmx, recent_start, sign_in
from visitflow.db.tables import Visit
from visitflow.models import (
    PunchInput,
    PunchKind,
    PunchMethod,
    ReasonCode,
    RecordPunch,
    ResolveHold,
    SignNote,
    SubmitNote,
)
from visitflow.services import queries
from visitflow.services.commands import act
from visitflow.settings import Settings
from visitflow.ui.actions import work_context
from visitflow.ui.deps import UIState
from visitflow.ui.present import Clock, human_duration, readable
from visitflow.ui.routes.dashboard import dashboard_context
from visitflow.workflows.visit import VisitWorkflow


async def two_exceptions(visits: VisitSetup) -> str:
    """A signed visit whose caregiver's phone punched in and out far from the home: two EVV-02 exceptions."""
    start = recent_start()
    visit_id = await visits.schedule(start)
    visits.agency.authorize(start.date() - timedelta(days=30), start.date() + timedelta(days=30), units_per_week=200)
    await visits.punch(visit_id, PunchKind.clock_in, start + timedelta(minutes=2), FAR)
    await visits.punch(visit_id, PunchKind.clock_out, start + timedelta(hours=2, minutes=-1), FAR)
    clinician = visits.agency.actor("clinician")
    await act(visits.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=clinician, fields=NOTE))
    await act(visits.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=clinician, attestation=True))
    row = await visits.projected(visit_id, "on_hold")
    keys = sorted(h["key"] for h in row.snapshot["holds"])
    assert keys == ["EVV-02:punch-1", "EVV-02:punch-2"], keys
    return visit_id


def words_of(html: str) -> str:
    """What a person reads (and a screen reader says): the text, without tags or attribute values."""
    return re.sub(r"\s+", " ", re.sub(r"<script.*?</script>|<[^>]+>", " ", html, flags=re.S))


def decision_keys(html: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="key" value="([^"]+)">', html)


# --- 1. "Your part" after a decision ----------------------------------------------------------------------


async def test_a_decided_hold_is_never_offered_again_even_before_the_recheck(agency, visits: VisitSetup):
    visit_id = await two_exceptions(visits)
    supervisor = agency.users["supervisor"]
    with Session(visits.engine) as s:
        held = queries.load_visit(s, visit_id, with_events=False).snap
    answered = await act(visits.client, visit_id, VisitWorkflow.resolve_hold, ResolveHold(
        actor=agency.actor("supervisor"), key="EVV-02:punch-1", decision="approved", reason="Clinic lot"))
    # The Update may answer before the workflow's re-check: the holds as they were, with the decision on them.
    before_recheck = held.model_copy(update={"acknowledgements": answered.acknowledgements})
    with Session(visits.engine) as s:
        view = queries.visit_view(s, s.get(Visit, visit_id), before_recheck, with_events=False)
        ctx = work_context(s, supervisor, view)
    assert [h.key for h in ctx["decisions"]] == ["EVV-02:punch-2"]
    assert [h.key for h in ctx["rechecking"]] == ["EVV-02:punch-1"]


async def test_the_panel_after_a_decision_shows_the_visit_after_its_recheck(web, agency, visits: VisitSetup):
    visit_id = await two_exceptions(visits)
    token = await sign_in(web, agency.users["supervisor"].username)
    page = await web.get(f"/visits/{visit_id}")
    assert decision_keys(page.text) == ["EVV-02:punch-1", "EVV-02:punch-2"]

    first = await web.post(f"/visits/{visit_id}/decision", headers=htmx(token), data={
        "key": "EVV-02:punch-1", "decision": "approved", "reason": "Parked at the clinic lot", "context": "visit"})
    assert first.status_code == 200 and first.headers["HX-Retarget"] == "#work"
    assert decision_keys(first.text) == ["EVV-02:punch-2"]
    assert "being checked again" not in first.text  # drawn from the re-checked visit, not the Update's answer
    version = int(re.search(r"/work\?since=(\d+)", first.text).group(1))
    with Session(visits.engine) as s:
        assert version == s.get(Visit, visit_id).version  # the panel polls on from the re-checked version

    second = await web.post(f"/visits/{visit_id}/decision", headers=htmx(token), data={
        "key": "EVV-02:punch-2", "decision": "approved", "reason": "Same lot at clock-out", "context": "visit"})
    assert second.status_code == 200 and decision_keys(second.text) == []
    assert (await visits.projected(visit_id, "claim_ready")).state == "claim_ready"


# --- 2. My tasks ---------------------------------------------------------------------------------------------


async def test_my_tasks_puts_work_due_now_apart_from_upcoming_visits_with_chips(web, agency, visits: VisitSetup):
    missed = await visits.schedule(recent_start(hours_ago=24 * 4))  # never clocked in, no note: escalated
    tomorrow = await visits.schedule(datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1))
    await sign_in(web, agency.users["clinician"].username)
    for _ in range(100):  # the workflow escalates as soon as it starts; its projection follows
        html = (await web.get("/tasks/list")).text
        if "Escalated to your supervisor" in html:
            break
        await asyncio.sleep(0.05)
    now_part, upcoming_part = html.split('<h2 id="upcoming-title">Upcoming visits</h2>')
    assert "To do now" in now_part and f"visit {missed}" in now_part and tomorrow not in now_part
    assert tomorrow in upcoming_part and "Write the visit note" not in upcoming_part
    for chip in ("Missed: not clocked in", "Overdue", "Escalated to your supervisor"):
        assert chip in now_part, chip
    assert "0 min" not in html and "UTC" not in html and "T1019" not in html and "Personal care" in html
    zone_time = Clock(visits.settings.agency_timezone).clock(
        (await visits.projected(tomorrow)).scheduled_start)
    assert zone_time in upcoming_part


def test_lateness_and_durations_never_say_zero_minutes():
    clock = Clock("America/Chicago")
    due = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert clock.lateness(due, due + timedelta(seconds=20)) == ("due now", False)
    assert clock.lateness(due, due + timedelta(minutes=3)) == ("3 min late", True)
    assert human_duration(timedelta(seconds=20)) == "20 s"


def test_workflow_texts_are_read_in_the_agency_zone_without_codes():
    clock = Clock("America/Chicago")
    assert readable("T1019 2026-11-29 16:00-18:00 UTC", clock) == "Personal care Sun 29 Nov 10:00–12:00"
    assert readable("clock_in 2026-11-29 16:02 UTC via gps (forgot_to_clock)", clock) == (
        "Clock-in Sun 29 Nov 10:02 via Mobile GPS (forgot to clock in or out)")
    assert readable("EVV-02 clock-in punch 2.3 km away -> supervisor", clock) == "Clock-in punch 2.3 km away"
    assert readable("EVV-02 clock-in punch 2.3 km away -> supervisor", clock, True) == (
        "EVV-02 clock-in punch 2.3 km away")
    assert readable("Client condition is required (DOC-03).", clock) == "Client condition is required."


# --- 3. The visit page ---------------------------------------------------------------------------------------


async def test_the_visit_page_tells_each_hold_once_in_words_for_its_reader(web, agency, visits: VisitSetup):
    visit_id = await visits.delivered(recent_start(), clock_in_at=FAR)
    # A second clock-out typed in by hand, with a reason code: its timeline entry carries the raw code.
    await act(visits.client, visit_id, VisitWorkflow.record_punch, RecordPunch(
        actor=agency.actor("clinician"), now=datetime.now(UTC), punch=PunchInput(
            kind=PunchKind.clock_out, at=recent_start() + timedelta(hours=2), method=PunchMethod.manual,
            reason_code=ReasonCode.forgot_to_clock)))
    clinician = agency.actor("clinician")
    await act(visits.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=clinician, fields=NOTE))
    await act(visits.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=clinician, attestation=True))
    await visits.projected(visit_id, "on_hold")

    await sign_in(web, agency.users["clinician"].username)
    html = (await web.get(f"/visits/{visit_id}")).text
    assert html.lower().count("clock-in punch") == 1  # the EVV-02 hold, once: not in the gates, tasks or timeline again
    assert "Punch far from the client&#39;s address" in html
    for developer_word in ("EVV-02", "DOC-03", "T1019", "forgot_to_clock", "-&gt; supervisor", "UTC"):
        assert developer_word not in words_of(html), developer_word
    assert "temporal.test" not in html
    assert "Forgot to clock in or out" in html and "Personal care" in html
    web.cookies.clear()

    await sign_in(web, agency.users["biller"].username)
    html = (await web.get(f"/visits/{visit_id}")).text
    assert '<span class="rule">EVV-02</span>' in html and "temporal.test" not in html
    web.cookies.clear()
    for who in ("supervisor", "admin"):
        await sign_in(web, agency.users[who].username)
        html = (await web.get(f"/visits/{visit_id}")).text
        assert f"http://temporal.test:8233/namespaces/default/workflows/visit-{visit_id}" in html, who
        web.cookies.clear()


# --- 4. Dashboard, 5. sign-in ----------------------------------------------------------------------------------


async def test_note_lag_labels_are_durations_in_words(engine, ui_settings: Settings):
    short = UIState(ui_settings.model_copy(update={"note_due": timedelta(seconds=20),
                                                   "note_escalate_after": timedelta(minutes=90)}), None)
    with Session(engine) as s:
        labels = [bar.label for bar in dashboard_context(s, short)["lag_bars"]]
    assert labels == ["within 20 s", "20 s to 1 h 30 min", "over 1 h 30 min"]


async def test_the_sign_in_fields_carry_valid_autocomplete_attributes(web: httpx.AsyncClient):
    html = (await web.get("/signin")).text
    assert 'autocomplete="username" autocapitalize="none" spellcheck="false"' in html
    assert 'autocomplete="current-password"' in html and "&#34;" not in html


# --- 6. Visit search -----------------------------------------------------------------------------------------


async def test_office_supervisors_and_billers_find_visits(web, agency, visits: VisitSetup):
    days = [recent_start(hours_ago=24 * n) for n in (3, 2, 1)]
    ids = [await visits.schedule(day, visit_id=f"find-{agency.tag}-{n}") for n, day in enumerate(days)]
    other = await visits.schedule(days[0], visit_id=f"find-{agency.tag}-x", clinician_id=agency.other_clinician.id)

    await sign_in(web, agency.users["admin"].username)
    home = (await web.get("/dashboard")).text
    assert '<a href="/visits"' in home
    found = (await web.get("/visits", params={"visit_id": f"find-{agency.tag}-"})).text
    newest_first = re.findall(r'<a href="/visits/(find-[^"]+)">', found)
    assert set(newest_first) == {*ids, other} and newest_first[0] == ids[2]
    by_clinician = (await web.get("/visits", params={"clinician": agency.other_clinician.id})).text
    assert other in by_clinician and ids[0] not in by_clinician
    by_patient = (await web.get("/visits", params={"patient": f"alice test{agency.tag}"})).text
    assert all(i in by_patient for i in ids)
    service_day = (await visits.projected(ids[1])).service_date
    by_date = (await web.get("/visits", params={"patient": f"Test{agency.tag}", "date": service_day.isoformat()})).text
    assert ids[1] in by_date and ids[2] not in by_date
    by_state = (await web.get("/visits", params={"visit_id": f"find-{agency.tag}", "state": "released"})).text
    assert "No visits found" in by_state

    bad = await web.get("/visits", params={"date": "yesterday", "state": "lost", "after": "nonsense"})
    assert bad.status_code == 422
    assert "Enter the date of service as a date" in bad.text and "Choose a state from the list." in bad.text
    web.cookies.clear()

    for who in ("supervisor", "biller"):
        await sign_in(web, agency.users[who].username)
        assert ids[0] in (await web.get("/visits", params={"visit_id": ids[0]})).text, who
        web.cookies.clear()
    await sign_in(web, agency.users["clinician"].username)
    assert (await web.get("/visits")).status_code == 403


async def test_the_search_pages_by_keyset_newest_first(agency, visits: VisitSetup):
    days = [recent_start(hours_ago=24 * n) for n in (3, 2, 1)]
    ids = [await visits.schedule(day, visit_id=f"page-{agency.tag}-{n}") for n, day in enumerate(days)]
    search = queries.VisitSearch(visit_id=f"page-{agency.tag}-")
    with Session(visits.engine) as s:
        first = queries.search_visits(s, search, None, size=2)
        second = queries.search_visits(s, search, first.next_after, size=2)
    assert [v.visit_id for v in first.items] == [ids[2], ids[1]] and first.next_after
    assert [v.visit_id for v in second.items] == [ids[0]] and second.next_after is None


async def test_exceptions_to_decide_are_named_as_problems_with_when_they_were_held(web, agency, visits: VisitSetup):
    visit_id = await two_exceptions(visits)
    await sign_in(web, agency.users["supervisor"].username)
    html = (await web.get(f"/escalations/exceptions?clinician={agency.clinician.id}")).text
    card = html.split(f"Visit {visit_id}</a>")[0].rsplit("<li", 1)[1]
    assert "Punch far from the client&#39;s address" in card and '<span class="rule">EVV-02</span>' in card
    assert "just now" not in html and "held since " in html and " UTC" not in words_of(html)


def test_plain_words_that_match_a_code_are_left_alone():
    clock = Clock("America/Chicago")
    assert readable("manual punch needs approval from another supervisor", clock) == (
        "Manual punch needs approval from another supervisor")
    assert readable("EVV-04 reason code other needs an explanation in reason_text", clock) == (
        "Reason code other (explain) needs an explanation")
