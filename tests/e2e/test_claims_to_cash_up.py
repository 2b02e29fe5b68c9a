"""From claim-ready to paid against the real dev server (`visitflow up`, as `make run` starts it), over HTTP:
one visit paid; one denied for documentation, fixed by its clinician, rebilled on a replacement claim and paid;
one held for timely filing. The 835s are what a payer would send back for the claims VisitFlow wrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_up import HOME, Running, at, deliver, until_state, up_running, whole_queue
from tests.remittance_files import ClaimAnswer, LineAnswer, write_835

pytestmark = pytest.mark.e2e

DEMO_CONFIG = Path(__file__).parents[2] / "deploy" / "visitflow.demo.toml"


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    # What `make run` uses: the demo agency's billing identity.
    with up_running(tmp_path_factory, "visitflow-up-claims", VISITFLOW_CONFIG=str(DEMO_CONFIG)) as up:
        yield up


def reference_data(admin: httpx.Client, filing_limit_days: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    patient = admin.post("/api/patients", json={
        "first_name": "Rosa", "last_name": f"Garcia{tag}", "medicaid_id": "512345678", "birth_date": "1941-03-02",
        "gender": "F", "diagnosis_codes": ["R26.89"], "address_line": "1100 Congress Ave", "city": "Austin",
        "state": "TX", "zip_code": "78701", "latitude": HOME["lat"], "longitude": HOME["lon"]})
    assert patient.status_code == 201, patient.text
    payer = admin.post("/api/payers", json={
        "name": f"Texas Medicaid {tag}", "payer_code": "TXMCD", "evv_radius_m": 402, "clock_tolerance_min": 15,
        "rounding": "nearest_quarter", "billing_period": "visit", "filing_limit_days": filing_limit_days})
    assert payer.status_code == 201, payer.text
    devon = next(c for c in admin.get("/api/clinicians").json() if c["last_name"] == "Price")
    ids = {"patient_id": patient.json()["id"], "payer_id": payer.json()["id"], "clinician_id": devon["id"]}
    today = date.today()
    auth = admin.post("/api/authorizations", json={
        "auth_number": f"PA-{tag}", "patient_id": ids["patient_id"], "payer_id": ids["payer_id"],
        "service_code": "T1019", "start_date": str(today - timedelta(days=200)),
        "end_date": str(today + timedelta(days=30)), "units_per_week": 200})
    assert auth.status_code == 201, auth.text
    return ids


def scheduled(admin: httpx.Client, ids: dict, hours_ago: float) -> dict:
    body = {"id": f"CASH-{uuid.uuid4().hex[:8]}", **ids, "service_code": "T1019",
            "scheduled_start": at(hours_ago).isoformat(), "scheduled_end": at(hours_ago - 2).isoformat()}
    r = admin.post("/api/visits", json=body)
    assert r.status_code == 201, r.text
    return body


def keyed(client: httpx.Client, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    return client.post(path, headers={"Idempotency-Key": uuid.uuid4().hex, **(headers or {})}, **kw)


def line_of(biller: httpx.Client, claim_id: int) -> dict:
    [line] = biller.get(f"/api/claims/{claim_id}").json()["line_items"]
    return line


def import_835(biller: httpx.Client, text: str) -> dict:
    r = keyed(biller, "/api/remittances", content=text, headers={"Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    return r.json()


def answer(claim: dict, payer_number: str, line: dict, paid: int, adjustments=(), remarks=()) -> ClaimAnswer:
    return ClaimAnswer(claim["control_number"], payer_number, [LineAnswer(
        line["visit_id"], "T1019", line["charge_cents"], paid, line["units"], date.fromisoformat(line["service_date"]),
        adjustments=list(adjustments), remarks=list(remarks))])


def test_paid_denied_fixed_replaced_paid_and_held_for_timely_filing(running: Running):
    with running.client("olivia") as admin, running.client("devon") as devon, running.client("bea") as biller:
        ids = reference_data(admin, filing_limit_days=95)
        paid, denied, late = scheduled(admin, ids, 26), scheduled(admin, ids, 50), scheduled(admin, ids, 100 * 24)
        for visit in (paid, denied, late):
            deliver(devon, visit)
            until_state(biller, visit["id"], "claim_ready")

        # The ready-to-bill queue says the late visit is past the payer's 95 days; a release refuses it (CLM-07).
        r = keyed(biller, "/api/releases", json={"visit_ids": [paid["id"], denied["id"], late["id"]]})
        assert r.status_code == 200, r.text
        release = r.json()
        assert sorted(release["released"]) == sorted([paid["id"], denied["id"]])
        [held] = release["rejected"]
        assert held["visit_id"] == late["id"] and held["rule_id"] == "CLM-07" and "95-day" in held["reason"]
        assert all(f["valid"] for f in release["files"]), release["files"]
        claims = {line_of(biller, c["id"])["visit_id"]: c for c in release["claims"]}
        for file in release["files"]:
            download = biller.get(f"/api/claim-files/{file['id']}/download")
            assert download.status_code == 200 and download.text.startswith("ISA*")
            assert keyed(biller, f"/api/claim-files/{file['id']}/submitted").status_code == 200

        # The payer pays one and denies the other: the documentation does not support it.
        paid_line, denied_line = line_of(biller, claims[paid["id"]]["id"]), line_of(biller, claims[denied["id"]]["id"])
        era = write_835([answer(claims[paid["id"]], "TX-E2E-1", paid_line, paid_line["charge_cents"]),
                         answer(claims[denied["id"]], "TX-E2E-2", denied_line, 0,
                                [("CO", "252", denied_line["charge_cents"])], ["N29"])],
                        trace=f"EFT-{uuid.uuid4().hex[:8]}")
        outcome = import_835(biller, era)
        assert outcome["returned_to_work"] == [denied["id"]]
        assert keyed(biller, "/api/remittances", content=era,
                     headers={"Content-Type": "text/plain"}).json()["already_imported"] is True
        assert biller.get(f"/api/claims/{claims[paid['id']]['id']}").json()["state"] == "paid"
        assert biller.get(f"/api/claims/{claims[denied['id']]['id']}").json()["state"] == "denied"

        # Back with the clinician, the payer's reason in words; revised, signed, claim-ready again.
        back = until_state(biller, denied["id"], "documented")
        assert back["timeline"][-1]["kind"] == "claim_denied"
        task = next(t for t in whole_queue(devon)["tasks"] if t["visit_id"] == denied["id"])
        assert "documentation or an attachment is needed" in task["title"]
        revised = {"tasks_performed": "Bathing, dressing, meal preparation, medication reminder",
                   "client_condition": "Alert, steady on her feet with the walker"}
        assert devon.post(f"/api/visits/{denied['id']}/note", json={"fields": revised}).status_code == 200
        assert devon.post(f"/api/visits/{denied['id']}/signature", json={"attestation": True}).status_code == 200
        until_state(biller, denied["id"], "claim_ready")

        # Released again: a replacement claim (frequency 7) naming the payer's number, paid by the next 835.
        rebill = keyed(biller, "/api/releases", json={"visit_ids": [denied["id"]]}).json()
        [replacement] = rebill["claims"]
        assert rebill["files"][0]["valid"], rebill["files"]
        detail = biller.get(f"/api/claims/{replacement['id']}").json()
        assert detail["frequency"] == "7" and detail["replaces_claim_id"] == claims[denied["id"]]["id"]
        content = biller.get(f"/api/claim-files/{rebill['files'][0]['id']}/download").text
        assert "REF*F8*TX-E2E-2~" in content
        assert biller.get(f"/api/claims/{claims[denied['id']]['id']}").json()["state"] == "replaced"
        assert keyed(biller, f"/api/claim-files/{rebill['files'][0]['id']}/submitted").status_code == 200
        new_line = line_of(biller, replacement["id"])
        import_835(biller, write_835([answer(replacement, "TX-E2E-3", new_line, new_line["charge_cents"])],
                                     trace=f"EFT-{uuid.uuid4().hex[:8]}"))
        assert biller.get(f"/api/claims/{replacement['id']}").json()["state"] == "paid"
