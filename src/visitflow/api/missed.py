"""Missed and late visits (MV-01/02) and aide supervision (SUP-01)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from visitflow.api.idempotency import IdempotencyDep
from visitflow.api.visits import VisitPublic
from visitflow.db.tables import PatientSupervisionCreate, PatientSupervisionPublic, User
from visitflow.deps import RowId, SessionDep, SettingsDep, TemporalDep, VisitId, let_go, require_role
from visitflow.models import MissedReason, Role
from visitflow.services import missed, supervision
from visitflow.services.commands import actor_of

router = APIRouter(prefix="/api", tags=["missed visits and supervision"])

OfficeUser = Annotated[User, require_role(Role.admin, Role.supervisor)]


class MissedBody(BaseModel):
    reason: MissedReason
    reason_text: str | None = Field(default=None, max_length=500, description="Required for reason `other`")


class MissedWeek(BaseModel):
    week_start: date
    week_end: date
    total: int
    by_reason: dict[str, int]


@router.post("/visits/{visit_id}/missed", response_model=VisitPublic)
async def mark_missed(visit_id: VisitId, body: MissedBody, temporal: TemporalDep, settings: SettingsDep,
                      user: OfficeUser, idempotency: IdempotencyDep):
    """MV-02: the visit did not happen. It ends non-billable (state `missed`, never released) and the supervisor,
    the office and whoever the payer requires are told. Only before any clock-in or note."""
    snap = await missed.mark_missed(temporal, visit_id, actor_of(user), body.reason, body.reason_text,
                                    idempotency.key)
    return VisitPublic.of(snap, settings)


@router.get("/missed-visits", response_model=MissedWeek)
def missed_visits(session: SessionDep, settings: SettingsDep, user: OfficeUser,
                  week_of: Annotated[date | None, Query(description="Any day of the week; default this week")] = None):
    """Missed visits of one week (Monday to Sunday, by date of service), by reason."""
    day = week_of or supervision.agency_today(settings)
    first, last = missed.week_of(day)
    counts = missed.missed_by_reason(session, first, last)
    return MissedWeek(week_start=first, week_end=last, total=sum(counts.values()), by_reason=counts)


@router.put("/patients/{item_id}/supervision", response_model=PatientSupervisionPublic)
async def set_supervision(item_id: RowId, body: PatientSupervisionCreate, session: SessionDep,
                          temporal: TemporalDep, settings: SettingsDep, user: OfficeUser,
                          idempotency: IdempotencyDep):
    """SUP-01: track the patient's aide supervision (`skilled`: every 14 days, `aide_only`: every 60, by the
    agency's settings). Starts the patient's supervision timers: a prompt ahead of the due date, an escalation
    when it lapses; aide visits after a lapsed due date are held until a supervisory visit is documented."""
    let_go(session)
    row = await supervision.set_supervision(session.get_bind(), temporal, settings, item_id, body, actor_of(user))
    return PatientSupervisionPublic.model_validate(row, from_attributes=True)


@router.get("/supervision", response_model=list[PatientSupervisionPublic])
def supervision_due(session: SessionDep, settings: SettingsDep, user: OfficeUser,
                    within_days: Annotated[int, Query(ge=0, le=366)] = 14,
                    limit: Annotated[int, Query(ge=1, le=500)] = 200):
    """Supervisory visits due within `within_days` (and lapsed ones), soonest first."""
    today = supervision.agency_today(settings)
    return [PatientSupervisionPublic.model_validate(r, from_attributes=True)
            for r in supervision.supervision_due(session, today + timedelta(days=within_days), limit)]
