"""Every state-changing API request is safe to retry: same Idempotency-Key, same answer, applied once.

Retries are sent the way flaky clients send them: again after the answer was lost, again after the API died
between acting and answering (the stored answer is gone), twice at once, and after the visit has closed.
Counts come from the workflow's own state (the `snapshot` query), not from the read model.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta

import httpx
import pytest
from sqlmodel import Session, delete, select

from tests.api.test_api import NOTE, as_user, schedule, until_state
from tests.conftest import HOME
from visitflow.db.tables import IdempotentRequest, Patient, ReleaseBatch
from visitflow.main import create_app
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

GPS = {"method": "gps", "location": {"lat": HOME[0], "lon": HOME[1]}}


def keyed(agency, who: str, key: str | None = None) -> dict:
    return {**as_user(agency, who), "Idempotency-Key": key or f"k-{uuid.uuid4().hex}"}


async def workflow_counts(client, visit_id: str) -> Counter:
    snap = await client.get_workflow_handle(visit_workflow_id(visit_id)).query(VisitWorkflow.snapshot)
    return Counter(e.kind for e in snap.timeline)


def forget_stored_answers(engine) -> None:
    """What the API dying between acting and storing its answer leaves behind: no stored answer."""
    with Session(engine) as s:
        s.exec(delete(IdempotentRequest))
        s.commit()


async def delivered(api, agency, t0, signed: bool = True) -> dict:
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    me = as_user(agency, "clinician")
    for kind, at in (("clock_in", visit["scheduled_start"]), ("clock_out", visit["scheduled_end"])):
        assert (await api.post(f"/api/visits/{visit['id']}/punches", headers=me,
                               json={"kind": kind, "at": at, **GPS})).status_code == 200
    if signed:
        assert (await api.post(f"/api/visits/{visit['id']}/note", headers=me,
                               json={"fields": NOTE})).status_code == 200
        assert (await api.post(f"/api/visits/{visit['id']}/signature", headers=me,
                               json={"attestation": True})).status_code == 200
    return visit


@pytest.mark.parametrize("lost", ["answer", "stored answer too"])
async def test_every_visit_action_retried_with_its_key_applies_once(api, agency, t0, client, engine, env, lost):
    """Each action route, sent twice with one key: the second gets the first's status and body."""
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    workflow_now = await env.get_current_time()  # earlier tests may have skipped the test server's clock ahead
    vid = visit["id"]
    clinician, supervisor = "clinician", "supervisor"
    steps = [  # (who, path, body, timeline kind the action writes)
        (clinician, "punches", {"kind": "clock_in", "at": visit["scheduled_start"], **GPS}, "punch"),
        (clinician, "punches", {"kind": "clock_out", "at": visit["scheduled_end"], "method": "manual",
                                "reason_code": "forgot_to_clock"}, "punch"),
        (clinician, "punches/2/adjustments", {"adjusted_at": visit["scheduled_end"],
                                              "reason_code": "mobile_device_issue"}, "punch_adjusted"),
        (supervisor, "deadline", {"stage": "note", "new_deadline": (workflow_now + timedelta(days=2)).isoformat(),
                                  "reason": "family emergency"}, "deadline_extended"),
        (supervisor, "reschedule", {"scheduled_start": visit["scheduled_start"],
                                    "scheduled_end": visit["scheduled_end"], "reason": "confirmed"}, "rescheduled"),
        (clinician, "note", {"fields": NOTE}, "note_submitted"),
        (clinician, "signature", {"attestation": True}, "signed"),
    ]
    expected = Counter()
    for who, path, body, kind in steps:
        expected[kind] += 1
        headers = keyed(agency, who)
        first = await api.post(f"/api/visits/{vid}/{path}", json=body, headers=headers)
        assert first.status_code == 200, (path, first.text)
        if lost == "stored answer too":
            forget_stored_answers(engine)
        again = await api.post(f"/api/visits/{vid}/{path}", json=body, headers=headers)
        assert again.status_code == first.status_code, (path, again.text)
        assert again.json() == first.json(), path
        assert (await workflow_counts(client, vid))[kind] == expected[kind], path
    counts = await workflow_counts(client, vid)
    assert counts["punch"] == 2 and counts["note_submitted"] == 1 and counts["signed"] == 1


async def test_supervisor_and_closing_actions_retried_after_the_visit_closed(api, agency, t0, client, engine):
    """Cancel closes the workflow: a retry still gets the first answer, even with nothing stored in the API."""
    visit = await schedule(api, agency, t0 + timedelta(days=1))
    other = agency.other_clinician.id
    headers = keyed(agency, "supervisor")
    body = {"clinician_id": other, "reason": "Devon is off sick"}
    first = await api.post(f"/api/visits/{visit['id']}/reassign", json=body, headers=headers)
    forget_stored_answers(engine)
    again = await api.post(f"/api/visits/{visit['id']}/reassign", json=body, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert (await workflow_counts(client, visit["id"]))["reassigned"] == 1

    cancel = keyed(agency, "admin")
    first = await api.post(f"/api/visits/{visit['id']}/cancel", json={"reason": "client in hospital"}, headers=cancel)
    assert first.status_code == 200 and first.json()["state"] == "cancelled"
    forget_stored_answers(engine)
    again = await api.post(f"/api/visits/{visit['id']}/cancel", json={"reason": "client in hospital"}, headers=cancel)
    assert again.status_code == 200 and again.json() == first.json()
    # A new action (a new key) on the closed visit is refused, and says how the visit ended.
    late = await api.post(f"/api/visits/{visit['id']}/cancel", json={"reason": "again"},
                          headers=keyed(agency, "admin"))
    assert late.status_code == 409 and "cancelled" in late.json()["detail"]


async def test_exception_decision_and_send_back_retried(api, agency, t0, client):
    auth_day = (t0 - timedelta(hours=3)).date()
    agency.authorize(auth_day - timedelta(days=7), auth_day + timedelta(days=7), units_per_week=200)
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    me = as_user(agency, "clinician")
    far = {"method": "gps", "location": {"lat": HOME[0] + 0.02, "lon": HOME[1]}}
    for kind, at in (("clock_in", visit["scheduled_start"]), ("clock_out", visit["scheduled_end"])):
        await api.post(f"/api/visits/{visit['id']}/punches", headers=me, json={"kind": kind, "at": at, **far})
    await api.post(f"/api/visits/{visit['id']}/note", headers=me, json={"fields": NOTE})
    await api.post(f"/api/visits/{visit['id']}/signature", headers=me, json={"attestation": True})
    held = await until_state(api, agency, visit["id"], "on_hold")
    hold = next(h for h in held["holds"] if h["approvable"])
    decision = {"key": hold["key"], "decision": "approved", "reason": "patient was at the day centre"}
    headers = keyed(agency, "supervisor")
    first = await api.post(f"/api/visits/{visit['id']}/exceptions", json=decision, headers=headers)
    again = await api.post(f"/api/visits/{visit['id']}/exceptions", json=decision, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert (await workflow_counts(client, visit["id"]))["exception_approved"] == 1

    message = {"message": "Please add the client's mood"}
    headers = keyed(agency, "supervisor")
    first = await api.post(f"/api/visits/{visit['id']}/send-back", json=message, headers=headers)
    again = await api.post(f"/api/visits/{visit['id']}/send-back", json=message, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert (await workflow_counts(client, visit["id"]))["sent_back"] == 1


async def test_a_key_reused_for_another_request_is_refused(api, agency, t0):
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    headers = keyed(agency, "clinician")
    url = f"/api/visits/{visit['id']}/punches"
    first = await api.post(url, json={"kind": "clock_in", "at": visit["scheduled_start"], **GPS}, headers=headers)
    assert first.status_code == 200
    other = await api.post(url, json={"kind": "clock_out", "at": visit["scheduled_end"], **GPS}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    # The same key from another person is their own key: it does not replay someone else's answer.
    theirs = await api.post(url, json={"kind": "clock_in", "at": visit["scheduled_start"], **GPS},
                            headers={**headers, **as_user(agency, "supervisor")})
    assert theirs.status_code == 200 and theirs.headers.get("Idempotent-Replayed") is None


async def test_rejections_are_answered_again_and_a_fixed_request_needs_a_new_key(api, agency, t0, client):
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    headers = keyed(agency, "clinician")
    url = f"/api/visits/{visit['id']}/signature"
    first = await api.post(url, json={"attestation": True}, headers=headers)
    again = await api.post(url, json={"attestation": True}, headers=headers)
    assert first.status_code == again.status_code == 409 and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await workflow_counts(client, visit["id"]))["signed"] == 0


async def test_two_copies_of_one_request_at_once_act_once(api, agency, t0, client):
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    headers = keyed(agency, "clinician")
    body = {"kind": "clock_in", "at": visit["scheduled_start"], **GPS}
    answers = await asyncio.gather(*[api.post(f"/api/visits/{visit['id']}/punches", json=body, headers=headers)
                                     for _ in range(4)])
    done = [a for a in answers if a.status_code == 200]
    busy = [a for a in answers if a.status_code == 409]
    assert done and len(done) + len(busy) == 4, [a.text for a in answers]
    assert all(a.json() == done[0].json() for a in done)
    assert all(a.headers["Retry-After"] == "1" for a in busy)
    later = await api.post(f"/api/visits/{visit['id']}/punches", json=body, headers=headers)
    assert later.status_code == 200 and later.json() == done[0].json()
    assert (await workflow_counts(client, visit["id"]))["punch"] == 1


async def test_scheduling_and_reference_data_retried_create_once(api, agency, t0, engine):
    headers = keyed(agency, "admin")
    patient = {"first_name": "Rosa", "last_name": f"Retry{agency.tag}", "address_line": "1 Main St",
               "city": "Austin", "state": "TX", "zip_code": "78701"}
    first = await api.post("/api/patients", json=patient, headers=headers)
    again = await api.post("/api/patients", json=patient, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    with Session(engine) as s:
        assert len(s.exec(select(Patient).where(Patient.last_name == f"Retry{agency.tag}")).all()) == 1

    body = {"patient_id": agency.patient.id, "clinician_id": agency.clinician.id, "payer_id": agency.payer.id,
            "service_code": "T1019", "scheduled_start": (t0 + timedelta(days=2)).isoformat(),
            "scheduled_end": (t0 + timedelta(days=2, hours=2)).isoformat()}
    headers = keyed(agency, "admin")
    first = await api.post("/api/visits", json=body, headers=headers)
    again = await api.post("/api/visits", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()


async def test_same_visit_id_with_another_clinician_is_a_conflict(api, agency, t0):
    body = {"id": f"SAME-{agency.tag}", "patient_id": agency.patient.id, "clinician_id": agency.clinician.id,
            "payer_id": agency.payer.id, "service_code": "T1019",
            "scheduled_start": (t0 + timedelta(days=2)).isoformat(),
            "scheduled_end": (t0 + timedelta(days=2, hours=2)).isoformat()}
    assert (await api.post("/api/visits", json=body, headers=as_user(agency, "admin"))).status_code == 201
    assert (await api.post("/api/visits", json=body, headers=as_user(agency, "admin"))).status_code == 200
    moved = await api.post("/api/visits", json={**body, "clinician_id": agency.other_clinician.id},
                           headers=as_user(agency, "admin"))
    assert moved.status_code == 409, moved.text


async def test_a_release_interrupted_mid_way_is_in_its_stored_batch_and_a_retry_finishes_it(
        api, agency, t0, engine):
    day = (t0 - timedelta(hours=3)).date()
    agency.authorize(day - timedelta(days=7), day + timedelta(days=7), units_per_week=500)
    visits = [await delivered(api, agency, t0) for _ in range(3)]
    for v in visits:
        await until_state(api, agency, v["id"], "claim_ready")
    ids = [v["id"] for v in visits]
    headers = keyed(agency, "biller")

    # The biller's request dies while the visits are being released (the connection drops, the API stops).
    request = asyncio.ensure_future(api.post("/api/releases", json={"visit_ids": ids}, headers=headers))
    batch = None
    while batch is None:  # the batch is written before any visit is released
        await asyncio.sleep(0.005)
        with Session(engine) as s:
            batch = s.exec(select(ReleaseBatch).where(ReleaseBatch.created_by == agency.users["biller"].username)
                           ).first()
    request.cancel()
    assert batch.visit_ids == ids
    for v in ids:  # whatever was released so far is in the stored batch
        visit = (await api.get(f"/api/visits/{v}", headers=as_user(agency, "biller"))).json()
        assert visit["release_batch_id"] in (None, batch.id)

    forget_stored_answers(engine)  # the answer never got stored
    retried = await api.post("/api/releases", json={"visit_ids": ids}, headers=headers)
    assert retried.status_code == 200, retried.text
    outcome = retried.json()
    assert outcome["batch_id"] == batch.id and sorted(outcome["released"]) == sorted(ids)
    with Session(engine) as s:
        stored = s.get(ReleaseBatch, batch.id)
        assert stored.completed_at is not None and stored.visit_ids == ids
    replay = await api.post("/api/releases", json={"visit_ids": ids}, headers=headers)
    assert replay.json() == outcome


async def test_a_key_left_behind_by_a_request_that_died_is_taken_over(api, agency, engine):
    """The API was killed mid-request: its claim on the key expires and the retry does the work, once."""
    import json
    from datetime import UTC, datetime

    from visitflow.api.idempotency import CLAIM_FOR, _digest

    patient = {"first_name": "Ida", "last_name": f"Orphan{agency.tag}", "address_line": "2 Main St",
               "city": "Austin", "state": "TX", "zip_code": "78701"}
    headers = keyed(agency, "admin")
    body = json.dumps(patient).encode()
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.add(IdempotentRequest(user_id=agency.users["admin"].id, method="POST", path="/api/patients",
                                key=headers["Idempotency-Key"], request_digest=_digest(body), created_at=now,
                                locked_until=now + CLAIM_FOR))
        s.commit()
    busy = await api.post("/api/patients", content=body, headers={**headers, "content-type": "application/json"})
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "1"
    with Session(engine) as s:
        record = s.exec(select(IdempotentRequest).where(IdempotentRequest.key == headers["Idempotency-Key"])).one()
        record.locked_until = now - timedelta(seconds=1)  # the claim of the request that died has run out
        s.add(record)
        s.commit()
    taken = await api.post("/api/patients", content=body, headers={**headers, "content-type": "application/json"})
    again = await api.post("/api/patients", content=body, headers={**headers, "content-type": "application/json"})
    assert taken.status_code == again.status_code == 201 and taken.json() == again.json()
    with Session(engine) as s:
        assert len(s.exec(select(Patient).where(Patient.last_name == f"Orphan{agency.tag}")).all()) == 1


def test_old_answers_are_forgotten(engine):
    from datetime import UTC, datetime

    from visitflow.api.idempotency import forget_old_answers

    old = datetime.now(UTC) - timedelta(days=3)
    with Session(engine) as s:
        s.add(IdempotentRequest(user_id=1, method="POST", path="/api/old", key=f"old-{uuid.uuid4().hex}",
                                request_digest="0" * 64, created_at=old, status=200, body="{}"))
        s.add(IdempotentRequest(user_id=1, method="POST", path="/api/new", key=f"new-{uuid.uuid4().hex}",
                                request_digest="0" * 64, created_at=datetime.now(UTC), status=200, body="{}"))
        s.commit()
    while forget_old_answers(engine, keep=timedelta(days=1), batch=1):
        pass
    with Session(engine) as s:
        assert s.exec(select(IdempotentRequest).where(IdempotentRequest.path == "/api/old")).all() == []
        assert s.exec(select(IdempotentRequest).where(IdempotentRequest.path == "/api/new")).all() != []


async def test_a_resend_the_moment_the_answer_arrives_gets_that_answer(api, agency, t0, client, database_url,
                                                                       tmp_path):
    """A client that sends again as soon as it has read the answer (a double tap, a retry loop that does not
    wait) hears the first answer replayed: the answer is stored before it goes out, never a 409 in between."""
    visit = await schedule(api, agency, t0 - timedelta(hours=3))
    app = create_app(Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path),
                     temporal=client)
    headers = keyed(agency, "clinician")
    path = f"/api/visits/{visit['id']}/punches"
    body = json.dumps({"kind": "clock_in", "at": visit["scheduled_start"], **GPS}).encode()
    resent: list[httpx.Response] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as again:
                resent.append(await again.post(path, content=body,
                                               headers={**headers, "Content-Type": "application/json"}))

    await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                   "scheme": "http", "server": ("test", 80), "client": ("127.0.0.1", 1), "root_path": "",
               "path": path, "raw_path": path.encode(), "query_string": b"",
               "headers": [(k.lower().encode(), v.encode()) for k, v in
                           {**headers, "Content-Type": "application/json", "Host": "test"}.items()]},
              receive, send)
    assert [r.status_code for r in resent] == [200], [r.text for r in resent]
    assert resent[0].headers.get("Idempotent-Replayed") == "true"
    assert (await workflow_counts(client, visit["id"]))["punch"] == 1


async def test_a_resent_request_whose_answer_was_a_redirect_is_redirected_again(agency, client, database_url,
                                                                               tmp_path):
    """A form answered with a redirect (and htmx's headers), sent again after the answer was lost, is sent to the
    same place: the stored answer keeps its Location and HX-* headers, not only its status and body."""
    from fastapi import Depends
    from fastapi.responses import RedirectResponse

    from visitflow.api.idempotency import claim_idempotency

    acted: list[int] = []
    app = create_app(Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path),
                     temporal=client)

    async def act_then_redirect():
        acted.append(1)
        return RedirectResponse(f"/claims/{len(acted)}?done=billed", 303, headers={"HX-Trigger": "claims-changed"})

    app.add_api_route("/api/redirecting-action", act_then_redirect, methods=["POST"],
                      dependencies=[Depends(claim_idempotency)])
    headers = keyed(agency, "biller")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as web:
        first = await web.post("/api/redirecting-action", headers=headers)
        again = await web.post("/api/redirecting-action", headers=headers)
    assert first.status_code == again.status_code == 303
    assert again.headers.get("Idempotent-Replayed") == "true" and len(acted) == 1
    assert again.headers["location"] == first.headers["location"] == "/claims/1?done=billed"
    assert again.headers["hx-trigger"] == "claims-changed"
