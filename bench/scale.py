"""`python -m bench --open-visits N` and `python -m bench --workers N`: memory with many open visits, and scale-out.

Both run like the ratio bench, in a throw-away temp dir with their own Temporal dev server and database, but
the workers are separate `visitflow worker` processes (`python -m visitflow.cli worker`, configured through
VISITFLOW_* variables, as docker-compose runs them), so their memory and CPU are their own.

--open-visits N: one worker; schedule N visits and wait until every one has projected itself and waits for its
note (its workflow parked on the DOC-01 deadline timer), then print the worker's and the dev server's RSS. Then
take the earliest visits, long evicted from the worker's workflow cache (Settings.worker_cached_visits), through
the whole lifecycle, to show that they move on when acted on.

--workers N: the same visits (punch, punch, note, sign, claim-ready, release, as the ratio bench drives them)
against 1 and then N worker processes on one Temporal server, and check every visit: released exactly once (one
accepted `release` Update in its history, one `released` entry in its timeline and in the read model's events),
and the read model's row equal to what the workflow ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.lifecycle import (
    WARMUP_VISITS,
    _Agency,
    _free_port,
    _load,
    _process_cpu,
    _run_phase,
    _seed,
    _visitflow_visit,
)
from visitflow.settings import Settings

WORKER_READY_TIMEOUT = 60.0  # seconds for a worker process to connect and start polling
WORKER_STOP_TIMEOUT = 15.0  # SIGTERM, then this long to drain, then SIGKILL
PROJECTED_TIMEOUT = 1800.0  # seconds for N open visits to all reach "waiting for the note"
MiB = 1024 * 1024


def rss(pid: int | None) -> tuple[float, float]:
    """(current, peak) resident memory of a process in MiB, from /proc; (0, 0) where /proc is missing."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / MiB
    except (OSError, ValueError):
        pass
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def _stop_with_parent() -> None:
    """A worker must not outlive a bench that is killed outright."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerProcess:
    """One `visitflow worker` process, configured only through its environment."""

    def __init__(self, settings: Settings, log: Path, cached_visits: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VISITFLOW_") and k != "DATABASE_URL"}
        env.update({
            "VISITFLOW_CONFIG": str(log.with_suffix(".toml")),  # none: a visitflow.toml in the cwd is not read
            "VISITFLOW_DATA_DIR": str(settings.data_dir), "VISITFLOW_DATABASE_URL": settings.database_url,
            "VISITFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
            "VISITFLOW_TEMPORAL_NAMESPACE": settings.temporal_namespace,
            "VISITFLOW_TASK_QUEUE": settings.task_queue, "VISITFLOW_EMBEDDED_TEMPORAL": "false",
        })
        if cached_visits is not None:
            env["VISITFLOW_WORKER_CACHED_VISITS"] = str(cached_visits)
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "visitflow.cli", "worker"], env=env,
                                        stdout=self._out, stderr=subprocess.STDOUT, preexec_fn=_stop_with_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self) -> None:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while b"VisitFlow worker is running" not in self.log.read_bytes():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.pid} exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.pid} did not start within {WORKER_READY_TIMEOUT:.0f}s")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def problems(self) -> int:
        """Warnings and errors the worker logged (failed activity attempts, workflow task failures)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if line.startswith(("WARNING", "ERROR", "CRITICAL")))

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
        self._out.close()


@dataclass
class _Env:
    data_dir: Path
    settings: Settings
    server: object  # visitflow.devserver.DevServer
    engine: object
    client: object
    agency: _Agency


@contextlib.asynccontextmanager
async def _environment(settings: Settings, postgres: str | None) -> AsyncIterator[_Env]:
    """Temp dir, dev server, a fresh database (SQLite in the temp dir, or a scratch database on `postgres`),
    reference data and a client; all removed afterwards."""
    from sqlalchemy import create_engine, text

    from visitflow.db.session import get_engine, migrate
    from visitflow.devserver import DevServer
    from visitflow.temporal import connect

    tag = uuid.uuid4().hex[:6]
    tmp = tempfile.TemporaryDirectory(prefix="visitflow-bench-", ignore_cleanup_errors=True)
    data_dir = Path(tmp.name)
    port = _free_port()
    admin = None
    if postgres:
        scratch = f"visitflow_bench_{tag}"
        admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{scratch}"'))
        db_url = admin.url.set(database=scratch).render_as_string(hide_password=False)
    else:
        db_url = f"sqlite:///{data_dir / 'visitflow.db'}"
    env_settings = settings.model_copy(update={
        "data_dir": data_dir, "database_url": db_url, "temporal_address": f"127.0.0.1:{port}",
        "temporal_namespace": "default", "task_queue": f"visitflow-bench-{tag}", "embedded_temporal": False})
    server = DevServer(data_dir, host="127.0.0.1", port=port, ui_port=None)
    engine = None
    try:
        await asyncio.to_thread(server.start)
        migrate(db_url)
        engine = get_engine(db_url)
        agency = _seed(engine, env_settings)
        client = await connect(env_settings)
        print(f"  Temporal dev server on {server.address} (headless); database "
              f"{'PostgreSQL ' + db_url.rsplit('/', 1)[-1] if postgres else 'SQLite'}; data in {data_dir} "
              "(removed after)")
        yield _Env(data_dir, env_settings, server, engine, client, agency)
    finally:
        if engine is not None:
            engine.dispose()
        await asyncio.to_thread(server.stop)
        if admin is not None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()


async def _start_workers(env: _Env, settings: Settings, count: int, name: str,
                         cached_visits: int | None = None) -> list[WorkerProcess]:
    workers = [WorkerProcess(settings, env.data_dir / f"{name}-{i}.log", cached_visits) for i in range(count)]
    try:
        await asyncio.gather(*(w.ready() for w in workers))
    except BaseException:
        await asyncio.gather(*(w.stop() for w in workers))
        raise
    return workers


def _machine() -> str:
    busy = os.getloadavg()[0] > (os.cpu_count() or 1)
    return f"load average {_load()} on {os.cpu_count()} CPUs" + (" (busy machine: numbers are noisy)" if busy else "")


# --- open visits ---------------------------------------------------------------------------------


async def _schedule(env: _Env, visit_id: str, patient: tuple[int, float, float]) -> None:
    from sqlmodel import Session

    from visitflow.db.tables import Clinician, Patient, Payer
    from visitflow.services.commands import ScheduleRequest, schedule_visit

    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0)
    with Session(env.engine, expire_on_commit=False) as s:
        loaded = [s.get(table, key) for table, key in  # kept: schedule_visit's gets hit the identity map
                  ((Patient, patient[0]), (Clinician, env.agency.clinician_id), (Payer, env.agency.payer_id))]
        s.commit()
        _, created = await schedule_visit(s, env.client, env.settings, ScheduleRequest(
            id=visit_id, patient_id=patient[0], clinician_id=env.agency.clinician_id, payer_id=env.agency.payer_id,
            service_code="T1019", modifiers=[], scheduled_start=start, scheduled_end=start + timedelta(hours=2)),
            env.agency.admin)
        del loaded
    if not created:
        raise RuntimeError(f"bench visit {visit_id} already existed")


def _waiting_for_note(engine, prefix: str) -> int:
    """Visits of this run whose first projection is in: their workflows wait for the note."""
    from sqlalchemy import func
    from sqlmodel import Session, select

    from visitflow.db.tables import Visit

    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(Visit).where(
            Visit.id.startswith(prefix), Visit.state == "scheduled", Visit.version >= 1)).one()


async def run_open_visits(settings: Settings, count: int, concurrency: int = 50, sample: int = 20,
                          cached_visits: int | None = None, postgres: str | None = None) -> dict:
    """Schedule `count` visits, let them all wait for their notes, print memory, then finish `sample` of them."""
    if count < 1 or concurrency < 1 or sample < 0:
        raise ValueError("--open-visits and --concurrency must be at least 1")
    cache = cached_visits if cached_visits is not None else settings.worker_cached_visits
    print(f"VisitFlow open-visits bench: {count} visits waiting for their notes, one worker process (workflow "
          f"cache {cache} visits); {_machine()}")
    async with _environment(settings, postgres) as env:
        worker, = await _start_workers(env, env.settings, 1, "worker", cached_visits)
        try:
            idle = rss(worker.pid)[0]
            server_idle = rss(env.server.process.pid)[0]
            prefix = f"open-{uuid.uuid4().hex[:4]}-"
            ids = [f"{prefix}{i}" for i in range(count)]
            todo = iter(enumerate(ids))
            started = time.perf_counter()

            async def lane() -> None:
                for i, visit_id in todo:
                    await _schedule(env, visit_id, env.agency.patients[i % len(env.agency.patients)])

            async with asyncio.TaskGroup() as group:
                for _ in range(min(concurrency, count)):
                    group.create_task(lane())
            scheduled = time.perf_counter() - started
            deadline = time.monotonic() + PROJECTED_TIMEOUT
            while (waiting := await asyncio.to_thread(_waiting_for_note, env.engine, prefix)) < count:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {waiting} of {count} visits reached 'waiting for the note'")
                await asyncio.sleep(0.5)
            parked = time.perf_counter() - started
            await asyncio.sleep(2)  # let the last workflow tasks finish
            worker_now, worker_peak = rss(worker.pid)
            server_now, server_peak = rss(env.server.process.pid)
            print(f"  {count} visits scheduled in {scheduled:.0f}s; all waiting for their notes after {parked:.0f}s "
                  f"({count / parked:.0f} visits/s)")
            print(f"  worker RSS: {worker_now:.0f} MiB (peak {worker_peak:.0f}, idle before {idle:.0f}); "
                  f"dev server RSS: {server_now:.0f} MiB (peak {server_peak:.0f}, idle before {server_idle:.0f})")

            # The earliest visits: the cache keeps the most recently used, so with more open visits than
            # cached ones these were evicted long ago and replay their history when acted on.
            evicted = count > cache
            first_acts: list[float] = []
            chosen = ids[:sample]
            acted = time.perf_counter()
            for visit_id in chosen:
                first_acts.append(await _finish_open_visit(env, visit_id))
            took = time.perf_counter() - acted
            after = rss(worker.pid)[0]
            if chosen:
                print(f"  then the {len(chosen)} earliest visits ({'evicted from' if evicted else 'still in'} the "
                      f"cache) went through punch, punch, note, sign, claim-ready and release: {took:.1f}s in all; "
                      f"their first Update (a replay from history) took p50 {_median(first_acts):.0f} ms, "
                      f"max {max(first_acts):.0f} ms")
            print(f"  worker RSS after: {after:.0f} MiB; worker log warnings/errors: {worker.problems()}")
            print(f"  {_machine()}")
            return {"count": count, "cache": cache, "worker_rss_mib": round(worker_now, 1),
                    "worker_peak_mib": round(worker_peak, 1), "server_rss_mib": round(server_now, 1),
                    "finished": len(chosen), "first_update_ms": [round(x, 1) for x in first_acts],
                    "problems": worker.problems()}
        finally:
            await worker.stop()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


async def _finish_open_visit(env: _Env, visit_id: str) -> float:
    """Punch in and out, note, sign, wait for claim-ready, release; returns the first Update's time in ms."""
    from visitflow.models import (
        GeoPoint,
        PunchInput,
        PunchKind,
        PunchMethod,
        RecordPunch,
        Release,
        SignNote,
        SubmitNote,
    )
    from visitflow.services.commands import act
    from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

    agency = env.agency
    row = await asyncio.to_thread(_visit_row, env.engine, visit_id)
    _, lat, lon = next(p for p in agency.patients if p[0] == row["patient_id"])
    start, end = row["scheduled_start"], row["scheduled_end"]
    first = time.perf_counter()
    for n, (kind, at) in enumerate(((PunchKind.clock_in, start + timedelta(minutes=2)),
                                    (PunchKind.clock_out, end - timedelta(minutes=1)))):
        await act(env.client, visit_id, VisitWorkflow.record_punch, RecordPunch(
            actor=agency.clinician, now=datetime.now(UTC),
            punch=PunchInput(kind=kind, at=at, method=PunchMethod.gps, location=GeoPoint(lat=lat, lon=lon))))
        if n == 0:
            first_ms = (time.perf_counter() - first) * 1000
    await act(env.client, visit_id, VisitWorkflow.submit_note, SubmitNote(actor=agency.clinician, fields=agency.note))
    await act(env.client, visit_id, VisitWorkflow.sign_note, SignNote(actor=agency.clinician, attestation=True))
    deadline = time.monotonic() + 30
    while (state := (await asyncio.to_thread(_visit_row, env.engine, visit_id))["state"]) != "claim_ready":
        if state == "on_hold" or time.monotonic() > deadline:
            raise RuntimeError(f"open visit {visit_id} did not become claim-ready (it is {state})")
        await asyncio.sleep(0.01)
    await act(env.client, visit_id, VisitWorkflow.release, Release(actor=agency.biller, batch_id="b-open"),
              update_id="release")
    result = await env.client.get_workflow_handle_for(VisitWorkflow.run, visit_workflow_id(visit_id)).result()
    if result.state.value != "released":
        raise RuntimeError(f"open visit {visit_id} ended {result.state.value}")
    return first_ms


def _visit_row(engine, visit_id: str) -> dict:
    from sqlmodel import Session

    from visitflow.db.tables import Visit
    from visitflow.models import as_utc

    with Session(engine) as s:
        v = s.get(Visit, visit_id)
        return {"state": v.state, "patient_id": v.patient_id, "scheduled_start": as_utc(v.scheduled_start),
                "scheduled_end": as_utc(v.scheduled_end)}


# --- scale-out -----------------------------------------------------------------------------------


@dataclass
class ScaleResult:
    workers: int
    visits: int
    wall: float
    worker_cpu: float
    server_cpu: float
    client_cpu: float
    worker_rss: list[float]
    problems: int
    checked: int = 0
    wrong: list[str] | None = None

    @property
    def rate(self) -> float:
        return self.visits / self.wall if self.wall else 0.0


async def run_workers(settings: Settings, workers: int, visits: int = 200, concurrency: int = 20,
                      postgres: str | None = None, warmup: int = WARMUP_VISITS) -> dict:
    """The lifecycle with 1 and then `workers` worker processes against one dev server; every visit checked."""
    if workers < 1 or visits < 1 or concurrency < 1:
        raise ValueError("--workers, --visits and --concurrency must be at least 1")
    counts = [1, workers] if workers > 1 else [1]
    print(f"VisitFlow scale-out bench: {visits} visits, {concurrency} in flight, against "
          f"{' and then '.join(str(n) for n in counts)} worker process(es); {warmup} warm-up visits each; "
          f"{_machine()}")
    results = []
    async with _environment(settings, postgres) as env:
        read_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-poll")
        try:
            for n in counts:
                tag = f"{n}w{uuid.uuid4().hex[:4]}"
                run_settings = env.settings.model_copy(update={"task_queue": f"visitflow-bench-{tag}"})
                procs = await _start_workers(env, run_settings, n, f"workers-{tag}")
                try:
                    drive = _visitflow_visit(env.client, run_settings, env.engine, env.agency, tag, read_pool)
                    await _run_phase(f"{n} workers warm-up", 0, warmup, concurrency,
                                     _visitflow_visit(env.client, run_settings, env.engine, env.agency,
                                                      f"w{tag}", read_pool))
                    cpu = [_process_cpu(p.pid) for p in procs]
                    server_cpu, own_cpu = _process_cpu(env.server.process.pid), time.process_time()
                    phase = await _run_phase(f"{n} workers", 0, visits, concurrency, drive)
                    result = ScaleResult(
                        workers=n, visits=visits, wall=phase.wall,
                        worker_cpu=sum(_process_cpu(p.pid) - c for p, c in zip(procs, cpu, strict=True)),
                        server_cpu=_process_cpu(env.server.process.pid) - server_cpu,
                        client_cpu=time.process_time() - own_cpu,
                        worker_rss=[rss(p.pid)[1] for p in procs], problems=sum(p.problems() for p in procs))
                finally:
                    await asyncio.gather(*(p.stop() for p in procs))
                wrong = await check_released_once(env, [f"bench-{tag}-{i}" for i in range(visits)])
                result.checked, result.wrong = visits, wrong
                results.append(result)
                print(f"  {n} worker(s): {visits} visits in {result.wall:.1f}s ({result.rate:.2f}/s); checked "
                      f"{visits}: {'all released exactly once, read model = workflows' if not wrong else wrong[:5]}")
        finally:
            read_pool.shutdown()
    print()
    print(f"{'workers':>7} {'visits/s':>9} {'worker cpu ms/visit':>20} {'server cpu ms/visit':>20} "
          f"{'bench cpu ms/visit':>19} {'peak RSS per worker MiB':>24} {'log warnings':>13} {'wrong':>6}")
    for r in results:
        print(f"{r.workers:>7} {r.rate:>9.2f} {r.worker_cpu / r.visits * 1000:>20.1f} "
              f"{r.server_cpu / r.visits * 1000:>20.1f} {r.client_cpu / r.visits * 1000:>19.1f} "
              f"{' / '.join(f'{x:.0f}' for x in r.worker_rss):>24} {r.problems:>13} {len(r.wrong or []):>6}")
    if len(results) == 2:
        print(f"\nthroughput {workers} workers / 1 worker = {results[1].rate / results[0].rate:.2f}")
    print(f"{_machine()}")
    return {"results": [{"workers": r.workers, "visits_per_s": round(r.rate, 2), "wrong": r.wrong,
                         "worker_cpu_ms": round(r.worker_cpu / r.visits * 1000, 1),
                         "server_cpu_ms": round(r.server_cpu / r.visits * 1000, 1), "problems": r.problems}
                        for r in results]}


async def check_released_once(env: _Env, visit_ids: list[str]) -> list[str]:
    """Every visit released exactly once, and the read model equal to how its workflow ended. Returns problems."""
    from sqlalchemy import func
    from sqlmodel import Session, select

    from visitflow.db.tables import Visit, VisitEvent
    from visitflow.workflows.visit import VisitWorkflow, visit_workflow_id

    problems = []
    with Session(env.engine) as s:
        rows = {v.id: v for v in s.exec(select(Visit).where(Visit.id.in_(visit_ids)))}
        released_events = dict(s.exec(select(VisitEvent.visit_id, func.count()).where(
            VisitEvent.visit_id.in_(visit_ids), VisitEvent.kind == "released").group_by(VisitEvent.visit_id)).all())
    for visit_id in visit_ids:
        handle = env.client.get_workflow_handle_for(VisitWorkflow.run, visit_workflow_id(visit_id))
        result = await handle.result()
        history = await handle.fetch_history()
        releases = sum(1 for e in history.events if e.HasField("workflow_execution_update_accepted_event_attributes")
                       and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
                       == "release")
        row = rows.get(visit_id)
        in_timeline = sum(1 for e in result.timeline if e.kind == "released")
        if releases != 1 or in_timeline != 1 or released_events.get(visit_id) != 1:
            problems.append(f"{visit_id}: {releases} release Updates, {in_timeline} in its timeline, "
                            f"{released_events.get(visit_id, 0)} in the read model")
        elif row is None or row.state != result.state.value or row.version != result.version \
                or row.release_batch_id != result.release_batch_id:
            problems.append(f"{visit_id}: read model {row and (row.state, row.version)} != workflow "
                            f"{(result.state.value, result.version)}")
    return problems
