"""Marking a visit missed from its page (MV-02); the aide supervision page (SUP-01)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from visitflow.catalogue import MISSED_REASON_LABELS
from visitflow.db.tables import User
from visitflow.deps import SessionDep, TemporalDep
from visitflow.models import MissedReason, Role
from visitflow.services import missed
from visitflow.services.commands import actor_of
from visitflow.services.supervision import agency_today, supervision_board
from visitflow.ui.actions import done, perform
from visitflow.ui.deps import UIDep, render, role_page, visible_visit
from visitflow.ui.forms import Target, read_form

router = APIRouter(include_in_schema=False)

OfficeUser = Annotated[User, role_page(Role.admin, Role.supervisor)]


@router.post("/visits/{visit_id}/missed")
async def mark_missed(visit_id: str, request: Request, session: SessionDep, temporal: TemporalDep,
                      user: OfficeUser) -> Response:
    view = visible_visit(session, user, visit_id, with_events=False)
    form = await request.form()
    f = read_form(form, ["reason", "reason_text"])
    target = Target.of(form)
    reason = f.need("reason", "Choose why the visit did not happen.")
    if reason and reason not in {r.value for r in MissedReason}:
        f.errors["reason"] = "Choose a reason from the list."
    if reason == MissedReason.other.value and not f.v("reason_text").strip():
        f.errors["reason_text"] = "Say what happened."
    ctx = {"view": view, "visit_id": visit_id, "target": target,
           "missed_reasons": list(MISSED_REASON_LABELS.items())}
    result = await perform(request, "_form_missed.html", ctx, f,
                           lambda: missed.mark_missed(temporal, visit_id, actor_of(user), MissedReason(reason),
                                                      f.v("reason_text"), f.key))
    if isinstance(result, Response):
        return result
    return done(request, session, user, target, result,
                f"Visit {visit_id} was marked missed ({MISSED_REASON_LABELS[MissedReason(reason)].lower()}); "
                "it will not be billed.")


@router.get("/supervision")
def supervision_page(request: Request, session: SessionDep, user: OfficeUser, ui: UIDep,
                     within_days: Annotated[int, Query(ge=0, le=366)] = 14) -> Response:
    today = agency_today(ui.settings)
    return render(request, "supervision.html", {
        "rows": supervision_board(session, today + timedelta(days=within_days)), "today": today,
        "within_days": within_days, "skilled_days": ui.settings.supervision_skilled_days,
        "aide_only_days": ui.settings.supervision_aide_only_days})
