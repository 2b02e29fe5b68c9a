"""Authorized gate: a payer authorization covers the visit and has units left for it.

A visit that does not fit is held for the biller. Times are never changed to fit an authorization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from visitflow.models import Finding, Gate, Role, service_date
from visitflow.rules.facts import AuthorizationFacts, GateInput, UsageEntry
from visitflow.rules.units import billable_units, visit_minutes


def _code(code: str) -> str:
    return code.strip().upper()


def _modifier_set(modifiers: list[str]) -> frozenset[str]:
    # Modifier order on an authorization or a schedule carries no meaning.
    return frozenset(_code(m) for m in modifiers if m.strip())


def _service_words(code: str, modifiers: list[str]) -> str:
    return ":".join([_code(code), *sorted(_modifier_set(modifiers))])


def _same_service(ctx: GateInput, auth: AuthorizationFacts) -> bool:
    spec = ctx.visit.spec
    return (auth.patient_id == spec.patient_id and auth.payer_id == spec.payer_id
            and _code(auth.service_code) == _code(spec.service_code)
            and _modifier_set(auth.modifiers) == _modifier_set(spec.modifiers))


def covering_authorizations(ctx: GateInput) -> list[AuthorizationFacts]:
    """Active authorizations for this patient, payer, service code and modifiers on the date of service.

    Ordered by start date, then id: the order in which units are drawn from them.
    """
    day = service_date(ctx.visit.spec)
    covering = [a for a in ctx.authorizations
                if a.active and _same_service(ctx, a) and a.start_date <= day <= a.end_date]
    return sorted(covering, key=lambda a: (a.start_date, a.id))


def visit_units(ctx: GateInput) -> int:
    """Billable units of this visit under the payer's rounding (from punches, else the schedule)."""
    return billable_units(visit_minutes(ctx.visit), ctx.visit.spec.service_code, ctx.payer.rounding)


def _finding(rule_id: str, message: str, key: str) -> Finding:
    return Finding(rule_id=rule_id, gate=Gate.authorized, message=f"{rule_id} {message}", role=Role.biller,
                   key=key)


def auth_01_covered(ctx: GateInput) -> list[Finding]:
    """AUTH-01: an active authorization covers patient, payer, service code + modifiers and date of service."""
    if covering_authorizations(ctx):
        return []
    spec = ctx.visit.spec
    day = service_date(spec)
    message = f"no active authorization for {_service_words(spec.service_code, spec.modifiers)} on {day.isoformat()}"
    # Tell the biller what is nearly right, so the fix (extend, reactivate, correct the schedule) is obvious.
    hints = []
    for auth in sorted(ctx.authorizations, key=lambda a: (a.start_date, a.id)):
        if auth.patient_id != spec.patient_id or auth.payer_id != spec.payer_id:
            continue
        if _code(auth.service_code) != _code(spec.service_code):
            continue
        if _modifier_set(auth.modifiers) != _modifier_set(spec.modifiers):
            hints.append(f"authorization {auth.auth_number} is for "
                         f"{_service_words(auth.service_code, auth.modifiers)}")
        elif not auth.active:
            hints.append(f"authorization {auth.auth_number} is inactive")
        elif day > auth.end_date:
            hints.append(f"authorization {auth.auth_number} ends {auth.end_date.isoformat()}")
        elif day < auth.start_date:
            hints.append(f"authorization {auth.auth_number} starts {auth.start_date.isoformat()}")
    if hints:
        message += "; " + "; ".join(hints)
    return [_finding("AUTH-01", message, "AUTH-01")]


@dataclass(frozen=True)
class UnitLimit:
    """One unit limit of an authorization as it stands for this visit."""

    period: str  # words for the message: "this week"
    limit: int
    used: int  # by other visits in the same period

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)


def _same_iso_week(a: date, b: date) -> bool:
    # ISO weeks run Monday to Sunday and may straddle a year end (2026-W53 ends 2027-01-03).
    return a.isocalendar()[:2] == b.isocalendar()[:2]


def unit_limits(ctx: GateInput, auth: AuthorizationFacts) -> list[UnitLimit]:
    """The limits set on `auth`, each with the units other visits already used in this visit's period."""
    day = service_date(ctx.visit.spec)
    # The visit's own earlier usage must not count against it when the gates are re-checked.
    others: list[UsageEntry] = [u for u in ctx.usage.get(auth.id, []) if u.visit_id != ctx.visit.spec.visit_id]

    def used(in_period: Callable[[date], bool]) -> int:
        return sum(u.units for u in others if in_period(u.service_date))

    periods: list[tuple[str, int | None, Callable[[date], bool]]] = [
        ("this day", auth.units_per_day, lambda d: d == day),
        ("this week", auth.units_per_week, lambda d: _same_iso_week(d, day)),
        ("this month", auth.units_per_month, lambda d: (d.year, d.month) == (day.year, day.month)),
        ("in total", auth.units_total, lambda d: True),
    ]
    return [UnitLimit(words, limit, used(in_period)) for words, limit, in_period in periods if limit is not None]


def has_room(ctx: GateInput, auth: AuthorizationFacts, units: int) -> bool:
    return all(units <= limit.left for limit in unit_limits(ctx, auth))


def choose_authorization(ctx: GateInput) -> AuthorizationFacts | None:
    """The authorization this visit bills under: the first covering one with room for its units."""
    units = visit_units(ctx)
    return next((a for a in covering_authorizations(ctx) if has_room(ctx, a, units)), None)


def auth_02_units_within_limits(ctx: GateInput) -> list[Finding]:
    """AUTH-02: units used in each of the authorization's periods plus this visit stay within its limits."""
    covering = covering_authorizations(ctx)
    if not covering:
        return []  # AUTH-01 reports it
    units = visit_units(ctx)
    if any(has_room(ctx, a, units) for a in covering):
        return []
    # None has room: explain against the first, the one the visit would normally draw from.
    auth = covering[0]
    short = [limit for limit in unit_limits(ctx, auth) if units > limit.left]
    shortfalls = " and ".join(f"{limit.left} of {limit.limit} left {limit.period}" for limit in short)
    return [_finding("AUTH-02", f"{units} units needed, {shortfalls} on {auth.auth_number}", "AUTH-02")]
