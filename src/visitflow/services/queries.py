"""What the pages show, read from the SQL read model (never from the workflows).

Each function answers one question a person asks of the agency's visits; lists come back a page at a time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, case, cast, func, or_, true, union_all
from sqlalchemy.orm import defer
from sqlmodel import Session, select

from visitflow.catalogue import RULES, STATE_LABELS
from visitflow.db.tables import (
    Authorization,
    Clinician,
    Notification,
    Patient,
    Payer,
    PayerRate,
    User,
    Visit,
    VisitEvent,
    VisitHold,
    VisitRollup,
    VisitTask,
    name_key,
)
from visitflow.models import Role, VisitSnapshot, VisitState, as_utc
from visitflow.services import rollups
from visitflow.services.access import visible

PAGE_SIZE = 25
T = TypeVar("T")


def dom_id(*parts: object) -> str:
    """A safe HTML id (and CSS selector) from visit ids and hold keys like 'EVV-02:punch-1'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(str(p) for p in parts))



@dataclass
class Page(Generic[T]):
    """One page of a list read after a keyset cursor: no OFFSET, so the last page costs what the first does,
    and a row added while someone reads never shifts the next page."""

    items: list[T]
    after: str | None  # the cursor this page starts after; None on the first page
    next_after: str | None  # the cursor of the next page; None on the last
    total: int  # how many in the whole list, counted up to COUNT_CAP
    capped: bool = False  # more than COUNT_CAP
    size: int = PAGE_SIZE

    @property
    def total_words(self) -> str:
        return f"{self.total:,}+" if self.capped else f"{self.total:,}"

    @property
    def first(self) -> bool:
        return self.after is None


# A list's order: (column or expression, descending?, the Python type of its values in a cursor).
SortKey = tuple[Any, bool, type]


def _after(keys: list[SortKey], cursor: tuple) -> Any:
    """Rows after the cursor in the keys' order. The first key's plain bound lets the index seek straight to the
    cursor; the OR of tuples breaks ties on the later keys."""
    first, first_desc, _ = keys[0]
    ties = []
    for i, (column, desc, _) in enumerate(keys):
        equal = [k[0] == v for k, v in zip(keys[:i], cursor[:i], strict=True)]
        ties.append(and_(*equal, column < cursor[i] if desc else column > cursor[i]))
    return and_(first <= cursor[0] if first_desc else first >= cursor[0], or_(*ties))


def _page(session: Session, query, keys: list[SortKey], after: str | None, size: int = PAGE_SIZE,
          count=None) -> tuple[list, Page]:
    """A page of `query`'s rows in the keys' order after the cursor; a cursor that is not one (a stale or
    edited link) starts from the first page. Returns the rows and the page (without its items). `count` is
    the same list as a narrow select (no joins that only add columns), to count it cheaply."""
    total, capped = capped_count(session, count if count is not None else query)
    cursor = decode_cursor(after, *(kind for _, _, kind in keys)) if after else None
    if cursor is not None and all(v is not None for v in cursor):
        query = query.where(_after(keys, cursor))
    else:
        after = None
    rows = session.exec(query.add_columns(*(c for c, _, _ in keys))
                        .order_by(*(c.desc() if d else c for c, d, _ in keys)).limit(size + 1)).all()
    n = len(keys)
    following = encode_cursor(*rows[size - 1][-n:]) if len(rows) > size else None
    return [tuple(r[:-n]) for r in rows[:size]], Page([], after, following, total, capped, size)


def person(p: Patient | Clinician | None) -> str:
    return f"{p.first_name} {p.last_name}" if p else "—"


def clinician_label(c: Clinician) -> str:
    return f"{c.first_name} {c.last_name} ({c.discipline.value})"


def clinicians(session: Session) -> list[Clinician]:
    return list(session.exec(select(Clinician).order_by(Clinician.last_name, Clinician.first_name)))


CLINICIANS_MATCHED = 20  # a name typed into a filter lists at most this many clinicians


def clinicians_named(session: Session, typed: str, limit: int = CLINICIANS_MATCHED) -> list[Clinician]:
    """Clinicians whose first or last name starts with what was typed, in any case ("mar", "Mar", "MAR"); with
    several words ("ana ga"), each word starts one of the names. At most `limit` (+1, so the caller can say there
    are more), by last name. The first word is one index range on each name (`name_key`), so this reads the
    clinicians it finds, not the agency's whole staff."""
    words = typed.lower().split()[:4]
    if not words:
        return []

    def starts(column, word: str):
        key = name_key(column)
        # The next string after every string starting with `word`, byte by byte: its last character moved on one
        # (past the surrogates, which no text holds; after the last code point there is no bound to give).
        following = ord(word[-1]) + 1
        following = 0xE000 if 0xD800 <= following <= 0xDFFF else following
        if following > 0x10FFFF:
            return key >= word
        return and_(key >= word, key < word[:-1] + chr(following))

    query = select(Clinician).where(or_(starts(Clinician.first_name, words[0]), starts(Clinician.last_name, words[0])))
    for word in words[1:]:
        query = query.where(or_(starts(Clinician.first_name, word), starts(Clinician.last_name, word)))
    return list(session.exec(query.order_by(Clinician.last_name, Clinician.first_name, Clinician.id).limit(limit + 1)))


def payers(session: Session) -> list[Payer]:
    return list(session.exec(select(Payer).order_by(Payer.name)))


# --- clinician: my tasks ------------------------------------------------------------------------


@dataclass
class TaskRow:
    visit_id: str
    kind: str
    title: str
    due_at: datetime | None
    escalated: bool  # the clinician was reminded
    patient: str
    address: str
    scheduled_start: datetime
    scheduled_end: datetime
    service_code: str
    chips: list[str] = field(default_factory=list)  # catalogue.TASK_CHIPS keys, most serious first


def _escalated(session: Session, visit_ids: list[str]) -> set[tuple[str, str]]:
    """(visit id, kind) of the page's visits whose note or signature went to a supervisor. Read by visit id
    (a page's few visits) and picked here, so the planner cannot prefer a walk over every escalation."""
    return {(visit_id, kind) for visit_id, kind in session.exec(
        select(VisitTask.visit_id, VisitTask.kind).where(VisitTask.visit_id.in_(visit_ids))).all()
        if kind in ("note_overdue", "signature_overdue")}


def _task_rows(session: Session, rows, now: datetime) -> list[TaskRow]:
    visit_ids = [v.id for _, v, _ in rows]
    escalated = _escalated(session, visit_ids)
    items = []
    for t, v, p in rows:
        chips = []
        ended = as_utc(v.scheduled_end) <= now
        if ended and not any(p_["kind"] == "clock_in" for p_ in v.snapshot.get("punches", [])):
            chips.append("missed")
        if t.kind in ("write_note", "sign_note") and "(sent back: " in t.title:
            chips.append("sent_back")
        if t.due_at is not None and (now - as_utc(t.due_at)).total_seconds() >= 60:
            chips.append("overdue")
        stage = "note" if t.kind == "write_note" else "signature" if t.kind == "sign_note" else None
        if stage and (v.id, f"{stage}_overdue") in escalated:
            chips.append("escalated")
        items.append(TaskRow(visit_id=v.id, kind=t.kind, title=t.title, due_at=t.due_at, escalated=t.escalated,
                             patient=person(p), address=f"{p.address_line}, {p.city}",
                             scheduled_start=v.scheduled_start, scheduled_end=v.scheduled_end,
                             service_code=v.service_code, chips=chips))
    return items


def _clinician_task_query(clinician_id: int):
    return (select(VisitTask, Visit, Patient)
            .join(Visit, Visit.id == VisitTask.visit_id)
            .join(Patient, Patient.id == Visit.patient_id)
            .where(VisitTask.role == Role.clinician, VisitTask.clinician_id == clinician_id))


def _not_yet_ended(now: datetime):
    """A visit still ahead (or under way): its "write the note" task is not work yet."""
    return and_(VisitTask.kind == "write_note", Visit.scheduled_end > now)


NO_DEADLINE = datetime(9999, 12, 31, tzinfo=UTC)  # tasks without a deadline sort after every deadline


def clinician_tasks(session: Session, clinician_id: int, after: str | None, now: datetime) -> Page[TaskRow]:
    """Work to do now, the most urgent first: the earliest deadline (overdue first), then tasks without one."""
    due = func.coalesce(VisitTask.due_at, NO_DEADLINE, type_=VisitTask.__table__.c.due_at.type)
    rows, page = _page(session, _clinician_task_query(clinician_id).where(~_not_yet_ended(now)),
                       [(due, False, datetime), (Visit.scheduled_start, False, datetime), (VisitTask.id, False, int)],
                       after)
    page.items = _task_rows(session, rows, now)
    return page


UPCOMING_SHOWN = 10


def upcoming_visits(session: Session, clinician_id: int, now: datetime) -> tuple[list[TaskRow], int]:
    """The next visits on this clinician's schedule, the soonest first; returns (the first few, how many)."""
    query = _clinician_task_query(clinician_id).where(_not_yet_ended(now))
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(Visit.scheduled_start, VisitTask.id).limit(UPCOMING_SHOWN)).all()
    return _task_rows(session, rows, now), total


# --- supervisor: escalations ------------------------------------------------------------------


@dataclass
class OverdueRow:
    visit_id: str
    stage: str  # note | signature
    due_at: datetime | None
    escalated: bool  # escalated to the supervisor (not only a reminder to the clinician)
    clinician_id: int
    clinician: str
    patient: str
    scheduled_start: datetime
    row_id: str


def overdue_work(session: Session, clinician_id: int | None, after: str | None) -> Page[OverdueRow]:
    """Notes and signatures past their deadline (the clinician was reminded), the latest first."""
    late = [VisitTask.kind.in_(["write_note", "sign_note"]), VisitTask.escalated == true()]
    query = (select(VisitTask, Visit, Patient, Clinician).options(defer(Visit.snapshot))
             .join(Visit, Visit.id == VisitTask.visit_id)
             .join(Patient, Patient.id == Visit.patient_id)
             .join(Clinician, Clinician.id == Visit.clinician_id)
             .where(VisitTask.role == Role.clinician, *late))
    # Counted by kind alone (notes and signatures are only ever a clinician's tasks, so it is the same set):
    # an index-only read of (kind, escalated, due_at, id), where the role, not in that index, made PostgreSQL
    # read the whole task table.
    count = select(VisitTask.id).where(*late)
    if clinician_id:
        query = query.where(Visit.clinician_id == clinician_id)
        count = count.join(Visit, Visit.id == VisitTask.visit_id).where(Visit.clinician_id == clinician_id)
    # Read along the task index (role, escalated, due_at, id); an escalated task always has a deadline.
    rows, page = _page(session, query, [(VisitTask.due_at, False, datetime), (VisitTask.id, False, int)], after,
                       count=count)
    visit_ids = [v.id for _, v, _, _ in rows]
    escalated = _escalated(session, visit_ids)
    items = []
    for t, v, p, c in rows:
        stage = "note" if t.kind == "write_note" else "signature"
        items.append(OverdueRow(
            visit_id=v.id, stage=stage, due_at=t.due_at, escalated=(v.id, f"{stage}_overdue") in escalated,
            clinician_id=c.id, clinician=clinician_label(c), patient=person(p), scheduled_start=v.scheduled_start,
            row_id=dom_id("overdue", v.id, stage)))
    page.items = items
    return page


@dataclass
class HoldRow:
    visit_id: str
    rule_id: str
    key: str
    message: str
    role: Role
    approvable: bool
    opened_at: datetime
    patient: str
    clinician: str
    payer: str
    service_code: str
    service_date: date
    state: str
    row_id: str


def _hold_rows(rows, prefix: str) -> list[HoldRow]:
    return [HoldRow(visit_id=v.id, rule_id=h.rule_id, key=h.key, message=h.message, role=h.role,
                    approvable=h.approvable, opened_at=h.opened_at, patient=person(p), clinician=clinician_label(c),
                    payer=pay.name, service_code=v.service_code, service_date=v.service_date, state=v.state,
                    row_id=dom_id(prefix, v.id, h.key)) for h, v, p, c, pay in rows]


def _holds_query():
    return (select(VisitHold, Visit, Patient, Clinician, Payer).options(defer(Visit.snapshot))
            .join(Visit, Visit.id == VisitHold.visit_id)
            .join(Patient, Patient.id == Visit.patient_id)
            .join(Clinician, Clinician.id == Visit.clinician_id)
            .join(Payer, Payer.id == Visit.payer_id))


def exceptions_to_decide(session: Session, clinician_id: int | None, after: str | None) -> Page[HoldRow]:
    """EVV exceptions and manual time edits a supervisor may approve or reject, the oldest first."""
    decide = [VisitHold.role == Role.supervisor, VisitHold.approvable == true()]
    query = _holds_query().where(*decide)
    count = select(VisitHold.id).where(*decide)
    if clinician_id:
        query = query.where(Visit.clinician_id == clinician_id)
        count = count.join(Visit, Visit.id == VisitHold.visit_id).where(Visit.clinician_id == clinician_id)
    rows, page = _page(session, query, [(VisitHold.opened_at, False, datetime), (VisitHold.id, False, int)], after,
                       count=count)
    page.items = _hold_rows(rows, "exception")
    return page


@dataclass
class TeamRow:
    clinician_id: int
    clinician: str
    late_notes: int = 0
    late_signatures: int = 0
    escalated: int = 0  # of the late ones, escalated to a supervisor
    on_time: int = 0  # notes and signatures not yet due
    fixes: int = 0  # holds sent back to the clinician to fix
    exceptions: int = 0  # exceptions on their visits awaiting a supervisor

    @property
    def overdue(self) -> int:
        return self.late_notes + self.late_signatures


TEAM_SHOWN = 25  # the team table shows the clinicians most behind; a large agency has hundreds


def team_overdue(session: Session, selected: int | None = None) -> tuple[list[TeamRow], int]:
    """The clinicians with the most overdue work first (the first TEAM_SHOWN, and the selected one wherever
    it ranks); returns them and how many more have open work. The database sums the team rollups (a row per
    clinician and column, kept by the projection) and ranks them, so only the rows shown come back."""
    R = VisitRollup
    per_clinician = select(R.key.label("clinician_key"), *[
        func.sum(case((R.bucket == i, R.n), else_=0)).label(column) for i, column in enumerate(rollups.TEAM_COLUMNS)
    ]).where(R.figure == "team").group_by(R.key).subquery()
    t = per_clinician.c
    ranked = (select(t.clinician_key, Clinician, *[t[column] for column in rollups.TEAM_COLUMNS])
              .select_from(per_clinician)
              .outerjoin(Clinician, Clinician.id == cast(t.clinician_key, Integer))
              .order_by((t.late_notes + t.late_signatures).desc(), t.escalated.desc(), t.exceptions.desc(),
                        Clinician.first_name, Clinician.last_name, t.clinician_key))

    def row(found) -> TeamRow:
        key, known, *counts = found
        return TeamRow(clinician_id=int(key), clinician=clinician_label(known) if known else f"clinician {key}",
                       **dict(zip(rollups.TEAM_COLUMNS, map(int, counts), strict=True)))

    shown = [row(found) for found in session.exec(ranked.limit(TEAM_SHOWN)).all()]
    if selected is not None and selected not in {r.clinician_id for r in shown}:
        shown += [row(found) for found in session.exec(ranked.where(t.clinician_key == str(selected))).all()]
    everyone = session.exec(select(func.count()).select_from(per_clinician)).one()
    return shown, everyone - len(shown)


# --- biller: ready to bill and holds ---------------------------------------------------------------


@dataclass
class ReadyRow:
    visit_id: str
    patient: str
    clinician: str
    payer: str
    service_code: str
    modifiers: list[str]
    service_date: date
    units: int | None
    amount_cents: int | None
    auth_number: str | None
    # CLM-07: the payer's last filing day for this date of service, and the days left on it (negative: past).
    filing_deadline: date | None = None
    days_left: int | None = None
    filing: str = "ok"  # ok, soon (within the payer's warning window) or late (held: release refuses it)


def filing_status(service_date: date, payer: Payer, today: date) -> tuple[date, int, str]:
    """CLM-07 for one visit: (last filing day, days left, ok / soon / late)."""
    deadline = service_date + timedelta(days=payer.filing_limit_days)
    left = (deadline - today).days
    return deadline, left, "late" if left < 0 else "soon" if left <= payer.filing_warning_days else "ok"


@dataclass
class BillingFilter:
    payer_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None

    def query_string(self, **extra: Any) -> str:
        from urllib.parse import urlencode

        params = {"payer": self.payer_id or "", "date_from": self.date_from or "", "date_to": self.date_to or "",
                  **extra}
        return urlencode({k: v for k, v in params.items() if v not in ("", None)})


def _ready_where(filters: BillingFilter) -> list:
    """Claim-ready visits (read by the state index) within the biller's filters."""
    where = [Visit.state == VisitState.claim_ready.value]
    if filters.payer_id:
        where.append(Visit.payer_id == filters.payer_id)
    if filters.date_from:
        where.append(Visit.service_date >= filters.date_from)
    if filters.date_to:
        where.append(Visit.service_date <= filters.date_to)
    return where


def unit_rates(session: Session, payer_ids: set[int]):
    """rate(payer_id, service_code, modifiers) in cents per unit: the payer's fee schedule entry for exactly that
    service and modifiers, else the payer's own rate. Two queries for any number of visits."""
    from visitflow.activities.release import rate_key

    ids = sorted(payer_ids)
    flat = dict(session.exec(select(Payer.id, Payer.rate_per_unit_cents).where(Payer.id.in_(ids))).all()) if ids else {}
    schedule = {(r.payer_id, r.service_code, r.modifier_key): r.rate_per_unit_cents
                for r in session.exec(select(PayerRate).where(PayerRate.payer_id.in_(ids)))} if ids else {}

    def rate(payer_id: int, service_code: str, modifiers: list[str]) -> int:
        return schedule.get((payer_id, service_code, rate_key(modifiers)), flat.get(payer_id, 0))

    return rate


@dataclass
class PayerGroup:
    """One payer's visits ready to bill: the whole group's count and dollars, and its rows on this page."""

    payer_id: int
    payer: str
    count: int  # every visit listed, those past the filing limit too
    amount_cents: int  # the dollars that can be billed: not those past the filing limit
    late: int = 0  # past the payer's filing limit (CLM-07): listed, held, cannot be released
    late_cents: int = 0
    rows: list[ReadyRow] = field(default_factory=list)


@dataclass
class ReadyToBill:
    page: Page[PayerGroup]
    count: int  # every visit listed for the filters, on all pages (those past the filing limit too)
    amount_cents: int  # what can be billed: not the visits past their filing limit
    late: int = 0  # visits past their payer's filing limit (CLM-07), only counted when `today` is given
    late_cents: int = 0


def filing_cutoffs(session: Session, today: date) -> dict[int, int]:
    """CLM-07 per payer: the first date of service (as an ordinal) still within its filing limit on `today`. A
    visit of an earlier date is late (`filing_status`): release refuses it, so it is held, not ready."""
    return {payer_id: today.toordinal() - limit
            for payer_id, limit in session.exec(select(Payer.id, Payer.filing_limit_days)).all()}


def _ready_rollup_where(filters: BillingFilter) -> list:
    """The ready rollup rows (by payer, service, modifiers and date of service) within the biller's filters."""
    R = VisitRollup
    where = [R.figure.in_(("ready", "ready_units"))]
    if filters.date_from:
        where.append(R.at >= filters.date_from.toordinal())
    if filters.date_to:
        where.append(R.at <= filters.date_to.toordinal())
    if filters.payer_id:
        where.append(R.key.startswith(f"{filters.payer_id}|"))
    return where


@dataclass
class ReadyMoney:
    """Claim-ready visits within the biller's filters, in dollars as their claims will bill them."""

    totals: dict[int, tuple[int, int]]  # payer id -> (visits, cents) that can be released
    late: list[tuple[int, date, int, int]]  # CLM-07: (payer id, date of service, visits, cents) past the limit


def ready_money(session: Session, filters: BillingFilter, today: date | None = None) -> ReadyMoney:
    """Per payer: the visits ready to bill and their dollars (the fee schedule's rate for the service and
    modifiers, else the payer's), from the rollups the projection keeps by payer, service, modifiers and date of
    service: a few rows per day of service, however many visits, read once. With `today` (the agency's date),
    the visits past their payer's filing limit (CLM-07) are apart, in `late`: release refuses them."""
    R = VisitRollup
    cutoffs = filing_cutoffs(session, today) if today is not None else {}
    within: dict[str, list[int]] = {}
    late: dict[tuple[str, int], list[int]] = {}
    for figure, key, day, n in session.exec(select(R.figure, R.key, R.at, R.n)
                                            .where(*_ready_rollup_where(filters))).all():
        cutoff = cutoffs.get(rollups.read_ready_key(key)[0])
        entry = (late.setdefault((key, day), [0, 0]) if cutoff is not None and day < cutoff
                 else within.setdefault(key, [0, 0]))
        entry[0 if figure == "ready" else 1] += int(n)
    return ReadyMoney(
        totals={payer_id: (n, cents) for payer_id, n, cents, _ in _priced(session, within.items()) if n},
        late=sorted((payer_id, date.fromordinal(day), n, cents)
                    for payer_id, n, cents, day in _priced(session, late.items()) if n))


def _priced(session: Session, counts) -> list[tuple[int, int, int, int]]:
    """(payer id, visits, cents, date of service ordinal or 0) summed per payer (and day) from
    ((key[, day]), [visits, units]) pairs, at the rate its claim will bill."""
    counts = list(counts)
    keys = [k if isinstance(k, str) else k[0] for k, _ in counts]
    rates = unit_rates(session, {rollups.read_ready_key(key)[0] for key in keys})
    totals: dict[tuple[int, int], list[int]] = {}
    for k, (n, units) in counts:
        key, day = (k, 0) if isinstance(k, str) else k
        payer_id, code, modifiers = rollups.read_ready_key(key)
        entry = totals.setdefault((payer_id, day), [0, 0])
        entry[0] += n
        entry[1] += units * rates(payer_id, code, modifiers)
    return [(payer_id, n, cents, day) for (payer_id, day), (n, cents) in totals.items()]


def ready_to_bill(session: Session, filters: BillingFilter, after: str | None, today: date | None = None,
                  size: int = PAGE_SIZE) -> ReadyToBill:
    """Claim-ready visits by payer (by name), then service date; each payer's totals count all its pages. With
    `today` (the agency's date), each row says how many days are left to the payer's filing limit (CLM-07).

    The page is read payer by payer along the index (state, payer, service date, id) after a keyset cursor (payer
    name, payer id, service date, visit id), so it never sorts the claim-ready visits, however many there are."""
    where = _ready_where(filters)
    money = ready_money(session, filters, today)
    totals = money.totals
    late: dict[int, tuple[int, int]] = {}  # listed, but held: past the filing limit
    for payer_id, _day, n, cents in money.late:
        visits, dollars = late.get(payer_id, (0, 0))
        late[payer_id] = (visits + n, dollars + cents)
    listed = set(totals) | set(late)
    rates = unit_rates(session, listed)  # each row's dollars, as its claim will bill them
    billing = {p.id: p for p in session.exec(select(Payer).where(Payer.id.in_(list(listed))))}
    cursor = decode_cursor(after, str, int, date, str) if after else None
    after = after if cursor is not None else None
    rows: list = []
    for pay in sorted(billing.values(), key=lambda p: (p.name, p.id)):
        if cursor and (pay.name, pay.id) < cursor[:2]:
            continue
        query = (select(Visit, Patient, Clinician, Authorization.auth_number).options(defer(Visit.snapshot))
                 .where(*where, Visit.payer_id == pay.id)
                 .join(Patient, Patient.id == Visit.patient_id).join(Clinician, Clinician.id == Visit.clinician_id)
                 .outerjoin(Authorization, Authorization.id == Visit.authorization_id))
        if cursor and (pay.name, pay.id) == cursor[:2]:
            query = query.where(Visit.service_date >= cursor[2],
                                or_(Visit.service_date > cursor[2], Visit.id > cursor[3]))
        rows += [(v, p, c, pay, auth) for v, p, c, auth in session.exec(
            query.order_by(Visit.service_date, Visit.id).limit(size + 1 - len(rows))).all()]
        if len(rows) > size:
            break
    last = rows[size - 1] if len(rows) > size else None
    groups: dict[int, PayerGroup] = {}
    for v, p, c, pay, auth in rows[:size]:
        if pay.id not in groups:
            (n, cents), (n_late, cents_late) = totals.get(pay.id, (0, 0)), late.get(pay.id, (0, 0))
            groups[pay.id] = PayerGroup(pay.id, pay.name, n + n_late, cents, n_late, cents_late)
        group = groups[pay.id]
        group.rows.append(ReadyRow(visit_id=v.id, patient=person(p), clinician=clinician_label(c), payer=pay.name,
                                   service_code=v.service_code, modifiers=list(v.modifiers),
                                   service_date=v.service_date, units=v.billable_units,
                                   amount_cents=None if v.billable_units is None else
                                   v.billable_units * rates(pay.id, v.service_code, list(v.modifiers)),
                                   auth_number=auth))
        if today is not None:
            row = group.rows[-1]
            row.filing_deadline, row.days_left, row.filing = filing_status(v.service_date, pay, today)
    count = sum(n for n, _ in totals.values()) + sum(n for n, _ in late.values())
    following = encode_cursor(last[3].name, last[3].id, last[0].service_date, last[0].id) if last else None
    return ReadyToBill(page=Page(list(groups.values()), after, following, count, False, size), count=count,
                       amount_cents=sum(cents for _, cents in totals.values()),
                       late=sum(n for n, _ in late.values()), late_cents=sum(c for _, c in late.values()))


@dataclass
class HoldGroup:
    """Every open hold of one rule: how many, the dollars they keep from billing, and how long they have waited."""

    rule_id: str
    rule: str
    total: int  # holds, across all pages
    visits: int = 0
    amount_cents: int = 0  # the held visits' billable units (from punches, else the schedule) at their payers' rates
    oldest: timedelta | None = None
    typical: timedelta | None = None  # the median age of its holds
    rows: list[HoldRow] = field(default_factory=list)


def _rollup_by_rule(session: Session, figure: str, payer_id: int | None) -> dict[tuple[str, int], int]:
    """A per (rule, payer) rollup as {(rule id, payer id): n}, for one payer or all."""
    out = {}
    for key, n in session.exec(select(VisitRollup.key, VisitRollup.n).where(VisitRollup.figure == figure)).all():
        rule_id, payer = key.rsplit("|", 1)
        if payer_id is None or int(payer) == payer_id:
            out[(rule_id, int(payer))] = n
    return out


def _hold_stats(session: Session, payer_id: int | None, now: datetime) -> dict[str, HoldGroup]:
    """Per rule: holds, visits held (a visit held twice by one rule, e.g. no clock-in and no clock-out, counts
    once) and their dollars, from the rollups the projection keeps; how long the oldest and the middle hold
    have waited, from the hold index (rule, opened_at): one short index read per rule, never every hold."""
    holds, visits, units = (_rollup_by_rule(session, figure, payer_id)
                            for figure in ("holds", "held_visits", "held_units"))
    rates = dict(session.exec(select(Payer.id, Payer.rate_per_unit_cents)).all())
    stats: dict[str, HoldGroup] = {}
    for (rule_id, payer), n in holds.items():
        g = stats.setdefault(rule_id, HoldGroup(rule_id, RULES.get(rule_id, ""), 0))
        g.total += n
        g.visits += visits.get((rule_id, payer), 0)
        g.amount_cents += units.get((rule_id, payer), 0) * rates.get(payer, 0)
    for rule_id, g in stats.items():
        opened = select(VisitHold.opened_at).where(VisitHold.rule_id == rule_id)
        if payer_id:  # one payer's holds of this rule, read along the same index
            opened = opened.join(Visit, Visit.id == VisitHold.visit_id).where(Visit.payer_id == payer_id)
        oldest = session.exec(opened.order_by(VisitHold.opened_at, VisitHold.id).limit(1)).first()
        # The lower median of the ages: the ((n - 1) // 2)-th newest hold (an offset into one rule's index range).
        middle = session.exec(opened.order_by(VisitHold.opened_at.desc(), VisitHold.id.desc())
                              .offset((g.total - 1) // 2).limit(1)).first()
        if oldest is not None:
            g.oldest = max(timedelta(0), now - as_utc(oldest))
            g.typical = max(timedelta(0), now - as_utc(middle if middle is not None else oldest))
    return stats


def holds_by_rule(session: Session, payer_id: int | None, after: str | None,
                  now: datetime) -> tuple[Page[HoldGroup], int]:
    """Open holds grouped by the rule that holds them; returns (page of groups, holds on the page)."""
    query, count = _holds_query(), select(VisitHold.id)
    if payer_id:
        query = query.where(Visit.payer_id == payer_id)
        count = count.join(Visit, Visit.id == VisitHold.visit_id).where(Visit.payer_id == payer_id)
    rows, page = _page(session, query, [(VisitHold.rule_id, False, str), (VisitHold.opened_at, False, datetime),
                                        (VisitHold.id, False, int)], after, count=count)
    stats = _hold_stats(session, payer_id, now)
    groups: dict[str, HoldGroup] = {}
    for hold in _hold_rows(rows, "hold"):
        if hold.rule_id not in groups:
            groups[hold.rule_id] = stats.get(hold.rule_id) or HoldGroup(hold.rule_id, RULES.get(hold.rule_id, ""), 0)
        groups[hold.rule_id].rows.append(hold)
    page.items = list(groups.values())
    return page, len(rows)


# --- office, supervisors, billers: find a visit ------------------------------------------------------


@dataclass
class VisitSearch:
    """What a person searches visits by; every filter uses an indexed column of the visit table."""

    visit_id: str = ""  # a prefix of the visit id
    patient: str = ""  # the start of a patient's first or last name, or "first last"
    clinician_id: int | None = None
    service_date: date | None = None
    state: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.visit_id or self.patient or self.clinician_id or self.service_date or self.state)

    def query_string(self, **extra: Any) -> str:
        from urllib.parse import urlencode

        params = {"visit_id": self.visit_id, "patient": self.patient, "clinician": self.clinician_id or "",
                  "date": self.service_date or "", "state": self.state or "", **extra}
        return urlencode({k: v for k, v in params.items() if v not in ("", None)})


@dataclass
class VisitHit:
    visit_id: str
    patient: str
    clinician: str
    service_code: str
    service_date: date
    scheduled_start: datetime
    scheduled_end: datetime
    state: str
    hold_count: int


@dataclass
class SearchPage:
    items: list[VisitHit]
    next_after: str | None  # the keyset cursor of the next page ("date|visit id"), None on the last


def _named(words: str) -> list[Any]:
    """Each word starts the patient's first or last name (any case)."""
    return [or_(func.lower(Patient.first_name).startswith(w), func.lower(Patient.last_name).startswith(w))
            for w in words.lower().split()]


def _patients_named(session: Session, words: str) -> list[int]:
    # The patient table (an agency's clients, never its visits) is read by name; its ids then pick visits
    # through the visit table's patient index.
    return list(session.exec(select(Patient.id).where(*_named(words))).all())


def patients_matching(session: Session, words: str, limit: int = 20) -> list[Patient]:
    """A type-ahead's choices: patients whose names start with the words typed (or the patient with the number
    typed), by name, at most `limit` (a picker never lists every client of the agency)."""
    words = words.strip()[:80]
    if not words:
        return []
    if words.isdigit():
        found = session.get(Patient, int(words)) if int(words) <= 2_147_483_647 else None
        return [found] if found is not None else []
    return list(session.exec(select(Patient).where(*_named(words))
                             .order_by(Patient.last_name, Patient.first_name, Patient.id).limit(limit)).all())


def search_visits(session: Session, search: VisitSearch, after: str | None, size: int = PAGE_SIZE) -> SearchPage:
    """Visits matching every given filter, the newest service date first (then the visit id), a page at a
    time after a keyset cursor: no offsets, so a deep page costs what the first does."""
    query = (select(Visit, Patient, Clinician).options(defer(Visit.snapshot))
             .join(Patient, Patient.id == Visit.patient_id)
             .join(Clinician, Clinician.id == Visit.clinician_id))
    if search.visit_id:  # a range on the primary key: the index serves a prefix
        query = query.where(Visit.id >= search.visit_id, Visit.id < search.visit_id + "\U0010ffff")
    if search.patient:
        query = query.where(Visit.patient_id.in_(_patients_named(session, search.patient)))
    if search.clinician_id:
        query = query.where(Visit.clinician_id == search.clinician_id)
    if search.service_date:
        query = query.where(Visit.service_date == search.service_date)
    if search.state:
        query = query.where(Visit.state == search.state)
    cursor = parse_cursor(after)
    if cursor:
        day, visit_id = cursor
        query = query.where(or_(Visit.service_date < day, and_(Visit.service_date == day, Visit.id < visit_id)))
    rows = session.exec(query.order_by(Visit.service_date.desc(), Visit.id.desc()).limit(size + 1)).all()
    items = [VisitHit(visit_id=v.id, patient=person(p), clinician=clinician_label(c), service_code=v.service_code,
                      service_date=v.service_date, scheduled_start=v.scheduled_start, scheduled_end=v.scheduled_end,
                      state=v.state, hold_count=v.hold_count) for v, p, c in rows[:size]]
    last = items[-1] if len(rows) > size else None
    return SearchPage(items, f"{last.service_date.isoformat()}|{last.visit_id}" if last else None)


def parse_cursor(after: str | None) -> tuple[date, str] | None:
    """A keyset cursor ("2026-11-28|V-1001") as (service date, visit id); None when absent or not one."""
    if not after or "|" not in after:
        return None
    day, visit_id = after.split("|", 1)
    try:
        return date.fromisoformat(day), visit_id
    except ValueError:
        return None


# --- one visit -----------------------------------------------------------------------------------


@dataclass
class VisitView:
    row: Visit
    snap: VisitSnapshot
    patient: Patient
    clinician: Clinician
    payer: Payer
    auth_number: str | None
    events: list[VisitEvent]


def load_visit(session: Session, visit_id: str, with_events: bool = True) -> VisitView | None:
    row = session.get(Visit, visit_id)
    if row is None:
        return None
    snap = VisitSnapshot.model_validate(row.snapshot)
    return visit_view(session, row, snap, with_events)


def newer_snapshot(session: Session, visit_id: str, version: int) -> VisitSnapshot | None:
    """The visit as projected, if the read model has moved past `version` (a primary-key read)."""
    stored = session.exec(select(Visit.snapshot).where(Visit.id == visit_id, Visit.version > version)).first()
    return VisitSnapshot.model_validate(stored) if stored is not None else None


def visit_view(session: Session, row: Visit, snap: VisitSnapshot, with_events: bool = True) -> VisitView:
    auth = session.get(Authorization, snap.authorization_id) if snap.authorization_id else None
    events = list(session.exec(select(VisitEvent).where(VisitEvent.visit_id == row.id)
                               .order_by(VisitEvent.seq))) if with_events else []
    return VisitView(row=row, snap=snap, patient=session.get(Patient, snap.spec.patient_id),
                     clinician=session.get(Clinician, snap.spec.clinician_id),
                     payer=session.get(Payer, snap.spec.payer_id),
                     auth_number=snap.authorization_number or (auth.auth_number if auth else None), events=events)


# --- dashboard -----------------------------------------------------------------------------------

AGE_BUCKETS = ["0–1 d", "1–2 d", "2–5 d", "5+ d"]


def age_bucket(age: timedelta) -> int:
    days = age.total_seconds() / 86400
    return 0 if days < 1 else 1 if days < 2 else 2 if days < 5 else 3


@dataclass
class Backlog:
    name: str
    who: str
    buckets: list[int]

    @property
    def total(self) -> int:
        return sum(self.buckets)


@dataclass
class Dashboard:
    states: list[tuple[str, str, int]]  # (state, label, count)
    backlogs: list[Backlog]
    lag_median_h: float | None
    lag_p90_h: float | None
    lag_count: int
    lag_counts: list[int]  # notes within the deadline, late but not escalated, escalated
    lag_limits: tuple[timedelta, timedelta]  # the note deadline and the escalation, after the visit's end
    holds: list[tuple[str, str, int]]  # (rule id, rule, count)
    escalations: list[tuple[str, int]]


BACKLOGS = [rollups.NOTES_TO_WRITE, rollups.NOTES_TO_SIGN, *(rollups.hold_backlog(role) for role in Role),
            rollups.READY_TO_BILL]


def _histogram_rank(histogram: list[tuple[int, int]], rank: int) -> int:
    """The value at a 1-based rank of a sorted histogram [(value, how many)]."""
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= rank:
            return value
    return histogram[-1][0]


def dashboard(session: Session, now: datetime, note_due: timedelta, escalate_after: timedelta,
              lag_window_days: int = 90) -> Dashboard:
    """Every figure from the rollups the projection keeps (services/rollups.py): a few hundred rows, whatever
    the number of visits."""
    R = VisitRollup
    counts = dict(session.exec(select(R.key, R.n).where(R.figure == "state")).all())
    states = [(s.value, STATE_LABELS[s], counts.get(s.value, 0)) for s in VisitState]

    # Backlog ages, exact to the second: the last five days' hourly rows, except the few hours that an age
    # bucket's edge (now, 1, 2, 5 days ago) cuts, which are read by the second; everything older is the
    # backlog's total less those. A few hundred rows, however many visits wait.
    now_s = rollups.epoch(now)
    day = 86400
    edges = [now_s, now_s - day, now_s - 2 * day, now_s - 5 * day]

    def age(at: int) -> int:  # 0..2: the age buckets under 5 days, 3: older, 4: not yet (ahead of now)
        return 4 if at > edges[0] else 0 if at > edges[1] else 1 if at > edges[2] else 2 if at > edges[3] else 3

    recent: dict[str, list[int]] = {}
    cut: set[int] = set()
    for key, hour, n in session.exec(select(R.key, R.at, R.n).where(R.figure == "backlog_hour",
                                                                    R.at > edges[3] - 3600)).all():
        if any(hour <= edge < hour + 3599 for edge in edges):
            cut.add(hour)
        else:
            recent.setdefault(key, [0, 0, 0, 0, 0])[age(hour)] += n
    if cut:  # one index seek per backlog and cut hour
        seeks = [select(R.key, R.at, R.n).where(R.figure == "backlog", R.key == key, R.at >= hour, R.at < hour + 3600)
                 for key in BACKLOGS for hour in sorted(cut)]
        for key, at, n in session.exec(union_all(*seeks)).all():
            recent.setdefault(key, [0, 0, 0, 0, 0])[age(at)] += n
    totals = dict(session.exec(select(R.key, R.n).where(R.figure == "backlog_all")).all())

    def aged(key: str) -> list[int]:
        under_1, under_2, under_5, _, ahead = recent.get(key, [0, 0, 0, 0, 0])
        older = totals.get(key, 0) - under_1 - under_2 - under_5 - ahead
        if key != rollups.NOTES_TO_WRITE:  # only a note for a visit not yet over is not work yet; any other
            under_1 += ahead  # wait stamped a moment ahead of this clock has just begun
        return [under_1, under_2, under_5, older]

    backlogs = [
        Backlog("Notes to write", "clinicians", aged(rollups.NOTES_TO_WRITE)),
        Backlog("Notes to sign", "clinicians", aged(rollups.NOTES_TO_SIGN)),
        Backlog("EVV and note fixes", "clinicians", aged(rollups.hold_backlog(Role.clinician))),
        Backlog("Exceptions to decide", "supervisors", aged(rollups.hold_backlog(Role.supervisor))),
        Backlog("Authorization holds", "billing", aged(rollups.hold_backlog(Role.biller))),
        Backlog("Office data fixes", "office", aged(rollups.hold_backlog(Role.admin))),
        Backlog("Ready to bill", "billing", aged(rollups.READY_TO_BILL)),
    ]

    # Note lag: how long after the visit ended the note came in, counted by service day and minute of lag.
    # The window runs from its first service day on: the days before its first Monday by the day, every week
    # from that Monday on (each wholly inside the window) by the week.
    since = (now - timedelta(days=lag_window_days)).date().toordinal()
    monday = since + (-(since - 1)) % 7
    lags = union_all(
        select(R.bucket, R.n).where(R.figure == "note_lag", R.key == "", R.at >= since, R.at < monday),
        select(R.bucket, R.n).where(R.figure == "note_lag_week", R.key == "", R.at >= monday)).subquery()
    histogram = [(minutes, int(n)) for minutes, n in session.exec(
        select(lags.c.bucket, func.sum(lags.c.n)).group_by(lags.c.bucket).order_by(lags.c.bucket)).all()]
    lag_count = sum(n for _, n in histogram)
    due_m, late_m = note_due.total_seconds() / 60, (note_due + escalate_after).total_seconds() / 60
    lag_counts = [sum(n for m, n in histogram if m <= due_m), sum(n for m, n in histogram if due_m < m <= late_m),
                  sum(n for m, n in histogram if m > late_m)]
    lag_median_h = lag_p90_h = None
    if lag_count:
        middle = (_histogram_rank(histogram, (lag_count + 1) // 2) + _histogram_rank(histogram, lag_count // 2 + 1))
        lag_median_h = middle / 2 / 60
        lag_p90_h = _histogram_rank(histogram, max(1, math.ceil(0.9 * lag_count))) / 60

    by_rule: dict[str, int] = {}
    for (rule_id, _), n in _rollup_by_rule(session, "holds", None).items():
        by_rule[rule_id] = by_rule.get(rule_id, 0) + n
    hold_counts = sorted(by_rule.items(), key=lambda kn: (-kn[1], kn[0]))
    tasks = _task_counts(session, "task_total")
    kinds: dict[tuple[str, bool], int] = {}
    for (_, kind, escalated), n in tasks.items():
        kinds[(kind, escalated)] = kinds.get((kind, escalated), 0) + n
    exceptions = session.exec(select(R.n).where(R.figure == "exception_total", R.key == "1")).first() or 0

    def count(kind: str, escalated: bool | None = None) -> int:
        return sum(n for (k, e), n in kinds.items() if k == kind and escalated in (None, e))

    escalations = [
        ("Late notes, clinician reminded", max(0, count("write_note", True) - count("note_overdue"))),
        ("Late notes, escalated", count("note_overdue")),
        ("Late signatures, clinician reminded", max(0, count("sign_note", True) - count("signature_overdue"))),
        ("Late signatures, escalated", count("signature_overdue")),
        ("Exceptions awaiting a decision", exceptions),
    ]
    return Dashboard(
        states=states, backlogs=backlogs, lag_median_h=lag_median_h, lag_p90_h=lag_p90_h, lag_count=lag_count,
        lag_counts=lag_counts, lag_limits=(note_due, note_due + escalate_after),
        holds=[(rule, RULES.get(rule, ""), n) for rule, n in hold_counts], escalations=escalations)


def _task_counts(session: Session, figure: str = "task") -> dict[tuple[int | None, str, bool], int]:
    """Open tasks by (clinician, kind, escalated) from the rollups; with figure "task_total", by (None, kind,
    escalated): the same tasks in a row per kind."""
    out = {}
    for key, n in session.exec(select(VisitRollup.key, VisitRollup.n).where(VisitRollup.figure == figure)).all():
        clinician_id, kind, escalated = key.split("|")
        out[(int(clinician_id) if clinician_id else None, kind, escalated == "1")] = n
    return out


# --- the REST API's lists --------------------------------------------------------------------------------


@dataclass
class VisitFilter:
    """What an API client lists visits by."""

    state: str | None = None
    clinician_id: int | None = None
    payer_id: int | None = None
    patient_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None
    has_holds: bool | None = None
    timezone: str = "UTC"  # the agency's: dates of service are local dates


COUNT_CAP = 1000  # lists count their matches up to here ("1,000+"), so a count never reads a year of visits


def capped_count(session: Session, query, cap: int | None = None) -> tuple[int, bool]:
    """How many rows the query gives, counted up to `cap` (COUNT_CAP; reading at most cap + 1 index entries);
    and whether there are more than that."""
    cap = cap or COUNT_CAP
    n = session.exec(select(func.count()).select_from(query.limit(cap + 1).subquery())).one()
    return min(n, cap), n > cap


def encode_cursor(*values: object) -> str:
    """An opaque keyset cursor: the last row's sort key, which the next page starts after."""
    import base64
    import json

    raw = json.dumps([v.isoformat() if isinstance(v, datetime | date) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(after: str, *types: type) -> tuple | None:
    """The values of a cursor made by `encode_cursor` with these types; None when it is not one."""
    import base64
    import binascii
    import json

    try:
        values = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
        if not isinstance(values, list) or len(values) != len(types):
            return None
        out = []
        for value, kind in zip(values, types, strict=True):
            if value is None:
                out.append(None)
            elif kind is datetime:
                out.append(as_utc(datetime.fromisoformat(value)))
            elif kind is date:
                out.append(date.fromisoformat(value))
            elif isinstance(value, kind) and not isinstance(value, bool) and "\x00" not in str(value):
                out.append(value)
            else:
                return None
        return tuple(out)
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        return None


def is_cursor(after: str) -> bool:
    """Whether `after` is a cursor `encode_cursor` made (whatever list it came from)."""
    import base64
    import binascii
    import json

    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4))), list)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False


@dataclass
class VisitList:
    items: list[Visit]
    next_after: str | None  # the cursor of the next page; None on the last
    total: int  # matches, counted up to COUNT_CAP
    total_capped: bool  # more than COUNT_CAP match


def _midnight(day: date, zone: ZoneInfo) -> datetime | None:
    """The start of a local day, in UTC; None past the calendar's ends (no bound needed there)."""
    try:
        return datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
    except OverflowError:
        return None


def list_visits(session: Session, user: User, wanted: VisitFilter, limit: int, after: tuple[datetime, str] | None
                ) -> VisitList:
    """Visits this person may see that match the filter, the latest scheduled first (then the visit id, both
    descending, so an index ending in (scheduled_start, id) serves every filter and the order), a page at a time
    after a keyset cursor: a visit that arrives between pages never shifts, repeats or hides another."""
    conditions = [visible(user, Visit)]
    for column, value in ((Visit.state, wanted.state), (Visit.clinician_id, wanted.clinician_id),
                          (Visit.payer_id, wanted.payer_id), (Visit.patient_id, wanted.patient_id)):
        if value is not None:
            conditions.append(column == value)
    # The date of service is the scheduled start's date in the agency's zone (models.service_date), so a range
    # of dates is a range of scheduled starts: the (scheduled_start, id) index reads exactly that range.
    zone = ZoneInfo(wanted.timezone)
    if wanted.date_from and (start := _midnight(wanted.date_from, zone)) is not None:
        conditions.append(Visit.scheduled_start >= start)
    if wanted.date_to and wanted.date_to < date.max and (end := _midnight(wanted.date_to + timedelta(days=1), zone)):
        conditions.append(Visit.scheduled_start < end)
    if wanted.has_holds is not None:
        conditions.append(Visit.hold_count > 0 if wanted.has_holds else Visit.hold_count == 0)
    total, capped = capped_count(session, select(Visit.id).where(*conditions))
    if after:
        start, visit_id = after
        # The first condition is a plain range the index seeks to; the second breaks ties at the same start.
        conditions += [Visit.scheduled_start <= start,
                       or_(Visit.scheduled_start < start, Visit.id < visit_id)]
    rows = list(session.exec(select(Visit).options(defer(Visit.snapshot)).where(*conditions)
                             .order_by(Visit.scheduled_start.desc(), Visit.id.desc()).limit(limit + 1)).all())
    last = rows[limit - 1] if len(rows) > limit else None
    return VisitList(rows[:limit], encode_cursor(last.scheduled_start, last.id) if last else None, total, capped)


def visit_ids_as_stored(session: Session, typed: list[str]) -> dict[str, str]:
    """Each visit id asked for, as stored, in any case: source systems write their own ids, and a v-8001 sent back
    by one of them is the visit V-8001. One index read (`ix_visit_id_key`) for them all. An id stays as typed
    when it is stored as typed, when no visit has it in any case (the caller's 404 names it; a visit scheduled a
    moment ago is not in the read model yet), or when several do (V-1 and v-1: never guessed between)."""
    wanted = sorted({t.lower() for t in typed if 0 < len(t) <= 200})
    found: dict[str, list[str]] = {}
    if wanted:
        for stored in session.exec(select(Visit.id).where(name_key(Visit.id).in_(wanted))):
            found.setdefault(stored.lower(), []).append(stored)
    out = {}
    for t in typed:
        same = found.get(t.lower(), [])
        out[t] = same[0] if len(same) == 1 else t
    return out


def visit_id_as_stored(session: Session, typed: str) -> str:
    """One visit id asked for, as stored (`visit_ids_as_stored`)."""
    return visit_ids_as_stored(session, [typed])[typed]


def visit_row(session: Session, visit_id: str) -> Visit | None:
    return session.get(Visit, visit_id)


def projected_snapshot(session: Session, visit_id: str) -> VisitSnapshot | None:
    """The visit as its workflow last projected it, or None before its first projection."""
    row = session.get(Visit, visit_id)
    return VisitSnapshot.model_validate(row.snapshot) if row is not None else None


@dataclass
class WorkQueuePage:
    tasks: list[tuple[VisitTask, Visit]]
    holds: list[VisitHold]
    next_after: str | None  # the cursor of the next page; None on the last


# A task queue in its order, as ranges of the task index (role, escalated, due_at, id), each read in
# (due_at, id) order: escalated with a deadline, escalated without, the rest with one, the rest without. NULLs
# sort differently on SQLite and PostgreSQL, so "no deadline" is a range of its own, not an ORDER BY expression.
_TASK_RANGES = [(True, True), (True, False), (False, True), (False, False)]


def work_queue(session: Session, user: User, limit: int, after: tuple | None = None) -> WorkQueuePage:
    """This person's open tasks, most urgent first (escalated, then the earliest deadline, tasks without one
    last), and for billers and supervisors the open holds by rule, `limit` of each at a time after a keyset
    cursor (`decode_work_cursor`): a task or hold that arrives between pages never shifts, repeats or hides
    another, and a deep page costs what the first does.

    The cursor holds each list's own position: (task range, due_at, task id) and (rule, opened_at, hold id),
    a list's part all None once it has ended (there is no cursor before the first page)."""
    t_range, t_due, t_id, h_rule, h_opened, h_id = after or (0, None, None, None, None, None)
    tasks: list[tuple[VisitTask, Visit]] = []
    more_tasks = False
    if t_range is not None:
        for i in range(t_range, len(_TASK_RANGES)):
            escalated, has_due = _TASK_RANGES[i]
            wanted = limit + 1 - len(tasks)  # one past the page says whether there is more
            if wanted <= 0:
                break
            query = (select(VisitTask, Visit).options(defer(Visit.snapshot)).join(Visit, Visit.id == VisitTask.visit_id)
                     .where(VisitTask.role == user.role, VisitTask.escalated == escalated,
                            VisitTask.due_at.is_not(None) if has_due else VisitTask.due_at.is_(None),
                            visible(user, Visit)))  # a clinician: their own visits only
            if i == t_range and t_id is not None:
                query = query.where(_after([(VisitTask.due_at, False, datetime), (VisitTask.id, False, int)],
                                           (t_due, t_id)) if has_due else VisitTask.id > t_id)
            tasks += [(t, v, i) for t, v in session.exec(
                query.order_by(VisitTask.due_at, VisitTask.id).limit(wanted)).all()]
        more_tasks = len(tasks) > limit
        tasks = tasks[:limit]
    holds: list[VisitHold] = []
    more_holds = False
    if user.role in (Role.biller, Role.supervisor) and (after is None or h_id is not None):
        query = select(VisitHold)
        if h_id is not None:
            query = query.where(_after([(VisitHold.rule_id, False, str), (VisitHold.opened_at, False, datetime),
                                        (VisitHold.id, False, int)], (h_rule, h_opened, h_id)))
        holds = list(session.exec(query.order_by(VisitHold.rule_id, VisitHold.opened_at, VisitHold.id)
                                  .limit(limit + 1)))
        more_holds = len(holds) > limit
        holds = holds[:limit]
    following = None
    if more_tasks or more_holds:
        last_t = tasks[-1] if more_tasks else None
        last_h = holds[-1] if more_holds else None
        following = encode_cursor(
            last_t[2] if last_t else None, last_t[0].due_at if last_t else None, last_t[0].id if last_t else None,
            last_h.rule_id if last_h else None, last_h.opened_at if last_h else None, last_h.id if last_h else None)
    return WorkQueuePage([(t, v) for t, v, _ in tasks], holds, following)


def decode_work_cursor(after: str) -> tuple | None:
    """A cursor `work_queue` made, or None when it is not one (another list's, edited, or out of range)."""
    cursor = decode_cursor(after, int, datetime, int, str, datetime, int)
    if cursor is None:
        return None
    t_range, t_due, t_id, h_rule, h_opened, h_id = cursor
    tasks_ok = (t_range is None and t_due is None and t_id is None) or (
        t_range is not None and 0 <= t_range < len(_TASK_RANGES) and t_id is not None
        and (t_due is not None) == _TASK_RANGES[t_range][1])
    holds_ok = (h_rule is None and h_opened is None and h_id is None) or None not in (h_rule, h_opened, h_id)
    return cursor if tasks_ok and holds_ok else None


def _notices_of(user: User, query):
    query = query.where(Notification.role == user.role)
    if user.role == Role.clinician:
        # After a reassign, the reminder stays with the visit, not with the former clinician. A notice about no
        # visit (a patient's supervisory visit due, SUP-01) is read by the clinician it is addressed to.
        query = query.outerjoin(Visit, Visit.id == Notification.visit_id).where(
            Notification.clinician_id == user.clinician_id,
            or_(Visit.clinician_id == user.clinician_id, Visit.id.is_(None)))
    return query


def notifications_for(session: Session, user: User, limit: int,
                      before: tuple[datetime, int] | None = None) -> list[Notification]:
    """Reminders and escalations sent to this person's role (a clinician: only about visits still theirs), newest
    first; `before`: the (sent at, id) of the last one already shown, so the next page starts after it (the
    role's or the clinician's notice index seeks there, never an offset)."""
    query = _notices_of(user, select(Notification))
    if before is not None:
        query = query.where(_after([(Notification.created_at, True, datetime), (Notification.id, True, int)],
                                   before))
    return list(session.exec(query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)))


def recent_notice_count(session: Session, user: User, since: datetime, cap: int = 99) -> tuple[int, bool]:
    """How many notices this person got since `since`, counted up to `cap`, and whether there are more (the nav
    shows "99+", never a count of everything)."""
    return capped_count(session, _notices_of(user, select(Notification.id)).where(Notification.created_at >= since),
                        cap)


def clinician(session: Session, clinician_id: int) -> Clinician | None:
    return session.get(Clinician, clinician_id)
