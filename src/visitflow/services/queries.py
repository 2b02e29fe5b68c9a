"""What the pages show, read from the SQL read model (never from the workflows).

Each function answers one question a person asks of the agency's visits; lists come back a page at a time.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import String, and_, cast, func, or_
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
    VisitTask,
)
from visitflow.models import Role, VisitSnapshot, VisitState, as_utc
from visitflow.services.access import visible

PAGE_SIZE = 25
T = TypeVar("T")


def dom_id(*parts: object) -> str:
    """A safe HTML id (and CSS selector) from visit ids and hold keys like 'EVV-02:punch-1'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(str(p) for p in parts))



@dataclass
class Page(Generic[T]):
    items: list[T]
    number: int
    total: int
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def _page(session: Session, query, number: int, size: int = PAGE_SIZE) -> tuple[list, int, int]:
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    pages = max(1, math.ceil(total / size))
    number = min(max(1, number), pages)  # a list that shrank under the reader lands on its last page
    rows = session.exec(query.offset((number - 1) * size).limit(size)).all()
    return list(rows), number, total


def person(p: Patient | Clinician | None) -> str:
    return f"{p.first_name} {p.last_name}" if p else "—"


def clinician_label(c: Clinician) -> str:
    return f"{c.first_name} {c.last_name} ({c.discipline.value})"


def clinicians(session: Session) -> list[Clinician]:
    return list(session.exec(select(Clinician).order_by(Clinician.last_name, Clinician.first_name)))


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


def _task_rows(session: Session, rows, now: datetime) -> list[TaskRow]:
    visit_ids = [v.id for _, v, _ in rows]
    escalated = set(session.exec(select(VisitTask.visit_id, VisitTask.kind).where(
        VisitTask.visit_id.in_(visit_ids), VisitTask.kind.in_(["note_overdue", "signature_overdue"]))).all())
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


def clinician_tasks(session: Session, clinician_id: int, number: int, now: datetime) -> Page[TaskRow]:
    """Work to do now, the most urgent first: the earliest deadline (overdue first), then tasks without one."""
    query = (_clinician_task_query(clinician_id).where(~_not_yet_ended(now))
             .order_by(VisitTask.due_at.is_(None), VisitTask.due_at, Visit.scheduled_start, VisitTask.id))
    rows, number, total = _page(session, query, number)
    return Page(_task_rows(session, rows, now), number, total)


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


def overdue_work(session: Session, clinician_id: int | None, number: int) -> Page[OverdueRow]:
    """Notes and signatures past their deadline (the clinician was reminded), the latest first."""
    query = (select(VisitTask, Visit, Patient, Clinician)
             .join(Visit, Visit.id == VisitTask.visit_id)
             .join(Patient, Patient.id == Visit.patient_id)
             .join(Clinician, Clinician.id == Visit.clinician_id)
             .where(VisitTask.role == Role.clinician, VisitTask.kind.in_(["write_note", "sign_note"]),
                    VisitTask.escalated.is_(True)))
    if clinician_id:
        query = query.where(Visit.clinician_id == clinician_id)
    rows, number, total = _page(session, query.order_by(VisitTask.due_at, VisitTask.id), number)
    visit_ids = [v.id for _, v, _, _ in rows]
    escalated = set(session.exec(select(VisitTask.visit_id, VisitTask.kind).where(
        VisitTask.visit_id.in_(visit_ids), VisitTask.kind.in_(["note_overdue", "signature_overdue"]))).all())
    items = []
    for t, v, p, c in rows:
        stage = "note" if t.kind == "write_note" else "signature"
        items.append(OverdueRow(
            visit_id=v.id, stage=stage, due_at=t.due_at, escalated=(v.id, f"{stage}_overdue") in escalated,
            clinician_id=c.id, clinician=clinician_label(c), patient=person(p), scheduled_start=v.scheduled_start,
            row_id=dom_id("overdue", v.id, stage)))
    return Page(items, number, total)


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
    return (select(VisitHold, Visit, Patient, Clinician, Payer)
            .join(Visit, Visit.id == VisitHold.visit_id)
            .join(Patient, Patient.id == Visit.patient_id)
            .join(Clinician, Clinician.id == Visit.clinician_id)
            .join(Payer, Payer.id == Visit.payer_id))


def exceptions_to_decide(session: Session, clinician_id: int | None, number: int) -> Page[HoldRow]:
    """EVV exceptions and manual time edits a supervisor may approve or reject, the oldest first."""
    query = _holds_query().where(VisitHold.role == Role.supervisor, VisitHold.approvable.is_(True))
    if clinician_id:
        query = query.where(Visit.clinician_id == clinician_id)
    rows, number, total = _page(session, query.order_by(VisitHold.opened_at, VisitHold.id), number)
    return Page(_hold_rows(rows, "exception"), number, total)


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


def team_overdue(session: Session) -> list[TeamRow]:
    """Each clinician's open and overdue work, the most overdue first."""
    team: dict[int, TeamRow] = {}
    names = {c.id: clinician_label(c) for c in clinicians(session)}

    def row(cid: int) -> TeamRow:
        return team.setdefault(cid, TeamRow(clinician_id=cid, clinician=names.get(cid, f"clinician {cid}")))

    counts = session.exec(select(VisitTask.clinician_id, VisitTask.kind, VisitTask.escalated, func.count())
                          .where(VisitTask.clinician_id.is_not(None))
                          .group_by(VisitTask.clinician_id, VisitTask.kind, VisitTask.escalated)).all()
    for cid, kind, escalated, n in counts:
        r = row(cid)
        if kind == "write_note":
            r.late_notes += n if escalated else 0
            r.on_time += 0 if escalated else n
        elif kind == "sign_note":
            r.late_signatures += n if escalated else 0
            r.on_time += 0 if escalated else n
        elif kind in ("note_overdue", "signature_overdue"):
            r.escalated += n
        elif kind in ("fix_evv", "fix_note"):
            r.fixes += n
    for cid, n in session.exec(select(Visit.clinician_id, func.count()).join(VisitHold, VisitHold.visit_id == Visit.id)
                               .where(VisitHold.role == Role.supervisor).group_by(Visit.clinician_id)).all():
        row(cid).exceptions += n
    return sorted(team.values(), key=lambda r: (-r.overdue, -r.escalated, -r.exceptions, r.clinician))


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
    count: int
    amount_cents: int
    rows: list[ReadyRow] = field(default_factory=list)


@dataclass
class ReadyToBill:
    page: Page[PayerGroup]
    count: int  # every visit ready to bill for the filters, on all pages
    amount_cents: int


def ready_to_bill(session: Session, filters: BillingFilter, number: int, today: date | None = None) -> ReadyToBill:
    """Claim-ready visits by payer, then service date; each payer's totals count all its pages. With `today`
    (the agency's date), each row says how many days are left to the payer's filing limit (CLM-07)."""
    where = _ready_where(filters)
    # Dollars as the claims will bill them: the fee schedule's rate for the service and modifiers, else the
    # payer's. Summed per payer, service and modifiers (the modifiers' JSON text, read once per group).
    modifiers_text = cast(Visit.modifiers, String)
    by_service = session.exec(
        select(Visit.payer_id, Visit.service_code, modifiers_text, func.count(), func.sum(Visit.billable_units))
        .where(*where).group_by(Visit.payer_id, Visit.service_code, modifiers_text)).all()
    rates = unit_rates(session, {payer_id for payer_id, *_ in by_service})
    totals: dict[int, tuple[int, int]] = {}
    for payer_id, code, mods, n, units in by_service:
        count, cents = totals.get(payer_id, (0, 0))
        totals[payer_id] = (count + n, cents + (units or 0) * rates(payer_id, code, json.loads(mods or "[]")))
    query = (select(Visit, Patient, Clinician, Payer, Authorization.auth_number).where(*where)
             .join(Patient, Patient.id == Visit.patient_id)
             .join(Clinician, Clinician.id == Visit.clinician_id)
             .join(Payer, Payer.id == Visit.payer_id)
             .outerjoin(Authorization, Authorization.id == Visit.authorization_id)
             .order_by(Payer.name, Payer.id, Visit.service_date, Visit.id))
    rows, number, total = _page(session, query, number)
    groups: dict[int, PayerGroup] = {}
    for v, p, c, pay, auth in rows:
        group = groups.setdefault(pay.id, PayerGroup(pay.id, pay.name, *totals.get(pay.id, (0, 0))))
        group.rows.append(ReadyRow(visit_id=v.id, patient=person(p), clinician=clinician_label(c), payer=pay.name,
                                   service_code=v.service_code, modifiers=list(v.modifiers),
                                   service_date=v.service_date, units=v.billable_units,
                                   amount_cents=None if v.billable_units is None else
                                   v.billable_units * rates(pay.id, v.service_code, list(v.modifiers)),
                                   auth_number=auth))
        if today is not None:
            row = group.rows[-1]
            row.filing_deadline, row.days_left, row.filing = filing_status(v.service_date, pay, today)
    return ReadyToBill(page=Page(list(groups.values()), number, total), count=total,
                       amount_cents=sum(cents for _, cents in totals.values()))


@dataclass
class HoldGroup:
    """Every open hold of one rule: how many, the dollars they keep from billing, and how long they have waited."""

    rule_id: str
    rule: str
    total: int  # holds, across all pages
    visits: int = 0
    amount_cents: int = 0  # the held visits' billable units (from punches, else the schedule) at their payers' rates
    oldest: timedelta | None = None
    typical: timedelta | None = None  # the median age
    rows: list[HoldRow] = field(default_factory=list)


def _hold_stats(session: Session, payer_id: int | None, now: datetime) -> dict[str, HoldGroup]:
    """Per rule, over its open holds (the hold table, joined to each held visit by key): a visit held twice
    by one rule (no clock-in and no clock-out) counts once, from its earliest hold."""
    query = (select(VisitHold.rule_id, VisitHold.visit_id, func.count(), func.min(VisitHold.opened_at),
                    Visit.billable_units, Payer.rate_per_unit_cents)
             .join(Visit, Visit.id == VisitHold.visit_id).join(Payer, Payer.id == Visit.payer_id)
             .group_by(VisitHold.rule_id, VisitHold.visit_id, Visit.billable_units, Payer.rate_per_unit_cents))
    if payer_id:
        query = query.where(Visit.payer_id == payer_id)
    ages: dict[str, list[timedelta]] = {}
    stats: dict[str, HoldGroup] = {}
    for rule_id, _, holds, opened, units, rate in session.exec(query).all():
        g = stats.setdefault(rule_id, HoldGroup(rule_id, RULES.get(rule_id, ""), 0))
        g.total += holds
        g.visits += 1
        g.amount_cents += (units or 0) * rate  # a held visit has been through the gates: its units are known
        ages.setdefault(rule_id, []).append(max(timedelta(0), now - as_utc(opened)))
    for rule_id, g in stats.items():
        g.oldest = max(ages[rule_id])
        g.typical = statistics.median_low(ages[rule_id])
    return stats


def holds_by_rule(session: Session, payer_id: int | None, number: int,
                  now: datetime) -> tuple[Page[HoldGroup], int]:
    """Open holds grouped by the rule that holds them; returns (page of groups, holds on the page)."""
    query = _holds_query()
    if payer_id:
        query = query.where(Visit.payer_id == payer_id)
    rows, number, total = _page(session, query.order_by(VisitHold.rule_id, VisitHold.opened_at, VisitHold.id),
                                number)
    stats = _hold_stats(session, payer_id, now)
    groups: dict[str, HoldGroup] = {}
    for hold in _hold_rows(rows, "hold"):
        if hold.rule_id not in groups:
            groups[hold.rule_id] = stats.get(hold.rule_id) or HoldGroup(hold.rule_id, RULES.get(hold.rule_id, ""), 0)
        groups[hold.rule_id].rows.append(hold)
    return Page(list(groups.values()), number, total), len(rows)


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


def _patients_named(session: Session, words: str) -> list[int]:
    # The patient table (an agency's clients, never its visits) is read by name; its ids then pick visits
    # through the visit table's patient index.
    parts = words.lower().split()
    conditions = [or_(func.lower(Patient.first_name).startswith(w), func.lower(Patient.last_name).startswith(w))
                  for w in parts]
    return list(session.exec(select(Patient.id).where(*conditions)).all())


def search_visits(session: Session, search: VisitSearch, after: str | None, size: int = PAGE_SIZE) -> SearchPage:
    """Visits matching every given filter, the newest service date first (then the visit id), a page at a
    time after a keyset cursor: no offsets, so a deep page costs what the first does."""
    query = (select(Visit, Patient, Clinician).join(Patient, Patient.id == Visit.patient_id)
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


def _ages(times, now: datetime) -> list[int]:
    buckets = [0, 0, 0, 0]
    for t in times:
        if t is not None:
            buckets[age_bucket(now - as_utc(t))] += 1
    return buckets


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the value at or below which `share` of the values fall."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def dashboard(session: Session, now: datetime, note_due: timedelta, escalate_after: timedelta,
              lag_window_days: int = 90) -> Dashboard:
    counts = dict(session.exec(select(Visit.state, func.count()).group_by(Visit.state)).all())
    states = [(s.value, STATE_LABELS[s], counts.get(s.value, 0)) for s in VisitState]

    def task_times(kind: str, column):
        return session.exec(select(column).join(VisitTask, VisitTask.visit_id == Visit.id)
                            .where(VisitTask.kind == kind)).all()

    notes = [end for end in task_times("write_note", Visit.scheduled_end) if as_utc(end) <= now]
    # A signature is awaited from the moment the note came in (or came back to the clinician).
    waiting_since = session.exec(
        select(func.max(VisitEvent.at)).join(VisitTask, VisitTask.visit_id == VisitEvent.visit_id)
        .where(VisitTask.kind == "sign_note", VisitEvent.kind.in_(["note_submitted", "sent_back"]))
        .group_by(VisitEvent.visit_id)).all()
    holds_by_role = {role: [] for role in Role}
    for role, opened in session.exec(select(VisitHold.role, VisitHold.opened_at)).all():
        holds_by_role[Role(role)].append(opened)
    ready_since = session.exec(
        select(func.max(VisitEvent.at)).join(Visit, Visit.id == VisitEvent.visit_id)
        .where(Visit.state == VisitState.claim_ready.value, VisitEvent.kind == "claim_ready")
        .group_by(VisitEvent.visit_id)).all()
    backlogs = [
        Backlog("Notes to write", "clinicians", _ages(notes, now)),
        Backlog("Notes to sign", "clinicians", _ages(waiting_since, now)),
        Backlog("EVV and note fixes", "clinicians", _ages(holds_by_role[Role.clinician], now)),
        Backlog("Exceptions to decide", "supervisors", _ages(holds_by_role[Role.supervisor], now)),
        Backlog("Authorization holds", "billing", _ages(holds_by_role[Role.biller], now)),
        Backlog("Office data fixes", "office", _ages(holds_by_role[Role.admin], now)),
        Backlog("Ready to bill", "billing", _ages(ready_since, now)),
    ]

    # Note lag from the snapshots: how long after the visit ended the note came in.
    since = (now - timedelta(days=lag_window_days)).date()
    lags: list[float] = []
    for snap in session.exec(select(Visit.snapshot).where(
            Visit.state != VisitState.scheduled.value, Visit.service_date >= since)).all():
        note = snap.get("note")
        if note:
            submitted = datetime.fromisoformat(note["submitted_at"])
            ended = datetime.fromisoformat(snap["spec"]["scheduled_end"])
            lags.append((as_utc(submitted) - as_utc(ended)).total_seconds() / 3600)
    due_h, late_h = note_due.total_seconds() / 3600, (note_due + escalate_after).total_seconds() / 3600
    lag_counts = [sum(1 for x in lags if x <= due_h), sum(1 for x in lags if due_h < x <= late_h),
                  sum(1 for x in lags if x > late_h)]

    hold_counts = session.exec(select(VisitHold.rule_id, func.count()).group_by(VisitHold.rule_id)
                               .order_by(func.count().desc(), VisitHold.rule_id)).all()
    task_counts = dict(session.exec(
        select(VisitTask.kind, func.count()).where(or_(
            VisitTask.kind.in_(["note_overdue", "signature_overdue"]),
            and_(VisitTask.kind.in_(["write_note", "sign_note"]), VisitTask.escalated.is_(True))))
        .group_by(VisitTask.kind)).all())
    exceptions = session.exec(select(func.count()).select_from(VisitHold).where(
        VisitHold.role == Role.supervisor, VisitHold.approvable.is_(True))).one()
    escalations = [
        ("Late notes, clinician reminded",
         max(0, task_counts.get("write_note", 0) - task_counts.get("note_overdue", 0))),
        ("Late notes, escalated", task_counts.get("note_overdue", 0)),
        ("Late signatures, clinician reminded",
         max(0, task_counts.get("sign_note", 0) - task_counts.get("signature_overdue", 0))),
        ("Late signatures, escalated", task_counts.get("signature_overdue", 0)),
        ("Exceptions awaiting a decision", exceptions),
    ]
    return Dashboard(
        states=states, backlogs=backlogs,
        lag_median_h=statistics.median(lags) if lags else None,
        lag_p90_h=percentile(lags, 0.9) if lags else None, lag_count=len(lags), lag_counts=lag_counts,
        lag_limits=(note_due, note_due + escalate_after),
        holds=[(rule, RULES.get(rule, ""), n) for rule, n in hold_counts], escalations=escalations)


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


def list_visits(session: Session, user: User, wanted: VisitFilter, limit: int, offset: int
                ) -> tuple[int, list[Visit]]:
    """Visits this person may see that match the filter, the latest scheduled first; with how many match."""
    conditions = [visible(user, Visit)]
    for column, value in ((Visit.state, wanted.state), (Visit.clinician_id, wanted.clinician_id),
                          (Visit.payer_id, wanted.payer_id), (Visit.patient_id, wanted.patient_id)):
        if value is not None:
            conditions.append(column == value)
    if wanted.date_from:
        conditions.append(Visit.service_date >= wanted.date_from)
    if wanted.date_to:
        conditions.append(Visit.service_date <= wanted.date_to)
    if wanted.has_holds is not None:
        conditions.append(Visit.hold_count > 0 if wanted.has_holds else Visit.hold_count == 0)
    total = session.exec(select(func.count()).select_from(Visit).where(*conditions)).one()
    rows = session.exec(select(Visit).where(*conditions)
                        .order_by(Visit.scheduled_start.desc(), Visit.id).offset(offset).limit(limit)).all()
    return total, list(rows)


def visit_row(session: Session, visit_id: str) -> Visit | None:
    return session.get(Visit, visit_id)


def projected_snapshot(session: Session, visit_id: str) -> VisitSnapshot | None:
    """The visit as its workflow last projected it, or None before its first projection."""
    row = session.get(Visit, visit_id)
    return VisitSnapshot.model_validate(row.snapshot) if row is not None else None


def work_queue(session: Session, user: User, limit: int) -> tuple[list[tuple[VisitTask, Visit]], list[VisitHold]]:
    """This person's open tasks, most urgent first (escalated, then the earliest deadline), and for billers and
    supervisors the open holds by rule."""
    query = (select(VisitTask, Visit).join(Visit, Visit.id == VisitTask.visit_id)
             .where(VisitTask.role == user.role, visible(user, Visit))  # a clinician: their own visits only
             .order_by(VisitTask.escalated.desc(), VisitTask.due_at.is_(None), VisitTask.due_at,
                       Visit.scheduled_start).limit(limit))
    tasks = list(session.exec(query))
    holds = (list(session.exec(select(VisitHold).order_by(VisitHold.rule_id, VisitHold.opened_at).limit(limit)))
             if user.role in (Role.biller, Role.supervisor) else [])
    return tasks, holds


def notifications_for(session: Session, user: User, limit: int) -> list[Notification]:
    """Reminders and escalations sent to this person's role (a clinician: only about visits still theirs)."""
    query = select(Notification).where(Notification.role == user.role)
    if user.role == Role.clinician:
        # After a reassign, the reminder stays with the visit, not with the former clinician.
        query = query.join(Visit, Visit.id == Notification.visit_id).where(
            Notification.clinician_id == user.clinician_id, Visit.clinician_id == user.clinician_id)
    return list(session.exec(query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)))


def clinician(session: Session, clinician_id: int) -> Clinician | None:
    return session.get(Clinician, clinician_id)
