"""How released visits become claims: the billing period a visit falls in, the claim's number, the charge.

Pure: the release's claim activity (visitflow.activities.release) feeds it rows and writes what it returns.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import date, timedelta
from enum import StrEnum

# The 837P allows 50 service lines on a claim (2400 loop repeat); a longer period is billed on more claims,
# each starting on a new date of service so a day's service is never split (CLM-05).
MAX_LINES_PER_CLAIM = 50


class BillingPeriod(StrEnum):
    visit = "visit"  # one claim per date of service (two visits of one day share it: CLM-05)
    week = "week"  # one claim per patient per week, Monday to Sunday
    month = "month"  # one claim per patient per calendar month


def period_of(service_date: date, period: BillingPeriod | str) -> tuple[date, date]:
    """(first day, last day) of the billing period a date of service falls in."""
    period = BillingPeriod(period)
    if period == BillingPeriod.week:
        start = service_date - timedelta(days=service_date.weekday())
        return start, start + timedelta(days=6)
    if period == BillingPeriod.month:
        start = service_date.replace(day=1)
        following = (start + timedelta(days=32)).replace(day=1)
        return start, following - timedelta(days=1)
    return service_date, service_date


def control_number(*identity: object) -> str:
    """CLM01 (at most 20 characters): derived from what makes the claim unique, so a retried release writes the
    same number and the payer's duplicate check sees one claim. 'VF' and 90 bits of a SHA-256 in base 32."""
    digest = hashlib.sha256("|".join(str(part) for part in identity).encode()).digest()
    return "VF" + base64.b32encode(digest).decode()[:18]


def split_lines(dated: list[tuple[date, object]]) -> list[list[object]]:
    """Lines of one period (sorted by date) into claims of at most MAX_LINES_PER_CLAIM, never splitting a date.

    A single date with more lines than a claim holds stays on one (too long) claim: the file check then refuses
    it in words rather than splitting a day's service across claims.
    """
    claims: list[list[object]] = []
    day_groups: list[list[object]] = []
    for day, item in dated:
        if day_groups and day_groups[-1][0][0] == day:
            day_groups[-1].append((day, item))
        else:
            day_groups.append([(day, item)])
    current: list[object] = []
    for group in day_groups:
        if current and len(current) + len(group) > MAX_LINES_PER_CLAIM:
            claims.append(current)
            current = []
        current.extend(item for _, item in group)
    if current:
        claims.append(current)
    return claims
