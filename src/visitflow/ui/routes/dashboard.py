"""The dashboard: visits per state, backlog aging, note lag, holds and escalations.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.catalogue import (
    MISSED_REASON_LABELS,
    STATE_LABELS,
)
from visitflow.deps import SessionDep
from visitflow.models import (
    MissedReason,
    VisitState,
)
from visitflow.services import queries
from visitflow.services.missed import missed_by_reason, week_of
from visitflow.services.commands import now_utc
from visitflow.ui.charts import bars, stacked
from visitflow.ui.deps import StaffUser, UIDep, UIState, render
from visitflow.ui.present import human_duration
from visitflow.ui.routes.revenue import revenue_context

router = APIRouter(include_in_schema=False)


def dashboard_context(session: Session, ui: UIState) -> dict[str, Any]:
    s = ui.settings
    d = queries.dashboard(session, now_utc(), s.note_due, s.note_escalate_after)
    state_tones = {STATE_LABELS[VisitState.on_hold]: "danger", STATE_LABELS[VisitState.claim_ready]: "good",
                   STATE_LABELS[VisitState.released]: "muted", STATE_LABELS[VisitState.cancelled]: "muted"}
    due, late = (human_duration(limit) for limit in d.lag_limits)
    lag_buckets = list(zip([f"within {due}", f"{due} to {late}", f"over {late}"], d.lag_counts, strict=True))
    # MV-02: this week's missed visits (Monday to Sunday, agency days), by reason.
    first, last = week_of(ui.clock.local(now_utc()).date())
    missed = missed_by_reason(session, first, last)
    missed_bars = bars([(MISSED_REASON_LABELS[MissedReason(reason)], n) for reason, n in missed.items()],
                       tones={label: "warn" for label in MISSED_REASON_LABELS.values()})
    return {
        "missed_week": {"first": first, "last": last, "total": sum(missed.values())}, "missed_bars": missed_bars,
        "d": d,
        "state_bars": bars([(label, n) for _, label, n in d.states], tones=state_tones),
        "aging": stacked([(b.name, f"waiting on {b.who}", b.buckets) for b in d.backlogs], queries.AGE_BUCKETS),
        "age_labels": queries.AGE_BUCKETS,
        "lag_bars": bars(lag_buckets, tones={lag_buckets[1][0]: "warn", lag_buckets[2][0]: "danger"}),
        "hold_bars": bars([(rule, n) for rule, _, n in d.holds], notes={rule: text for rule, text, _ in d.holds},
                          tones={rule: "danger" for rule, _, _ in d.holds}),
        "escalation_bars": bars(d.escalations, tones={label: "warn" for label, _ in d.escalations}),
    }


@router.get("/dashboard")
def dashboard_page(request: Request, session: SessionDep, user: StaffUser, ui: UIDep) -> Response:
    return render(request, "dashboard.html", {**dashboard_context(session, ui), **revenue_context(session, ui.clock)})


@router.get("/dashboard/charts")
def dashboard_charts(request: Request, session: SessionDep, user: StaffUser, ui: UIDep) -> Response:
    return render(request, "_dashboard_charts.html", dashboard_context(session, ui))
