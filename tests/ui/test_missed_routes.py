"""Marking a visit missed from its page (MV-02), and the dashboard's count of the week's missed visits."""

from __future__ import annotations

from tests.ui.conftest import VisitSetup, htmx, recent_start, sign_in


async def test_the_office_marks_a_visit_missed_from_its_page(web, agency, visits: VisitSetup):
    visit_id = await visits.schedule(recent_start(hours_ago=3))
    await visits.projected(visit_id, "scheduled")
    token = await sign_in(web, agency.users["admin"].username)
    page = await web.get(f"/visits/{visit_id}")
    assert "mark it missed" in page.text and 'hx-post="/visits/' + visit_id + '/missed"' in page.text

    refused = await web.post(f"/visits/{visit_id}/missed", headers=htmx(token),
                             data={"reason": "other", "reason_text": " ", "context": "visit"})
    assert refused.status_code == 422 and "Say what happened." in refused.text
    empty = await web.post(f"/visits/{visit_id}/missed", headers=htmx(token), data={"context": "visit"})
    assert empty.status_code == 422 and "Choose why the visit did not happen." in empty.text

    done = await web.post(f"/visits/{visit_id}/missed", headers=htmx(token),
                          data={"reason": "patient_refused", "context": "visit"})
    assert done.status_code == 200 and "will not be billed" in done.text
    assert "mark it missed" not in done.text  # nothing more to do on a missed visit
    assert (await visits.projected(visit_id, "missed")).missed_reason == "patient_refused"

    dashboard = await web.get("/dashboard")
    assert dashboard.status_code == 200 and "Missed this week" in dashboard.text


async def test_a_clinician_cannot_mark_a_visit_missed(web, agency, visits: VisitSetup):
    visit_id = await visits.schedule(recent_start(hours_ago=3))
    token = await sign_in(web, agency.users["clinician"].username)
    page = await web.get(f"/visits/{visit_id}")
    assert "mark it missed" not in page.text
    r = await web.post(f"/visits/{visit_id}/missed", headers=htmx(token), data={"reason": "not_home"})
    assert r.status_code == 403


async def test_the_supervision_page_lists_a_lapsed_patient(web, agency, visits: VisitSetup, client, engine,
                                                           ui_settings):
    from datetime import timedelta

    from visitflow.db.tables import PatientSupervisionCreate
    from visitflow.services.supervision import agency_today, set_supervision

    today = agency_today(ui_settings)
    await set_supervision(engine, client, ui_settings, agency.patient.id, PatientSupervisionCreate(
        care="aide_only", last_visit_on=today - timedelta(days=61)), agency.actor("supervisor"))
    await sign_in(web, agency.users["supervisor"].username)
    page = await web.get("/supervision")
    assert page.status_code == 200
    assert f"Alice {agency.patient.last_name}" in page.text and "Lapsed: aide visits held" in page.text
