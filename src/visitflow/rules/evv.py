"""EVV gate: the visit's electronic verification is complete, plausible and, where edited, approved.

Every rule returns no findings when the payer does not require EVV.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from visitflow.models import (
    REASONS_NEEDING_TEXT,
    Finding,
    Gate,
    PayerRules,
    Punch,
    PunchKind,
    PunchMethod,
    ReasonCode,
    Role,
)
from visitflow.rules.facts import GateInput
from visitflow.rules.geo import describe_distance, distance_m
from visitflow.rules.units import latest_punch

_KIND_WORDS = {PunchKind.clock_in: "clock-in", PunchKind.clock_out: "clock-out"}


def _finding(rule_id: str, message: str, role: Role, key: str, approvable: bool = False) -> Finding:
    # Messages start with the rule id so a hold reads the same in the UI, a task and a log line.
    return Finding(rule_id=rule_id, gate=Gate.evv, message=f"{rule_id} {message}", role=role, key=key,
                   approvable=approvable)


def counting_punches(ctx: GateInput) -> list[Punch]:
    """The punches that make up the visit record: the latest clock-in and the latest clock-out.

    Superseded punches stay on the visit for the audit trail but are not checked again: a caregiver
    fixes a bad punch by punching again (a manual re-punch then needs approval under EVV-04).
    """
    punches = [latest_punch(ctx.visit.punches, kind) for kind in (PunchKind.clock_in, PunchKind.clock_out)]
    return [p for p in punches if p is not None]


def evv_01_six_elements(ctx: GateInput) -> list[Finding]:
    """EVV-01: service type, recipient, date, location, provider, begin and end time are all recorded."""
    if not ctx.payer.evv_required:
        return []
    spec = ctx.visit.spec
    findings: list[Finding] = []
    for kind in (PunchKind.clock_in, PunchKind.clock_out):
        if latest_punch(ctx.visit.punches, kind) is None:
            findings.append(_finding("EVV-01", f"no {_KIND_WORDS[kind]} punch recorded", Role.clinician,
                                     f"EVV-01:{kind.value}"))
    if not (ctx.patient.medicaid_id or "").strip():
        findings.append(_finding("EVV-01", "patient has no Medicaid id", Role.admin, "EVV-01:medicaid_id"))
    if not spec.service_code.strip():
        findings.append(_finding("EVV-01", "visit has no service code", Role.admin, "EVV-01:service_code"))
    if not spec.clinician_id:  # ids start at 1; 0/None means nobody is assigned
        findings.append(_finding("EVV-01", "visit has no clinician", Role.admin, "EVV-01:clinician"))
    for punch in counting_punches(ctx):
        # Telephony and fixed devices sit in the registered home; a manual entry is located by attestation.
        if punch.method == PunchMethod.gps and punch.location is None:
            findings.append(_finding(
                "EVV-01", f"GPS {_KIND_WORDS[punch.kind]} has no location; punch again or enter it manually "
                "with a reason", Role.clinician, f"EVV-01:location-punch-{punch.seq}"))
    return findings


def evv_02_punch_at_service_address(ctx: GateInput) -> list[Finding]:
    """EVV-02: each GPS punch is within the payer's radius of the service address."""
    if not ctx.payer.evv_required:
        return []
    located = [(p, p.location) for p in counting_punches(ctx) if p.method == PunchMethod.gps and p.location]
    if not located:
        return []
    home = ctx.patient.service_location
    if home is None:
        return [_finding("EVV-02", "service address has no coordinates; GPS punches cannot be checked",
                         Role.admin, "EVV-02:service_address")]
    radius = ctx.payer.evv_radius_m
    findings = []
    for punch, where in located:
        metres = distance_m(where, home)
        if metres > radius:
            findings.append(_finding(
                "EVV-02", f"{_KIND_WORDS[punch.kind]} punch {describe_distance(metres)} from the service "
                f"address (allowed {describe_distance(radius)})", Role.supervisor, f"EVV-02:punch-{punch.seq}",
                approvable=True))
    return findings


def _local(ctx: GateInput, moment: datetime) -> datetime:
    """A time as people at the agency read it: in the agency's zone (the visit keeps it in its spec)."""
    return moment.astimezone(ZoneInfo(ctx.visit.spec.timezone))


def _minutes_words(delta: timedelta) -> str:
    # Round up so a punch 15.5 minutes off never reads "15 min" against a 15-minute tolerance.
    return f"{math.ceil(abs(delta).total_seconds() / 60)} min"


def evv_03_clock_within_tolerance(ctx: GateInput) -> list[Finding]:
    """EVV-03: clock-in and clock-out are within the payer's tolerance of the scheduled start and end."""
    if not ctx.payer.evv_required:
        return []
    spec = ctx.visit.spec
    tolerance = timedelta(minutes=ctx.payer.clock_tolerance_min)
    findings = []
    for kind, scheduled, what in ((PunchKind.clock_in, spec.scheduled_start, "start"),
                                  (PunchKind.clock_out, spec.scheduled_end, "end")):
        punch = latest_punch(ctx.visit.punches, kind)
        if punch is None:
            continue  # EVV-01 reports the missing punch
        off = punch.effective_at - scheduled
        if abs(off) > tolerance:
            direction = "after" if off > timedelta(0) else "before"
            findings.append(_finding(
                "EVV-03", f"{_KIND_WORDS[kind]} {_minutes_words(off)} {direction} the scheduled {what} "
                f"(tolerance {ctx.payer.clock_tolerance_min} min)", Role.supervisor, f"EVV-03:{kind.value}",
                approvable=True))
    return findings


def _reason_problem(code: ReasonCode | None, text: str | None) -> str | None:
    if code is None:
        return "no reason code"
    if code in REASONS_NEEDING_TEXT and not (text or "").strip():
        return f"reason '{code.value}' needs an explanation"
    return None


def evv_04_manual_time_approved(ctx: GateInput) -> list[Finding]:
    """EVV-04: manual or adjusted time carries a reason (and text where required) and a supervisor's approval."""
    if not ctx.payer.evv_required:
        return []
    findings = []
    for punch in counting_punches(ctx):
        if not punch.needs_approval:
            continue
        what = _KIND_WORDS[punch.kind]
        problems: list[str] = []
        changes: list[str] = []
        if punch.method == PunchMethod.manual:
            if problem := _reason_problem(punch.reason_code, punch.reason_text):
                problems.append(f"manual {what} has {problem}")
            changes.append(f"manual {what} entered by {punch.recorded_by} ({_reason_words(punch.reason_code)})")
        if punch.adjusted_at is not None:
            if problem := _reason_problem(punch.adjust_reason_code, punch.adjust_reason_text):
                problems.append(f"adjusted {what} has {problem}")
            prefix = "adjusted" if changes else f"{what} adjusted"
            changes.append(f"{prefix} from {_local(ctx, punch.at):%H:%M} to {_local(ctx, punch.adjusted_at):%H:%M} by "
                           f"{punch.adjusted_by or 'unknown'} ({_reason_words(punch.adjust_reason_code)})")
        if problems:
            # Only the person who entered the time can say why; a supervisor cannot wave this through.
            findings.append(_finding("EVV-04", "; ".join(problems), Role.clinician,
                                     f"EVV-04:punch-{punch.seq}:reason"))
        findings.append(_finding("EVV-04", f"{', '.join(changes)} needs supervisor approval", Role.supervisor,
                                 f"EVV-04:punch-{punch.seq}", approvable=True))
    return findings


def _reason_words(code: ReasonCode | None) -> str:
    return f"reason: {code.value}" if code is not None else "no reason given"


def evv_05_visit_length(ctx: GateInput) -> list[Finding]:
    """EVV-05: clock-out comes after clock-in and the visit is no longer than the payer's maximum."""
    if not ctx.payer.evv_required:
        return []
    clock_in = latest_punch(ctx.visit.punches, PunchKind.clock_in)
    clock_out = latest_punch(ctx.visit.punches, PunchKind.clock_out)
    if clock_in is None or clock_out is None:
        return []  # EVV-01 reports the missing punch
    start, end = clock_in.effective_at, clock_out.effective_at
    if end <= start:
        return [_finding("EVV-05", f"clock-out at {_local(ctx, end):%Y-%m-%d %H:%M} is not after clock-in at "
                         f"{_local(ctx, start):%Y-%m-%d %H:%M}", Role.clinician, "EVV-05")]
    hours = (end - start).total_seconds() / 3600
    if hours > ctx.payer.max_visit_hours:
        return [_finding("EVV-05", f"visit lasted {hours:.1f} h, longer than the "
                         f"{ctx.payer.max_visit_hours:g} h maximum", Role.clinician, "EVV-05")]
    return []


def evv_06_correction_allowed(service_date: date, now: datetime, payer: PayerRules) -> str | None:
    """EVV-06: a reason to refuse a punch correction made after the payer's maintenance window, else None.

    Used by the punch validators (not a gate rule). `now` is passed in: the rules never read the clock.
    """
    days_after = (now.date() - service_date).days
    if days_after > payer.correction_window_days:
        return (f"EVV-06 corrections close {payer.correction_window_days} days after the date of service "
                f"({service_date.isoformat()}); this is {days_after} days after, so it needs an unlock request")
    return None
