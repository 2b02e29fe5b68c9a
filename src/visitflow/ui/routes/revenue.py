"""Revenue at risk, for the dashboard and the billing page: the dollars behind every hold, queue and claim."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.deps import SessionDep
from visitflow.services.commands import now_utc
from visitflow.services.revenue import AR_BUCKETS, HOLD_BUCKETS, revenue_at_risk
from visitflow.ui.charts import bars
from visitflow.ui.deps import StaffUser, get_ui, render
from visitflow.ui.present import Clock

router = APIRouter(include_in_schema=False)


def dollars(cents: float) -> str:
    return f"${cents / 100:,.0f}" if abs(cents) >= 100_000 else f"${cents / 100:,.2f}"


def revenue_context(session: Session, clock: Clock) -> dict[str, Any]:
    now = now_utc()
    r = revenue_at_risk(session, now, clock.local(now).date())  # filing limits count the agency's days
    ages = list(zip(HOLD_BUCKETS, r.held_by_age, strict=True))
    receivable = list(zip(AR_BUCKETS, r.receivable, strict=True))
    return {
        "revenue": r,
        "dollars": dollars,
        "held_bars": bars([(h.rule_id, h.cents) for h in r.held], shown=dollars,
                          notes={h.rule_id: f"{h.title} ({h.visits} visit{'' if h.visits == 1 else 's'})"
                                 for h in r.held}, tones={h.rule_id: "danger" for h in r.held}),
        "held_age_bars": bars(ages, shown=dollars, tones={ages[2][0]: "warn", ages[3][0]: "danger"}),
        "receivable_bars": bars(receivable, shown=dollars,
                                tones={receivable[2][0]: "warn", receivable[3][0]: "danger"}),
        "denied_bars": bars([(d.code, d.cents) for d in r.denied], shown=dollars,
                            notes={d.code: f"{d.words} ({d.lines} line{'' if d.lines == 1 else 's'})"
                                   for d in r.denied}, tones={d.code: "danger" for d in r.denied}),
    }


@router.get("/revenue/charts")
def revenue_charts(request: Request, session: SessionDep, user: StaffUser) -> Response:
    return render(request, "_revenue_charts.html", revenue_context(session, get_ui(request).clock))
