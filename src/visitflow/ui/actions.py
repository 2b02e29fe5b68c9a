"""Acting on a visit from a page: what this person can do on it now (the work panel), and how an action's
answer comes back (the updated panel or row, or the same form with the problem next to its field).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.catalogue import MISSED_REASON_LABELS, TASK_LABELS, send_back_can_help
from visitflow.db.tables import User
from visitflow.models import (
    END_STATES,
    Finding,
    PunchKind,
    ReasonCode,
    Role,
    VisitSnapshot,
    VisitState,
)
from visitflow.services import queries
from visitflow.services.commands import settled
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import get_ui, render
from visitflow.ui.forms import FormState, Target, note_field_name, place_rejection
from visitflow.ui.present import readable


def deadline_stage(snap: VisitSnapshot) -> str | None:
    """The deadline a supervisor can move on this visit now: the note's, else the signature's (None when the
    visit has both, or has ended)."""
    if snap.state in END_STATES:
        return None
    return "note" if snap.note is None else "signature" if snap.signature is None else None


def open_decisions(snap: VisitSnapshot, role: Role) -> list[Finding]:
    """The holds on this visit waiting for this role's decision: a supervisor's exceptions, billing's denials
    (DEN-01). A decision stays on the hold until the workflow's re-check drops it; it is never offered twice."""
    if snap.state in END_STATES:
        return []
    decided = {a.key for a in snap.acknowledgements}
    return [h for h in snap.holds if h.approvable and h.role == role and h.key not in decided]


def work_context(session: Session, user: User, view: queries.VisitView, **extra: Any) -> dict[str, Any]:
    """What this person can do on this visit now; each form starts empty unless `extra` says otherwise."""
    snap = view.snap
    is_open = snap.state not in END_STATES
    own = user.role == Role.clinician and user.clinician_id == snap.spec.clinician_id
    decided = {a.key for a in snap.acknowledgements}
    ctx: dict[str, Any] = {
        "view": view, "snap": snap, "is_open": is_open, "draft_key": f"{user.id}:{snap.spec.visit_id}",
        "can_note": own and is_open and snap.signature is None,
        "can_sign": own and is_open and snap.note is not None and snap.signature is None,
        "can_punch": is_open and (own or user.role == Role.supervisor),
        "decisions": open_decisions(snap, user.role),
        "rechecking": [h for h in snap.holds if h.key in decided and h.approvable],
        "extend_stage": deadline_stage(snap) if user.role == Role.supervisor else None,
        "can_reassign": user.role == Role.supervisor and is_open and snap.signature is None,
        # Held only by what billing, the office or a supervisor must resolve: a send-back would change nothing.
        "can_send_back": user.role in (Role.supervisor, Role.biller) and is_open and snap.signature is not None
        and send_back_can_help(snap.holds),
        "can_release": user.role == Role.biller and snap.state == VisitState.claim_ready,
        # CLM-07, as the billing page and release judge it: past the payer's limit the release form is not offered.
        "filing": queries.filing_status(view.row.service_date, view.payer,
                                        datetime.now(ZoneInfo(snap.spec.timezone)).date())
        if user.role == Role.biller and snap.state == VisitState.claim_ready and view.row is not None
        and view.payer is not None and view.row.service_date is not None else None,
        # What its claim line will charge: the fee schedule's rate for the service and modifiers, else the payer's.
        "unit_rate": queries.unit_rates(session, {snap.spec.payer_id})(
            snap.spec.payer_id, snap.spec.service_code, list(snap.spec.modifiers))
        if user.role == Role.biller and snap.state == VisitState.claim_ready else None,
        # MV-02: a visit nobody clocked in to or documented, once it was due to start.
        "can_mark_missed": user.role in (Role.admin, Role.supervisor) and is_open and snap.note is None
        and not any(p.kind == PunchKind.clock_in for p in snap.punches)
        and snap.spec.scheduled_start <= datetime.now(UTC),
        "missed_reasons": list(MISSED_REASON_LABELS.items()),
        # Tasks by name only: a hold behind a task is told once, in the visit's open holds.
        "my_tasks": list({TASK_LABELS.get(t.kind, t.title): t for t in snap.tasks if t.role == user.role
                          and (user.role != Role.clinician or t.clinician_id == user.clinician_id)}.items()),
        # Rule ids are the working words of billers and supervisors; everyone else reads the problem's name.
        "rule_ids": user.role in (Role.supervisor, Role.biller),
        "clinicians": queries.clinicians(session) if user.role == Role.supervisor else [],
        "reasons": list(ReasonCode), "release_key": uuid.uuid4().hex,
        "forms": {},
    }
    if ctx["can_note"] and snap.note is not None:  # a note sent back for revision starts from the last one
        ctx["forms"]["note"] = FormState({note_field_name(k): v for k, v in snap.note.fields.items()})
    ctx["forms"].update(extra.pop("forms", {}))
    ctx.update(extra)
    return ctx


def form_again(request: Request, template: str, context: dict[str, Any], f: FormState, status: int) -> Response:
    """The same form, with what was typed and the problems next to their fields (in a clinician's words: rule
    ids, enum values and UTC stamps in the workflow's answers are for the office, not the caregiver)."""
    user = getattr(request.state, "user", None)
    if user is not None and user.role == Role.clinician:
        f.errors = {name: readable(message, get_ui(request).clock) for name, message in f.errors.items()}
    return render(request, template, {**context, "f": f}, status=status)


def done(request: Request, session: Session, user: User, target: Target, snap: VisitSnapshot, message: str,
         clear_draft: bool = False) -> Response:
    """An accepted action: the visit's work panel (or the list row) as it is now, and a message."""
    session.rollback()  # end any read transaction begun before the action, so reads see the new projection
    if target.context == "row":
        return render(request, "_row_done.html", {"row_id": target.row, "message": message, "flash": message},
                      headers={"HX-Retarget": f"#{target.row}", "HX-Reswap": "outerHTML",
                               "HX-Trigger": "queue-changed"})
    view = queries.visit_view(session, queries.visit_row(session, snap.spec.visit_id), snap, with_events=False)
    ctx = work_context(session, user, view, flash=message,
                       cleared_draft=f"{user.id}:{snap.spec.visit_id}" if clear_draft else None)
    return render(request, "_work.html", ctx,
                  headers={"HX-Retarget": "#work", "HX-Reswap": "outerHTML", "HX-Trigger": "visit-changed"})


async def finish(request: Request, session: Session, user: User, target: Target, snap: VisitSnapshot, message: str,
                 clear_draft: bool = False) -> Response:
    """`done`, with the visit's panel drawn as the workflow left it after re-checking (a list row needs no wait:
    it only says the action was taken, and the list refreshes itself)."""
    if target.context != "row":
        snap = await settled(session, snap)
    return done(request, session, user, target, snap, message, clear_draft)


async def perform(request: Request, template: str, context: dict[str, Any], f: FormState,
                  call) -> VisitSnapshot | Response:
    """Run the action unless the form has problems; a rejection comes back as the form with its reason."""
    if not f.ok:
        return form_again(request, template, context, f, 422)
    try:
        return await call()
    except ServiceError as err:
        f.errors.update(place_rejection(err, f))
        return form_again(request, template, context, f, err.status)
