"""Acting on a visit from a page: what this person can do on it now (the work panel), and how an action's
answer comes back (the updated panel or row, or the same form with the problem next to its field).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from sqlmodel import Session

from visitflow.catalogue import send_back_can_help
from visitflow.db.tables import User, Visit
from visitflow.models import (
    ReasonCode,
    Role,
    VisitSnapshot,
    VisitState,
)
from visitflow.services import queries
from visitflow.services.errors import ServiceError
from visitflow.ui.deps import render
from visitflow.ui.forms import FormState, Target, note_field_name, place_rejection


def work_context(session: Session, user: User, view: queries.VisitView, **extra: Any) -> dict[str, Any]:
    """What this person can do on this visit now; each form starts empty unless `extra` says otherwise."""
    snap = view.snap
    is_open = snap.state not in (VisitState.released, VisitState.cancelled)
    own = user.role == Role.clinician and user.clinician_id == snap.spec.clinician_id
    waiting_stage = ("note" if snap.note is None else "signature" if snap.signature is None else None)
    ctx: dict[str, Any] = {
        "view": view, "snap": snap, "is_open": is_open, "draft_key": f"{user.id}:{snap.spec.visit_id}",
        "can_note": own and is_open and snap.signature is None,
        "can_sign": own and is_open and snap.note is not None and snap.signature is None,
        "can_punch": is_open and (own or user.role == Role.supervisor),
        "decisions": [h for h in snap.holds if h.approvable and h.role == Role.supervisor]
        if user.role == Role.supervisor and is_open else [],
        "extend_stage": waiting_stage if user.role == Role.supervisor and is_open else None,
        "can_reassign": user.role == Role.supervisor and is_open and snap.signature is None,
        # Held only by what billing, the office or a supervisor must resolve: a send-back would change nothing.
        "can_send_back": user.role in (Role.supervisor, Role.biller) and is_open and snap.signature is not None
        and send_back_can_help(snap.holds),
        "can_release": user.role == Role.biller and snap.state == VisitState.claim_ready,
        "my_tasks": [t for t in snap.tasks if t.role == user.role
                     and (user.role != Role.clinician or t.clinician_id == user.clinician_id)],
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
    """The same form, with what was typed and the problems next to their fields."""
    return render(request, template, {**context, "f": f}, status=status)


def done(request: Request, session: Session, user: User, target: Target, snap: VisitSnapshot, message: str,
         clear_draft: bool = False) -> Response:
    """An accepted action: the visit's work panel (or the list row) as it is now, and a message."""
    session.rollback()  # end any read transaction begun before the action, so reads see the new projection
    if target.context == "row":
        return render(request, "_row_done.html", {"row_id": target.row, "message": message, "flash": message},
                      headers={"HX-Retarget": f"#{target.row}", "HX-Reswap": "outerHTML",
                               "HX-Trigger": "queue-changed"})
    row = session.get(Visit, snap.spec.visit_id)
    view = queries.visit_view(session, row, snap, with_events=False)
    ctx = work_context(session, user, view, flash=message,
                       cleared_draft=f"{user.id}:{snap.spec.visit_id}" if clear_draft else None)
    return render(request, "_work.html", ctx,
                  headers={"HX-Retarget": "#work", "HX-Reswap": "outerHTML", "HX-Trigger": "visit-changed"})


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
