"""Fault injection: every action on a visit happens exactly once, whatever fails underneath.

A real stack in separate processes (the Temporal dev server, `visitflow api`, `visitflow worker`), driven
through the REST API by a client that behaves like a phone on a bad network: it waits a couple of seconds
for an answer, then sends the same request again with the same `Idempotency-Key`. Meanwhile a chaos schedule
(deterministic for a seed) SIGKILLs the worker several times, restarts the Temporal dev server once (stop,
start again on the same file and port) and SIGKILLs and restarts the API once.

Each visit: schedule -> clock-in -> clock-out -> note -> signature -> wait for claim_ready (or on_hold when its
authorization has no units left, AUTH-02) -> the biller releases the claim-ready ones in batches.

Afterwards every visit is compared with its workflow's own state (the `snapshot` query) and the read model:

- visits lost: scheduled (the API said so) but missing from Temporal or from the read model;
- actions applied twice: more than one clock-in, clock-out, note, signature or release in the workflow;
- read model differs from the workflow: `visit.state` / `visit.version` against the query;
- units over an authorization: `authorizationusage` summed per limit period against the limit;
- released visits outside a stored batch: each released visit's batch is in `releasebatch` and lists it;
- 5xx outside the outage windows. An outage window runs from the moment a piece is killed or stopped until
  `outage_grace` seconds after it is back up (the others reconnect in that time); a request counts as inside
  when its flight overlaps a window;
- visits not where they should be: every visit ends released, except the ones each short authorization
  cannot cover, which end on hold for AUTH-02 alone; and the release answer names the visit's batch;
- actions refused or abandoned: any action answered with something other than success, or unanswered
  after `action_deadline` seconds of retrying.

Recovery after an outage: the visits being worked on when the piece went down (scheduled, not yet settled
in the read model) are noted with their read-model versions; once the piece is back up (the new worker
process is connected, the API answers, the dev server listens), each such visit has recovered when its
read-model version moves. Reported per outage: the first and the last visit to move, in seconds after the
piece was up. The read model is written only by the worker, so a killed worker freezes it exactly.

Run: `python -m tests.fault.harness --visits 1000` (or `make fault`). Logs of every process and a JSON
report are kept in the run's directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from visitflow.db.session import get_engine, migrate
from visitflow.db.tables import Authorization, AuthorizationUsage, ReleaseBatch, Visit
from visitflow.devserver import DevServer
from visitflow.models import PunchKind, VisitSnapshot, VisitState
from visitflow.seed import demo_token, seed_demo
from visitflow.settings import Settings
from visitflow.temporal import connect
from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

WORKER_KILLED = "worker killed (SIGKILL)"
TEMPORAL_RESTARTED = "Temporal dev server restarted"
API_RESTARTED = "API killed (SIGKILL) and restarted"

HOME = {"lat": 30.2747, "lon": -97.7404}  # every test patient lives here; punches are taken here
NOTE = {"tasks_performed": "Bathing, meal preparation", "client_condition": "Alert, ate well"}
VISIT_HOURS = 2
UNITS_PER_VISIT = VISIT_HOURS * 4  # T1019 is billed in 15-minute units
SETTLED = (VisitState.claim_ready.value, VisitState.on_hold.value)
RETRY_STATUSES = (502, 503, 504)  # the answer did not come from VisitFlow, or VisitFlow asks to try again
MAX_BACKOFF = 2.0  # seconds between two attempts at most
RECOVERY_TARGET_S = 10.0  # issue 6: after a worker dies, its visits move again within 10 s of a new worker


@dataclass
class FaultRun:
    visits: int = 1000
    concurrency: int = 20
    seed: int = 20261129
    worker_kills: int = 3
    run_dir: Path = Path("test-artifacts/fault")
    database_url: str | None = None  # SQLite in run_dir unless given
    request_timeout: float = 2.5  # how long the client waits for an answer before it sends the request again
    release_timeout: float = 30.0  # a release runs one workflow Update per visit in the batch
    action_deadline: float = 180.0  # an action unanswered after this much retrying is abandoned and reported
    settle_timeout: float = 300.0  # signature -> claim_ready / on_hold
    time_limit: float = 3600.0  # for the whole drive: what is still unanswered then is abandoned and reported
    outage_grace: float = 5.0
    recovery_limit: float = 60.0  # a visit not moving this long after the piece is back counts as stuck

    @property
    def release_batch_size(self) -> int:
        return max(5, min(50, self.visits // 10))


# --- the chaos schedule --------------------------------------------------------------------


@dataclass
class ChaosEvent:
    kind: str
    at_visit: int  # happens once this many visits have been started; later visits wait until it has begun
    down_for: float  # seconds the piece stays down before it is started again
    begun: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)


def chaos_plan(visits: int, worker_kills: int, seed: int) -> list[ChaosEvent]:
    """The same seed gives the same events at the same points of the run, whatever the machine's speed."""
    rng = random.Random(seed)
    kinds = [WORKER_KILLED] * worker_kills + [TEMPORAL_RESTARTED, API_RESTARTED]
    rng.shuffle(kinds)
    first = max(1, visits // 10)
    last = max(first + len(kinds), visits * 8 // 10)
    if last > visits:
        raise ValueError(f"{visits} visits are too few for {len(kinds)} chaos events")
    # One event in the middle half of each equal stretch: never two in a row, so every one strikes under load.
    stretch = (last - first) / len(kinds)
    spots = []
    for k in range(len(kinds)):
        start, end = first + math.floor(stretch * k), first + math.floor(stretch * (k + 1))
        margin = (end - start) // 4
        spots.append(rng.randrange(start + margin, max(start + margin + 1, end - margin)))
    return [ChaosEvent(kind, at, round(rng.uniform(0.5, 3.0), 1)) for kind, at in zip(kinds, spots, strict=True)]


@dataclass
class Outage:
    kind: str
    at_visit: int
    down_at: float  # time.monotonic()
    up_at: float | None = None
    grace: float = 0.0
    in_flight: int = 0  # visits being worked on when it went down
    first_moved: float | None = None  # seconds after up_at
    last_moved: float | None = None  # None when some visit never moved within the limit
    never_moved: int = 0

    @property
    def recovery(self) -> str:
        if not self.in_flight:
            return "no visit was in flight"
        moved = self.in_flight - self.never_moved
        text = f"{moved} of {self.in_flight} in-flight visits moved again"
        if moved:
            text += f", the first {self.first_moved:.1f} s after it was up"
        if self.last_moved is not None:
            text += f", the last {self.last_moved:.1f} s after"
        return text

    def overlaps(self, start: float, end: float) -> bool:
        until = (self.up_at if self.up_at is not None else math.inf) + self.grace
        return start <= until and end >= self.down_at


# --- the processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_harness() -> None:
    """A worker or API outliving a killed harness would hold its port: it gets SIGKILL with it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


class Stack:
    """VisitFlow's pieces as separate processes on loopback ports, each one killable and restartable."""

    def __init__(self, run_dir: Path, database_url: str) -> None:
        self.run_dir = run_dir
        self.database_url = database_url
        self.api_port = free_port()
        self.temporal = DevServer(run_dir / "temporal", port=free_port(), ui_port=None,
                                  log_file=run_dir / "temporal.log")
        self.settings = Settings(
            database_url=database_url, temporal_address=self.temporal.address, embedded_temporal=False,
            data_dir=run_dir / "data", api_host="127.0.0.1", api_port=self.api_port,
            task_queue="visitflow-fault", seed_demo=False)
        self.env = {
            **os.environ, "DATABASE_URL": database_url, "VISITFLOW_TEMPORAL_ADDRESS": self.temporal.address,
            "VISITFLOW_EMBEDDED_TEMPORAL": "false", "VISITFLOW_DATA_DIR": str(self.settings.data_dir),
            "VISITFLOW_API_HOST": "127.0.0.1", "VISITFLOW_API_PORT": str(self.api_port),
            "VISITFLOW_TASK_QUEUE": self.settings.task_queue, "VISITFLOW_SEED_DEMO": "false",
            "VISITFLOW_CONFIG": str(run_dir / "no-such-visitflow.toml"),  # no stray visitflow.toml applies
            "PYTHONUNBUFFERED": "1",  # the worker's "running" line reaches its log at once
        }
        self.api: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.workers_started = 0
        # Children die with the *thread* that started them (PR_SET_PDEATHSIG), so one thread that lives as
        # long as the run starts them all, and blocking starts and stops never stall the client's event loop.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fault-spawner")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def _in_spawner(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._spawner, fn, *args)

    def _popen(self, command: str, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen([str(Path(sys.executable).parent / "visitflow"), command], cwd=self.run_dir,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=_die_with_harness)

    @staticmethod
    def _still_starting(process: subprocess.Popen, what: str, log: Path, deadline: float) -> None:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in time:\n{_tail(log)}")

    async def start_temporal(self) -> float:
        await self._in_spawner(self.temporal.start)
        return time.monotonic()

    async def stop_temporal(self) -> None:
        await self._in_spawner(self.temporal.stop)

    async def start_api(self, timeout: float = 120) -> float:
        """Start `visitflow api` (it applies migrations) and wait until it answers."""
        log = self.run_dir / "api.log"
        self.api = await self._in_spawner(self._popen, "api", log)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1) as http:
            while True:
                self._still_starting(self.api, "the API", log, deadline)
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.base_url}/healthz")).status_code == 200:
                        return time.monotonic()
                await asyncio.sleep(0.1)

    async def start_worker(self, timeout: float = 120) -> float:
        """Start a new `visitflow worker`; up means connected to Temporal (it says so in its log)."""
        self.workers_started += 1
        log = self.run_dir / f"worker-{self.workers_started}.log"
        self.worker = await self._in_spawner(self._popen, "worker", log)
        deadline = time.monotonic() + timeout
        while "worker is running" not in log.read_text(errors="replace"):
            self._still_starting(self.worker, "the worker", log, deadline)
            await asyncio.sleep(0.05)
        return time.monotonic()

    @staticmethod
    def _kill(process: subprocess.Popen | None) -> None:
        if process is not None and process.poll() is None:
            process.kill()  # SIGKILL: no draining, no goodbye
            process.wait()

    def kill_api(self) -> None:
        self._kill(self.api)

    def kill_worker(self) -> None:
        self._kill(self.worker)

    def close(self) -> None:
        """Stop everything this stack started, also after a failure or an interrupt."""
        for process in (self.api, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
        for process in (self.api, self.worker):
            if process is not None:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._kill(process)
        self.temporal.stop()
        self._spawner.shutdown()


# --- the client ------------------------------------------------------------------------------


class ActionFailed(Exception):
    pass


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by VisitFlow)."""
    try:
        return max(0.0, float(retry_after)) if retry_after is not None else None
    except ValueError:
        return None


@dataclass
class ServerError:
    sent: float
    answered: float
    method: str
    path: str
    status: int
    detail: str


class RetryingClient:
    """Like a real client: short timeouts; on a timeout, a lost connection, a 502/503/504 or an answer with
    Retry-After it waits a little and sends the same request again, with the same Idempotency-Key, until
    `action_deadline`."""

    def __init__(self, base_url: str, run: FaultRun, seed: int) -> None:
        self.run = run
        self.http = httpx.AsyncClient(base_url=base_url, timeout=run.request_timeout,
                                      limits=httpx.Limits(max_connections=run.concurrency * 3 + 5))
        self.jitter = random.Random(seed)
        self.server_errors: list[ServerError] = []
        self.stop_at = math.inf  # no retrying past the run's time limit
        self.requests = 0
        self.retries: Counter = Counter()  # why a request was sent again: "ReadTimeout", "HTTP 503", ...

    async def call(self, token: str, method: str, path: str, body: dict | None = None, key: str | None = None,
                   timeout: float | None = None, expect: tuple[int, ...] = (200,)) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if key:
            headers["Idempotency-Key"] = key
        first_sent = time.monotonic()
        give_up = min(first_sent + self.run.action_deadline, self.stop_at)
        backoff = 0.1
        while True:
            sent = time.monotonic()
            self.requests += 1
            retry_after = None
            try:
                r = await self.http.request(method, path, json=body, headers=headers,
                                            timeout=timeout or self.run.request_timeout)
            except httpx.TransportError as err:  # timeouts, refused and dropped connections
                problem = type(err).__name__
            else:
                if r.status_code >= 500:
                    self.server_errors.append(ServerError(sent, time.monotonic(), method, path, r.status_code,
                                                          r.text[:300]))
                retry_after = _seconds(r.headers.get("Retry-After")) if r.status_code >= 400 else None
                if r.status_code not in RETRY_STATUSES and retry_after is None:
                    if r.status_code not in expect:
                        raise ActionFailed(f"{method} {path} answered {r.status_code}: {r.text[:300]}")
                    return r
                problem = f"HTTP {r.status_code}"
            if time.monotonic() > give_up:
                raise ActionFailed(f"{method} {path} unanswered; gave up after "
                                   f"{time.monotonic() - first_sent:.0f}s of retrying (last: {problem})")
            self.retries[problem] += 1
            # As asked (Retry-After, e.g. "the first request with this key is still running"), else backing off.
            await asyncio.sleep(min(retry_after, MAX_BACKOFF) if retry_after is not None
                                else backoff * (0.5 + self.jitter.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def aclose(self) -> None:
        await self.http.aclose()


# --- the agency the run works for ------------------------------------------------------------


@dataclass
class VisitPlan:
    visit_id: str
    patient_id: int
    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=VISIT_HOURS)


@dataclass
class Agency:
    admin: str  # API tokens
    biller: str
    caregiver: str
    caregiver_id: int
    payer_id: int
    # patient id -> visits its authorization cannot cover (they must end on hold for AUTH-02)
    short_by: dict[int, int]
    authorization_ids: list[int]


async def seed_users(stack: Stack) -> None:
    """The demo agency, for its users and their API tokens (admin olivia, biller bea, caregiver devon): made by
    the demo seed itself, so the harness follows however users and tokens are stored."""
    client = await connect(stack.settings)
    await seed_demo(stack.settings, client)


async def new_agency(api: RetryingClient, plans_per_patient: Counter) -> Agency:
    """A payer, patients and their authorizations, created through the API as the admin. Every other
    authorization is one visit short, so AUTH-02 holds some visits while others race for the last units."""
    admin = demo_token("olivia")
    payer = (await api.call(admin, "POST", "/api/payers", {
        "name": "Fault Injection Medicaid", "payer_code": "TXMCD", "evv_radius_m": 402, "clock_tolerance_min": 15,
        "rounding": "nearest_quarter"}, expect=(201,))).json()
    clinicians = (await api.call(admin, "GET", "/api/clinicians")).json()
    devon = next(c for c in clinicians if c["last_name"] == "Price")
    today = datetime.now(UTC).date()
    short_by, authorization_ids = {}, []
    for p, visits in sorted(plans_per_patient.items()):
        patient = (await api.call(admin, "POST", "/api/patients", {
            "first_name": "Fault", "last_name": f"Patient{p}", "medicaid_id": f"6{p:08d}",
            "address_line": "1100 Congress Ave", "city": "Austin", "state": "TX", "zip_code": "78701",
            "latitude": HOME["lat"], "longitude": HOME["lon"]}, expect=(201,))).json()
        short = 1 if p % 2 == 0 else 0
        auth = (await api.call(admin, "POST", "/api/authorizations", {
            "auth_number": f"PA-FAULT-{p}", "patient_id": patient["id"], "payer_id": payer["id"],
            "service_code": "T1019", "start_date": str(today - timedelta(days=60)),
            "end_date": str(today + timedelta(days=30)), "units_total": UNITS_PER_VISIT * (visits - short)},
            expect=(201,))).json()
        short_by[patient["id"]] = short
        authorization_ids.append(auth["id"])
    return Agency(admin=admin, biller=demo_token("bea"), caregiver=demo_token("devon"), caregiver_id=devon["id"],
                  payer_id=payer["id"], short_by=short_by, authorization_ids=authorization_ids)


def plan_visits(visits: int) -> tuple[list[tuple[str, int, datetime]], Counter]:
    """Visit ids, patient number and start; about ten visits per patient, spread over the last weeks."""
    patients = max(2, math.ceil(visits / 10))
    today = datetime.now(UTC).replace(hour=14, minute=0, second=0, microsecond=0)
    plans = [(f"FI-{i:05d}", i % patients, today - timedelta(days=1 + i % 28)) for i in range(visits)]
    return plans, Counter(p for _, p, _ in plans)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Report:
    visits: int
    database: str
    seed: int
    invariants: dict[str, list[str]]
    outages: list[Outage]
    released: int
    held: int
    drive_seconds: float
    requests: int
    retries: dict[str, int]
    server_errors_in_outages: int

    @property
    def ok(self) -> bool:
        return not any(self.invariants.values())

    @property
    def worker_recovery(self) -> list[Outage]:
        return [o for o in self.outages if o.kind == WORKER_KILLED]

    def table(self) -> str:
        lines = [f"VisitFlow fault injection: {self.visits} visits on {self.database}, seed {self.seed}", "",
                 f"{'chaos event':<40}{'at visit':>9}{'down s':>8}{'in flight':>10}{'first moved s':>15}"
                 f"{'last moved s':>14}"]
        for o in self.outages:
            down = (o.up_at or o.down_at) - o.down_at
            last = (f"{o.last_moved:.1f}" if o.last_moved is not None
                    else f"{o.never_moved} stuck" if o.never_moved else "-")
            first = f"{o.first_moved:.1f}" if o.first_moved is not None else "-"
            lines.append(f"{o.kind:<40}{o.at_visit:>9}{down:>8.1f}{o.in_flight:>10}{first:>15}{last:>14}")
        lines += ["", f"{'invariant':<46}{'count':>7}"]
        for name, problems in self.invariants.items():
            lines.append(f"{name:<46}{len(problems):>7}{'  FAIL' if problems else ''}")
        recovered = [o.last_moved for o in self.worker_recovery if o.last_moved is not None]
        slowest = f"{max(recovered):.1f} s" if recovered else "-"
        lines += ["", f"{'released / on hold (AUTH-02)':<46}{self.released} / {self.held}",
                  f"{'throughput':<46}{self.visits / self.drive_seconds:.1f} visits/s "
                  f"({self.drive_seconds:.0f} s from the first schedule to the last release)",
                  f"{'requests / sent again':<46}{self.requests} / {sum(self.retries.values())} ("
                  + ", ".join(f"{why} {n}" for why, n in sorted(self.retries.items(), key=lambda i: -i[1])) + ")",
                  f"{'5xx inside outage windows':<46}{self.server_errors_in_outages}",
                  f"{'slowest recovery after a worker kill':<46}{slowest} (target {RECOVERY_TARGET_S:.0f} s)"]
        for name, problems in self.invariants.items():
            if problems:
                lines += ["", f"{name} (first 20 of {len(problems)}):", *(f"  {p}" for p in problems[:20])]
        lines += ["", "RESULT: " + ("every invariant holds" if self.ok else "INVARIANTS FAILED")]
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, indent=2, default=str)


class FaultInjection:
    def __init__(self, run: FaultRun, say: Callable[[str], None] = print) -> None:
        self.run = run
        self.say = say
        self.database_url = run.database_url or f"sqlite:///{(run.run_dir / 'visitflow.db').resolve()}"
        self.stack = Stack(run.run_dir, self.database_url)
        self.events = chaos_plan(run.visits, run.worker_kills, run.seed)
        self.outages: list[Outage] = []
        self.scheduled: set[str] = set()
        self.in_flight: set[str] = set()
        self.abandoned: dict[str, str] = {}
        self.told_released: dict[str, str] = {}  # visit -> the batch the release answer named
        self.launched = 0
        self.started_at = time.monotonic()

    def _log(self, message: str) -> None:
        self.say(f"[{time.monotonic() - self.started_at:7.1f}s] {message}")

    async def execute(self) -> Report:
        run = self.run
        run.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            migrate(self.database_url)
            await self.stack.start_temporal()
            await self.stack.start_worker()
            await self.stack.start_api()
            await seed_users(self.stack)
            self.api = RetryingClient(self.stack.base_url, run, run.seed)
            try:
                plans, per_patient = plan_visits(run.visits)
                agency = await new_agency(self.api, per_patient)
                patient_ids = sorted(agency.short_by)
                self.plans = [VisitPlan(v, patient_ids[p], start) for v, p, start in plans]
                self.agency = agency
                self._log(f"stack up ({self.stack.base_url}, Temporal {self.stack.temporal.address}); "
                          f"driving {run.visits} visits, chaos: "
                          + ", ".join(f"{e.kind} at visit {e.at_visit}" for e in self.events))
                drive_started = time.monotonic()
                self.api.stop_at = drive_started + run.time_limit
                await self._drive()
                drive_seconds = time.monotonic() - drive_started
                self._log("the drive is over; checking every visit against its workflow")
                report = await self._verify(drive_seconds)
            finally:
                await self.api.aclose()
        finally:
            self.stack.close()
            get_engine(self.database_url).dispose()
        (run.run_dir / "report.json").write_text(report.as_json())
        return report

    # --- driving ---

    async def _drive(self) -> None:
        self._slots = asyncio.Semaphore(self.run.concurrency)
        self._claim_ready: asyncio.Queue[str] = asyncio.Queue()
        driven = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._chaos())
            group.create_task(self._release_claim_ready(driven))
            async with asyncio.TaskGroup() as visits:
                for i, plan in enumerate(self.plans):
                    for event in self.events:
                        if event.at_visit == i:
                            await event.begun.wait()
                    await self._slots.acquire()
                    # In flight from now on: a chaos event may strike before the visit's first request is sent.
                    self.in_flight.add(plan.visit_id)
                    self.launched = i + 1
                    visits.create_task(self._walk(plan))
            driven.set()

    async def _walk(self, plan: VisitPlan) -> None:
        v, agency, api = plan.visit_id, self.agency, self.api
        try:
            await api.call(agency.admin, "POST", "/api/visits", {
                "id": v, "patient_id": plan.patient_id, "clinician_id": agency.caregiver_id,
                "payer_id": agency.payer_id, "service_code": "T1019", "scheduled_start": plan.start.isoformat(),
                "scheduled_end": plan.end.isoformat()}, key=f"{v}:schedule", expect=(200, 201))
            self.scheduled.add(v)
            for kind, at in (("clock_in", plan.start), ("clock_out", plan.end)):
                await api.call(agency.caregiver, "POST", f"/api/visits/{v}/punches", {
                    "kind": kind, "at": at.isoformat(), "method": "gps", "location": HOME}, key=f"{v}:{kind}")
            await api.call(agency.caregiver, "POST", f"/api/visits/{v}/note", {"fields": NOTE}, key=f"{v}:note")
            await api.call(agency.caregiver, "POST", f"/api/visits/{v}/signature", {"attestation": True},
                           key=f"{v}:signature")
            if await self._settled(v) == VisitState.claim_ready.value:
                self._claim_ready.put_nowait(v)
        except ActionFailed as err:
            self.abandoned[v] = str(err)
        finally:
            self.in_flight.discard(v)
            self._slots.release()

    async def _settled(self, v: str) -> str:
        give_up = min(time.monotonic() + self.run.settle_timeout, self.api.stop_at)
        while True:
            state = (await self.api.call(self.agency.admin, "GET", f"/api/visits/{v}")).json()["state"]
            if state in SETTLED:
                return state
            if time.monotonic() > give_up:
                at = ("the run's time limit" if give_up == self.api.stop_at
                      else f"{self.run.settle_timeout:.0f}s after its signature")
                raise ActionFailed(f"still {state} at {at}")
            await asyncio.sleep(0.5)

    async def _release_claim_ready(self, driven: asyncio.Event) -> None:
        """The biller releases claim-ready visits in batches as they come; a visit being re-checked at that
        moment is refused with a 409 and goes into a later batch."""
        waiting: list[str] = []
        refusals: Counter = Counter()
        batches = 0
        while True:
            while not self._claim_ready.empty():
                waiting.append(self._claim_ready.get_nowait())
            all_in = driven.is_set() and self._claim_ready.empty()
            if all_in and not waiting:
                return
            if len(waiting) < self.run.release_batch_size and not all_in:
                await asyncio.sleep(0.2)
                continue
            batch, waiting = waiting[:self.run.release_batch_size], waiting[self.run.release_batch_size:]
            batches += 1
            try:
                outcome = (await self.api.call(self.agency.biller, "POST", "/api/releases", {"visit_ids": batch},
                                               key=f"release-{batches}", timeout=self.run.release_timeout)).json()
            except ActionFailed as err:
                for v in batch:
                    self.abandoned[v] = f"release: {err}"
                continue
            for v in outcome["released"]:
                self.told_released[v] = outcome["batch_id"]
            for item in outcome["already_released"]:
                self.told_released[item["visit_id"]] = item["batch_id"]
            for item in outcome["rejected"]:
                v = item["visit_id"]
                refusals[v] += 1
                if item["status"] == 409 and refusals[v] < 10:
                    waiting.append(v)
                else:
                    self.abandoned[v] = f"release refused {refusals[v]} times: {item['status']} {item['reason']}"
            if outcome["rejected"]:
                await asyncio.sleep(0.5)

    # --- chaos ---

    async def _chaos(self) -> None:
        for event in self.events:
            while self.launched < event.at_visit:
                await asyncio.sleep(0.05)
            outage = Outage(event.kind, event.at_visit, time.monotonic(), grace=self.run.outage_grace)
            self.outages.append(outage)
            event.begun.set()
            if event.kind == WORKER_KILLED:
                self.stack.kill_worker()
            elif event.kind == TEMPORAL_RESTARTED:
                await self.stack.stop_temporal()
            else:
                self.stack.kill_api()
            stuck = await asyncio.to_thread(self._unsettled_versions, set(self.in_flight))
            self._log(f"{event.kind} at visit {event.at_visit}; {len(stuck)} visits in flight")
            await asyncio.sleep(event.down_for)
            if event.kind == WORKER_KILLED:
                outage.up_at = await self.stack.start_worker()
            elif event.kind == TEMPORAL_RESTARTED:
                outage.up_at = await self.stack.start_temporal()
            else:
                outage.up_at = await self.stack.start_api()
            await self._measure_recovery(outage, stuck)
            self._log(f"back up after {outage.up_at - outage.down_at:.1f}s; {outage.recovery}")

    def _unsettled_versions(self, visit_ids: set[str]) -> dict[str, int]:
        """Read-model versions of the visits still on their way (-1: not projected yet)."""
        with Session(get_engine(self.database_url)) as s:
            rows = {vid: (state, version) for vid, state, version in s.exec(
                select(Visit.id, Visit.state, Visit.version).where(Visit.id.in_(visit_ids)))}
        return {v: rows[v][1] if v in rows else -1 for v in visit_ids if rows.get(v, ("", 0))[0] not in SETTLED}

    async def _measure_recovery(self, outage: Outage, before: dict[str, int]) -> None:
        outage.in_flight = len(before)
        pending, moved = dict(before), []
        give_up = outage.up_at + self.run.recovery_limit
        while pending and time.monotonic() < give_up:
            now_versions = await asyncio.to_thread(self._read_versions, set(pending))
            seen = time.monotonic()
            for v, version in now_versions.items():
                if version > pending[v]:
                    moved.append(max(0.0, seen - outage.up_at))
                    del pending[v]
            await asyncio.sleep(0.1)
        outage.first_moved = round(min(moved), 2) if moved else None
        outage.last_moved = round(max(moved), 2) if moved and not pending else None
        outage.never_moved = len(pending)

    def _read_versions(self, visit_ids: set[str]) -> dict[str, int]:
        with Session(get_engine(self.database_url)) as s:
            return dict(s.exec(select(Visit.id, Visit.version).where(Visit.id.in_(visit_ids))).all())

    # --- checking ---

    async def _verify(self, drive_seconds: float) -> Report:
        snapshots = await self._snapshots(sorted(self.scheduled))
        with Session(get_engine(self.database_url)) as s:
            rows = {r.id: r for r in s.exec(select(Visit).where(Visit.id.in_(self.scheduled)))}
            batches = {b.id: list(b.visit_ids) for b in s.exec(select(ReleaseBatch))}
            auths = s.exec(select(Authorization).where(Authorization.id.in_(self.agency.authorization_ids))).all()
            usage = defaultdict(list)
            for u in s.exec(select(AuthorizationUsage).where(
                    AuthorizationUsage.authorization_id.in_(self.agency.authorization_ids))):
                usage[u.authorization_id].append(u)
            s.expunge_all()

        lost = [f"{v}: " + ("no workflow" if snapshots.get(v) is None else "not in the read model")
                for v in sorted(self.scheduled) if snapshots.get(v) is None or v not in rows]
        twice, differs, outside, misplaced = [], [], [], []
        held = Counter()
        for v, snap in sorted(snapshots.items()):
            if snap is None:
                continue
            twice += [f"{v}: {problem}" for problem in applied_twice(snap)]
            row = rows.get(v)
            if row is not None and (row.state, row.version) != (snap.state.value, snap.version):
                differs.append(f"{v}: read model {row.state} v{row.version}, workflow {snap.state.value} "
                               f"v{snap.version}")
            if snap.state == VisitState.released:
                listed = batches.get(snap.release_batch_id)
                if listed is None:
                    outside.append(f"{v}: released into batch {snap.release_batch_id}, which is not stored")
                elif v not in listed:
                    outside.append(f"{v}: released into batch {snap.release_batch_id}, which does not list it")
                if self.told_released.get(v) != snap.release_batch_id:
                    misplaced.append(f"{v}: the release answer named batch {self.told_released.get(v)}, "
                                     f"the workflow says {snap.release_batch_id}")
            elif snap.state == VisitState.on_hold and {h.rule_id for h in snap.holds} == {"AUTH-02"}:
                held[snap.spec.patient_id] += 1
            elif v not in self.abandoned:  # an abandoned visit is reported as that
                holds = ", ".join(h.rule_id for h in snap.holds)
                misplaced.append(f"{v}: ended {snap.state.value}" + (f" with holds {holds}" if holds else ""))
        if not self.abandoned:  # with every visit through, each short authorization holds exactly its shortfall
            for patient_id, short in sorted(self.agency.short_by.items()):
                if held[patient_id] != short:
                    misplaced.append(f"patient {patient_id}: {held[patient_id]} visits on hold for AUTH-02, "
                                     f"expected {short}")
        over = [p for a in auths for p in units_over_limits(a, usage[a.id])]
        in_windows = [e for e in self.api.server_errors
                      if any(o.overlaps(e.sent, e.answered) for o in self.outages)]
        outside_windows = [f"{e.method} {e.path} -> {e.status} {e.detail}"
                           for e in self.api.server_errors if e not in in_windows]
        invariants = {
            "visits lost": lost,
            "actions applied twice": twice,
            "read model differs from the workflow": differs,
            "units over an authorization": over,
            "released visits outside a stored batch": outside,
            "5xx outside outage windows": outside_windows,
            "visits not where they should be": misplaced,
            "actions refused or abandoned": [f"{v}: {why}" for v, why in sorted(self.abandoned.items())],
        }
        released = sum(1 for s in snapshots.values() if s is not None and s.state == VisitState.released)
        return Report(
            visits=self.run.visits, database=self.database_url.split(":", 1)[0], seed=self.run.seed,
            invariants=invariants, outages=self.outages, released=released, held=sum(held.values()),
            drive_seconds=drive_seconds, requests=self.api.requests, retries=dict(self.api.retries),
            server_errors_in_outages=len(in_windows))

    async def _snapshots(self, visit_ids: list[str]) -> dict[str, VisitSnapshot | None]:
        """Each workflow's own state, by its `snapshot` query (None: Temporal does not know the visit)."""
        client: Client = await connect(self.stack.settings)
        limit = asyncio.Semaphore(20)
        found: dict[str, VisitSnapshot | None] = {}

        async def look(v: str) -> None:
            async with limit:
                try:
                    found[v] = await client.get_workflow_handle(visit_workflow_id(v)).query(VisitWorkflow.snapshot)
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        raise
                    found[v] = None

        await asyncio.gather(*(look(v) for v in visit_ids))
        return found


def applied_twice(snap: VisitSnapshot) -> list[str]:
    """The walk's actions as the workflow itself recorded them; any of them more than once is a duplicate.
    (A re-submitted note is logged as `note_submitted` too, with "note revised".)"""
    counts = {
        "clock-ins": sum(p.kind == PunchKind.clock_in for p in snap.punches),
        "clock-outs": sum(p.kind == PunchKind.clock_out for p in snap.punches),
        "notes": sum(e.kind == "note_submitted" for e in snap.timeline),
        "signatures": sum(e.kind == "signed" for e in snap.timeline),
        "releases": sum(e.kind == "released" for e in snap.timeline),
    }
    return [f"{n} {what}" for what, n in counts.items() if n > 1]


def units_over_limits(auth: Authorization, usage: list[AuthorizationUsage]) -> list[str]:
    """AUTH-02 as stored: the units held against `auth` in each of its limit periods, over the limit."""
    periods: list[tuple[str, int | None, Callable[[date], object]]] = [
        ("on", auth.units_per_day, lambda d: d.isoformat()),
        ("in week", auth.units_per_week, lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2])),
        ("in", auth.units_per_month, lambda d: f"{d:%Y-%m}"),
        ("in", auth.units_total, lambda d: "total"),
    ]
    problems = []
    for words, limit, period_of in periods:
        if limit is None:
            continue
        used: Counter = Counter()
        for u in usage:
            used[period_of(u.service_date)] += u.units
        problems += [f"{auth.auth_number}: {units} units {words} {period}, limit {limit}"
                     for period, units in sorted(used.items()) if units > limit]
    return problems


async def run_fault_injection(run: FaultRun, say: Callable[[str], None] = print) -> Report:
    return await FaultInjection(run, say).execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault.harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits", type=int, default=FaultRun.visits)
    parser.add_argument("--concurrency", type=int, default=FaultRun.concurrency)
    parser.add_argument("--seed", type=int, default=FaultRun.seed)
    parser.add_argument("--worker-kills", type=int, default=FaultRun.worker_kills)
    parser.add_argument("--time-limit", type=float, default=FaultRun.time_limit,
                        help="seconds for the whole drive; what is unanswered then is reported as abandoned")
    parser.add_argument("--database-url", default=None,
                        help="an empty database (e.g. postgresql://postgres@127.0.0.1:5432/fault); "
                             "default: SQLite in the run directory")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="logs and report.json (default: test-artifacts/fault-<UTC time>)")
    args = parser.parse_args(argv)
    if args.visits < 10 or args.concurrency < 1 or args.worker_kills < 1:
        parser.error("use at least 10 visits, a concurrency of 1 and one worker kill")
    run_dir = args.run_dir or Path("test-artifacts") / f"fault-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    run = FaultRun(visits=args.visits, concurrency=args.concurrency, seed=args.seed, worker_kills=args.worker_kills,
                   time_limit=args.time_limit, run_dir=run_dir.resolve(), database_url=args.database_url)

    async def until_stopped() -> Report:
        # SIGTERM (a CI timeout, `kill`) stops the run like Ctrl-C does: the stack is taken down on the way out.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
        return await run_fault_injection(run, lambda line: print(line, flush=True))

    report = asyncio.run(until_stopped())
    print(report.table())
    print(f"\nlogs and report.json: {run.run_dir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
