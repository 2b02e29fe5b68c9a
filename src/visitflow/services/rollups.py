"""Running counts behind the dashboard, the revenue panel and the supervisors' team table (`visitrollup`).

A visit contributes a handful of counts (its state, each open hold by rule and by who must act, each open task,
when each of its waits began, its note lag). The projection takes the visit's old contribution away and adds
its new one in the same transaction that moves the visit's version forward, so a re-delivered or late
projection (which changes nothing) counts nothing, and the table always equals a count over the visits:
`rebuild` recomputes it from scratch (`visitflow rebuild-rollups`) and the tests compare the two.

Ages stay exact at every moment because a backlog is counted by the second its wait began, not by its age: the
dashboard sums the last five days' rows into age buckets and takes the older ones from the backlog's total.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import TextClause, delete, select, text
from sqlalchemy.engine import Connection, Engine

from visitflow.db.tables import Visit, VisitHold, VisitRollup, VisitTask
from visitflow.models import Role, VisitSnapshot, VisitState, as_utc

RollupKey = tuple[str, str, int, int]  # (figure, key, at, bucket)

# Backlogs: who must act, and since when (the `key` of the "backlog" rows).
NOTES_TO_WRITE = "notes_to_write"
NOTES_TO_SIGN = "notes_to_sign"
READY_TO_BILL = "ready_to_bill"


def hold_backlog(role: Role | str) -> str:
    return f"hold_{Role(role).value}"


# Lags are counted in minutes, rounded up: to the minute for the first two hours, to 5 minutes up to 6 hours, to
# 15 minutes up to three days, to the hour past that. A deadline in whole quarter hours (24 h, 48 h) splits the
# counts exactly, the median is right to the minute where lags are short, and a day of 10,000 notes fills a
# couple of hundred rows.
def lag_bucket(seconds: float) -> int:
    """The note lag in minutes, rounded up to its bucket."""
    minutes = math.ceil(seconds / 60)
    step = 1 if minutes <= 120 else 5 if minutes <= 6 * 60 else 15 if minutes <= 3 * 24 * 60 else 60
    return math.ceil(minutes / step) * step


def week_of(day: date) -> int:
    """The ordinal of the Monday that starts the day's week (ordinal 1, 1 January 1 AD, was a Monday)."""
    ordinal = day.toordinal()
    return ordinal - (ordinal - 1) % 7


def epoch(at: datetime) -> int:
    return math.floor(as_utc(at).timestamp())


@dataclass
class VisitFacts:
    """What a visit's counts depend on: its row's columns and its open holds and tasks."""

    state: str
    clinician_id: int
    payer_id: int
    service_code: str
    modifiers: list[str]
    billable_units: int | None
    scheduled_start: datetime
    scheduled_end: datetime
    service_date: date
    note_submitted_at: datetime | None
    sign_waiting_since: datetime | None
    ready_since: datetime | None
    holds: list[tuple[str, str, bool, datetime]]  # (role, rule id, approvable, opened at)
    tasks: list[tuple[str, bool, int | None]]  # (kind, escalated, clinician id)


DAY = 86400


def ready_key(payer_id: int, service_code: str, modifiers: list[str]) -> str:
    """"payer|service|modifiers" with the modifiers as the fee schedule keys them (PayerRate.modifier_key)."""
    from visitflow.activities.release import rate_key  # (the activities import this module)

    return f"{payer_id}|{service_code}|{rate_key(modifiers)}"


def read_ready_key(key: str) -> tuple[int, str, list[str]]:
    payer, service_code, modifiers = key.split("|", 2)
    return int(payer), service_code, modifiers.split(":") if modifiers else []


def held_value(v: VisitFacts) -> int:
    """What a held visit is worth, in units: its billable units, or while they are not known yet its scheduled
    time in quarter hours."""
    if v.billable_units is not None:
        return v.billable_units
    return max(int((as_utc(v.scheduled_end) - as_utc(v.scheduled_start)).total_seconds() // 900), 0)


def task_key(clinician_id: int | None, kind: str, escalated: bool) -> str:
    return f"{clinician_id or ''}|{kind}|{int(bool(escalated))}"


# The supervisors' team table: a row per clinician and column (`bucket` is the column's index), so the database
# ranks the clinicians and hands back only the rows shown.
TEAM_COLUMNS = ("late_notes", "late_signatures", "escalated", "on_time", "fixes", "exceptions")


def team_column(kind: str, escalated: bool) -> str | None:
    """Which column of the team table an open task of a clinician counts in."""
    if kind in ("write_note", "sign_note"):
        return "on_time" if not escalated else "late_notes" if kind == "write_note" else "late_signatures"
    if kind in ("note_overdue", "signature_overdue"):
        return "escalated"
    if kind in ("fix_evv", "fix_note"):
        return "fixes"
    return None


def figures(v: VisitFacts) -> Counter[RollupKey]:
    """The counts one visit adds to the rollups."""
    out: Counter[RollupKey] = Counter()

    def backlog(name: str, since: datetime) -> None:
        at = epoch(since)
        out[("backlog", name, at, 0)] += 1  # by the second: read only around the age buckets' edges
        out[("backlog_hour", name, at - at % 3600, 0)] += 1  # by the hour: read for the rest of the last 5 days
        out[("backlog_all", name, 0, 0)] += 1

    out[("state", v.state, 0, 0)] += 1
    for kind, escalated, clinician_id in v.tasks:
        out[("task_total", task_key(None, kind, escalated), 0, 0)] += 1
        column = team_column(kind, escalated)
        if clinician_id and column:
            out[("team", str(clinician_id), 0, TEAM_COLUMNS.index(column))] += 1
        if kind == "write_note":
            backlog(NOTES_TO_WRITE, v.scheduled_end)  # counted once the visit has ended (the reader's clock)
        elif kind == "sign_note" and v.sign_waiting_since is not None:
            backlog(NOTES_TO_SIGN, v.sign_waiting_since)
    for role, rule_id, approvable, opened_at in v.holds:
        out[("holds", f"{rule_id}|{v.payer_id}", 0, 0)] += 1
        backlog(hold_backlog(role), opened_at)
        if Role(role) == Role.supervisor:
            out[("team", str(v.clinician_id), 0, TEAM_COLUMNS.index("exceptions"))] += 1
            out[("exception_total", str(int(bool(approvable))), 0, 0)] += 1
    for rule_id in {rule_id for _, rule_id, _, _ in v.holds}:  # a visit held twice by one rule counts once
        out[("held_visits", f"{rule_id}|{v.payer_id}", 0, 0)] += 1
        out[("held_units", f"{rule_id}|{v.payer_id}", 0, 0)] += v.billable_units or 0
        out[("held_value", f"{rule_id}|{v.payer_id}", 0, 0)] += held_value(v)
    if v.holds:
        # Revenue at risk: a held visit's value (in units; the payer's rate turns them into dollars when read)
        # by when its first open hold began, by the day (read whole) and by the second (summed by the database
        # only in the days an age bucket's edge or the median falls in), as the backlogs are.
        at = epoch(min(opened_at for *_, opened_at in v.holds))
        out[("held_day_visits", "", at - at % DAY, 0)] += 1
        out[("held_day_value", str(v.payer_id), at - at % DAY, 0)] += held_value(v)
        out[("held_at_visits", "", at, 0)] += 1
        out[("held_at_value", str(v.payer_id), at, 0)] += held_value(v)
    if v.state == VisitState.claim_ready.value:
        # The biller's totals by what sets their price (payer, service, modifiers: the fee schedule's key) and
        # date of service, so the dollars ready to bill are the claims' dollars for any range of dates.
        key = ready_key(v.payer_id, v.service_code, v.modifiers)
        out[("ready", key, v.service_date.toordinal(), 0)] += 1
        out[("ready_units", key, v.service_date.toordinal(), 0)] += v.billable_units or 0
        if v.ready_since is not None:
            backlog(READY_TO_BILL, v.ready_since)
    if v.state != VisitState.scheduled.value and v.note_submitted_at is not None:
        lag = lag_bucket((as_utc(v.note_submitted_at) - as_utc(v.scheduled_end)).total_seconds())
        out[("note_lag", "", v.service_date.toordinal(), lag)] += 1
        # The same by week of service (Monday's ordinal), so the dashboard's 90 days read ~13 weeks of rows and
        # only the days before the window's first Monday by the day.
        out[("note_lag_week", "", week_of(v.service_date), lag)] += 1
    return out


def snapshot_columns(snap: VisitSnapshot) -> dict[str, datetime | None]:
    """The dashboard's columns, copied out of a snapshot by the projection (and by a rebuild from snapshots)."""
    def last(kinds: set[str]) -> datetime | None:
        return max((e.at for e in snap.timeline if e.kind in kinds), default=None)

    return {"note_submitted_at": snap.note.submitted_at if snap.note else None,
            "sign_waiting_since": last({"note_submitted", "sent_back"}),
            "ready_since": last({VisitState.claim_ready.value})}


def timeline_columns(timeline: list[dict]) -> dict[str, datetime | None]:
    """`sign_waiting_since` and `ready_since` from a stored (JSON) timeline: a projection that brings only the
    new entries reads them from the whole timeline, stored entries and new ones together."""
    def last(kinds: set[str]) -> datetime | None:
        times = [datetime.fromisoformat(e["at"]) for e in timeline if e["kind"] in kinds]
        return max(times) if times else None

    return {"sign_waiting_since": last({"note_submitted", "sent_back"}),
            "ready_since": last({VisitState.claim_ready.value})}


VISIT_COLUMNS = (Visit.id, Visit.state, Visit.clinician_id, Visit.payer_id, Visit.service_code, Visit.modifiers,
                 Visit.billable_units,
                 Visit.scheduled_start, Visit.scheduled_end, Visit.service_date, Visit.note_submitted_at, Visit.sign_waiting_since,
                 Visit.ready_since)


def stored_facts(db: Connection, visit_ids: list[str]) -> dict[str, VisitFacts]:
    """The facts of stored visits, as their rows, holds and tasks are now."""
    facts = {row[0]: VisitFacts(*row[1:], holds=[], tasks=[])
             for row in db.execute(select(*VISIT_COLUMNS).where(Visit.id.in_(visit_ids)))}
    for visit_id, *hold in db.execute(select(VisitHold.visit_id, VisitHold.role, VisitHold.rule_id,
                                             VisitHold.approvable, VisitHold.opened_at)
                                      .where(VisitHold.visit_id.in_(visit_ids))):
        facts[visit_id].holds.append(tuple(hold))
    for visit_id, *task in db.execute(select(VisitTask.visit_id, VisitTask.kind, VisitTask.escalated,
                                             VisitTask.clinician_id).where(VisitTask.visit_id.in_(visit_ids))):
        facts[visit_id].tasks.append(tuple(task))
    return facts


_ROLLUP = VisitRollup.__table__.name
_UPSERTS: dict[int, TextClause] = {}
_DELETES: dict[int, TextClause] = {}


def _upsert(rows: int) -> TextClause:
    """One INSERT ... ON CONFLICT for `rows` rows (the same SQL on SQLite and PostgreSQL), built once per size: one
    statement instead of one per row keeps the projection's write-lock hold short (on SQLite every statement
    step lets go of the GIL, and getting it back can cost a thread switch interval)."""
    if rows not in _UPSERTS:
        values = ", ".join(f"(:f{i}, :k{i}, :a{i}, :b{i}, :n{i})" for i in range(rows))
        _UPSERTS[rows] = text(
            f'INSERT INTO {_ROLLUP} (figure, "key", "at", bucket, n) VALUES {values} '
            f'ON CONFLICT (figure, "key", "at", bucket) DO UPDATE SET n = {_ROLLUP}.n + excluded.n')
    return _UPSERTS[rows]


def _delete_emptied(rows: int) -> TextClause:
    """Remove those of `rows` rows that fell to zero, in one statement (each term is a lookup by the unique key)."""
    if rows not in _DELETES:
        keys = " OR ".join(f'(figure = :f{i} AND "key" = :k{i} AND "at" = :a{i} AND bucket = :b{i})'
                           for i in range(rows))
        _DELETES[rows] = text(f"DELETE FROM {_ROLLUP} WHERE n = 0 AND ({keys})")
    return _DELETES[rows]


def _params(changes: list[tuple[RollupKey, int]], with_n: bool) -> dict:
    params: dict = {}
    for i, ((f, k, at, b), n) in enumerate(changes):
        params.update({f"f{i}": f, f"k{i}": k, f"a{i}": at, f"b{i}": b})
        if with_n:
            params[f"n{i}"] = n
    return params


class Change:
    """A change to the counts, its statements and parameters made ready before the projection takes the lock."""

    def __init__(self, delta: Counter[RollupKey]) -> None:
        # Rows are touched in key order, so two projections at once on PostgreSQL lock them in the same order and
        # never deadlock.
        changes = sorted((k, n) for k, n in delta.items() if n)
        emptied = [(k, n) for k, n in changes if n < 0]
        self.upsert = (_upsert(len(changes)), _params(changes, with_n=True)) if changes else None
        self.delete = (_delete_emptied(len(emptied)), _params(emptied, with_n=False)) if emptied else None


def apply(db: Connection, delta: Counter[RollupKey] | Change) -> None:
    """Add a change to the counts (inside the projection's transaction); rows at zero go."""
    ready = delta if isinstance(delta, Change) else Change(delta)
    for statement in (ready.upsert, ready.delete):
        if statement is not None:
            db.execute(*statement)


def change(old: VisitFacts | None, new: VisitFacts) -> Counter[RollupKey]:
    delta = figures(new)
    if old is not None:
        delta.subtract(figures(old))
    return delta


def count_all(db: Connection, batch: int = 5000) -> Counter[RollupKey]:
    """Every visit's counts, added up from the visits, their holds and their tasks (a page of visits at a time)."""
    total: Counter[RollupKey] = Counter()
    last = ""
    while True:
        ids = list(db.execute(select(Visit.id).where(Visit.id > last).order_by(Visit.id).limit(batch)).scalars())
        if not ids:
            return total
        for facts in stored_facts(db, ids).values():
            total.update(figures(facts))
        last = ids[-1]


def backfill_columns(db: Connection, batch: int = 2000) -> int:
    """Copy the dashboard's columns out of every visit's snapshot (once, for visits projected before 0006)."""
    from sqlalchemy import update

    done, last = 0, ""
    while True:
        rows = db.execute(select(Visit.id, Visit.snapshot).where(Visit.id > last).order_by(Visit.id)
                          .limit(batch)).all()
        if not rows:
            return done
        for visit_id, snapshot in rows:
            db.execute(update(Visit).where(Visit.id == visit_id).values(
                **snapshot_columns(VisitSnapshot.model_validate(snapshot))))
        done += len(rows)
        last = rows[-1][0]


def rebuild(engine: Engine, from_snapshots: bool = False) -> int:
    """Recompute the rollups from the visits (and first, if asked, the dashboard's columns from the snapshots).
    Returns how many rollup rows there are. Projections wait for it: it holds the rollups' lock throughout."""
    from visitflow.db.session import write_session

    with write_session(engine) as s:
        db = s.connection()
        if db.dialect.name == "postgresql":
            # Projections wait at their first rollup change until this commits (the dashboard still reads).
            # One already past its visit row but not yet here is counted as it was, and its change then lands
            # on top; one that got here first is waited for.
            db.exec_driver_sql("LOCK TABLE visitrollup IN EXCLUSIVE MODE")
        # (On SQLite the write session already holds the database's one write lock.)
        if from_snapshots:
            backfill_columns(db)
        n = recount(db)
        s.commit()
        return n


def recount(db: Connection) -> int:
    """Replace the rollups with a count over the visits (inside the caller's transaction and lock); returns how
    many rows there are. Also what a migration that adds figures runs on a database that has visits."""
    counts = count_all(db)
    db.execute(delete(VisitRollup))
    rows = [{"figure": f, "key": k, "at": at, "bucket": b, "n": n} for (f, k, at, b), n in sorted(counts.items()) if n]
    for i in range(0, len(rows), 5000):
        db.execute(VisitRollup.__table__.insert(), rows[i:i + 5000])
    return len(rows)


def recount_if_counted(db: Connection) -> None:
    """What a migration that adds figures runs: a database that already keeps rollups gets them recounted, so the
    new figures are right from the first start after the upgrade. (One with visits but no rollups yet gets them
    from `migrate`, after the last migration.)"""
    if db.execute(text("SELECT 1 FROM visitrollup LIMIT 1")).first() is not None:
        recount(db)


def stored(db: Connection) -> Counter[RollupKey]:
    """The rollups as kept (for comparing with a rebuild)."""
    return Counter({(f, k, at, b): n for f, k, at, b, n in db.execute(
        select(VisitRollup.figure, VisitRollup.key, VisitRollup.at, VisitRollup.bucket, VisitRollup.n))})
