"""Physician orders through the REST API (real test server, real database): entering one with its checks,
the warning when a visit is scheduled over the ordered frequency (AUTH-03), the office's list of orders pending
signature, and signing the order moving the visit waiting on it to claim-ready (ORD-01, ORD-02)."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest_asyncio
from sqlmodel import Session, select

from tests.api.test_api import as_user, deliver, schedule, until_listed, until_state
from tests.conftest import Agency
from tests.ui.conftest import end_order_chases
from visitflow.db.session import write_session
from visitflow.db.tables import Payer, PhysicianOrder
from visitflow.models import Discipline
from visitflow.settings import Settings

NPI = "1234567893"


@pytest_asyncio.fixture(autouse=True)
async def chases_end(client, agency, engine):
    """Each test's order chases end with it: later tests that skip time on this server need not run them."""
    yield
    with Session(engine) as s:
        ids = list(s.exec(select(PhysicianOrder.id).where(PhysicianOrder.patient_id == agency.patient.id)))
    await end_order_chases(client, engine, ids)


def order_body(agency: Agency, t0, **over) -> dict:
    day = t0.date()
    return {"kind": "plan_of_care", "patient_id": agency.patient.id, "practitioner_npi": NPI,
            "practitioner_name": "Dr. Rivera", "frequencies": ["PCA 3W4"],
            "effective_from": (day - timedelta(days=7)).isoformat(),
            "effective_to": (day + timedelta(days=50)).isoformat(), "sent_on": (day - timedelta(days=3)).isoformat(),
            "document_ref": "fax-2231", **over}


def require_orders(agency: Agency) -> None:
    with write_session(agency.engine) as s:
        payer = s.get(Payer, agency.payer.id)
        payer.orders_required = [Discipline.PCA]
        payer.signed_orders_before_billing = True
        s.add(payer)
        s.commit()


async def test_an_order_is_checked_when_entered_and_a_retry_enters_it_once(api, agency, t0, engine):
    admin = as_user(agency, "admin")
    r = await api.post("/api/orders", json=order_body(agency, t0, practitioner_npi="1234567890"), headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "practitioner_npi" and "Luhn" in r.json()["detail"]
    r = await api.post("/api/orders", json=order_body(agency, t0, frequencies=["PCA 3W2, 2Q2"]), headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "frequencies"
    assert 'position 9: expected W after the visit count' in r.json()["detail"]
    r = await api.post("/api/orders", json=order_body(agency, t0, frequencies=["PCA 3W2", "PCA 1W4"]),
                       headers=admin)
    assert r.status_code == 422 and "ordered twice" in r.json()["detail"]
    r = await api.post("/api/orders", json=order_body(agency, t0, effective_to="2000-01-01"), headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "effective_to"
    r = await api.post("/api/orders", json=order_body(agency, t0, kind="standing"), headers=admin)
    assert r.status_code == 422
    r = await api.post("/api/orders", json=order_body(agency, t0), headers=as_user(agency, "supervisor"))
    assert r.status_code == 403

    keyed = {**admin, "Idempotency-Key": f"order-{agency.tag}"}
    first = await api.post("/api/orders", json=order_body(agency, t0), headers=keyed)
    again = await api.post("/api/orders", json=order_body(agency, t0), headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201) and first.json() == again.json()
    listed = (await api.get("/api/orders", params={"patient": agency.patient.id},
                            headers=as_user(agency, "supervisor"))).json()
    assert [o["id"] for o in listed] == [first.json()["id"]]
    assert listed[0]["status"] == "sent" and listed[0]["frequencies"] == ["PCA 3W4"]


async def test_scheduling_over_the_ordered_frequency_warns_and_schedules(api, agency, t0):
    admin = as_user(agency, "admin")
    start = t0 + timedelta(days=1)
    r = await api.post("/api/orders", json=order_body(agency, t0, frequencies=["PCA 1W4"],
                                                       effective_from=t0.date().isoformat()), headers=admin)
    assert r.status_code == 201, r.text
    first = await schedule(api, agency, start)
    assert first["warnings"] == []
    # The warning counts the visits in the read model; the first visit's projection follows its start by moments.
    await until_listed(api, agency, first["id"])
    second = await schedule(api, agency, start + timedelta(hours=3))
    assert second["state"] == "scheduled"
    assert len(second["warnings"]) == 1 and second["warnings"][0].startswith("AUTH-03 visit 2 of order week 1")
    assert "allows 1 PCA visit" in second["warnings"][0]

    # A frequency change is checked like a new order, and says which open visits it sent back to their gates.
    order_id = r.json()["id"]
    bad = await api.patch(f"/api/orders/{order_id}", json={"frequencies": ["PCA 2W"]}, headers=admin)
    assert bad.status_code == 422 and "expected the number of weeks" in bad.json()["detail"]
    changed = await api.patch(f"/api/orders/{order_id}", json={"frequencies": ["PCA 2W4"]}, headers=admin)
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert changed.json()["rechecked_visits"] == []  # both visits still wait for their notes
    await until_listed(api, agency, second["id"])
    third = await schedule(api, agency, start + timedelta(hours=6))
    assert len(third["warnings"]) == 1 and third["warnings"][0].startswith("AUTH-03 visit 3 of order week 1")
    assert "allows 2 PCA visits" in third["warnings"][0]


async def test_signing_the_order_moves_the_waiting_visit_to_claim_ready(api, agency, t0, engine, env):
    require_orders(agency)
    agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date(), units_per_week=40)
    admin, supervisor = as_user(agency, "admin"), as_user(agency, "supervisor")
    visit = await schedule(api, agency, t0 - timedelta(hours=4))
    await deliver(api, agency, visit)
    held = await until_state(api, agency, visit["id"], "on_hold")
    assert [h["rule_id"] for h in held["holds"]] == ["ORD-01"]

    order = (await api.post("/api/orders", json=order_body(agency, t0), headers=admin)).json()
    held = await until_state_with(api, agency, visit["id"], lambda v: [h["rule_id"] for h in v["holds"]] == ["ORD-02"])
    assert held["state"] == "on_hold"
    # CHG-01: the order is a change that moved money, with what it did to the waiting visit.
    changes = (await api.get("/api/changes", params={"patient": agency.patient.id}, headers=admin)).json()
    entered = next(c for c in changes["items"] if c["subject"] == f"order {order['id']}")
    assert entered["kind"] == "order_added" and entered["visits_touched"] == 1

    page = (await api.get("/api/orders/pending", params={"limit": 200}, headers=supervisor)).json()
    mine = next(p for p in page["items"] if p["order"]["id"] == order["id"])
    # Age in the agency's days (its time zone), from the day the order went out.
    sent_on = date.fromisoformat(order_body(agency, t0)["sent_on"])
    assert mine["age_days"] == (datetime.now(ZoneInfo(Settings().agency_timezone)).date() - sent_on).days
    assert mine["visits_waiting"] == 1 and mine["dollars_waiting_cents"] == 8 * 600
    assert mine["patient_name"].startswith("Alice")

    r = await api.post(f"/api/orders/{order['id']}/signature", json={"signed_on": "2000-01-01"}, headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "signed_on"
    # Tomorrow in the agency's zone has not come yet, whatever day it is in UTC (evenings in Chicago). "Now" is the
    # workflows' clock: the test server's, which earlier tests' time skipping moved ahead of the wall clock.
    now = await env.get_current_time()
    agency_tomorrow = now.astimezone(ZoneInfo(Settings().agency_timezone)).date() + timedelta(days=1)
    r = await api.post(f"/api/orders/{order['id']}/signature", json={"signed_on": agency_tomorrow.isoformat()},
                       headers=admin)
    assert r.status_code == 422 and r.json()["field"] == "signed_on" and "in the future" in r.text, r.text
    signed_on = (agency_tomorrow - timedelta(days=1)).isoformat()  # today, the agency's day
    r = await api.post(f"/api/orders/{order['id']}/signature", json={"signed_on": signed_on}, headers=supervisor)
    assert r.status_code == 403
    r = await api.post(f"/api/orders/{order['id']}/signature", json={"signed_on": signed_on}, headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "signed"
    await until_state(api, agency, visit["id"], "claim_ready")
    r = await api.post(f"/api/orders/{order['id']}/return", json={"reason": "late"}, headers=admin)
    assert r.status_code == 409 and "already signed" in r.json()["detail"]
    page = (await api.get("/api/orders/pending", params={"limit": 200}, headers=admin)).json()
    assert order["id"] not in [p["order"]["id"] for p in page["items"]]
    with Session(engine) as s:
        assert s.get(PhysicianOrder, order["id"]).signed_on.isoformat() == signed_on


async def until_state_with(api, agency: Agency, visit_id: str, predicate, timeout: float = 15) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        visit = (await api.get(f"/api/visits/{visit_id}", headers=as_user(agency, "supervisor"))).json()
        if predicate(visit):
            return visit
        assert loop.time() < deadline, f"{visit_id} is {visit['state']}: {visit['holds']}"
        await asyncio.sleep(0.05)


async def test_a_visit_scheduled_or_cancelled_in_the_order_week_rechecks_the_others(api, agency, t0):
    """AUTH-03 with AUTH-04: the first visits of a week (by schedule) fit the frequency; a visit scheduled before a
    claim-ready one pushes it over, and cancelling it lets the claim-ready one back."""
    admin = as_user(agency, "admin")
    agency.authorize((t0 - timedelta(days=10)).date(), (t0 + timedelta(days=10)).date(), units_per_week=40)
    r = await api.post("/api/orders", json=order_body(
        agency, t0, frequencies=["PCA 1W4"], effective_from=(t0 - timedelta(days=1, hours=6)).date().isoformat()),
        headers=admin)
    assert r.status_code == 201, r.text
    later = await schedule(api, agency, t0 - timedelta(hours=4))
    await deliver(api, agency, later)
    await until_state(api, agency, later["id"], "claim_ready")

    earlier = await schedule(api, agency, t0 - timedelta(hours=7))
    assert earlier["warnings"] == []  # it takes the week's one place; the claim-ready visit is now the extra one
    held = await until_state(api, agency, later["id"], "on_hold")
    assert [h["rule_id"] for h in held["holds"]] == ["AUTH-03"]
    assert "visit 2 of order week 1" in held["holds"][0]["message"]

    r = await api.post(f"/api/visits/{earlier['id']}/cancel", json={"reason": "client hospitalized"}, headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    await until_state(api, agency, later["id"], "claim_ready")

    # A visit moved into the week from another one does the same.
    moved = await schedule(api, agency, t0 + timedelta(days=8))
    assert moved["warnings"] == []
    r = await api.post(f"/api/visits/{moved['id']}/reschedule", headers=admin, json={
        "scheduled_start": (t0 - timedelta(hours=8)).isoformat(),
        "scheduled_end": (t0 - timedelta(hours=7)).isoformat(), "reason": "family asked for an earlier day"})
    assert r.status_code == 200, r.text
    held = await until_state(api, agency, later["id"], "on_hold")
    assert [h["rule_id"] for h in held["holds"]] == ["AUTH-03"]
