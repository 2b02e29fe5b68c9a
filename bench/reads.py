"""`python -m bench --reads`: the lists, queues and dashboard timed at a year's size (issue 10).

Loads N synthetic visits of a large agency's shape into a FRESH database (a SQLite temp file, or a PostgreSQL
database it creates on the given server and drops afterwards), then times each read route in-process through
the real app (FastAPI TestClient: auth, access rules, audit middleware, templates), signed in as the role that
uses it, and prints p50/p95 per route next to the goal. It prints numbers; it is not a test.

The shape: 85 % of visits released, the rest over the other states (future and overdue visits waiting for a
note, notes waiting for a signature, visits on hold, claim-ready, cancelled), about 6 timeline events each,
holds and tasks as the workflow makes them, one clinician per 2,000 visits, one patient per 200, 12 payers,
10,000 visits a day. Rows go in with multi-row inserts; the dashboard's rollups are then built by the same
`rebuild` that `visitflow rebuild-rollups` runs.
"""

from __future__ import annotations

import math
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Engine

from visitflow.db.session import get_engine, migrate, normalise_url
from visitflow.db.tables import (
    ApiToken,
    Authorization,
    Clinician,
    Patient,
    Payer,
    User,
    Visit,
    VisitEvent,
    VisitHold,
    VisitTask,
)
from visitflow.models import DEFAULT_TIMERS, Role, VisitSnapshot, VisitState
from visitflow.security import hash_password, token_digest

ZONE = "America/Chicago"
VISITS_A_DAY = 10_000
PASSWORD = "bench-password"  # noqa: S105 - a throwaway database's users
BATCH = 5_000

# Share of visits in each state (released 85 %; the rest as a working agency has them at any moment).
STATE_SHARES = [
    (VisitState.released, 0.85), (VisitState.scheduled, 0.05), (VisitState.on_hold, 0.03),
    (VisitState.documented, 0.025), (VisitState.claim_ready, 0.025), (VisitState.cancelled, 0.015),
    (VisitState.signed, 0.005),
]

HOLD_KINDS = [  # (rule, gate, who must act, approvable, message)
    ("EVV-02", "evv", Role.supervisor, True, "clock-in 2.3 km from the service address"),
    ("EVV-04", "evv", Role.supervisor, True, "manual punch needs approval from a supervisor"),
    ("EVV-01", "evv", Role.clinician, False, "no clock-out recorded"),
    ("DOC-03", "documented", Role.clinician, False, "note missing required fields: interventions"),
    ("AUTH-01", "authorized", Role.biller, False, "no authorization covers the visit"),
    ("AUTH-02", "authorized", Role.biller, False, "units over the authorization"),
]
HOLD_TASK = {Role.supervisor: "approve_exception", Role.biller: "resolve_authorization"}

# The routes of the table: (label, role, path, goal in ms). "{...}" is filled from the loaded data.
ROUTES = [
    ("GET /api/visits (no filter)", "admin", "/api/visits", 20),
    ("GET /api/visits 10,000 deep (keyset)", "admin", "/api/visits?after={deep}", 20),
    ("GET /api/visits?state=claim_ready&payer=…", "biller", "/api/visits?state=claim_ready&payer={payer}", 20),
    ("GET /api/visits?state=on_hold", "supervisor", "/api/visits?state=on_hold", 20),
    ("GET /api/visits one week", "admin", "/api/visits?date_from={week_from}&date_to={week_to}", 20),
    ("GET /api/visits (clinician: own)", "clinician", "/api/visits", 20),
    ("GET /api/tasks (supervisor)", "supervisor", "/api/tasks", 20),
    ("GET /api/tasks (biller)", "biller", "/api/tasks", 20),
    ("UI /escalations", "supervisor", "/escalations", 20),
    ("UI /holds", "biller", "/holds", 20),
    ("UI /billing", "biller", "/billing", 20),
    ("UI /dashboard", "admin", "/dashboard", 50),
    ("GET /api/visits/{id}", "admin", "/api/visits/{visit}", 20),
    ("UI clinician /tasks", "clinician", "/tasks", 20),
]


@contextmanager
def fresh_database(database_url: str | None) -> Iterator[str]:
    """A new, empty database: a SQLite file in a temp dir, or a database created on the PostgreSQL server of
    `database_url` (dropped afterwards). Never the database the URL names."""
    if not database_url or database_url.startswith("sqlite"):
        folder = tempfile.mkdtemp(prefix="visitflow-reads-")
        try:
            yield f"sqlite:///{folder}/bench.db"
        finally:
            get_engine.cache_clear()
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"visitflow_bench_{uuid.uuid4().hex[:8]}"
    admin = normalise_url(database_url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        for engine in list(_engines):
            engine.dispose()
        get_engine.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_engines: list[Engine] = []


@dataclass
class Loaded:
    visits: int
    clinicians: int
    payers: int
    seconds: float
    tokens: dict[str, str]  # role -> API bearer token
    usernames: dict[str, str]  # role -> username
    busiest_clinician: int


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _insert(engine: Engine, table, rows: list[dict]) -> None:
    if rows:
        with engine.begin() as conn:
            conn.execute(table.__table__.insert(), rows)


def load(engine: Engine, n: int, seed: int = 10, log=print) -> Loaded:
    """Write n visits (and their events, holds, tasks, reference data and users) in bulk."""
    started = time.perf_counter()
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    zone = ZoneInfo(ZONE)
    n_payers, n_clinicians, n_patients = 12, max(4, n // 2000), max(10, n // 200)
    _insert(engine, Payer, [{"name": f"Payer {i:02d}", "payer_code": f"P{i:04d}", "evv_required": True,
                             "evv_radius_m": 402.0, "clock_tolerance_min": 15, "max_visit_hours": 24.0,
                             "correction_window_days": 95, "rounding": "nearest_quarter",
                             "rate_per_unit_cents": 500 + 25 * i} for i in range(1, n_payers + 1)])
    _insert(engine, Clinician, [{"first_name": f"Clin{i}", "last_name": f"Ician{i:05d}",
                                 "discipline": rng.choice(["RN", "LPN", "HHA", "PCA"]), "npi": f"{1000000000 + i}"}
                                for i in range(1, n_clinicians + 1)])
    _insert(engine, Patient, [{"first_name": f"Pat{i}", "last_name": f"Ient{i:06d}", "address_line": f"{i} Main St",
                               "city": "Austin", "state": "TX", "zip_code": "78701", "latitude": 30.27,
                               "longitude": -97.74, "medicaid_id": f"M{i:08d}"} for i in range(1, n_patients + 1)])
    patient_payer = {p: 1 + (p % n_payers) for p in range(1, n_patients + 1)}
    _insert(engine, Authorization, [{"auth_number": f"A{p:07d}", "patient_id": p, "payer_id": patient_payer[p],
                                     "service_code": "T1019", "modifiers": [], "start_date": date(2020, 1, 1),
                                     "end_date": date(2035, 1, 1), "units_total": 100_000, "active": True,
                                     "version": 1} for p in range(1, n_patients + 1)])
    tokens, usernames = {}, {}
    busiest = 1  # the clinician signed in: visits are spread evenly, so any one has a typical load
    for role in ("admin", "supervisor", "biller", "clinician"):
        token = f"bench-{role}-{uuid.uuid4().hex}"
        tokens[role], usernames[role] = token, f"bench-{role}"
        with engine.begin() as conn:
            user_id = conn.execute(User.__table__.insert().values(
                username=f"bench-{role}", display_name=f"Bench {role}", role=Role(role), password_hash=(
                    hash_password(PASSWORD)), active=True, failed_signins=0,
                clinician_id=busiest if role == "clinician" else None)).inserted_primary_key[0]
            conn.execute(ApiToken.__table__.insert().values(
                user_id=user_id, name="bench", token_hash=token_digest(token), prefix=token[:12], created_at=now))

    days_back = max(14, math.ceil(n / VISITS_A_DAY))
    states = [s for s, _ in STATE_SHARES]
    weights = [w for _, w in STATE_SHARES]
    visits, events, holds, tasks = [], [], [], []
    note_due, escalate = DEFAULT_TIMERS.note_due, DEFAULT_TIMERS.note_escalate_after
    checked: set[VisitState] = set()

    def flush() -> None:
        _insert(engine, Visit, visits)
        _insert(engine, VisitEvent, events)
        _insert(engine, VisitHold, holds)
        _insert(engine, VisitTask, tasks)
        visits.clear(), events.clear(), holds.clear(), tasks.clear()

    for i in range(1, n + 1):
        state = rng.choices(states, weights)[0]
        if state == VisitState.scheduled:  # half still ahead (the next week), half over and the note not in
            day_offset = rng.randint(0, 7) if rng.random() < 0.5 else -rng.randint(0, 3)
        elif state == VisitState.released:
            day_offset = -rng.randint(3, days_back)
        elif state == VisitState.on_hold:
            day_offset = -min(days_back, int(rng.expovariate(1 / 8)) + 1)
        elif state == VisitState.cancelled:
            day_offset = rng.randint(-days_back, 7)
        else:
            day_offset = -min(days_back, int(rng.expovariate(1 / 3)) + 1)
        local_day = (now.astimezone(zone) + timedelta(days=day_offset)).date()
        start = datetime.combine(local_day, datetime.min.time(), zone).replace(
            hour=7 + rng.randint(0, 11), minute=15 * rng.randint(0, 3)).astimezone(UTC)
        end = start + timedelta(minutes=rng.choice([60, 90, 120]))
        patient = rng.randint(1, n_patients)
        payer = patient_payer[patient]
        clinician = rng.randint(1, n_clinicians)
        visit_id = f"V{i:08d}"
        units = int((end - start).total_seconds() // 900)
        t = start - timedelta(days=rng.randint(3, 14))
        timeline = [("scheduled", t, "office", "scheduled", VisitState.scheduled)]
        punched = state != VisitState.cancelled and (end <= now)
        note_at = None
        if punched:
            timeline += [("punch", start + timedelta(minutes=rng.randint(-5, 5)), f"clin{clinician}", "clock_in",
                          VisitState.scheduled),
                         ("punch", end + timedelta(minutes=rng.randint(-5, 5)), f"clin{clinician}", "clock_out",
                          VisitState.scheduled)]
        documented = state not in (VisitState.scheduled, VisitState.cancelled)
        if documented:
            lag = timedelta(hours=min(24 * 6, rng.lognormvariate(math.log(3), 1.1)))
            note_at = min(now - timedelta(minutes=5), end + lag)
            timeline.append(("note_submitted", note_at, f"clin{clinician}", "note submitted", VisitState.scheduled))
        if state in (VisitState.signed, VisitState.on_hold, VisitState.claim_ready, VisitState.released):
            signed_at = min(now - timedelta(minutes=4), note_at + timedelta(hours=rng.uniform(0.2, 20)))
            timeline.append(("signed", signed_at, f"clin{clinician}", "I attest", VisitState.documented))
            if state == VisitState.on_hold:
                timeline.append(("hold", signed_at + timedelta(seconds=2), "system", "held", VisitState.on_hold))
            if state in (VisitState.claim_ready, VisitState.released):
                ready_at = signed_at + timedelta(seconds=2)
                timeline.append(("claim_ready", ready_at, "system", "ready", VisitState.claim_ready))
                if state == VisitState.released:
                    timeline.append(("released", min(now, ready_at + timedelta(hours=rng.uniform(1, 48))),
                                     "biller", "batch B1", VisitState.released))
        if state == VisitState.cancelled:
            timeline.append(("cancelled", t + timedelta(days=1), "office", "client in hospital", VisitState.cancelled))
        visit_holds, visit_tasks = [], []
        if state == VisitState.on_hold:
            for rule, gate, role, approvable, message in rng.sample(HOLD_KINDS, rng.choice([1, 1, 1, 2])):
                key = f"{rule}:punch-1"
                opened = timeline[-1][1]
                visit_holds.append({"rule_id": rule, "gate": gate, "role": role.value, "key": key, "message": message,
                                    "approvable": approvable, "opened_at": opened})
                kind = HOLD_TASK.get(role, "fix_evv" if gate == "evv" else "fix_note")
                visit_tasks.append({"kind": kind, "role": role.value, "title": message, "hold_key": key,
                                    "clinician_id": clinician if role == Role.clinician else None,
                                    "due_at": None, "escalated": False})
        elif state in (VisitState.scheduled, VisitState.documented):
            stage = "note" if state == VisitState.scheduled else "signature"
            base = end if stage == "note" else note_at
            due = base + note_due
            late = now - due
            reminded = late > timedelta(0)
            visit_tasks.append({"kind": "write_note" if stage == "note" else "sign_note", "role": "clinician",
                                "clinician_id": clinician, "title": "Write the visit note" if stage == "note"
                                else "Sign the note", "due_at": due, "escalated": reminded, "hold_key": None})
            if late > escalate:
                visit_tasks.append({"kind": f"{stage}_overdue", "role": "supervisor", "clinician_id": clinician,
                                    "title": f"{'Note' if stage == 'note' else 'Signature'} overdue", "due_at": due,
                                    "escalated": True, "hold_key": None})
        elif state == VisitState.claim_ready:
            visit_tasks.append({"kind": "release", "role": "biller", "clinician_id": None, "due_at": None,
                                "title": "Claim-ready: release for billing", "escalated": False, "hold_key": None})
        ready_since = max((at for kind, at, *_ in timeline if kind == "claim_ready"), default=None)
        sign_since = max((at for kind, at, *_ in timeline if kind == "note_submitted"), default=None)
        snapshot = {
            "spec": {"visit_id": visit_id, "patient_id": patient, "clinician_id": clinician, "payer_id": payer,
                     "discipline": "HHA", "service_code": "T1019", "modifiers": [], "scheduled_start": _iso(start),
                     "scheduled_end": _iso(end), "timezone": ZONE, "scheduled_by": "office",
                     "required_note_fields": ["tasks_performed", "patient_response"]},
            "state": state.value, "version": len(timeline) + 1,
            "punches": [{"seq": k, "kind": detail, "at": _iso(at), "method": "gps", "recorded_by": actor,
                         "recorded_at": _iso(at), "location": {"lat": 30.27, "lon": -97.74}}
                        for k, (_, at, actor, detail, _) in enumerate(
                            (e for e in timeline if e[0] == "punch"), 1)],
            "note": {"fields": {"tasks_performed": "Bathing, meal preparation, medication reminder",
                                "patient_response": "Tolerated well"}, "submitted_by": f"clin{clinician}",
                     "submitted_at": _iso(note_at)} if note_at else None,
            "holds": [{"rule_id": h["rule_id"], "gate": h["gate"], "message": h["message"], "role": h["role"],
                       "key": h["key"], "approvable": h["approvable"]} for h in visit_holds],
            "tasks": [{k: (_iso(v) if isinstance(v, datetime) else v) for k, v in task.items()}
                      for task in visit_tasks],
            "timeline": [{"seq": k, "at": _iso(at), "actor": actor, "kind": kind, "detail": detail,
                          "state": st.value} for k, (kind, at, actor, detail, st) in enumerate(timeline, 1)],
            "gates": {"documented": documented, "signed": state != VisitState.documented and documented,
                      "authorized": state in (VisitState.claim_ready, VisitState.released),
                      "evv": state in (VisitState.claim_ready, VisitState.released)},
            "note_deadline": _iso(end + note_due), "billable_units": units if documented else None,
            "authorization_id": patient if documented else None,
            "release_batch_id": "B1" if state == VisitState.released else None,
        }
        if state not in checked:  # each state's shape once: the snapshot must be one the app reads
            VisitSnapshot.model_validate(snapshot)
            checked.add(state)
        visits.append({
            "id": visit_id, "workflow_id": f"visit-{visit_id}", "patient_id": patient, "clinician_id": clinician,
            "payer_id": payer, "service_code": "T1019", "modifiers": [], "scheduled_start": start,
            "scheduled_end": end, "service_date": local_day, "state": state.value, "version": len(timeline) + 1,
            "hold_count": len(visit_holds), "note_deadline": end + note_due,
            "billable_units": units if documented else None, "authorization_id": patient if documented else None,
            "release_batch_id": "B1" if state == VisitState.released else None,
            "released_at": timeline[-1][1] if state == VisitState.released else None,
            "released_by": "biller" if state == VisitState.released else None,
            "note_submitted_at": note_at, "sign_waiting_since": sign_since, "ready_since": ready_since,
            "created_at": t, "updated_at": timeline[-1][1], "snapshot": snapshot})
        events += [{"visit_id": visit_id, "seq": k, "at": at, "actor": actor, "kind": kind, "detail": detail,
                    "state": st.value} for k, (kind, at, actor, detail, st) in enumerate(timeline, 1)]
        holds += [{"visit_id": visit_id, **h} for h in visit_holds]
        tasks += [{"visit_id": visit_id, **task} for task in visit_tasks]
        if len(visits) >= BATCH:
            flush()
            if i % 100_000 == 0:
                log(f"  {i:,} visits written ({time.perf_counter() - started:.0f} s)")
    flush()
    return Loaded(n, n_clinicians, n_payers, time.perf_counter() - started, tokens, usernames, busiest)


def _sign_in(client, username: str) -> None:
    import re

    page = client.get("/signin")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)
    answer = client.post("/signin", data={"username": username, "password": PASSWORD, "csrf_token": csrf},
                         follow_redirects=False)
    assert answer.status_code == 303, answer.text


def _plans(engine: Engine, statements: list[tuple[str, object]]) -> list[str]:
    """The plans of a route's SELECTs that read a whole big table or sort one (what the indexes must prevent)."""
    big = ("visit", "visitevent", "visithold", "visittask")
    found = []
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            if engine.dialect.name == "sqlite":
                rows = [r[-1] for r in raw.execute("EXPLAIN QUERY PLAN " + statement, parameters).fetchall()]
                bad = [r for r in rows if (r.startswith("SCAN ") and r.split()[1] in big and "INDEX" not in r)
                       or "TEMP B-TREE" in r]
            else:
                with raw.cursor() as cur:
                    cur.execute("EXPLAIN " + statement, parameters)
                    rows = [r[0] for r in cur.fetchall()]
                raw.rollback()
                bad = [r for r in rows if any(f"Seq Scan on {t} " in r + " " for t in big) or "Sort " in r]
            if bad:
                found.append(f"{' | '.join(bad)}  <- {' '.join(statement.split())[:160]}")
    return found


def time_routes(url: str, loaded: Loaded, rounds: int, log=print, explain: bool = False
                ) -> list[tuple[str, float, float, int, int]]:
    """(route, p50 ms, p95 ms, goal ms, status) for each route of the issue's table."""
    from fastapi.testclient import TestClient

    from visitflow.main import create_app, settle_for_serving
    from visitflow.services.queries import encode_cursor
    from visitflow.settings import Settings

    engine = get_engine(url)
    with engine.connect() as conn:
        # The cursor a client holds 10,000 visits into the list (found once, here, by offset; the route then
        # reads from it by keyset). A tiny run goes half way in.
        depth = min(10_000, loaded.visits // 2)
        deep = conn.execute(text("SELECT scheduled_start, id FROM visit ORDER BY scheduled_start DESC, id DESC "
                                 "LIMIT 1 OFFSET :depth"), {"depth": depth}).first()
        payer = conn.execute(text("SELECT payer_id FROM visit WHERE state = 'claim_ready' LIMIT 1")).scalar() or 1
        visit = conn.execute(text("SELECT id FROM visit WHERE state = 'released' LIMIT 1")).scalar()
    from visitflow.models import as_utc

    deep_start = deep[0] if isinstance(deep[0], datetime) else datetime.fromisoformat(str(deep[0]))
    today = datetime.now(ZoneInfo(ZONE)).date()
    fill = {"deep": encode_cursor(as_utc(deep_start), deep[1]), "payer": payer, "visit": visit,
            "week_from": (today - timedelta(days=14)).isoformat(), "week_to": (today - timedelta(days=8)).isoformat()}
    settings = Settings(database_url=url, secret_key="bench-secret-" + uuid.uuid4().hex,
                        data_dir=tempfile.mkdtemp(prefix="visitflow-reads-data-"), agency_timezone=ZONE)
    app = create_app(settings, temporal=None)  # reads only: no route timed here talks to Temporal
    settle_for_serving(app)  # what a server's start-up does (its lifespan, which would also connect to Temporal)
    clients = {}
    for role in ("admin", "supervisor", "biller", "clinician"):
        client = TestClient(app, raise_server_exceptions=True)
        _sign_in(client, loaded.usernames[role])
        client.headers["Authorization"] = f"Bearer {loaded.tokens[role]}"
        clients[role] = client
    results = []
    statements: list[tuple[str, object]] = []
    from sqlalchemy import event

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        statements.append((statement, parameters))

    for label, role, path, goal in ROUTES:
        path = path.format(**fill)
        client = clients[role]
        statements.clear()
        event.listen(engine, "before_cursor_execute", record)
        status = client.get(path).status_code  # the first read also pages the indexes in
        event.remove(engine, "before_cursor_execute", record)
        if explain:
            for line in _plans(engine, statements):
                log(f"  {label}: {line}")
        client.get(path)  # and once more, warm
        times = []
        size = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            answer = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            status = answer.status_code
            size = len(answer.content)
        times.sort()
        p50 = statistics.median(times)
        p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
        results.append((label, p50, p95, goal, status))
        # The answer's size too: a page's HTML is much of what it costs to render (and to send).
        log(f"  {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms ({status}, {size / 1024:.1f} KB)")
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    return results


def run_reads(visits: int, database_url: str | None, rounds: int = 20, log=print, explain: bool = False
              ) -> list[tuple]:
    with fresh_database(database_url) as url:
        kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
        log(f"Loading {visits:,} visits into a fresh {kind} database …")
        migrate(url)
        engine = get_engine(url)
        _engines.append(engine)
        if kind == "SQLite":
            # A throwaway file: no fsync while loading, and a cache that holds the indexes being filled (the
            # pool's connections are made now, so every one of them gets these).
            from sqlalchemy import event

            @event.listens_for(engine, "connect")
            def _bulk(dbapi_conn, _record):
                dbapi_conn.execute("PRAGMA synchronous=OFF")
                dbapi_conn.execute("PRAGMA cache_size=-1000000")

            engine.dispose()
        loaded = load(engine, visits, log=log)
        log(f"  loaded in {loaded.seconds:.0f} s ({loaded.clinicians} clinicians, {loaded.payers} payers)")
        from visitflow.services.rollups import rebuild

        t0 = time.perf_counter()
        rows = rebuild(engine)
        log(f"  rollups rebuilt from the visits in {time.perf_counter() - t0:.0f} s ({rows} rows)")
        if kind == "PostgreSQL":  # what autovacuum does after a bulk load (statistics, and the visibility map
            # that index-only scans need), done now rather than in a few minutes
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        log(f"Timing each route {rounds} times (after 2 warm-up reads) …")
        results = time_routes(url, loaded, rounds, log=log, explain=explain)
        engine.dispose()
    width = max(len(r[0]) for r in results)
    log("")
    log(f"{visits:,} visits on {kind}:")
    log(f"{'route'.ljust(width)}  {'p50 ms':>8}  {'p95 ms':>8}  {'goal':>6}")
    for label, p50, p95, goal, status in results:
        verdict = "" if status == 200 else f"  (HTTP {status})"
        mark = "ok" if p95 <= goal else "OVER"
        log(f"{label.ljust(width)}  {p50:8.1f}  {p95:8.1f}  {'≤' + str(goal):>6}  {mark}{verdict}")
    return results
