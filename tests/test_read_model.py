"""The read model at a year's size (issue 10): keyset paging, capped counts, the dashboard's rollups.

Visits are written by the real projection activity (`project_visit`, run in Temporal's activity test
environment) into a database of each test's own, on SQLite or PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import math
import random
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from collections import Counter
from sqlalchemy import delete, update
from sqlmodel import Session, func, select
from temporalio.testing import ActivityEnvironment

from visitflow.activities.visits import VisitActivities
from visitflow.db.session import get_engine, migrate, write_session
from visitflow.db.tables import (
    ApiToken,
    Clinician,
    Patient,
    Payer,
    PayerRate,
    User,
    Visit,
    VisitEvent,
    VisitHold,
    VisitRollup,
    VisitTask,
)
from visitflow.main import create_app
from visitflow.models import (
    Discipline,
    Finding,
    Gate,
    Note,
    Role,
    Task,
    TimelineEntry,
    VisitSnapshot,
    VisitSpec,
    VisitState,
    as_utc,
)
from visitflow.security import hash_password, token_digest
from visitflow.services import queries, rollups
from visitflow.services.revenue import revenue_at_risk
from visitflow.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)


def agency_day(at: datetime):
    """The agency's date at `at` (filing limits count the agency's days)."""
    return at.astimezone(ZoneInfo("America/Chicago")).date()


class Model:
    """A fresh database with two payers, two clinicians and a user of each role."""

    def __init__(self, url: str) -> None:
        migrate(url)
        self.url = url
        self.engine = get_engine(url)
        self.activities = VisitActivities(self.engine)
        self.env = ActivityEnvironment()
        with write_session(self.engine) as s:
            s.expire_on_commit = False
            self.payers = [Payer(name=f"Payer {n}", payer_code=f"P{n}", rate_per_unit_cents=500 + n) for n in (1, 2)]
            self.clinicians = [Clinician(first_name="Dee", last_name=f"Aide{n}", discipline=Discipline.PCA)
                               for n in (1, 2)]
            self.patient = Patient(first_name="Alice", last_name="Ames", address_line="1 Main St", city="Austin",
                                   state="TX", zip_code="78701")
            s.add_all([*self.payers, *self.clinicians, self.patient])
            s.commit()
            self.users: dict[str, User] = {}
            for role, clinician in ((Role.admin, None), (Role.supervisor, None), (Role.biller, None),
                                    (Role.clinician, self.clinicians[0])):
                user = User(username=f"{role.value}-{uuid.uuid4().hex[:6]}", display_name=role.value, role=role,
                            clinician_id=clinician.id if clinician else None, password_hash=hash_password("pw"))
                s.add(user)
                s.commit()
                s.add(ApiToken(user_id=user.id, name="t", token_hash=token_digest(f"token-{user.username}"),
                               prefix="token", created_at=NOW))
                s.commit()
                self.users[role.value] = user

    def project(self, snap: VisitSnapshot) -> None:
        self.env.run(self.activities.project_visit, snap)

    def spec(self, visit_id: str, start: datetime, clinician: int = 0, payer: int = 0) -> VisitSpec:
        return VisitSpec(visit_id=visit_id, patient_id=self.patient.id, clinician_id=self.clinicians[clinician].id,
                         payer_id=self.payers[payer].id, discipline=Discipline.PCA, service_code="T1019",
                         scheduled_start=start, scheduled_end=start + timedelta(hours=2),
                         timezone="America/Chicago")

    def stored_vs_rebuilt(self) -> tuple:
        with self.engine.connect() as db:
            return rollups.stored(db), rollups.count_all(db)


@pytest.fixture
def model(empty_database_url) -> Model:
    return Model(empty_database_url)


def lifecycle(model: Model, visit_id: str, start: datetime, clinician: int = 0, payer: int = 0,
              rng: random.Random | None = None) -> list[VisitSnapshot]:
    """The snapshots one visit's workflow would project, version by version: scheduled, note overdue and
    escalated, documented, signed, on hold (two holds of one rule and an exception), claim-ready, released."""
    rng = rng or random.Random(0)
    spec = model.spec(visit_id, start, clinician, payer)
    end = spec.scheduled_end
    cid = spec.clinician_id
    timeline: list[TimelineEntry] = []

    def log(kind: str, at: datetime, state: VisitState) -> list[TimelineEntry]:
        timeline.append(TimelineEntry(seq=len(timeline) + 1, at=at, actor="x", kind=kind, state=state))
        return list(timeline)

    note = Note(fields={"tasks_performed": "bathing"}, submitted_by="dee",
                submitted_at=end + timedelta(minutes=rng.randint(5, 3000)))
    holds = [Finding(rule_id="EVV-01", gate=Gate.evv, message="no clock-in", role=Role.clinician, key="EVV-01:in"),
             Finding(rule_id="EVV-01", gate=Gate.evv, message="no clock-out", role=Role.clinician, key="EVV-01:out"),
             Finding(rule_id="EVV-02", gate=Gate.evv, message="far away", role=Role.supervisor, key="EVV-02:p1",
                     approvable=True)]
    due = end + timedelta(hours=24)
    steps = [
        (VisitState.scheduled, log("scheduled", start - timedelta(days=2), VisitState.scheduled), None, [], [
            Task(kind="write_note", role=Role.clinician, clinician_id=cid, title="Write", due_at=due)]),
        (VisitState.scheduled, list(timeline), None, [], [
            Task(kind="write_note", role=Role.clinician, clinician_id=cid, title="Write", due_at=due, escalated=True),
            Task(kind="note_overdue", role=Role.supervisor, clinician_id=cid, title="Overdue", due_at=due,
                 escalated=True)]),
        (VisitState.documented, log("note_submitted", note.submitted_at, VisitState.documented), note, [], [
            Task(kind="sign_note", role=Role.clinician, clinician_id=cid, title="Sign", due_at=due)]),
        (VisitState.on_hold, log("hold", note.submitted_at + timedelta(minutes=1), VisitState.on_hold), note, holds, [
            Task(kind="fix_evv", role=Role.clinician, clinician_id=cid, title="Fix", hold_key="EVV-01:in"),
            Task(kind="approve_exception", role=Role.supervisor, title="Approve", hold_key="EVV-02:p1")]),
        (VisitState.claim_ready, log("claim_ready", note.submitted_at + timedelta(hours=1), VisitState.claim_ready),
         note, [], [Task(kind="release", role=Role.biller, title="Release")]),
        (VisitState.released, log("released", note.submitted_at + timedelta(hours=2), VisitState.released),
         note, [], []),
    ]
    return [VisitSnapshot(spec=spec, state=state, version=n, note=note_, holds=holds_, tasks=tasks_, timeline=tl,
                          billable_units=8 if note_ else None, note_deadline=due)
            for n, (state, tl, note_, holds_, tasks_) in enumerate(steps, 1)]


def test_rollups_equal_a_rebuild_after_projections_out_of_order_and_redelivered(model: Model):
    rng = random.Random(7)
    visits = [lifecycle(model, f"R-{n}", NOW - timedelta(days=rng.randint(0, 100), hours=rng.randint(0, 23)),
                        clinician=n % 2, payer=(n // 2) % 2, rng=rng) for n in range(8)]
    # Each visit stops at a different step; its snapshots arrive shuffled, some twice (Temporal's retries).
    deliveries = []
    for n, snaps in enumerate(visits):
        mine = snaps[: 1 + n % len(snaps)]
        sent = mine + rng.sample(mine, k=min(2, len(mine)))
        rng.shuffle(sent)
        deliveries += [(n, s) for s in sent]
    rng.shuffle(deliveries)
    for _, snap in deliveries:
        model.project(snap)
        stored, rebuilt = model.stored_vs_rebuilt()
        assert stored == +rebuilt, f"after {snap.spec.visit_id} v{snap.version}"
    assert {"note_lag", "note_lag_week", "held_visits"} <= {figure for figure, *_ in stored}

    rows_before = model.stored_vs_rebuilt()[0]
    assert rollups.rebuild(model.engine) == len(rows_before)
    assert model.stored_vs_rebuilt()[0] == rows_before

    # The dashboard's figures are those of the visits themselves.
    with Session(model.engine) as s:
        d = queries.dashboard(s, NOW, timedelta(hours=24), timedelta(hours=24))
        by_state = dict(s.exec(select(Visit.state, func.count()).group_by(Visit.state)).all())
        assert {state: n for state, _, n in d.states if n} == by_state
        holds = dict(s.exec(select(VisitHold.rule_id, func.count()).group_by(VisitHold.rule_id)).all())
        assert {rule: n for rule, _, n in d.holds} == holds
        late = s.exec(select(func.count()).select_from(VisitTask).where(VisitTask.kind == "note_overdue")).one()
        assert dict(d.escalations)["Late notes, escalated"] == late
        lags = [(v.note_submitted_at - v.scheduled_end) for v in s.exec(select(Visit)).all()
                if v.note_submitted_at is not None and v.service_date >= (NOW - timedelta(days=90)).date()]
        assert d.lag_count == len(lags)
        assert d.lag_counts[0] == sum(1 for lag in lags if lag <= timedelta(hours=24))
        assert d.lag_counts[2] == sum(1 for lag in lags if lag > timedelta(hours=48))
        ready = s.exec(select(func.count(), func.sum(Visit.billable_units)).where(Visit.state == "claim_ready")).one()
        bill = queries.ready_to_bill(s, queries.BillingFilter(), None)
        assert bill.count == ready[0] and sum(g.count for g in bill.page.items) == ready[0]
        assert bill.amount_cents == sum(
            v.billable_units * (500 + n) for n, payer in enumerate(model.payers, 1)
            for v in s.exec(select(Visit).where(Visit.state == "claim_ready", Visit.payer_id == payer.id)).all())
        waiting = s.exec(select(func.count()).select_from(VisitHold).where(VisitHold.role == Role.supervisor)).one()
        assert sum(next(b for b in d.backlogs if b.name == "Exceptions to decide").buckets) == waiting


def test_note_lag_reads_the_window_s_first_days_by_the_day_and_the_rest_by_the_week(model: Model):
    rng = random.Random(3)
    for d in range(70, 100):  # a month of notes across the window's start (90 days back), two a day
        for k in range(2):
            model.project(lifecycle(model, f"LAG-{d}-{k}", NOW - timedelta(days=d, hours=k), rng=rng)[2])
    with Session(model.engine) as s:
        since = (NOW - timedelta(days=90)).date()
        lags = sorted(rollups.lag_bucket((v.note_submitted_at - v.scheduled_end).total_seconds())
                      for v in s.exec(select(Visit)).all() if v.service_date >= since)
        for due, late in ((timedelta(hours=24), timedelta(hours=24)), (timedelta(hours=3), timedelta(hours=1))):
            d = queries.dashboard(s, NOW, due, late)
            assert d.lag_count == len(lags) and 0 < len(lags) < 60
            assert d.lag_counts == [sum(1 for m in lags if m <= due.total_seconds() / 60),
                                    sum(1 for m in lags if due.total_seconds() / 60 < m <= (due + late).total_seconds() / 60),
                                    sum(1 for m in lags if m > (due + late).total_seconds() / 60)]
        assert d.lag_median_h == (lags[(len(lags) - 1) // 2] + lags[len(lags) // 2]) / 2 / 60
        assert d.lag_p90_h == lags[math.ceil(0.9 * len(lags)) - 1] / 60
        weeks = s.exec(select(func.count()).select_from(VisitRollup).where(VisitRollup.figure == "note_lag_week")).one()
        assert 0 < weeks < len(lags) * 2  # a few weeks hold what ~60 days of rows hold
    stored, rebuilt = model.stored_vs_rebuilt()
    assert stored == +rebuilt


def revenue_from_the_visits(s: Session, now: datetime) -> dict:
    """Revenue at risk counted straight from the holds and visits (what the rollups must equal)."""
    rates = dict(s.exec(select(Payer.id, Payer.rate_per_unit_cents)).all())
    value, since, rules = {}, {}, {}
    for visit_id, rule_id, opened, units, start, end, payer in s.exec(
            select(VisitHold.visit_id, VisitHold.rule_id, VisitHold.opened_at, Visit.billable_units,
                   Visit.scheduled_start, Visit.scheduled_end, Visit.payer_id).join(Visit)).all():
        units = units if units is not None else max(int((end - start).total_seconds() // 900), 0)
        value[visit_id] = units * rates[payer]
        at = math.floor(as_utc(opened).timestamp())
        since[visit_id] = min(since.get(visit_id, at), at)
        rules.setdefault(rule_id, set()).add(visit_id)
    ages = {v: (now.timestamp() - at) / 86400 for v, at in since.items()}
    by_age = [0, 0, 0, 0]
    for v, days in ages.items():
        by_age[0 if days < 2 else 1 if days <= 7 else 2 if days <= 30 else 3] += value[v]
    schedule = {(r.payer_id, r.service_code, r.modifier_key): r.rate_per_unit_cents for r in s.exec(select(PayerRate))}
    ready = [(units, schedule.get((payer, code, ":".join(m.upper() for m in mods)), rates[payer]))
             for units, payer, code, mods in s.exec(select(Visit.billable_units, Visit.payer_id, Visit.service_code,
                                                           Visit.modifiers).where(Visit.state == "claim_ready"))]
    return {"held": sorted(((r, len(ids), sum(value[v] for v in ids)) for r, ids in rules.items()),
                           key=lambda r: (-r[2], r[0])),
            "held_by_age": by_age, "held_cents": sum(value.values()), "ready_visits": len(ready),
            "ready_cents": sum(u * rate for u, rate in ready),
            "median": statistics.median(ages.values()) if ages else None}


def test_revenue_at_risk_comes_from_the_rollups_and_equals_the_visits(model: Model):
    with Session(model.engine) as s:
        assert revenue_at_risk(s, NOW, agency_day(NOW)).hold_days_median is None
    ages = [timedelta(hours=3), timedelta(days=2) - timedelta(seconds=5), timedelta(days=2, seconds=5),
            timedelta(days=7), timedelta(days=7, seconds=1), timedelta(days=12), timedelta(days=30, seconds=-1),
            timedelta(days=45)]
    for n, age in enumerate(ages):
        snaps = lifecycle(model, f"HELD-{n}", NOW - timedelta(days=50), payer=n % 2)
        if n % 3 == 2:  # held before its note: no units yet, its scheduled quarter hours stand in
            snap = snaps[0].model_copy(update={"state": VisitState.on_hold, "holds": snaps[3].holds[2:],
                                               "version": 2})
        else:
            snap = snaps[3]
        model.project(snap)
        with write_session(model.engine) as s:  # as if the first hold opened `age` ago (a later one: an hour on)
            first = s.exec(select(VisitHold).where(VisitHold.visit_id == f"HELD-{n}")).all()
            for k, hold in enumerate(first):
                hold.opened_at = NOW - age + timedelta(hours=k)
                s.add(hold)
            s.commit()
    with write_session(model.engine) as s:  # the fee schedule prices payer 1's T1019 with U1 on its own
        s.add(PayerRate(payer_id=model.payers[0].id, service_code="T1019", modifiers=["U1"], modifier_key="U1",
                        rate_per_unit_cents=777))
        s.commit()
    for n in range(3):
        snap = lifecycle(model, f"READY-{n}", NOW - timedelta(days=3), payer=n % 2)[4]
        if n == 0:  # the modifier as a schedule may spell it
            snap = snap.model_copy(update={"spec": snap.spec.model_copy(update={"modifiers": ["u1"]})})
        model.project(snap)
    rollups.rebuild(model.engine)
    with Session(model.engine) as s:
        for now in (NOW, NOW + timedelta(seconds=6), NOW + timedelta(days=20)):
            r, want = revenue_at_risk(s, now, agency_day(now)), revenue_from_the_visits(s, now)
            assert [(h.rule_id, h.visits, h.cents) for h in r.held] == want["held"]
            assert r.held_by_age == want["held_by_age"] and r.held_cents == want["held_cents"] > 0
            assert (r.ready_visits, r.ready_cents) == (want["ready_visits"], want["ready_cents"])
            assert r.ready_visits == 3 and r.ready_cents == 8 * 777 + 8 * 502 + 8 * 501
            bill = queries.ready_to_bill(s, queries.BillingFilter(), None)
            assert (bill.count, bill.amount_cents) == (r.ready_visits, r.ready_cents)
            day = (NOW - timedelta(days=3)).astimezone(ZoneInfo("America/Chicago")).date()
            one_payer = queries.ready_to_bill(s, queries.BillingFilter(payer_id=model.payers[0].id, date_from=day,
                                                                       date_to=day), None)
            assert (one_payer.count, one_payer.amount_cents) == (2, 8 * 777 + 8 * 501)
            assert queries.ready_to_bill(s, queries.BillingFilter(date_from=day + timedelta(days=1)), None).count == 0
            assert r.hold_days_median == pytest.approx(want["median"])
        later = NOW + timedelta(seconds=6)
        assert (revenue_at_risk(s, NOW, agency_day(NOW)).held_by_age[0]
                != revenue_at_risk(s, later, agency_day(later)).held_by_age[0])
    # A visit released from its hold takes its dollars with it, through the projection.
    model.project(lifecycle(model, "HELD-0", NOW - timedelta(days=50))[4])
    stored, rebuilt = model.stored_vs_rebuilt()
    assert stored == +rebuilt
    with Session(model.engine) as s:
        r, want = revenue_at_risk(s, NOW, agency_day(NOW)), revenue_from_the_visits(s, NOW)
        assert (r.held_cents, r.ready_visits) == (want["held_cents"], 4)


def test_projecting_only_the_new_timeline_entries_writes_what_the_whole_snapshot_writes(model: Model):
    """Visits started since the lean lifecycle send `project_visit_changes` (each snapshot's timeline holds only the
    entries the read model has not had); its rows and counts are those the whole snapshots write."""
    rng = random.Random(11)
    for n in range(6):
        start = NOW - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23))
        whole = lifecycle(model, f"W-{n}", start, clinician=n % 2, payer=n % 2, rng=random.Random(n))
        new_only = lifecycle(model, f"C-{n}", start, clinician=n % 2, payer=n % 2, rng=random.Random(n))
        seen = 0
        for w, c in zip(whole, new_only):
            changes = c.model_copy(update={"timeline": c.timeline[seen:]})
            seen = len(c.timeline)
            model.project(w)
            for _ in range(1 + rng.randint(0, 1)):  # some re-delivered (Temporal's retries)
                model.env.run(model.activities.project_visit_changes, changes)
            stored, rebuilt = model.stored_vs_rebuilt()
            assert stored == +rebuilt, f"after C-{n} v{c.version}"
            with Session(model.engine) as s:
                def rows(visit_id: str):
                    v = s.get(Visit, visit_id)
                    columns = {k: val for k, val in v.model_dump().items() if k not in ("id", "workflow_id",
                               "created_at", "updated_at", "snapshot")}
                    snapshot = {k: val for k, val in v.snapshot.items() if k != "spec"}
                    holds = [(h.rule_id, h.gate, h.role, h.key, h.message, h.approvable) for h in s.exec(
                        select(VisitHold).where(VisitHold.visit_id == visit_id).order_by(VisitHold.id))]
                    tasks = sorted((t.kind, t.role, t.clinician_id, t.title, t.due_at, t.escalated, t.hold_key)
                                   for t in s.exec(select(VisitTask).where(VisitTask.visit_id == visit_id)))
                    events = [(e.seq, e.kind, e.state) for e in s.exec(
                        select(VisitEvent).where(VisitEvent.visit_id == visit_id).order_by(VisitEvent.seq))]
                    return columns, snapshot, holds, tasks, events
                assert rows(f"C-{n}") == rows(f"W-{n}"), f"C-{n} v{c.version}"
    # Holds kept from one version to the next keep the time they opened (the dashboard ages them from it).
    snaps = lifecycle(model, "KEEP-1", NOW - timedelta(days=1))
    model.env.run(model.activities.project_visit_changes, snaps[3])
    with Session(model.engine) as s:
        opened = sorted(s.exec(select(VisitHold.key, VisitHold.opened_at).where(VisitHold.visit_id == "KEEP-1")))
    later = snaps[3].model_copy(update={"version": 9, "timeline": [], "tasks": snaps[3].tasks[:1]})
    model.env.run(model.activities.project_visit_changes, later)
    with Session(model.engine) as s:
        assert sorted(s.exec(select(VisitHold.key, VisitHold.opened_at).where(VisitHold.visit_id == "KEEP-1"))) \
            == opened
        assert len(s.exec(select(VisitTask).where(VisitTask.visit_id == "KEEP-1")).all()) == 1
    assert model.stored_vs_rebuilt()[0] == +model.stored_vs_rebuilt()[1]


def test_backlog_ages_are_exact_to_the_second(model: Model):
    snaps = lifecycle(model, "AGE-1", NOW - timedelta(days=3))
    model.project(snaps[3])  # on hold: the holds opened now
    with write_session(model.engine) as s:  # as if they opened 1 day minus 2 s ago: 2 s later they are 1+ d
        opened = NOW - timedelta(days=1) + timedelta(seconds=2)
        s.execute(update(VisitHold).values(opened_at=opened))
        s.commit()
    rollups.rebuild(model.engine)
    with Session(model.engine) as s:
        def fixes(now):
            return next(b for b in queries.dashboard(s, now, timedelta(hours=24), timedelta(hours=24)).backlogs
                        if b.name == "EVV and note fixes").buckets
        assert fixes(NOW) == [2, 0, 0, 0]
        assert fixes(NOW + timedelta(seconds=3)) == [0, 2, 0, 0]
        assert fixes(NOW + timedelta(days=9)) == [0, 0, 0, 2]


def test_rebuild_from_snapshots_fills_the_dashboard_columns(model: Model):
    snaps = lifecycle(model, "OLD-1", NOW - timedelta(days=2))
    model.project(snaps[4])
    with write_session(model.engine) as s:  # as a visit projected before migration 0006 has them
        s.execute(update(Visit).values(note_submitted_at=None, sign_waiting_since=None, ready_since=None))
        s.commit()
    rollups.rebuild(model.engine, from_snapshots=True)
    with Session(model.engine) as s:
        row = s.get(Visit, "OLD-1")
        assert row.note_submitted_at == snaps[4].note.submitted_at
        assert row.ready_since == snaps[4].timeline[-1].at
        assert s.exec(select(func.count()).select_from(Visit)).one() == 1
    stored, rebuilt = model.stored_vs_rebuilt()
    assert stored == +rebuilt and ("backlog", rollups.READY_TO_BILL, rollups.epoch(row.ready_since), 0) in stored


# --- keyset paging ------------------------------------------------------------------------------------


def schedule(model: Model, visit_id: str, start: datetime, clinician: int = 0) -> None:
    model.project(lifecycle(model, visit_id, start, clinician)[0])


@pytest.fixture
async def api(model: Model, tmp_path):
    app = create_app(Settings(database_url=model.url, data_dir=tmp_path), temporal=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


def as_user(model: Model, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-{model.users[role].username}"}


async def all_pages(api, model: Model, role: str, url: str, between=None) -> list[str]:
    seen, pages = [], 0
    while url:
        answer = await api.get(url, headers=as_user(model, role))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += [v["id"] for v in body["items"]]
        url = body["next"]
        pages += 1
        if between:
            between(pages)
    return seen


async def test_keyset_pages_never_skip_or_repeat_while_visits_arrive(model: Model, api):
    same = NOW - timedelta(days=1)  # many visits at one start: the id breaks the tie
    first = [f"K-{n:02d}" for n in range(7)]
    for n, visit_id in enumerate(first):
        schedule(model, visit_id, same if n < 5 else same - timedelta(hours=n))
    arrivals = iter(range(100))

    def new_visits_arrive(_page: int) -> None:  # newer, older and tied with what was read
        n = next(arrivals)
        for start in (NOW + timedelta(days=1), same, same - timedelta(days=9)):
            schedule(model, f"N-{n}-{start:%d%H}", start)

    seen = await all_pages(api, model, "admin", "/api/visits?limit=2", between=new_visits_arrive)
    assert len(seen) == len(set(seen)), "a visit came twice"
    assert set(first) <= set(seen), "a visit was skipped"
    assert [v for v in seen if v in first] == sorted(first[:5], reverse=True) + first[5:]

    # Equal starts keep their order from one reading to the next.
    again = await all_pages(api, model, "admin", "/api/visits?limit=3")
    assert [v for v in again if v in first] == [v for v in seen if v in first]


async def test_a_clinician_pages_through_only_their_own_visits(model: Model, api):
    for n in range(5):
        schedule(model, f"MINE-{n}", NOW - timedelta(hours=n), clinician=0)
        schedule(model, f"THEIRS-{n}", NOW - timedelta(hours=n), clinician=1)
    seen = await all_pages(api, model, "clinician", "/api/visits?limit=2")
    assert sorted(seen) == [f"MINE-{n}" for n in range(5)]
    # Filtering by another clinician shows nothing rather than their visits.
    other = model.clinicians[1].id
    answer = await api.get(f"/api/visits?clinician={other}", headers=as_user(model, "clinician"))
    assert answer.json()["items"] == [] and answer.json()["total"] == 0


async def test_counts_stop_at_the_cap_and_offset_and_bad_cursors_are_refused(model: Model, api, monkeypatch):
    for n in range(6):
        schedule(model, f"C-{n}", NOW - timedelta(hours=n))
    monkeypatch.setattr(queries, "COUNT_CAP", 4)
    body = (await api.get("/api/visits?limit=2", headers=as_user(model, "admin"))).json()
    assert body["total"] == 4 and body["total_capped"] is True and body["next"].startswith("/api/visits?")
    body = (await api.get("/api/visits?date_from=2000-01-01&date_to=2000-01-02", headers=as_user(model, "admin")))
    assert body.json() == {"total": 0, "total_capped": False, "items": [], "next": None}
    offset = await api.get("/api/visits?offset=50", headers=as_user(model, "admin"))
    assert offset.status_code == 422 and "follow the `next` link" in offset.text
    nul, too_early = queries.encode_cursor(NOW, "V\x001"), queries.encode_cursor("0001-01-01T00:00+05:00", "V")
    for cursor in ("not-a-cursor", nul, too_early):
        bad = await api.get("/api/visits", params={"after": cursor}, headers=as_user(model, "admin"))
        assert bad.status_code == 422 and "not a cursor" in bad.text
    # The calendar's ends are plain dates, not a server error.
    every = await api.get("/api/visits?date_from=0001-01-01&date_to=9999-12-31", headers=as_user(model, "admin"))
    assert every.status_code == 200 and len(every.json()["items"]) == 6


async def test_a_week_of_service_dates_is_the_agency_s_local_week(model: Model, api):
    # 04:30 UTC on the 10th is still the 9th in Chicago.
    day = (NOW - timedelta(days=20)).replace(hour=4, minute=30, second=0)
    schedule(model, "LATE-EVENING", day)
    schedule(model, "NEXT-MORNING", day + timedelta(hours=10))
    local = (day - timedelta(hours=6)).date()
    body = (await api.get(f"/api/visits?date_from={local}&date_to={local}", headers=as_user(model, "admin"))).json()
    assert [v["id"] for v in body["items"]] == ["LATE-EVENING"]
    assert body["items"][0]["service_date"] == local.isoformat()


async def all_queue_pages(api, model: Model, role: str, url: str, between=None) -> tuple[list, list]:
    """Every task and hold of a work queue, page by page along `next`, in the order they came."""
    tasks, holds, pages = [], [], 0
    while url:
        answer = await api.get(url, headers=as_user(model, role))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        tasks += [(t["visit_id"], t["kind"]) for t in body["tasks"]]
        holds += [(h["visit_id"], h["key"]) for by_rule in body["holds_by_reason"].values() for h in by_rule]
        url = body["next"]
        pages += 1
        if between:
            between(pages)
    return tasks, holds


async def test_work_queue_pages_never_skip_or_repeat_while_tasks_arrive(model: Model, api):
    due_soon = NOW - timedelta(days=2)  # several visits share a deadline: the task id breaks the tie
    late, held = [f"LATE-{n}" for n in range(5)], [f"HELD-{n}" for n in range(4)]
    for n, visit_id in enumerate(late):  # escalated note_overdue tasks (a deadline), for the supervisor
        model.project(lifecycle(model, visit_id, due_soon if n < 3 else due_soon - timedelta(hours=n))[1])
    for visit_id in held:  # approve_exception tasks (no deadline) and three holds each
        model.project(lifecycle(model, visit_id, due_soon - timedelta(days=1))[3])
    arrivals = iter(range(3))

    def new_work_arrives(_page: int) -> None:  # escalated work tied with and ahead of what was read; more holds
        if (n := next(arrivals, None)) is not None:
            for start in (due_soon, due_soon - timedelta(days=9)):
                model.project(lifecycle(model, f"NEW-{n}-{start:%d}", start)[1])
            model.project(lifecycle(model, f"NEWHELD-{n}", due_soon)[3])

    tasks, holds = await all_queue_pages(api, model, "supervisor", "/api/tasks?limit=2", between=new_work_arrives)
    assert len(tasks) == len(set(tasks)) and len(holds) == len(set(holds)), "a task or hold came twice"
    wanted = [(v, "note_overdue") for v in late] + [(v, "approve_exception") for v in held]
    assert set(wanted) <= set(tasks), "a task was skipped"
    assert {(v, key) for v in held for key in ("EVV-01:in", "EVV-01:out", "EVV-02:p1")} <= set(holds)
    # Escalated work first, the earliest deadline first; work without a deadline last.
    assert [t for t in tasks if t in wanted] == [(v, "note_overdue") for v in ("LATE-4", "LATE-3", *late[:3])] + [
        (v, "approve_exception") for v in held]

    # Read again without arrivals, it is the same queue whatever the page size.
    again, again_holds = await all_queue_pages(api, model, "supervisor", "/api/tasks?limit=3")
    whole = (await api.get("/api/tasks?limit=500", headers=as_user(model, "supervisor"))).json()
    assert whole["next"] is None
    assert again == [(t["visit_id"], t["kind"]) for t in whole["tasks"]]
    assert again_holds == [(h["visit_id"], h["key"]) for r in whole["holds_by_reason"].values() for h in r]


async def test_work_queue_pages_are_bounded_and_bad_cursors_refused(model: Model, api):
    for n in range(60):
        model.project(lifecycle(model, f"Q-{n:02d}", NOW - timedelta(days=3, minutes=n))[4])  # a release task
    first = (await api.get("/api/tasks", headers=as_user(model, "biller"))).json()
    assert len(first["tasks"]) == 50 and first["next"].startswith("/api/tasks?after=")
    rest = (await api.get(first["next"], headers=as_user(model, "biller"))).json()
    assert len(rest["tasks"]) == 10 and rest["next"] is None
    assert not {t["visit_id"] for t in first["tasks"]} & {t["visit_id"] for t in rest["tasks"]}
    kept = (await api.get("/api/tasks?limit=7", headers=as_user(model, "biller"))).json()
    assert "limit=7" in kept["next"]  # the next page keeps the page size
    assert (await api.get("/api/tasks?limit=501", headers=as_user(model, "biller"))).status_code == 422
    visits_cursor = queries.encode_cursor(NOW, "V-1")
    out_of_range = queries.encode_cursor(9, NOW, 1, None, None, None)
    for cursor in ("not-a-cursor", visits_cursor, out_of_range):
        bad = await api.get("/api/tasks", params={"after": cursor}, headers=as_user(model, "biller"))
        assert bad.status_code == 422 and "not a cursor" in bad.text


def test_ui_lists_page_by_cursor_with_a_capped_count(model: Model, monkeypatch):
    for n in range(30):  # on hold: 30 exceptions to decide (and 60 clinician holds)
        model.project(lifecycle(model, f"H-{n:02d}", NOW - timedelta(days=1, minutes=n))[3])
    with Session(model.engine) as s:
        seen, after = [], None
        while True:
            page = queries.exceptions_to_decide(s, None, after)
            seen += [h.visit_id for h in page.items]
            if not page.next_after:
                break
            after = page.next_after
        assert sorted(seen) == [f"H-{n:02d}" for n in range(30)] and len(seen) == len(set(seen))
        assert page.total == 30 and not page.capped
        monkeypatch.setattr(queries, "COUNT_CAP", 10)
        rows, after, pages = [], None, []
        while True:  # 90 holds (two of EVV-01 and one of EVV-02 on each visit), grouped by rule, page by page
            page, on_page = queries.holds_by_rule(s, None, after, NOW)
            pages.append(page)
            rows += [r.row_id for g in page.items for r in g.rows]
            assert on_page == sum(len(g.rows) for g in page.items)
            if not page.next_after:
                break
            after = page.next_after
        assert len(rows) == 90 and len(set(rows)) == 90 and len(pages) == 4
        assert pages[0].first and not pages[1].first and pages[0].total_words == "10+"
        groups = {g.rule_id: g for g in pages[0].items}
        assert groups["EVV-01"].visits == 30 and groups["EVV-01"].total == 60  # a visit held twice counts once


def test_an_upgraded_database_gets_its_rollups_when_migrated(model: Model):
    snaps = lifecycle(model, "UPGRADED-1", NOW - timedelta(days=2))
    model.project(snaps[3])
    with write_session(model.engine) as s:  # as migration 0006 leaves a database with visits in it
        s.execute(update(Visit).values(note_submitted_at=None, sign_waiting_since=None, ready_since=None))
        s.execute(delete(VisitRollup))
        s.commit()
    migrate(model.url)  # what `visitflow up` and `visitflow migrate` run at start
    with Session(model.engine) as s:
        assert s.get(Visit, "UPGRADED-1").note_submitted_at == snaps[3].note.submitted_at
    stored, rebuilt = model.stored_vs_rebuilt()
    assert stored and stored == +rebuilt


# Each migration that adds rollup figures: the revision before it, a row as the older code kept it (off by now),
# the figures it adds, and the ones it stops keeping.
ROLLUP_MIGRATIONS = [
    ("0012", ("state", "documented"), ("note_lag_week", "held_value", "held_day_visits", "held_day_value",
                                       "held_at_visits", "held_at_value"), ()),
    ("0015", ("task", "1|write_note|0"), ("team", "task_total", "exception_total"), ("task",)),
]


@pytest.mark.parametrize("before, stale, added, dropped", ROLLUP_MIGRATIONS, ids=["0013", "0016"])
def test_a_database_with_rollups_gets_the_new_figures_when_migrated(model: Model, before, stale, added, dropped):
    from alembic import command
    from alembic.config import Config

    from visitflow.db.session import MIGRATIONS, normalise_url

    model.project(lifecycle(model, "BEFORE-1", NOW - timedelta(days=2))[3])  # held, with a note lag, open tasks
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(model.url))
    cfg.attributes["engine"] = model.engine
    command.downgrade(cfg, before)  # the older code's `migrate` counts its own figures afresh
    assert model.stored_vs_rebuilt()[0] == {}
    with write_session(model.engine) as s:  # rollups as the older code kept them (here: one, off by now)
        s.add(VisitRollup(figure=stale[0], key=stale[1], at=0, bucket=0, n=3))
        s.commit()
    migrate(model.url)
    stored, rebuilt = model.stored_vs_rebuilt()
    figures = {f for f, *_ in stored}
    assert stored == +rebuilt and set(added) <= figures and not set(dropped) & figures



def team_from_the_tables(s: Session) -> dict[int, dict[str, int]]:
    """The team table counted straight from the open tasks and holds, as a supervisor would tally them."""
    team: dict[int, dict[str, int]] = {}
    for kind, escalated, cid in s.exec(select(VisitTask.kind, VisitTask.escalated, VisitTask.clinician_id)):
        column = {("write_note", True): "late_notes", ("sign_note", True): "late_signatures",
                  ("write_note", False): "on_time", ("sign_note", False): "on_time",
                  ("note_overdue", True): "escalated", ("signature_overdue", True): "escalated",
                  ("fix_evv", False): "fixes", ("fix_note", False): "fixes"}.get((kind, escalated))
        if cid and column:
            team.setdefault(cid, Counter())[column] += 1
    for cid, role in s.exec(select(Visit.clinician_id, VisitHold.role).join(Visit, Visit.id == VisitHold.visit_id)):
        if role == Role.supervisor:
            team.setdefault(cid, Counter())["exceptions"] += 1
    return team


def test_the_team_table_is_ranked_by_the_database_and_equals_the_tasks(model: Model, monkeypatch):
    # Two clinicians: one with two late notes ranks first; the other's exceptions (counted for the clinician
    # whose visit it is), fixes and work on time put them second.
    for n, (clinician, step) in enumerate([(0, 1), (0, 1), (1, 3), (1, 0), (1, 2)]):
        model.project(lifecycle(model, f"TEAM-{n}", NOW - timedelta(days=2), clinician=clinician)[step])
    with Session(model.engine) as s:
        want = team_from_the_tables(s)
        shown, more = queries.team_overdue(s)
        assert more == 0 and len(shown) == len(want) == 2
        assert {r.clinician_id: {c: getattr(r, c) for c in rollups.TEAM_COLUMNS if getattr(r, c)} for r in shown} \
            == {cid: dict(+counts) for cid, counts in want.items()}
        assert [r.overdue for r in shown] == sorted((r.overdue for r in shown), reverse=True)
        assert shown[0].clinician_id == model.clinicians[0].id and shown[0].late_notes == 2
        monkeypatch.setattr(queries, "TEAM_SHOWN", 1)  # one shown; the chosen one is added wherever it ranks
        assert queries.team_overdue(s) == (shown[:1], 1)
        shown, more = queries.team_overdue(s, selected=model.clinicians[1].id)
        assert [r.clinician_id for r in shown] == [model.clinicians[0].id, model.clinicians[1].id] and more == 0
        dashboard = queries.dashboard(s, NOW, timedelta(hours=24), timedelta(hours=24))
        late_escalated = dict(dashboard.escalations)
        assert late_escalated["Late notes, escalated"] == 2
        assert late_escalated["Exceptions awaiting a decision"] == s.exec(
            select(func.count()).select_from(VisitHold).where(VisitHold.approvable)).one() > 0


def test_a_visit_past_its_filing_limit_is_held_for_clm_07_not_ready_to_bill(model: Model):
    """Release refuses a claim-ready visit past its payer's filing limit (CLM-07), so the money panel counts it
    held for CLM-07, not ready to bill, and the billing list says so; from the ready rollups, by date of service."""
    today = agency_day(NOW)
    for visit_id, days in (("ON-TIME", 10), ("LATE", 40)):
        model.project(lifecycle(model, visit_id, NOW - timedelta(days=days))[4])
    with write_session(model.engine) as s:  # the payer takes claims for 30 days from the date of service
        payer = s.get(Payer, model.payers[0].id)
        payer.filing_limit_days = 30
        s.add(payer)
        s.commit()
    with Session(model.engine) as s:
        rate = model.payers[0].rate_per_unit_cents
        on_time, late = (s.get(Visit, v).billable_units * rate for v in ("ON-TIME", "LATE"))
        r = revenue_at_risk(s, NOW, today)
        assert (r.ready_visits, r.ready_cents) == (1, on_time)
        assert [(h.rule_id, h.visits, h.cents) for h in r.held] == [("CLM-07", 1, late)]
        # Held since the day after its last filing day: 10 days.
        assert r.held_cents == late and r.held_by_age == [0, 0, late, 0]

        bill = queries.ready_to_bill(s, queries.BillingFilter(), None, today)
        assert (bill.count, bill.amount_cents, bill.late, bill.late_cents) == (2, on_time, 1, late)
        filing = {row.visit_id: row.filing for g in bill.page.items for row in g.rows}
        assert filing["LATE"] == "late" and filing["ON-TIME"] != "late"
        day = s.get(Visit, "LATE").service_date
        only_late = queries.ready_to_bill(s, queries.BillingFilter(date_to=day), None, today)
        [group] = only_late.page.items
        assert (group.count, group.amount_cents, group.late, [row.visit_id for row in group.rows]) == (
            1, 0, 1, ["LATE"])
        # Twenty days earlier both were still within the limit: both ready, nothing held.
        earlier = revenue_at_risk(s, NOW, today - timedelta(days=20))
        assert (earlier.ready_visits, earlier.held) == (2, [])
