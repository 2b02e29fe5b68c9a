"""Missed visits (MV-02) for the dashboard and the API: marking one missed, and the week's count by reason."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func
from sqlmodel import Session, select
from temporalio.client import Client

from visitflow.db.tables import Visit
from visitflow.models import Actor, MarkMissed, MissedReason, VisitSnapshot, VisitState
from visitflow.services.commands import act
from visitflow.workflows.visit import VisitWorkflow

async def mark_missed(client: Client, visit_id: str, actor: Actor, reason: MissedReason, reason_text: str | None,
                      idempotency_key: str | None = None) -> VisitSnapshot:
    """MV-02: the visit's workflow checks who may, and that it did not happen (no clock-in, no note)."""
    text = reason_text.strip() if reason_text and reason_text.strip() else None
    return await act(client, visit_id, VisitWorkflow.mark_missed,
                     MarkMissed(actor=actor, reason=reason, reason_text=text), idempotency_key)


def week_of(day: date) -> tuple[date, date]:
    """Monday to Sunday around `day`."""
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def missed_by_reason(session: Session, first: date, last: date) -> dict[str, int]:
    """Missed visits with a date of service in [first, last], by reason code; every reason listed (0 when none).

    Read from the state and date-of-service indexes: only the missed visits of those days are counted.
    """
    rows = session.exec(select(Visit.missed_reason, func.count()).where(
        Visit.state == VisitState.missed.value, Visit.service_date >= first, Visit.service_date <= last)
        .group_by(Visit.missed_reason)).all()
    counts = {reason.value: 0 for reason in MissedReason}
    for reason, n in rows:
        counts[reason or MissedReason.other.value] = counts.get(reason or MissedReason.other.value, 0) + n
    return counts
