"""The read model at a year's size (issue 10): keyset paging, capped counts, the dashboard's rollups.

Visits are written by the real projection activity (`project_visit`, run in Temporal's activity test
environment) into a database of each test's own, on SQLite or PostgreSQL like the rest of the suite.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
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
)
from visitflow.security import hash_password, token_digest
from visitflow.services import queries, rollups
from visitflow.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)


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
    assert any(figure == "note_lag" for figure, *_ in stored) and any(f == "held_visits" for f, *_ in stored)

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
