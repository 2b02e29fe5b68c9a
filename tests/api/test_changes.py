"""CHG-01 end to end over the API: the change feed, what each change did to the visits it touched, the events
delivered to real HTTP receivers exactly once per endpoint, and bulk intake that applies all or nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session, func, select

from tests.api.test_api import as_user, deliver, schedule, until_state
from tests.receiver import Receiver, receivers  # noqa: F401 (a fixture)
from visitflow.db.session import write_session
from visitflow.db.tables import Authorization, ChangeRecord, EventDelivery, Visit
from visitflow.services import intake
from visitflow.services.changes import resume_undelivered_events
from visitflow.settings import Settings


async def until(check, timeout: float = 20, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check() if asyncio.iscoroutinefunction(check) else check()
        if found:
            return found
        assert loop.time() < deadline, f"{what} never happened"
        await asyncio.sleep(0.1)


# --- the change feed ---------------------------------------------------------------------------------------------


async def test_an_authorization_cut_is_a_change_that_held_a_ready_visit(api, agency, t0):
    auth = agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date(), units_per_week=40)
    visit = await schedule(api, agency, t0 - timedelta(hours=4))
    await deliver(api, agency, visit)
    await until_state(api, agency, visit["id"], "claim_ready")
    admin, biller = as_user(agency, "admin"), as_user(agency, "biller")

    r = await api.patch(f"/api/authorizations/{auth.id}", json={"units_per_week": 4}, headers=admin)
    assert r.status_code == 200, r.text
    held = await until_state(api, agency, visit["id"], "on_hold")

    async def outcome():
        page = (await api.get("/api/changes", params={"payer": agency.payer.id}, headers=biller)).json()
        change = page["items"][0]
        return change if change["visits"] and change["visits"][0]["outcome"] != "pending" else None

    change = await until(outcome, what="the visit's outcome")
    assert change["kind"] == "authorization_changed" and change["actor"] == agency.users["admin"].username
    assert change["fields"] == [{"field": "units_per_week", "before": 40, "after": 4}]
    assert change["patient_id"] == agency.patient.id and change["visits_touched"] == 1
    [touched] = change["visits"]
    assert touched["visit_id"] == visit["id"] and touched["outcome"] == "held"
    assert (touched["state_before"], touched["state_after"]) == ("claim_ready", "on_hold")
    assert touched["units_before"] == 8 and touched["cents_before"] == 8 * agency.payer.rate_per_unit_cents
    assert "AUTH-02" in touched["detail"] or "authoriz" in touched["detail"].lower()
    # The visit's timeline names the change that touched it.
    assert any(e["kind"] == "authorization_changed" and f"(change #{change['id']})" in e["detail"]
               for e in held["timeline"])

    # Putting the units back clears it: a second change, its own outcome.
    r = await api.patch(f"/api/authorizations/{auth.id}", json={"units_per_week": 40}, headers=admin)
    await until_state(api, agency, visit["id"], "claim_ready")

    async def cleared():
        page = (await api.get("/api/changes", params={"patient": agency.patient.id}, headers=biller)).json()
        return page if page["items"][0]["visits"][0]["outcome"] == "cleared" else None

    page = await until(cleared, what="the clearing outcome")
    assert [c["fields"][0]["after"] for c in page["items"][:2]] == [40, 4]
    one = (await api.get(f"/api/changes/{change['id']}", headers=biller)).json()
    assert one["id"] == change["id"] and one["visits"][0]["outcome"] == "held"
    assert (await api.get("/api/changes", headers=as_user(agency, "clinician"))).status_code == 403
    assert (await api.get("/api/changes/99999999", headers=biller)).status_code == 404


async def test_the_change_feed_pages_by_keyset_and_filters(api, agency, t0):
    admin, biller = as_user(agency, "admin"), as_user(agency, "biller")
    for zip_code in ("78702", "78703", "78704"):
        r = await api.patch(f"/api/patients/{agency.patient.id}", json={"zip_code": zip_code}, headers=admin)
        assert r.status_code == 200, r.text
    # A PATCH that changes nothing is no change.
    await api.patch(f"/api/patients/{agency.patient.id}", json={"zip_code": "78704"}, headers=admin)
    seen, after = [], None
    while True:
        params = {"patient": agency.patient.id, "limit": 1, **({"after": after} if after else {})}
        page = (await api.get("/api/changes", params=params, headers=biller)).json()
        seen += [c["fields"][0]["after"] for c in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == ["78704", "78703", "78702"]
    local = t0.astimezone(ZoneInfo("America/Chicago"))  # the agency's days
    today = local.date().isoformat()
    assert len((await api.get("/api/changes", params={"patient": agency.patient.id, "since": today, "until": today},
                              headers=biller)).json()["items"]) == 3
    tomorrow = (local + timedelta(days=1)).date().isoformat()
    assert (await api.get("/api/changes", params={"patient": agency.patient.id, "since": tomorrow},
                          headers=biller)).json()["items"] == []
    r = await api.get("/api/changes", params={"since": tomorrow, "until": today}, headers=biller)
    assert r.status_code == 422 and r.json()["field"] == "until"


async def test_a_reschedule_is_a_change_of_the_visit(api, agency, t0):
    visit = await schedule(api, agency, t0 + timedelta(days=3))
    sup = as_user(agency, "supervisor")
    new_start = t0 + timedelta(days=4)
    body = {"scheduled_start": new_start.isoformat(), "scheduled_end": (new_start + timedelta(hours=2)).isoformat(),
            "reason": "family asked"}
    headers = {**sup, "Idempotency-Key": f"resched-{agency.tag}"}
    assert (await api.post(f"/api/visits/{visit['id']}/reschedule", json=body, headers=headers)).status_code == 200
    assert (await api.post(f"/api/visits/{visit['id']}/reschedule", json=body, headers=headers)).status_code == 200
    page = (await api.get("/api/changes", params={"patient": agency.patient.id},
                          headers=as_user(agency, "biller"))).json()
    [change] = page["items"]  # the retry recorded nothing more
    assert change["kind"] == "visit_rescheduled" and change["subject"] == f"visit {visit['id']}"
    assert [f["field"] for f in change["fields"]] == ["scheduled_start", "scheduled_end"]
    assert change["visits"][0]["outcome"] == "not_checked"  # not signed yet: nothing billable moved


async def test_what_changed_filters_by_the_agencys_day_not_utcs(api, agency, engine):
    """A change at 8:30 pm in Chicago on 10 March is 02:30 UTC on the 11th: the biller finds it under the 10th."""
    patient_id = 1_900_000_000 + int(agency.tag, 16) % 1000  # its own filter: no other change has it
    with write_session(engine) as s:
        s.add(ChangeRecord(at=datetime(2026, 3, 11, 2, 30, tzinfo=UTC), actor="olivia", kind="patient_changed",
                           subject=f"patient {patient_id}", summary="address changed", fields=[],
                           patient_id=patient_id))
        s.commit()
    biller = as_user(agency, "biller")

    async def found(**days) -> int:
        r = await api.get("/api/changes", params={"patient": patient_id, **days}, headers=biller)
        assert r.status_code == 200, r.text
        return len(r.json()["items"])

    assert await found(since="2026-03-10", until="2026-03-10") == 1
    assert await found(since="2026-03-11") == 0 and await found(until="2026-03-09") == 0


def test_a_csv_header_as_a_spreadsheet_writes_it_is_read():
    rows = intake.rows_from_csv("Source ID,Patient_ID ,CLINICIAN_ID,payer-id,Service_Code,Scheduled_Start,"
                                "Scheduled_End\nx-1,1,2,3,T1019,2026-12-02T09:00:00-06:00,2026-12-02T11:00:00-06:00\n",
                                "visits")
    assert rows == [(2, {"source_id": "x-1", "patient_id": "1", "clinician_id": "2", "payer_id": "3",
                         "service_code": "T1019", "scheduled_start": "2026-12-02T09:00:00-06:00",
                         "scheduled_end": "2026-12-02T11:00:00-06:00"})]


# --- events out --------------------------------------------------------------------------------------------------


async def test_change_events_reach_each_endpoint_exactly_once(api, agency, client, engine, database_url, tmp_path,
                                                                receivers):
    admin = as_user(agency, "admin")
    flaky, steady = Receiver("flaky-secret-0123456789", fail_first=2), Receiver("steady-secret-0123456789")
    endpoints = []
    for receiver in (flaky, steady):
        r = await api.post("/api/event-endpoints", headers=admin, json={
            "url": await receivers(receiver), "secret": receiver.secret, "description": f"test {agency.tag}"})
        assert r.status_code == 201 and "secret" not in r.json(), r.text
        endpoints.append(r.json()["id"])
    assert (await api.post("/api/event-endpoints", headers=admin, json={"url": "ftp://x", "secret": "s" * 20})
            ).status_code == 422
    try:
        r = await api.patch(f"/api/payers/{agency.payer.id}", json={"name": f"Medicaid renamed {agency.tag}"},
                            headers=admin)
        assert r.status_code == 200
        change_id = (await api.get("/api/changes", params={"payer": agency.payer.id}, headers=admin)
                     ).json()["items"][0]["id"]
        await until(lambda: flaky.accepted and steady.accepted, what="both deliveries")
        event = steady.accepted[0]
        assert event == flaky.accepted[0]
        assert event["event_id"] == f"chg_{change_id}" and event["type"] == "change.recorded"
        assert event["version"] == 1 and event["change"]["kind"] == "payer_changed"
        assert event["change"]["fields"][0]["field"] == "name"
        assert flaky.attempts == [event["event_id"]] * 3 and steady.attempts == [event["event_id"]]
        assert flaky.bad_signatures == steady.bad_signatures == 0

        def delivered():
            with Session(engine) as s:
                rows = s.exec(select(EventDelivery).where(EventDelivery.change_id == change_id)).all()
                return rows if rows and all(r.state == "delivered" for r in rows) else None

        rows = await until(delivered, what="deliveries recorded")
        by_endpoint = {r.endpoint_id: r for r in rows}
        assert by_endpoint[endpoints[0]].attempts == 2 and by_endpoint[endpoints[0]].last_status == 200
        # A restarted worker looking for deliveries that never started sends nothing again.
        settings = Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path)
        await resume_undelivered_events(engine, client, settings)
        await asyncio.sleep(3)
        assert len(flaky.attempts) == 3 and len(steady.attempts) == 1
        shown = (await api.get(f"/api/changes/{change_id}", headers=admin)).json()["deliveries"]
        assert {d["state"] for d in shown} == {"delivered"}
    finally:
        for endpoint_id in endpoints:  # switched off: later tests' changes are not sent to a stopped receiver
            await api.patch(f"/api/event-endpoints/{endpoint_id}", json={"active": False}, headers=admin)


async def test_what_a_change_did_to_each_visit_goes_out_once_to_the_endpoints_that_asked(
        api, agency, client, engine, database_url, tmp_path, t0, receivers):
    """The visit's outcome (held, with the dollars) reaches subscribers as `change.visit_outcome`, once each."""
    admin = as_user(agency, "admin")
    only_outcomes, everything = Receiver("outcomes-secret-0123456789"), Receiver("not known until it is made")
    r = await api.post("/api/event-endpoints", headers=admin, json={
        "url": await receivers(only_outcomes), "secret": only_outcomes.secret, "event_types": ["change.visit_outcome"]})
    assert r.status_code == 201 and r.json()["event_types"] == ["change.visit_outcome"], r.text
    ids = [r.json()["id"]]
    r = await api.post("/api/event-endpoints", headers=admin, json={"url": await receivers(everything)})
    assert r.status_code == 201 and r.json()["secret"].startswith("whsec_"), r.text  # made, and shown this once
    everything.secret = r.json()["secret"]
    ids.append(r.json()["id"])
    assert "secret" not in (await api.get("/api/event-endpoints", headers=admin)).json()[-1]
    bad = await api.post("/api/event-endpoints", headers=admin, json={"url": "http://x.test/", "event_types": ["all"]})
    assert bad.status_code == 422 and "unknown event type" in bad.text
    try:
        auth = agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date(),
                                units_per_week=40)
        visit = await schedule(api, agency, t0 - timedelta(hours=4))
        await deliver(api, agency, visit)
        await until_state(api, agency, visit["id"], "claim_ready")
        r = await api.patch(f"/api/authorizations/{auth.id}", json={"units_per_week": 4}, headers=admin)
        assert r.status_code == 200, r.text
        await until(lambda: only_outcomes.accepted and len(everything.accepted) >= 2, what="the outcome events")
        [outcome] = only_outcomes.accepted
        assert outcome["type"] == "change.visit_outcome" and outcome["version"] == 1
        assert outcome["visit"]["id"] == visit["id"] and outcome["visit"]["outcome"] == "held"
        assert (outcome["visit"]["state_before"], outcome["visit"]["state_after"]) == ("claim_ready", "on_hold")
        assert outcome["visit"]["cents_before"] == 8 * agency.payer.rate_per_unit_cents
        assert outcome["change"]["kind"] == "authorization_changed" and "AUTH-02" in outcome["visit"]["holds"]
        change_id = outcome["change"]["id"]
        assert {e["type"] for e in everything.accepted} == {"change.recorded", "change.visit_outcome"}
        assert [e for e in everything.accepted if e["type"] == "change.recorded"][0]["change"]["id"] == change_id
        assert outcome in everything.accepted
        assert only_outcomes.bad_signatures == everything.bad_signatures == 0

        def delivered():
            with Session(engine) as s:
                rows = s.exec(select(EventDelivery).where(EventDelivery.change_id == change_id,
                                                          EventDelivery.event_type == "change.visit_outcome")).all()
                return rows if len(rows) == 2 and all(r.state == "delivered" for r in rows) else None

        await until(delivered, what="outcome deliveries recorded")
        # A restarted worker, and the visit checking its gates again, send nothing more.
        await resume_undelivered_events(
            engine, client, Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path))
        await asyncio.sleep(2)
        assert len(only_outcomes.attempts) == 1 and len(everything.attempts) == 2
        shown = (await api.get(f"/api/event-endpoints/{ids[0]}/deliveries", headers=admin)).json()
        assert [(d["event_type"], d["state"], d["visit_id"]) for d in shown] == [
            ("change.visit_outcome", "delivered", visit["id"])]
    finally:
        for endpoint_id in ids:
            await api.patch(f"/api/event-endpoints/{endpoint_id}", json={"active": False}, headers=admin)


async def test_a_test_event_is_sent_once_per_key_and_not_to_a_switched_off_endpoint(api, agency, receivers):
    admin = as_user(agency, "admin")
    receiver = Receiver("test-event-secret-0123456789")
    r = await api.post("/api/event-endpoints", headers=admin, json={
        "url": await receivers(receiver), "secret": receiver.secret, "event_types": ["change.recorded"]})
    endpoint_id = r.json()["id"]
    try:
        keyed = {**admin, "Idempotency-Key": f"test-{agency.tag}"}
        first = await api.post(f"/api/event-endpoints/{endpoint_id}/test", headers=keyed)
        again = await api.post(f"/api/event-endpoints/{endpoint_id}/test", headers=keyed)
        assert first.status_code == again.status_code == 202, first.text
        assert first.json()["event_id"] == again.json()["event_id"]
        await until(lambda: receiver.accepted, what="the test event")
        await asyncio.sleep(1)
        [event] = receiver.accepted
        assert event["type"] == "endpoint.test" and event["endpoint"] == {"id": endpoint_id}
        assert event["sent_by"] == agency.users["admin"].username
        assert (await api.get(f"/api/event-endpoints/{endpoint_id}/deliveries", headers=admin)).json()[0][
            "state"] in ("pending", "delivered")
        off = await api.patch(f"/api/event-endpoints/{endpoint_id}", json={"active": False}, headers=admin)
        assert off.status_code == 200 and off.json()["active"] is False
        refused = await api.post(f"/api/event-endpoints/{endpoint_id}/test", headers=admin)
        assert refused.status_code == 409 and "switched off" in refused.text
        assert (await api.post("/api/event-endpoints/999999/test", headers=admin)).status_code == 404
        assert (await api.patch(f"/api/event-endpoints/{endpoint_id}", json={"event_types": []}, headers=admin)
                ).status_code == 422
    finally:
        await api.patch(f"/api/event-endpoints/{endpoint_id}", json={"active": False}, headers=admin)


# --- bulk intake -------------------------------------------------------------------------------------------------


def _auth_csv(agency, rows: list[tuple[str, str, int]]) -> str:
    lines = ["source_id,auth_number,patient_id,payer_id,service_code,modifiers,start_date,end_date,units_per_week"]
    lines += [f"{sid},{number},{agency.patient.id},{agency.payer.id},T1019,U1 U2,2026-01-01,2026-12-31,{units}"
              for sid, number, units in rows]
    return "\n".join(lines) + "\n"


def _auths(engine, agency) -> list[Authorization]:
    with Session(engine) as s:
        return list(s.exec(select(Authorization).where(Authorization.payer_id == agency.payer.id)
                           .order_by(Authorization.source_id)).all())


async def test_bulk_authorizations_apply_all_or_nothing_and_again_change_nothing(api, agency, engine):
    admin = {**as_user(agency, "admin"), "Content-Type": "text/csv"}
    t = agency.tag
    rows = [(f"ext-{t}-{n}", f"PA{t}{n}", 10 + n) for n in range(300)]
    r = await api.post("/api/bulk/authorizations", content=_auth_csv(agency, rows), headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (300, 0, 0)
    assert _auths(engine, agency)[0].modifiers == ["U1", "U2"]

    r = await api.post("/api/bulk/authorizations", content=_auth_csv(agency, rows), headers=admin)
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 0, 300)

    rows[5] = (rows[5][0], rows[5][1], 99)
    r = await api.post("/api/bulk/authorizations", content=_auth_csv(agency, rows), headers=admin)
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 1, 299)
    [change_id] = r.json()["changes"]
    change = (await api.get(f"/api/changes/{change_id}", headers=admin)).json()
    assert change["fields"] == [{"field": "units_per_week", "before": 15, "after": 99}]

    # One file with three bad rows and a good new one: nothing is applied, every problem is named.
    bad = rows[:3] + [(f"ext-{t}-new", f"PA{t}new", 5)]
    text = _auth_csv(agency, bad).replace(f"{rows[1][0]},{rows[1][1]},{agency.patient.id}",
                                          f"{rows[1][0]},{rows[1][1]},999999")
    text = text.replace(f"{rows[2][1]},{agency.patient.id},{agency.payer.id},T1019,U1 U2,2026-01-01,2026-12-31",
                        f"{rows[2][1]},{agency.patient.id},{agency.payer.id},T1019,U1 U2,2026-01-01,2025-12-31")
    text += f"{rows[0][0]},PA{t}dup,{agency.patient.id},{agency.payer.id},T1019,,2026-01-01,notadate,1\n"
    before = len(_auths(engine, agency))
    r = await api.post("/api/bulk/authorizations", content=text, headers=admin)
    assert r.status_code == 422, r.text
    problems = {(p["line"], p["field"]) for p in r.json()["problems"]}
    assert {(3, "patient_id"), (4, "end_date"), (6, "source_id"), (6, "end_date")} <= problems
    assert len(_auths(engine, agency)) == before

    r = await api.post("/api/bulk/authorizations", content="source_id,colour\nx,red\n", headers=admin)
    assert r.status_code == 422 and {p["field"] for p in r.json()["problems"]} >= {"colour", "auth_number"}
    r = await api.post("/api/bulk/authorizations", content="x", headers={**admin, "Content-Type": "image/png"})
    assert r.status_code == 415
    r = await api.post("/api/bulk/authorizations", json=[{"source_id": f"ext-{t}-json", "auth_number": f"PA{t}j",
                                                          "patient_id": agency.patient.id,
                                                          "payer_id": agency.payer.id, "service_code": "T1019",
                                                          "start_date": "2026-01-01", "end_date": "2026-06-30"}],
                       headers=as_user(agency, "admin"))
    assert r.status_code == 200 and r.json()["created"] == 1
    r = await api.post("/api/bulk/authorizations", content=_auth_csv(agency, rows[:1]),
                       headers={**as_user(agency, "biller"), "Content-Type": "text/csv"})
    assert r.status_code == 403


async def test_bulk_visits_schedule_once_and_follow_a_changed_row(api, agency, engine, t0):
    sup = {**as_user(agency, "supervisor"), "Content-Type": "text/csv"}
    t = agency.tag
    start = (t0 + timedelta(days=5)).replace(hour=15, minute=0)

    def csv_of(rows):
        head = "source_id,patient_id,clinician_id,payer_id,service_code,modifiers,scheduled_start,scheduled_end\n"
        return head + "".join(
            f"{sid},{agency.patient.id},{clin},{agency.payer.id},T1019,,{s.isoformat()},"
            f"{(s + timedelta(hours=2)).isoformat()}\n" for sid, clin, s in rows)

    rows = [(f"sched-{t}-{n}", agency.clinician.id, start + timedelta(days=n)) for n in range(20)]
    r = await api.post("/api/bulk/visits", content=csv_of(rows), headers=sup)
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["unchanged"]) == (20, 0)

    def listed():
        with Session(engine) as s:
            return s.exec(select(func.count()).select_from(Visit).where(Visit.id.in_([x[0] for x in rows]))).one() == 20

    await until(listed, what="the visits in the read model")
    r = await api.post("/api/bulk/visits", content=csv_of(rows), headers=sup)
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 0, 20)

    rows[3] = (rows[3][0], agency.other_clinician.id, rows[3][2] + timedelta(hours=1))
    r = await api.post("/api/bulk/visits", content=csv_of(rows), headers=sup)
    assert (r.json()["created"], r.json()["updated"], r.json()["unchanged"]) == (0, 1, 19), r.text
    visit = (await api.get(f"/api/visits/{rows[3][0]}", headers=sup)).json()
    assert visit["clinician_id"] == agency.other_clinician.id
    kinds = [c["kind"] for c in (await api.get("/api/changes", params={"patient": agency.patient.id},
                                               headers=sup)).json()["items"]]
    assert sorted(kinds) == ["visit_reassigned", "visit_rescheduled"]

    bad = rows[:2] + [(f"sched-{t}-new", 999999, start)]
    text = csv_of(bad) + (f"sched-{t}-late,{agency.patient.id},{agency.clinician.id},{agency.payer.id},T1019,,"
                          f"{start.isoformat()},{start.isoformat()}\n")
    r = await api.post("/api/bulk/visits", content=text, headers=sup)
    assert r.status_code == 422, r.text
    problems = {(p["line"], p["field"]) for p in r.json()["problems"]}
    assert (4, "clinician_id") in problems and (5, "scheduled_end") in problems
    with Session(engine) as s:
        assert s.get(Visit, f"sched-{t}-new") is None
    r = await api.post("/api/bulk/visits", content=csv_of(rows[:1]),
                       headers={**as_user(agency, "admin"), "Content-Type": "text/csv"})
    assert r.status_code == 200  # an admin may send schedules (not reassignments)


async def test_an_authorization_added_then_ended_are_two_changes(api, agency):
    admin = as_user(agency, "admin")
    r = await api.post("/api/authorizations", headers=admin, json={
        "auth_number": f"ADD-{agency.tag}", "patient_id": agency.patient.id, "payer_id": agency.payer.id,
        "service_code": "t1019", "start_date": "2026-01-01", "end_date": "2026-12-31", "units_per_week": 20})
    assert r.status_code == 201, r.text
    r = await api.patch(f"/api/authorizations/{r.json()['id']}", headers=admin, json={"active": False})
    assert r.status_code == 200, r.text
    items = (await api.get("/api/changes", params={"patient": agency.patient.id}, headers=admin)).json()["items"]
    assert [c["kind"] for c in items] == ["authorization_ended", "authorization_added"]
    assert items[0]["fields"] == [{"field": "active", "before": True, "after": False}]
    added = {f["field"]: f["after"] for f in items[1]["fields"]}
    assert added["service_code"] == "T1019" and added["units_per_week"] == 20 and added["start_date"] == "2026-01-01"
    assert "units_per_day" not in added  # a field left empty is no change
