"""`python -m bench` (`make bench`): VisitFlow's visit lifecycle against a bare Temporal workflow of the same shape.

Everything runs in a throw-away temp dir: its own Temporal dev server (headless, free port), its own
SQLite database, and workers in this process. The user's data dir and database are never touched.

Per visit, both sides do the same work in the same order:

    start -> Update punch -> Update punch -> Update note -> Update sign -> (claim-ready) -> Update release -> end

with one projection activity per transition (start, each Update, claim-ready) plus the gate-check
activity, one projection at a time per workflow, the same deadline waits (a timer while waiting for
the note and for the signature), the same worker settings (sandboxed workflows, sync activities on a
16-thread pool, 16 concurrent activities) and the same client (pydantic data converter).
VisitFlow's activities write the SQL read model and run the rules; the bare ones return at once.
The bare side keeps the shape issue 10 measured (ordinary activities, each an activity task through the
server); VisitFlow runs its projections and gate check as local activities (the `local-projections` patch),
so it does the same work in fewer Temporal steps, and the ratio counts that (bench/README.md says so).

Latency is measured from the sign Update returning to claim-ready being visible:
- VisitFlow: the `visit` row in SQL says `claim_ready` (polled every POLL_INTERVAL);
- bare: the workflow's `claim_ready` query says so (polled every POLL_INTERVAL); the bare workflow
  reports it once its claim-ready projection activity has completed, the same point at which
  VisitFlow's row becomes visible.

This module also defines the bare workflow. Both workers pass their workflow's module through the sandbox
(visitflow.temporal.WORKFLOW_RUNNER's setting), so neither side re-executes its module per workflow run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client
    from temporalio.worker import Worker

    from visitflow.settings import Settings

BARE_ACTIVITY_TIMEOUT = timedelta(seconds=30)  # VisitFlow's ACTIVITY_OPTIONS, copied, not imported:
BARE_ACTIVITY_RETRY = RetryPolicy(  # the sandbox would then re-import visitflow.workflows.visit per bare run
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30))
DEADLINE = timedelta(hours=24)  # the bare workflow's note/sign waits, like VisitFlow's DOC-01 deadlines
MAX_ACTIVITY_THREADS = 16  # build_worker's default; the bare worker uses the same
POLL_INTERVAL = 0.005  # seconds between claim-ready polls (SQL row / workflow query)
CLAIM_READY_TIMEOUT = 30.0  # seconds a visit may take from signed to claim-ready
VISIT_TIMEOUT = 60.0  # seconds one visit may take end to end
SHUTDOWN_TIMEOUT = 30.0
PATIENTS = 20  # visits are spread over this many patients, one authorization each
ROUNDS = 2  # the sides alternate, so load drift on a shared machine lands on both
WARMUP_VISITS = 10  # per side, before measuring: sandbox imports, connections, server caches


# --- the bare workflow ------------------------------------------------------------------------


@activity.defn(name="bare_project")
def bare_project(visit_id: str, version: int) -> None:
    return None


@activity.defn(name="bare_evaluate_gates")
def bare_evaluate_gates(visit_id: str) -> list[str]:
    return []


@workflow.defn(name="BareVisitWorkflow")
class BareVisitWorkflow:
    """VisitWorkflow's skeleton: the same Updates, waits and activities, and nothing else."""

    @workflow.init
    def __init__(self, visit_id: str) -> None:
        self._id = visit_id
        self._state = "scheduled"
        self._version = 0
        self._punches = 0
        self._noted = self._signed = False
        self._recheck = False
        self._visible = False  # the claim-ready projection has completed
        self._projecting = asyncio.Lock()

    @workflow.run
    async def run(self, visit_id: str) -> str:
        await self._project()
        while self._state != "released":
            if not self._noted:
                await self._wait(lambda: self._noted)
            elif not self._signed:
                await self._wait(lambda: self._signed)
            else:
                await self._check_gates()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _wait(self, done: Callable[[], bool]) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await workflow.wait_condition(lambda: done() or self._state == "released", timeout=DEADLINE)

    async def _check_gates(self) -> None:
        self._recheck = False
        await workflow.execute_activity(bare_evaluate_gates, self._id, start_to_close_timeout=BARE_ACTIVITY_TIMEOUT,
                                        retry_policy=BARE_ACTIVITY_RETRY)
        if self._state == "released" or self._recheck:
            return
        self._state = "claim_ready"
        await self._project()
        self._visible = True
        await workflow.wait_condition(lambda: self._recheck or self._state == "released")

    async def _project(self) -> None:
        async with self._projecting:
            self._version += 1
            await workflow.execute_activity(bare_project, args=[self._id, self._version],
                                            start_to_close_timeout=BARE_ACTIVITY_TIMEOUT,
                                            retry_policy=BARE_ACTIVITY_RETRY)

    async def _changed(self) -> str:
        self._recheck = True
        await self._project()
        return self._state

    @workflow.update
    async def record_punch(self, kind: str) -> str:
        self._punches += 1
        return await self._changed()

    @record_punch.validator
    def _validate_record_punch(self, kind: str) -> None:
        if self._state == "released":
            raise ValueError("released")

    @workflow.update
    async def submit_note(self, text: str) -> str:
        self._noted = True
        self._state = "documented"
        return await self._changed()

    @submit_note.validator
    def _validate_submit_note(self, text: str) -> None:
        if self._signed:
            raise ValueError("already signed")

    @workflow.update
    async def sign_note(self, who: str) -> str:
        self._signed = True
        self._state = "signed"
        return await self._changed()

    @sign_note.validator
    def _validate_sign_note(self, who: str) -> None:
        if not self._noted or self._signed:
            raise ValueError("nothing to sign")

    @workflow.update
    async def release(self, batch_id: str) -> str:
        self._state = "released"
        return await self._changed()

    @release.validator
    def _validate_release(self, batch_id: str) -> None:
        if self._state != "claim_ready" or self._recheck:
            raise ValueError(f"not claim_ready: {self._state}")

    @workflow.query
    def claim_ready(self) -> bool:
        return self._visible and self._state == "claim_ready"


# --- measuring --------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    visits: int
    wall: float
    latencies: list[float]  # seconds, signed -> claim-ready visible
    polls: int
    cpu: float = 0.0  # CPU seconds of this process (worker, client, polls) during the phase
    server_cpu: float = 0.0  # CPU seconds of the Temporal dev server during the phase

    @property
    def rate(self) -> float:
        return self.visits / self.wall if self.wall else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] * 1000


class _Poll:
    """Poll `check` every POLL_INTERVAL until it returns True (bounded); counts polls."""

    def __init__(self) -> None:
        self.count = 0

    async def until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_READY_TIMEOUT
        while True:
            self.count += 1
            if await check():
                return
            if loop.time() > deadline:
                raise TimeoutError(f"{what} did not become claim-ready within {CLAIM_READY_TIMEOUT:.0f}s")
            await asyncio.sleep(POLL_INTERVAL)


async def _run_phase(name: str, first: int, count: int, concurrency: int,
                     one_visit: Callable[[int, _Poll], Awaitable[float]]) -> PhaseResult:
    """Drive visits first..first+count-1 with `concurrency` in flight; the first failure stops the phase."""
    poll = _Poll()
    latencies: list[float] = []
    todo = iter(range(first, first + count))

    async def lane() -> None:
        for i in todo:  # shared iterator: each lane takes the next visit when its last one is done
            async with asyncio.timeout(VISIT_TIMEOUT):
                latencies.append(await one_visit(i, poll))

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, count))):
                group.create_task(lane())
    except BaseExceptionGroup as group_error:
        # Sibling lanes were cancelled (the SDK reports that as its own errors): raise the first real cause.
        first_error = group_error.exceptions[0]
        raise RuntimeError(f"{name}: a visit failed: {first_error!r}") from first_error
    return PhaseResult(name, count, time.perf_counter() - started, latencies, poll.count)


def _process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


@contextlib.contextmanager
def _bytecode_cache(where: Path):
    """Let imports read and write .pyc files under `where` (as a normal install has them) for a while."""
    before = sys.dont_write_bytecode, sys.pycache_prefix
    sys.dont_write_bytecode, sys.pycache_prefix = False, str(where)
    try:
        yield
    finally:
        sys.dont_write_bytecode, sys.pycache_prefix = before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def _running(worker: Worker):
    """Run a worker for the duration of the block; shut it down (bounded) even on error."""
    task = asyncio.create_task(worker.run(), name=f"worker-{worker.task_queue}")
    try:
        yield worker
    finally:
        try:
            await asyncio.wait_for(worker.shutdown(), SHUTDOWN_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - report, then make sure the task ends
            print(f"warning: worker {worker.task_queue} did not shut down cleanly: {err!r}", file=sys.stderr)
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, SHUTDOWN_TIMEOUT)


class _FailureCounter(logging.Filter):
    """Counts (and keeps off the terminal) the SDK's warnings about failed activity attempts and workflow
    tasks during the run; Temporal retries them, so they cost time, not correctness."""

    LOGGERS = ("temporalio.activity", "temporalio.workflow", "temporalio.worker._workflow_instance",
               "temporalio.worker._workflow")

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        details = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None) or {}
        kind = details.get("activity_type") or details.get("workflow_type") or record.name
        error = record.exc_info[1] if record.exc_info else None
        while error is not None and error.__cause__ is not None:
            error = error.__cause__
        why = f"{type(error).__name__}: {str(error).splitlines()[0][:80]}" if error else record.getMessage()[:80]
        key = f"{kind}: {why}"
        self.counts[key] = self.counts.get(key, 0) + 1
        return False

    def __enter__(self) -> _FailureCounter:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


# --- VisitFlow side ---------------------------------------------------------------------------


@dataclass
class _Agency:
    patients: list[tuple[int, float, float]]  # id, lat, lon
    payer_id: int
    clinician_id: int
    admin: object  # visitflow.models.Actor
    clinician: object
    biller: object
    note: dict[str, str]


def _seed(engine, settings: Settings) -> _Agency:
    """Reference data, written directly: a payer, patients with coordinates, a clinician, users, authorizations."""
    from sqlmodel import Session

    from visitflow.db.tables import Authorization, Clinician, Patient, Payer, User
    from visitflow.models import Discipline, Role
    from visitflow.services.commands import actor_of

    today = datetime.now(UTC).date()
    with Session(engine, expire_on_commit=False) as s:
        payer = Payer(name="Bench Medicaid", payer_code="TXMCD", evv_radius_m=402, clock_tolerance_min=15)
        clinician = Clinician(first_name="Bench", last_name="Aide", discipline=Discipline.PCA)
        patients = [Patient(first_name="Bench", last_name=f"Patient{i}", medicaid_id=f"5{i:08d}",
                            address_line=f"{1100 + i} Congress Ave", city="Austin", state="TX", zip_code="78701",
                            latitude=30.2747 + i * 0.01, longitude=-97.7404) for i in range(PATIENTS)]
        s.add_all([payer, clinician, *patients])
        s.flush()
        s.add_all([Authorization(auth_number=f"PA-BENCH-{i}", patient_id=p.id, payer_id=payer.id,
                                 service_code="T1019", start_date=today - timedelta(days=30),
                                 end_date=today + timedelta(days=30), units_per_week=1_000_000,
                                 updated_at=datetime.now(UTC)) for i, p in enumerate(patients)])
        # Users need a password hash; these accounts never log in, so a placeholder will do.
        users = {role: User(username=f"bench-{role.value}", display_name=f"bench {role.value}", role=role,
                            clinician_id=clinician.id if role == Role.clinician else None,
                            password_hash="!bench-no-login")
                 for role in (Role.admin, Role.clinician, Role.biller)}
        s.add_all(users.values())
        s.commit()
        fields = settings.required_note_fields.get(Discipline.PCA.value, [])
        return _Agency(
            patients=[(p.id, p.latitude, p.longitude) for p in patients], payer_id=payer.id,
            clinician_id=clinician.id, admin=actor_of(users[Role.admin]), clinician=actor_of(users[Role.clinician]),
            biller=actor_of(users[Role.biller]),
            note={f: f"Bench visit: {f.replace('_', ' ')} recorded." for f in fields}
            or {"tasks_performed": "Bathing, meals", "client_condition": "Stable"})


def _visitflow_visit(client: Client, settings: Settings, engine, agency: _Agency, run_tag: str,
                     read_pool: ThreadPoolExecutor) -> Callable[[int, _Poll], Awaitable[float]]:
    from sqlmodel import Session, select

    from visitflow.db.tables import Clinician, Patient, Payer, Visit
    from visitflow.models import (
        GeoPoint,
        PunchInput,
        PunchKind,
        PunchMethod,
        RecordPunch,
        Release,
        SignNote,
        SubmitNote,
        VisitState,
    )
    from visitflow.services.commands import ScheduleRequest, act, schedule_visit
    from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

    def row_state(visit_id: str) -> str | None:
        with Session(engine) as s:
            return s.exec(select(Visit.state).where(Visit.id == visit_id)).first()

    async def one(i: int, poll: _Poll) -> float:
        patient_id, lat, lon = agency.patients[i % len(agency.patients)]
        visit_id = f"bench-{run_tag}-{i}"
        start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
        end = start + timedelta(hours=2)
        # schedule_visit reads the patient, clinician and payer with session.get() and then awaits Temporal
        # with the session still open. Load them first and commit, so its gets hit the identity map and no
        # pooled connection is held across the await (with 20 visits in flight that exhausts the pool and
        # blocks the event loop; see bench/README.md).
        with Session(engine, expire_on_commit=False) as s:
            loaded = [s.get(table, key) for table, key in  # kept: the identity map holds weak references
                      ((Patient, patient_id), (Clinician, agency.clinician_id), (Payer, agency.payer_id))]
            if not all(loaded):
                raise RuntimeError("bench reference data is missing")
            s.commit()
            _, created = await schedule_visit(s, client, settings, ScheduleRequest(
                id=visit_id, patient_id=patient_id, clinician_id=agency.clinician_id, payer_id=agency.payer_id,
                service_code="T1019", modifiers=[], scheduled_start=start, scheduled_end=end), agency.admin)
        if not created:
            raise RuntimeError(f"bench visit {visit_id} already existed")
        home = GeoPoint(lat=lat, lon=lon)
        for kind, at in ((PunchKind.clock_in, start + timedelta(minutes=2)),
                         (PunchKind.clock_out, end - timedelta(minutes=1))):
            await act(client, visit_id, VisitWorkflow.record_punch, RecordPunch(
                actor=agency.clinician, now=datetime.now(UTC),
                punch=PunchInput(kind=kind, at=at, method=PunchMethod.gps, location=home)))
        await act(client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=agency.clinician, fields=agency.note))
        await act(client, visit_id, VisitWorkflow.sign_note, SignNote(actor=agency.clinician, attestation=True))
        signed = time.perf_counter()
        loop = asyncio.get_running_loop()

        async def claim_ready() -> bool:
            state = await loop.run_in_executor(read_pool, row_state, visit_id)
            if state == VisitState.on_hold.value:
                holds = "; ".join(h.message for h in (await act_snapshot(visit_id)).holds)
                raise RuntimeError(f"bench visit {visit_id} went on hold: {holds}")
            return state == VisitState.claim_ready.value

        await poll.until(claim_ready, f"visit {visit_id}")
        latency = time.perf_counter() - signed
        await act(client, visit_id, VisitWorkflow.release, Release(actor=agency.biller, batch_id=f"b-{run_tag}"),
                  update_id="release")
        await client.get_workflow_handle(visit_workflow_id(visit_id)).result()
        return latency

    async def act_snapshot(visit_id: str):
        from visitflow.services.commands import visit_snapshot

        return await visit_snapshot(client, visit_id)

    return one


# --- bare side --------------------------------------------------------------------------------


def _bare_worker(client: Client, task_queue: str) -> Worker:
    """The same worker settings as visitflow.temporal.build_worker, with the bare workflow and activities."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    return Worker(
        client, task_queue=task_queue, workflows=[BareVisitWorkflow],
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(BareVisitWorkflow.__module__)),
        activities=[bare_project, bare_evaluate_gates],
        activity_executor=ThreadPoolExecutor(max_workers=MAX_ACTIVITY_THREADS),
        max_concurrent_activities=MAX_ACTIVITY_THREADS,
    )


def _bare_visit(client: Client, task_queue: str, run_tag: str) -> Callable[[int, _Poll], Awaitable[float]]:
    async def one(i: int, poll: _Poll) -> float:
        handle = await client.start_workflow(BareVisitWorkflow.run, f"bare-{run_tag}-{i}",
                                             id=f"bare-{run_tag}-{i}", task_queue=task_queue)
        await handle.execute_update(BareVisitWorkflow.record_punch, "clock_in")
        await handle.execute_update(BareVisitWorkflow.record_punch, "clock_out")
        await handle.execute_update(BareVisitWorkflow.submit_note, "note")
        await handle.execute_update(BareVisitWorkflow.sign_note, "clinician")
        signed = time.perf_counter()

        async def claim_ready() -> bool:
            return await handle.query(BareVisitWorkflow.claim_ready)

        await poll.until(claim_ready, f"bare workflow {handle.id}")
        latency = time.perf_counter() - signed
        await handle.execute_update(BareVisitWorkflow.release, f"b-{run_tag}", id="release")
        await handle.result()
        return latency

    return one


# --- the benchmark ----------------------------------------------------------------------------


def _table(results: list[PhaseResult]) -> str:
    lines = [f"{'':<10} {'visits':>7} {'wall s':>8} {'visits/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'polls':>7}"
             f" {'cpu ms/visit':>13} {'server cpu ms/visit':>20}"]
    for r in results:
        lines.append(f"{r.name:<10} {r.visits:>7} {r.wall:>8.2f} {r.rate:>9.2f} {r.pct(50):>8.1f} "
                     f"{r.pct(95):>8.1f} {r.polls:>7} {r.cpu / r.visits * 1000:>13.1f} "
                     f"{r.server_cpu / r.visits * 1000:>20.1f}")
    return "\n".join(lines)


async def run_benchmark(settings: Settings, visits: int = 100, concurrency: int = 20) -> dict:
    """Run both sides in a temp dir and print the table; returns the numbers as a dict.

    The sides alternate in ROUNDS rounds (bare, VisitFlow, bare, VisitFlow, ...), so a change in the
    machine's load during the run lands on both; each side's wall time is the sum of its rounds.
    """
    from visitflow.db.session import get_engine, migrate
    from visitflow.devserver import DevServer
    from visitflow.process import freeze_what_startup_built
    from visitflow.temporal import build_worker, connect

    if visits < 1 or concurrency < 1:
        raise ValueError("visits and concurrency must be at least 1")
    run_tag = uuid.uuid4().hex[:6]
    tmp = tempfile.TemporaryDirectory(prefix="visitflow-bench-", ignore_cleanup_errors=True)
    data_dir = Path(tmp.name)
    port = _free_port()
    db_url = f"sqlite:///{data_dir / 'visitflow.db'}"
    bench_settings = settings.model_copy(update={
        "data_dir": data_dir, "database_url": db_url, "temporal_address": f"127.0.0.1:{port}",
        "temporal_namespace": "default", "task_queue": f"visitflow-bench-{run_tag}", "embedded_temporal": True})
    bare_queue = f"bare-bench-{run_tag}"
    server = DevServer(data_dir, host="127.0.0.1", port=port, ui_port=None)
    engine = None
    read_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-poll")
    rounds = max(1, min(ROUNDS, visits))
    print(f"VisitFlow bench: {visits} visits per side, {concurrency} in flight, {rounds} alternating rounds, "
          f"{WARMUP_VISITS} warm-up visits per side (not counted); load average {_load()}\n"
          f"  Temporal dev server on {server.address} (headless); data in {data_dir} (removed after)")
    started = time.perf_counter()
    stack = contextlib.ExitStack()
    failures = stack.enter_context(_FailureCounter())
    if sys.dont_write_bytecode:
        stack.enter_context(_bytecode_cache(data_dir / "pycache"))
        print("  PYTHONDONTWRITEBYTECODE is set: bytecode is cached in the temp dir for this run, so modules the "
              "workflow\n  sandbox imports per workflow run are not compiled from source every time")
    try:
        await asyncio.to_thread(server.start)
        migrate(db_url)
        engine = get_engine(db_url)
        agency = _seed(engine, bench_settings)
        client = await connect(bench_settings)
        drivers = {
            "bare": lambda tag: _bare_visit(client, bare_queue, tag),
            "VisitFlow": lambda tag: _visitflow_visit(client, bench_settings, engine, agency, tag, read_pool),
        }
        totals = {name: PhaseResult(name, 0, 0.0, [], 0) for name in drivers}
        workers = (_bare_worker(client, bare_queue), build_worker(client, bench_settings.task_queue, engine))
        freeze_what_startup_built()  # as `visitflow worker` does once its worker is built
        async with _running(workers[0]), _running(workers[1]):
            for name, driver in drivers.items():
                await _run_phase(f"{name} warm-up", 0, WARMUP_VISITS, concurrency, driver(f"w{run_tag}"))
            first = 0
            for r in range(rounds):
                count = visits // rounds + (1 if r < visits % rounds else 0)
                for name, driver in drivers.items():
                    cpu, server_cpu = time.process_time(), _process_cpu(server.process.pid)
                    part = await _run_phase(name, first, count, concurrency, driver(run_tag))
                    part.cpu = time.process_time() - cpu
                    part.server_cpu = _process_cpu(server.process.pid) - server_cpu
                    total = totals[name]
                    total.visits += part.visits
                    total.wall += part.wall
                    total.latencies += part.latencies
                    total.polls += part.polls
                    total.cpu += part.cpu
                    total.server_cpu += part.server_cpu
                    print(f"  round {r + 1}/{rounds} {name:<9}: {part.visits} visits in {part.wall:.1f}s "
                          f"({part.rate:.2f}/s)")
                first += count

        vf, bare = totals["VisitFlow"], totals["bare"]
        ratio = vf.rate / bare.rate if bare.rate else float("nan")
        print()
        print(_table([vf, bare]))
        print(f"\nthroughput VisitFlow/bare = {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
        print("latency = sign Update returned -> claim_ready visible: VisitFlow polls its `visit` row in SQL, "
              f"bare polls a workflow query; both every {POLL_INTERVAL * 1000:.0f} ms (polls = reads made)")
        print("cpu = this process (worker, client calls, polls); server cpu = the Temporal dev server")
        adjusted = _ratio_without_wait(vf, bare, concurrency)
        print(f"  (approximate ratio with each side's mean claim-ready wait taken out of its visits: {adjusted:.3f})")
        print(f"total bench time {time.perf_counter() - started:.1f}s; load average now {_load()} "
              f"on {os.cpu_count()} CPUs" + (" (busy machine: numbers are noisy)"
                                             if os.getloadavg()[0] > (os.cpu_count() or 1) else ""))
        return {"visitflow": _numbers(vf), "bare": _numbers(bare), "ratio": ratio, "failures": failures.counts}
    finally:
        stack.close()
        if failures.counts:
            print(f"failed attempts, retried by Temporal ({sum(failures.counts.values())}, warm-up included):")
            for key, n in sorted(failures.counts.items(), key=lambda kv: -kv[1]):
                print(f"  {n:>5}  {key}")
        else:
            print("failed attempts (activities, workflow tasks): none")
        read_pool.shutdown(wait=True)
        if engine is not None:
            engine.dispose()
        await asyncio.to_thread(server.stop)
        tmp.cleanup()
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"peak RSS: this process {own:.0f} MiB; largest child (Temporal dev server) {children:.0f} MiB")


def _ratio_without_wait(vf: PhaseResult, bare: PhaseResult, concurrency: int) -> float:
    """Lanes are closed loops: a visit's lane time is wall * lanes / visits. Take each side's mean
    claim-ready wait out of it and compare (the bare side's query poll waits much longer than an SQL read)."""
    def lane_time(r: PhaseResult) -> float:
        return r.wall * min(concurrency, max(r.visits, 1)) / max(r.visits, 1) - statistics.fmean(r.latencies or [0])
    return lane_time(bare) / lane_time(vf) if lane_time(vf) > 0 else float("nan")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _numbers(r: PhaseResult) -> dict:
    return {"visits": r.visits, "wall_s": round(r.wall, 3), "visits_per_s": round(r.rate, 2),
            "p50_ms": round(r.pct(50), 1), "p95_ms": round(r.pct(95), 1), "polls": r.polls}


__all__ = ["BareVisitWorkflow", "run_benchmark"]
