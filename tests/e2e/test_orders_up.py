"""Physician orders against the real dev server (`visitflow up`), over HTTP, as the office and a feeding system
use them: a visit held for want of an order (ORD-01), then for its signature (ORD-02), moves on by itself when the
signature is recorded; a frequency cut puts a visit over the order on hold (AUTH-03); each is a change (CHG-01)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.test_up import HOME, Running, at, deliver, until_state, up_running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    with up_running(tmp_path_factory, "visitflow-up-orders") as up:
        yield up


def until_holds(client: httpx.Client, visit_id: str, rules: list[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        visit = client.get(f"/api/visits/{visit_id}").json()
        if [h["rule_id"] for h in visit.get("holds", [])] == rules:
            return visit
        if time.monotonic() > deadline:
            raise AssertionError(f"{visit_id} is {visit.get('state')} with holds {visit.get('holds')}, not {rules}")
        time.sleep(0.1)


def test_an_order_signed_moves_the_visit_on_and_a_frequency_cut_holds_one(running: Running):
    with running.client("olivia") as office, running.client("devon") as devon, running.client("sam") as sam:
        tag = uuid.uuid4().hex[:6]
        patient = office.post("/api/patients", json={
            "first_name": "Ines", "last_name": f"Order{tag}", "medicaid_id": "523456789", "address_line":
            "1100 Congress Ave", "city": "Austin", "state": "TX", "zip_code": "78701", "latitude": HOME["lat"],
            "longitude": HOME["lon"]}).json()
        payer = office.post("/api/payers", json={
            "name": f"Medicare HH {tag}", "payer_code": "MCR", "evv_radius_m": 402, "clock_tolerance_min": 15,
            "rounding": "nearest_quarter", "orders_required": ["PCA"], "signed_orders_before_billing": True})
        assert payer.status_code == 201, payer.text
        devon_record = next(c for c in office.get("/api/clinicians").json() if c["last_name"] == "Price")
        ids = {"patient_id": patient["id"], "payer_id": payer.json()["id"], "clinician_id": devon_record["id"]}
        today = date.today()
        office.post("/api/authorizations", json={
            "auth_number": f"PA-{tag}", **{k: ids[k] for k in ("patient_id", "payer_id")}, "service_code": "T1019",
            "start_date": str(today - timedelta(days=30)), "end_date": str(today + timedelta(days=30)),
            "units_per_week": 200}).raise_for_status()

        def visit(hours_ago: float) -> dict:
            body = {"id": f"ORD-{uuid.uuid4().hex[:8]}", **ids, "service_code": "T1019",
                    "scheduled_start": at(hours_ago).isoformat(), "scheduled_end": at(hours_ago - 2).isoformat()}
            r = office.post("/api/visits", json=body)
            assert r.status_code == 201, r.text
            return body

        first, second = visit(26), visit(5)
        # The order's weeks count from its effective date: from the first visit's day (the agency's date), both
        # visits fall in its first week.
        week_one = at(26).astimezone(ZoneInfo("America/Chicago")).date()
        for v in (first, second):
            deliver(devon, v)
            until_holds(sam, v["id"], ["ORD-01"])

        order = office.post("/api/orders", json={
            "kind": "plan_of_care", "patient_id": ids["patient_id"], "practitioner_npi": "1234567893",
            "practitioner_name": "Dr. Rivera", "frequencies": ["PCA 3W4"],
            "effective_from": str(week_one), "effective_to": str(today + timedelta(days=50)),
            "sent_on": str(week_one)}, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert order.status_code == 201, order.text
        order_id = order.json()["id"]
        for v in (first, second):
            until_holds(sam, v["id"], ["ORD-02"])  # covered, but the payer bills only signed orders

        agency_today = datetime.now(ZoneInfo("America/Chicago")).date()  # the signature's day, in the agency
        signed = office.post(f"/api/orders/{order_id}/signature", json={"signed_on": str(agency_today)},
                             headers={"Idempotency-Key": uuid.uuid4().hex})
        assert signed.status_code == 200, signed.text
        for v in (first, second):
            until_state(sam, v["id"], "claim_ready")  # moved on by themselves

        # The order is cut to one visit a week: the later visit of the week is now over the frequency.
        cut = office.patch(f"/api/orders/{order_id}", json={"frequencies": ["PCA 1W4"]})
        assert cut.status_code == 200, cut.text
        assert sorted(cut.json()["rechecked_visits"]) == sorted([first["id"], second["id"]])
        held = until_holds(sam, second["id"], ["AUTH-03"])
        assert held["state"] == "on_hold"
        until_state(sam, first["id"], "claim_ready")

        changes = office.get("/api/changes", params={"patient": ids["patient_id"]}).json()["items"]
        assert [c["kind"] for c in changes][:2] == ["order_changed", "order_added"]
