"""The office sets a patient's aide supervision from /supervision (SUP-01), and everyone reads their notices at
/notices: as each role, with bad input, with a resent form, and a page at a time."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest_asyncio
from sqlmodel import Session, select
from temporalio.service import RPCError

from tests.ui.conftest import htmx, sign_in
from visitflow.activities.supervision import SUPERVISION_INBOX, _notify, supervision_workflow_id
from visitflow.db.session import write_session
from visitflow.db.tables import AuditEvent, Clinician, Notification, PatientSupervision, User
from visitflow.models import Discipline, Role
from visitflow.security import hash_password
from visitflow.services.supervision import agency_today


@pytest_asyncio.fixture
async def nurse(agency, engine, client) -> AsyncIterator[Clinician]:
    """An RN who supervises the agency's aide care, with a clinician's sign-in of her own."""
    with write_session(engine) as s:
        s.expire_on_commit = False
        rn = Clinician(first_name="Robin", last_name=f"Nurse{agency.tag}", discipline=Discipline.RN)
        s.add(rn)
        s.commit()
        s.add(User(username=f"rn-{agency.tag}", display_name="Robin Nurse", role=Role.clinician,
                   clinician_id=rn.id, password_hash=hash_password("pw")))
        s.commit()
    yield rn
    with contextlib.suppress(RPCError):  # the patient's supervision timers, if the test started them
        await client.get_workflow_handle(supervision_workflow_id(agency.patient.id)).terminate("test finished")


def _form(patient_id: int, key: str, **values: str) -> dict[str, str]:
    return {"patient_id": str(patient_id), "care": "skilled", "supervising_clinician_id": "", "last_visit_on": "",
            "idempotency_key": key, **values}


async def test_the_type_ahead_offers_a_few_patients_by_name(web, agency, nurse):
    await sign_in(web, agency.users["supervisor"].username)
    page = await web.get("/supervision")
    assert page.status_code == 200 and 'hx-post="/supervision"' in page.text
    assert f"Nurse{agency.tag}, Robin (RN)" in page.text  # an RN may supervise
    assert f"Aide{agency.tag}, Devon" not in page.text  # an aide may not: not offered

    found = await web.get("/supervision/patients", params={"q": f"  TEST{agency.tag} alice "})  # as people type
    assert found.status_code == 200
    assert re.search(rf'<option value="{agency.patient.id}">Test{agency.tag}, Alice \(#{agency.patient.id}', found.text)
    assert "1 found" in found.text
    by_number = await web.get("/supervision/patients", params={"q": str(agency.patient.id)})
    assert f'value="{agency.patient.id}"' in by_number.text
    nobody = await web.get("/supervision/patients", params={"q": f"Zz{agency.tag}"})
    assert "No patient found" in nobody.text and "<option value=\"\">" in nobody.text
    # Never more than 20 at once, however many patients share the start of a name.
    many = await web.get("/supervision/patients", params={"q": "a"})
    assert many.status_code == 200 and many.text.count("<option value=\"") - 1 <= 20
    assert (await web.get("/supervision/patients", params={"q": "x" * 81})).status_code == 422


async def test_bad_input_comes_back_beside_its_field(web, agency, nurse, engine, ui_settings):
    token = await sign_in(web, agency.users["admin"].username)
    empty = await web.post("/supervision", headers=htmx(token), data={"idempotency_key": f"e-{agency.tag}"})
    assert empty.status_code == 422
    assert 'id="sup-patient_id-error"' in empty.text and 'id="sup-care-error"' in empty.text

    pid = agency.patient.id
    cases = [
        (_form(pid, f"a-{agency.tag}", supervising_clinician_id=str(agency.clinician.id)), "supervising_clinician_id",
         "RN or a therapist"),  # a PCA does not supervise aide care (the service's 422)
        (_form(pid, f"b-{agency.tag}", supervising_clinician_id="1999999999"), "supervising_clinician_id",
         "does not exist"),
        (_form(pid, f"c-{agency.tag}", last_visit_on=(agency_today(ui_settings) + timedelta(days=1)).isoformat()),
         "last_visit_on", "cannot be in the future"),
        (_form(pid, f"d-{agency.tag}", last_visit_on="2026-13-01"), "last_visit_on", "Enter a date"),
        (_form(1_999_999_999, f"f-{agency.tag}"), "patient_id", "no patient"),
        (_form(pid, f"g-{agency.tag}", care="weekly"), "care", "kind of aide care"),
        (_form(pid, f"h-{agency.tag}", supervising_clinician_id="RN Robin"), "supervising_clinician_id",
         "from the list"),
    ]
    for data, field, words in cases:
        r = await web.post("/supervision", headers=htmx(token), data=data)
        assert r.status_code == 422, (data, r.status_code, r.text[:300])
        error = re.search(rf'<p class="field-error" id="sup-{field}-error">(.*?)</p>', r.text, re.S)
        assert error and words in error.group(1), (field, r.text[:2000])
        assert f'value="{data["idempotency_key"]}"' not in r.text  # the corrected form is a new request
    with Session(engine) as s:
        assert s.get(PatientSupervision, pid) is None  # nothing was set


async def test_the_office_sets_supervision_and_a_resent_form_changes_nothing_more(web, agency, nurse, engine,
                                                                                  ui_settings):
    token = await sign_in(web, agency.users["supervisor"].username)
    today = agency_today(ui_settings)
    last = today - timedelta(days=10)
    first_form = _form(agency.patient.id, f"set-{agency.tag}", care="skilled", supervising_clinician_id=str(nurse.id),
                       last_visit_on=last.isoformat())
    first = await web.post("/supervision", headers=htmx(token), data=first_form)
    assert first.status_code == 200, first.text[:500]
    assert f"Aide supervision set for Alice Test{agency.tag} (with skilled services)" in first.text
    assert 'hx-swap-oob="true"' in first.text and f'id="supervision-{agency.patient.id}"' in first.text  # the board
    assert f'value="set-{agency.tag}"' not in first.text  # the next form is a new request
    with Session(engine) as s:
        row = s.get(PatientSupervision, agency.patient.id)
        assert (row.care, row.supervising_clinician_id, row.due_on) == ("skilled", nurse.id, last + timedelta(days=14))

    changed = await web.post("/supervision", headers=htmx(token), data=_form(
        agency.patient.id, f"change-{agency.tag}", care="aide_only", supervising_clinician_id=str(nurse.id)))
    assert changed.status_code == 200 and "(aide only)" in changed.text

    # The first form sent again (its answer was lost): the first answer again, and the change stands.
    again = await web.post("/supervision", headers=htmx(token), data=first_form)
    assert again.status_code == 200 and again.headers.get("idempotent-replayed") == "true"
    assert again.text == first.text
    with Session(engine) as s:
        row = s.get(PatientSupervision, agency.patient.id)
        assert (row.care, row.due_on) == ("aide_only", last + timedelta(days=60))
        audited = s.exec(select(AuditEvent).where(AuditEvent.action == "set_aide_supervision",
                                                  AuditEvent.patient_id == agency.patient.id)).all()
    assert len(audited) == 3 and {a.path for a in audited} == {"/supervision"}

    # The board's "Change" link opens the form with the patient's supervision as it is.
    page = await web.get("/supervision", params={"patient": agency.patient.id, "within_days": 90})
    assert f'<option value="{agency.patient.id}" selected>' in page.text
    assert 'value="aide_only" checked' in page.text and f'<option value="{nurse.id}" selected>' in page.text
    assert (await web.get("/supervision", params={"patient": "0"})).status_code == 422


async def test_only_the_office_sets_supervision(web, agency, nurse):
    for who in ("clinician", "biller"):
        web.cookies.clear()
        token = await sign_in(web, agency.users[who].username)
        assert (await web.post("/supervision", headers=htmx(token),
                               data=_form(agency.patient.id, f"{who}-{agency.tag}"))).status_code == 403
        assert (await web.get("/supervision/patients", params={"q": "alice"})).status_code == 403


def _prompt(engine, agency, clinician_id: int) -> str:
    inbox = SUPERVISION_INBOX.format(patient_id=agency.patient.id)
    message = f"SUP-01 supervisory visit for patient {agency.patient.id} is due by 2026-12-02 (last on 2026-11-18)"
    with write_session(engine) as s:  # as the supervision workflow's activity writes them
        _notify(s, inbox, Role.clinician, "supervision_prompt", message, f"{inbox}:prompt:{agency.tag}:clinician",
                clinician_id=clinician_id)
        _notify(s, inbox, Role.supervisor, "supervision_prompt", message, f"{inbox}:prompt:{agency.tag}:supervisor")
    return message


async def test_each_person_reads_their_own_notices(web, agency, nurse, engine):
    _prompt(engine, agency, nurse.id)
    name = f"Alice Test{agency.tag}"

    await sign_in(web, f"rn-{agency.tag}")
    mine = await web.get("/notices")
    assert mine.status_code == 200
    assert f"Supervisory visit due</strong>: {name}" in mine.text
    assert f"Supervisory visit for {name} is due by" in mine.text and "SUP-01" not in mine.text  # her words
    assert "/supervision?patient=" not in mine.text  # not a clinician's page
    assert re.search(r'href="/notices"[^>]*>Notices <span class="nav-count">\d+', mine.text)

    web.cookies.clear()
    await sign_in(web, agency.users["supervisor"].username)
    theirs = await web.get("/notices")
    assert f"Supervisory visit due</strong>: {name}" in theirs.text
    assert f'href="/supervision?patient={agency.patient.id}#set-title"' in theirs.text
    assert f"SUP-01 supervisory visit for {name} is due by" in theirs.text  # a supervisor works by rule ids

    for who in ("clinician", "other", "biller", "admin"):  # not addressed to them
        web.cookies.clear()
        await sign_in(web, agency.users[who].username)
        page = await web.get("/notices")
        assert page.status_code == 200 and name not in page.text, who


async def test_notices_come_a_page_at_a_time_newest_first(web, agency, nurse, engine):
    now = datetime.now(UTC).replace(microsecond=0)
    inbox = SUPERVISION_INBOX.format(patient_id=agency.patient.id)
    with write_session(engine) as s:
        for i in range(27):  # two share a moment: the id breaks the tie
            s.add(Notification(visit_id=inbox, role=Role.clinician, clinician_id=nurse.id, kind="supervision_prompt",
                               message=f"notice number {i:02d}.", created_at=now - timedelta(minutes=min(i, 25)),
                               dedupe_key=f"{agency.tag}:{i}"))
        s.commit()
    await sign_in(web, f"rn-{agency.tag}")
    first = await web.get("/notices")
    numbers = [int(n) for n in re.findall(r"notice number (\d\d)", first.text, re.I)]
    assert numbers == list(range(25))
    following = re.search(r'href="/notices\?after=([^"]+)">Older', first.text)
    assert following
    second = await web.get(f"/notices?after={following.group(1)}")
    assert [int(n) for n in re.findall(r"notice number (\d\d)", second.text, re.I)] == [26, 25]
    assert "Older" not in second.text and "← Newest" in second.text
    assert (await web.get("/notices?after=not-a-cursor!")).status_code == 422
