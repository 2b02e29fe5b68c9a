"""Billable units: minutes of care turned into HCPCS units under a payer's rounding strategy.

Actual time and billable units are separate things: nothing here ever changes a punch time.
"""

from __future__ import annotations

import math
from fractions import Fraction

from visitflow.models import Punch, PunchKind, RoundingStrategy, VisitSnapshot

# Minutes per unit for the HCPCS codes home care bills; None means per diem (one unit per visit day).
UNIT_MINUTES: dict[str, int | None] = {
    # per 15 minutes
    "T1019": 15,  # personal care
    "S5125": 15,  # attendant care
    "S5130": 15,  # homemaker
    "S5150": 15,  # respite
    "G0156": 15,  # home health aide
    "G0299": 15,  # RN
    "G0300": 15,  # LPN
    "G0151": 15,  # PT
    "G0152": 15,  # OT
    "G0153": 15,  # SLP
    # per hour
    "S9122": 60,  # home health aide
    "S9123": 60,  # RN
    "S9124": 60,  # LPN
    # per diem
    "T1020": None,  # personal care
    "S5126": None,  # attendant care
}

DEFAULT_UNIT_MINUTES = 15  # most home care codes are "per 15 minutes"


def unit_minutes(service_code: str) -> int | None:
    """Minutes in one unit of `service_code`; None for per-diem codes, 15 for codes we do not know."""
    return UNIT_MINUTES.get(service_code.strip().upper(), DEFAULT_UNIT_MINUTES)


def round_units(minutes: float, strategy: RoundingStrategy, unit_minutes: int = 15) -> int:
    """Units for `minutes` of care. Never negative; monotone in minutes for every strategy."""
    if unit_minutes <= 0:
        raise ValueError(f"unit_minutes must be positive, got {unit_minutes}")
    if math.isnan(minutes):
        raise ValueError("minutes is not a number")
    if minutes <= 0:
        return 0
    if math.isinf(minutes):
        raise ValueError("minutes is infinite")
    # Exact arithmetic so that boundaries (8, 22.5, 23 minutes) never fall on the wrong side of a float.
    m = Fraction(minutes)
    u = Fraction(unit_minutes)
    match strategy:
        case RoundingStrategy.cms_8_minute:
            # A unit counts once more than half of it is delivered: 8 of 15 minutes, 31 of 60.
            # For 15-minute units this is the CMS table floor((m + 7) / 15): <8 -> 0, 8-22 -> 1, 23-37 -> 2.
            first_unit_at = unit_minutes // 2 + 1
            units = math.floor((m + u - first_unit_at) / u)
        case RoundingStrategy.nearest_quarter:
            units = _round_half_up(m / u)
        case RoundingStrategy.medicare_hh:
            # Any time up to one unit is one unit; longer visits go to the nearest unit.
            units = 1 if m <= u else _round_half_up(m / u)
        case RoundingStrategy.ceil:
            units = math.ceil(m / u)
        case RoundingStrategy.floor:
            units = math.floor(m / u)
        case _:  # pragma: no cover - a new strategy must be handled explicitly
            raise ValueError(f"unknown rounding strategy {strategy!r}")
    return max(0, units)


def _round_half_up(x: Fraction) -> int:
    # Python's round() rounds halves to even; billing rounds halves up.
    return math.floor(x + Fraction(1, 2))


def billable_units(minutes: float, service_code: str, strategy: RoundingStrategy) -> int:
    """Units to bill for `minutes` of `service_code`; a per-diem code is one unit when any care was given."""
    size = unit_minutes(service_code)
    if size is None:
        return 1 if minutes > 0 else 0
    return round_units(minutes, strategy, size)


def latest_punch(punches: list[Punch], kind: PunchKind) -> Punch | None:
    """The punch of `kind` that counts: the latest one by sequence number (a re-punch supersedes)."""
    of_kind = [p for p in punches if p.kind == kind]
    return max(of_kind, key=lambda p: p.seq) if of_kind else None


def visit_minutes(visit: VisitSnapshot) -> float:
    """Minutes of care: effective clock-in to clock-out when both exist, else the scheduled duration.

    Never negative; a clock-out before the clock-in is EVV-05's problem and bills nothing.
    """
    clock_in = latest_punch(visit.punches, PunchKind.clock_in)
    clock_out = latest_punch(visit.punches, PunchKind.clock_out)
    if clock_in is not None and clock_out is not None:
        span = clock_out.effective_at - clock_in.effective_at
    else:
        span = visit.spec.scheduled_end - visit.spec.scheduled_start
    return max(0.0, span.total_seconds() / 60)
