"""The money in view: revenue held by each rule, ready to bill, billed and unpaid (aging), paid, denied by reason.

Every figure is read from a rollup, never a scan of the visits, holds or claims: the dollars held (by rule, by
age) and ready to bill from `visitrollup` (kept by the visit projection, see services/rollups.py), receivables from
`ClaimAgingDay`, denials from `DenialMonth` and money paid from `PaymentDay`, each moved in the same transaction as
the claim or the remittance that changes it.
`rebuild_revenue_rollups` recomputes them from the claims and remittance lines (`visitflow rebuild-rollups`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import case, func, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, delete, select

from visitflow.catalogue import RULES
from visitflow.claims.remittance import ADJUSTMENT_REASONS
from visitflow.claims.states import RECEIVABLE, ClaimState
from visitflow.db.tables import (
    Claim,
    ClaimAgingDay,
    DenialMonth,
    Payer,
    PaymentDay,
    Remittance,
    RemittanceLine,
    VisitRollup,
)
from visitflow.models import as_utc
from visitflow.services import queries, rollups

AR_BUCKETS = ["0–30 days", "31–60 days", "61–90 days", "90+ days"]
HOLD_BUCKETS = ["under 2 days", "2–7 days", "8–30 days", "30+ days"]
DENIAL_WINDOW_MONTHS = 3
# Remittance lines whose money went to no claim line of ours: listed, never counted as paid.
NOT_APPLIED = ("unmatched", "not_applied")


def _upsert(session: Session, table, keys: dict, **deltas: int) -> None:
    """Add `deltas` to the row with `keys`, creating it: one statement, safe when two writers race."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(**keys, **deltas)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: getattr(table, name) + getattr(statement.excluded, name) for name in deltas})
    session.exec(statement)


def count_receivable(session: Session, claim: Claim, sign: int) -> None:
    """A claim entered (+1) or left (-1) the billed-and-unpaid states."""
    _upsert(session, ClaimAgingDay, {"day": as_utc(claim.created_at).date()},
            open_cents=sign * claim.total_cents, open_claims=sign)


def claim_moved(session: Session, claim: Claim, from_state: str | None, to_state: str) -> None:
    """Keep receivables right on every claim state change (and creation, from None). A void (frequency 8) bills
    nothing, so it is never a receivable."""
    if claim.frequency == "8":
        return
    was = from_state is not None and ClaimState(from_state) in RECEIVABLE
    now = ClaimState(to_state) in RECEIVABLE
    if was != now:
        count_receivable(session, claim, 1 if now else -1)


def count_denial(session: Session, paid_on: date, code: str, cents: int) -> None:
    _upsert(session, DenialMonth, {"month": paid_on.replace(day=1), "code": code[:12]}, cents=cents, lines=1)


def count_payment(session: Session, day: date, applied_cents: int, unmatched_cents: int) -> None:
    """An imported 835's money: applied to our claims' lines, or matching none of them."""
    _upsert(session, PaymentDay, {"day": day}, applied_cents=applied_cents, unmatched_cents=unmatched_cents)


def denial_code(reasons: list[str]) -> str:
    """The code a denied line is counted under: its first adjustment ("CO-252"), else its first remark."""
    return reasons[0].split(":", 1)[0] if reasons else "none given"


# --- reading ----------------------------------------------------------------------------------------------


@dataclass
class RuleMoney:
    rule_id: str
    title: str
    visits: int
    cents: int


@dataclass
class DenialMoney:
    code: str
    words: str
    lines: int
    cents: int


@dataclass
class RevenueAtRisk:
    held: list[RuleMoney]  # by rule, most dollars first
    held_by_age: list[int]  # cents per HOLD_BUCKETS, by how long the visit has been held
    held_cents: int
    ready_cents: int
    ready_visits: int
    receivable: list[int]  # cents per AR_BUCKETS
    receivable_claims: int
    paid_cents: int  # applied to our claims' lines by the remittances imported in the last 30 days
    unmatched_cents: int  # the same remittances' money for no claim of ours (or one a newer claim replaced)
    denied: list[DenialMoney]  # last DENIAL_WINDOW_MONTHS months, most dollars first
    hold_days_median: float | None  # how long held visits have waited: revenue delayed by holds

    @property
    def receivable_cents(self) -> int:
        return sum(self.receivable)

    @property
    def denied_cents(self) -> int:
        return sum(d.cents for d in self.denied)


def _hold_bucket(days: float) -> int:
    return 0 if days < 2 else 1 if days <= 7 else 2 if days <= 30 else 3


def _ar_bucket(days: int) -> int:
    return 0 if days <= 30 else 1 if days <= 60 else 2 if days <= 90 else 3


def revenue_at_risk(session: Session, now: datetime, today: date) -> RevenueAtRisk:
    """Every figure from rollups: the visits' (`visitrollup`, kept by the projection) and the claims' and
    remittances' (below), so the panel costs the same at any number of visits. `today` is the agency's date:
    a claim-ready visit past its payer's filing limit on it is held for CLM-07, not ready to bill."""
    rates = dict(session.exec(select(Payer.id, Payer.rate_per_unit_cents)).all())
    R = VisitRollup

    def cents(payer: str, units: int) -> int:
        return units * rates.get(int(payer), 0)

    # By rule: a visit held by two rules counts under each.
    by_rule: dict[str, list[int]] = {}
    for figure, key, n in session.exec(select(R.figure, R.key, R.n).where(R.figure.in_(("held_visits", "held_value")))):
        rule_id, payer = key.split("|")
        entry = by_rule.setdefault(rule_id, [0, 0])
        if figure == "held_visits":
            entry[0] += n
        else:
            entry[1] += cents(payer, n)
    # Claim-ready but past the payer's filing limit (CLM-07): release refuses them, so their dollars are held, since
    # the day after their last filing day. From the ready rollups' late days only.
    cutoffs = queries.filing_cutoffs(session, today)
    ready_money = queries.ready_money(session, queries.BillingFilter(), today)  # as the billing page totals it
    late_by_age = [0] * len(HOLD_BUCKETS)
    for payer_id, day, n, c in ready_money.late:
        entry = by_rule.setdefault("CLM-07", [0, 0])
        entry[0] += n
        entry[1] += c
        late_by_age[_hold_bucket(cutoffs[payer_id] - day.toordinal())] += c
    held = sorted((RuleMoney(rule, RULES.get(rule, rule), n, c) for rule, (n, c) in by_rule.items()),
                  key=lambda r: (-r.cents, r.rule_id))

    # By how long the visit has been held: whole days fall in one bucket each; in a day an edge falls in, the
    # database sums the visits' seconds into buckets (index ranges on payer and second; a few rows come back,
    # however many visits were held that day).
    now_s = now.timestamp()
    edges = [now_s - 2 * rollups.DAY, now_s - 7 * rollups.DAY, now_s - 30 * rollups.DAY]

    def bucket(at: float) -> int:
        return _hold_bucket((now_s - at) / rollups.DAY)

    held_by_age = late_by_age
    cut: set[int] = set()
    for payer, day, n in session.exec(select(R.key, R.at, R.n).where(R.figure == "held_day_value")).all():
        if any(day <= edge < day + rollups.DAY for edge in edges):
            cut.add(day)
        else:
            held_by_age[bucket(day)] += cents(payer, n)
    if cut and rates:
        # The same edges as _hold_bucket: under 2 days, up to 7, up to 30, older.
        age = case((R.at > edges[0], 0), (R.at >= edges[1], 1), (R.at >= edges[2], 2), else_=3).label("age")
        in_cut_days = union_all(*[
            select(R.key, age, R.n).where(R.figure == "held_at_value", R.key.in_([str(p) for p in sorted(rates)]),
                                          R.at >= day, R.at < day + rollups.DAY) for day in sorted(cut)]).subquery()
        for payer, bucket_index, n in session.exec(
                select(in_cut_days.c.key, in_cut_days.c.age, func.sum(in_cut_days.c.n))
                .group_by(in_cut_days.c.key, in_cut_days.c.age)).all():
            held_by_age[bucket_index] += cents(payer, n)

    ready = ready_money.totals
    ready_visits, ready_cents = sum(n for n, _ in ready.values()), sum(c for _, c in ready.values())

    utc_day = now.date()  # receivables and denials are kept by UTC day (claims' creation, remittances' import)
    receivable = [0] * len(AR_BUCKETS)
    claims = 0
    for day, cents, count in session.exec(select(ClaimAgingDay.day, ClaimAgingDay.open_cents,
                                                 ClaimAgingDay.open_claims).where(ClaimAgingDay.open_claims != 0)):
        receivable[_ar_bucket((utc_day - day).days)] += cents
        claims += count

    # The money applied to our claims' lines, not the payers' deposits: a deposit also carries money for claims
    # that are not ours or were replaced. By the day of import (UTC): today and the 30 days before.
    paid, unmatched = session.exec(select(func.coalesce(func.sum(PaymentDay.applied_cents), 0),
                                          func.coalesce(func.sum(PaymentDay.unmatched_cents), 0))
                                   .where(PaymentDay.day >= utc_day - timedelta(days=30))).one()
    since_month = (utc_day.replace(day=1) - timedelta(days=31 * (DENIAL_WINDOW_MONTHS - 1))).replace(day=1)
    denied = [DenialMoney(code, _code_words(code), lines, cents) for code, lines, cents in session.exec(
        select(DenialMonth.code, func.sum(DenialMonth.lines), func.sum(DenialMonth.cents))
        .where(DenialMonth.month >= since_month).group_by(DenialMonth.code)
        .order_by(func.sum(DenialMonth.cents).desc(), DenialMonth.code))]
    return RevenueAtRisk(
        held=held, held_by_age=held_by_age, held_cents=sum(held_by_age), ready_cents=ready_cents,
        ready_visits=ready_visits, receivable=receivable, receivable_claims=claims, paid_cents=paid,
        unmatched_cents=unmatched, denied=denied,
        hold_days_median=_median_days_held(session, now_s))


def _median_days_held(session: Session, now_s: float) -> float | None:
    """The median of how long the held visits have been held: the day (or two) the middle visits' holds began
    in, from the day rows, then the second within that day, found by the database's running sum over it."""
    R = VisitRollup
    days = session.exec(select(R.at, R.n).where(R.figure == "held_day_visits", R.key == "").order_by(R.at)).all()
    total = sum(n for _, n in days)
    if not total:
        return None

    def seconds(ranks: list[int]) -> list[int]:
        """The second each rank-th longest-held visit (0-based, ranks ascending) was first held: the day rows
        find each rank's day, the database's running sum over that day's seconds finds the second."""
        found: list[int] = []
        before = 0
        for day, n in days:
            in_day = [rank - before for rank in ranks[len(found):] if rank < before + n]
            if in_day:
                where = (R.figure == "held_at_visits", R.key == "", R.at >= day, R.at < day + rollups.DAY)
                running = select(R.at, func.sum(R.n).over(order_by=R.at).label("through")).where(*where).subquery()
                rows = session.exec(select(running.c.at, running.c.through).where(running.c.through > in_day[0])
                                    .order_by(running.c.at).limit(len(in_day))).all()
                for rank in in_day:
                    at = next((at for at, through in rows if through > rank), None)
                    if at is None:
                        # A projection committed between the two reads (PostgreSQL reads each statement afresh):
                        # the day's last second is as near as this moment allows.
                        at = session.exec(select(func.max(R.at)).where(*where)).first()
                    found.append(at if at is not None else day)
                if len(found) == len(ranks):
                    return found
            before += n
        return found + [days[-1][0]] * (len(ranks) - len(found))

    middle = seconds(sorted({(total - 1) // 2, total // 2}))
    return statistics.mean((now_s - at) / rollups.DAY for at in middle)


def _code_words(code: str) -> str:
    number = code.split("-", 1)[1] if "-" in code else code
    return ADJUSTMENT_REASONS.get(number, "")


# --- rebuilding -----------------------------------------------------------------------------------------


def rebuild_revenue_rollups(session: Session) -> tuple[int, int, int]:
    """Recompute receivables, denials and payments from the claims and remittance lines (the caller commits).
    Returns how many rows each has."""
    if session.get_bind().dialect.name == "postgresql":
        # Claim and remittance writers wait until this commits, so none of their changes falls between the
        # delete and the recount. (On SQLite the caller's write session holds the one write lock.)
        session.connection().exec_driver_sql("LOCK TABLE claimagingday, denialmonth, paymentday IN EXCLUSIVE MODE")
    session.exec(delete(ClaimAgingDay))
    session.exec(delete(DenialMonth))
    days: dict[date, list[int]] = {}
    for created, total in session.exec(select(Claim.created_at, Claim.total_cents).where(
            Claim.state.in_([s.value for s in RECEIVABLE]), Claim.frequency != "8")):
        day = days.setdefault(as_utc(created).date(), [0, 0])
        day[0] += total
        day[1] += 1
    for day, (cents, count) in days.items():
        session.add(ClaimAgingDay(day=day, open_cents=cents, open_claims=count))
    months: dict[tuple[date, str], list[int]] = {}
    for reasons, charge, paid, paid_on, imported in session.exec(
            select(RemittanceLine.reasons, RemittanceLine.charge_cents, RemittanceLine.paid_cents,
                   Remittance.paid_on, Remittance.imported_at)
            .join(Remittance, Remittance.id == RemittanceLine.remittance_id)
            .where(RemittanceLine.outcome.in_(["denied", "adjusted"]))):
        on = paid_on or as_utc(imported).date()
        entry = months.setdefault((on.replace(day=1), denial_code(reasons)[:12]), [0, 0])
        entry[0] += max(charge - paid, 0)
        entry[1] += 1
    for (month, code), (cents, lines) in months.items():
        session.add(DenialMonth(month=month, code=code, cents=cents, lines=lines))
    return len(days), len(months), recount_payments(session.connection())


def recount_payments(db: Connection) -> int:
    """Replace `PaymentDay` with a count over the remittance lines (also what migration 0016 runs). A copy of a
    payment imported before payments were keyed (no payment key) is left out: its first import counted it."""
    by_day: dict[date, list[int]] = {}
    for outcome, paid, imported in db.execute(
            select(RemittanceLine.outcome, RemittanceLine.paid_cents, Remittance.imported_at)
            .join(Remittance, Remittance.id == RemittanceLine.remittance_id)
            .where(Remittance.payment_key.is_not(None))):
        day = by_day.setdefault(as_utc(imported).date(), [0, 0])
        day[1 if outcome in NOT_APPLIED else 0] += paid
    db.execute(delete(PaymentDay))
    rows = [{"day": day, "applied_cents": a, "unmatched_cents": u} for day, (a, u) in sorted(by_day.items())]
    if rows:
        db.execute(PaymentDay.__table__.insert(), rows)
    return len(rows)
