"""MV-02 and SUP-01 through the REST API: clear refusals, retries answered once, the week's count by reason."""

from __future__ import annotations

from datetime import timedelta

from tests.api.test_api import as_user, schedule, until_state
from tests.conftest import HOME


async def test_marking_a_visit_missed(api, agency, t0):
    visit = await schedule(api, agency, t0 - timedelta(hours=1))
    url = f"/api/visits/{visit['id']}/missed"
    office = as_user(agency, "admin")

    r = await api.post(url, json={"reason": "other"}, headers=office)
    assert r.status_code == 422 and r.json()["field"] == "reason_text"
    r = await api.post(url, json={"reason": "asleep"}, headers=office)
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = await api.post(url, json={"reason": "not_home"}, headers=as_user(agency, "clinician"))
    assert r.status_code == 403
    r = await api.post(url, json={"reason": "not_home"}, headers=as_user(agency, "biller"))
    assert r.status_code == 403

    key = {**office, "Idempotency-Key": f"missed-{agency.tag}"}
    first = await api.post(url, json={"reason": "hospitalized", "reason_text": "admitted Tuesday"}, headers=key)
    again = await api.post(url, json={"reason": "hospitalized", "reason_text": "admitted Tuesday"}, headers=key)
    assert (first.status_code, again.status_code) == (200, 200) and first.json() == again.json()
    body = first.json()
    assert (body["state"], body["missed_reason"], body["missed_reason_text"]) == (
        "missed", "hospitalized", "admitted Tuesday")
    await until_state(api, agency, visit["id"], "missed")

    # Another person asking again, without the key: the visit is over.
    r = await api.post(url, json={"reason": "not_home"}, headers=as_user(agency, "supervisor"))
    assert r.status_code == 409 and "missed" in r.json()["detail"]
    r = await api.post("/api/releases", json={"visit_ids": [visit["id"]]}, headers=as_user(agency, "biller"))
    assert r.status_code == 200 and r.json()["released"] == []

    week = await api.get("/api/missed-visits", params={"week_of": visit["service_date"]}, headers=office)
    assert week.status_code == 200
    counts = week.json()
    assert counts["by_reason"]["hospitalized"] >= 1 and counts["total"] >= 1
    assert set(counts["by_reason"]) == {"patient_refused", "hospitalized", "not_home", "staff_no_show", "other"}


async def test_a_visit_that_happened_is_not_missed(api, agency, t0):
    # (A visit still ahead is refused too: tests/workflows, where the test server's clock is the test's.)
    done = await schedule(api, agency, t0 - timedelta(hours=3))
    r = await api.post(f"/api/visits/{done['id']}/punches", headers=as_user(agency, "clinician"), json={
        "kind": "clock_in", "at": done["scheduled_start"], "method": "gps",
        "location": {"lat": HOME[0], "lon": HOME[1]}})
    assert r.status_code == 200
    r = await api.post(f"/api/visits/{done['id']}/missed", json={"reason": "staff_no_show"},
                       headers=as_user(agency, "supervisor"))
    assert r.status_code == 409 and "clock-in" in r.json()["detail"]


async def test_a_supervisory_visit_is_an_rn_or_therapist_visit(api, agency, t0):
    body = {"patient_id": agency.patient.id, "clinician_id": agency.clinician.id, "payer_id": agency.payer.id,
            "service_code": "T1019", "scheduled_start": (t0 + timedelta(days=1)).isoformat(),
            "scheduled_end": (t0 + timedelta(days=1, hours=1)).isoformat(), "supervisory": True}
    r = await api.post("/api/visits", json=body, headers=as_user(agency, "admin"))
    assert r.status_code == 422 and r.json()["field"] == "supervisory"


async def test_setting_up_a_patients_aide_supervision(api, agency, t0):
    url = f"/api/patients/{agency.patient.id}/supervision"
    office = as_user(agency, "supervisor")
    assert (await api.put(url, json={"care": "weekly"}, headers=office)).status_code == 422
    r = await api.put(url, json={"care": "skilled", "supervising_clinician_id": agency.clinician.id}, headers=office)
    assert r.status_code == 422 and r.json()["field"] == "supervising_clinician_id"  # a PCA does not supervise
    r = await api.put(url, json={"care": "skilled", "last_visit_on": str((t0 + timedelta(days=3)).date())},
                      headers=office)
    assert r.status_code == 422 and r.json()["field"] == "last_visit_on"
    assert (await api.put("/api/patients/1999999999/supervision", json={"care": "skilled"},
                          headers=office)).status_code == 404

    last = (t0 - timedelta(days=10)).date()
    r = await api.put(url, json={"care": "skilled", "last_visit_on": str(last)}, headers=office)
    assert r.status_code == 200, r.text
    assert r.json()["due_on"] == str(last + timedelta(days=14))
    again = await api.put(url, json={"care": "aide_only"}, headers=office)  # the plan changes; the last visit stays
    assert again.json()["due_on"] == str(last + timedelta(days=60)) and again.json()["last_visit_on"] == str(last)

    listed = await api.get("/api/supervision", params={"within_days": 90}, headers=office)
    assert agency.patient.id in [row["patient_id"] for row in listed.json()]


async def test_the_supervising_clinician_reads_the_supervision_prompt_sent_to_them(api, agency, engine):
    """SUP-01's prompt is about a patient, not a visit: the clinician it is addressed to still finds it."""
    from visitflow.activities.supervision import SUPERVISION_INBOX, _notify
    from visitflow.db.session import write_session
    from visitflow.models import Role

    inbox = SUPERVISION_INBOX.format(patient_id=agency.patient.id)
    message = f"SUP-01 supervisory visit for patient {agency.patient.id} is due by 2026-12-02 (tag {agency.tag})"
    with write_session(engine) as s:  # as the supervision workflow's activity writes it
        _notify(s, inbox, Role.clinician, "supervision_prompt", message, f"{inbox}:prompt:{agency.tag}:clinician",
                clinician_id=agency.clinician.id)
        _notify(s, inbox, Role.supervisor, "supervision_prompt", message, f"{inbox}:prompt:{agency.tag}:supervisor")
    mine = (await api.get("/api/notifications", headers=as_user(agency, "clinician"))).json()
    assert [(n["visit_id"], n["kind"]) for n in mine if n["message"] == message] == [(inbox, "supervision_prompt")]
    theirs = (await api.get("/api/notifications", params={"limit": 500}, headers=as_user(agency, "supervisor"))).json()
    assert message in [n["message"] for n in theirs]
    assert message not in [n["message"] for n in (await api.get("/api/notifications",
                                                                headers=as_user(agency, "other"))).json()]
