"""Each person's notices (`/notices`): the reminders and escalations the workflows sent to them (the same
`queries.notifications_for` as `GET /api/notifications`, which applies who may read which), newest first, a page
at a time after a keyset cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session, select

from visitflow.activities.supervision import SUPERVISION_INBOX
from visitflow.db.tables import Notification, Patient, User
from visitflow.deps import SessionDep
from visitflow.models import Role
from visitflow.services import queries
from visitflow.ui.deps import PageCursor, UserDep, render

router = APIRouter(include_in_schema=False)

PAGE = 25
SUPERVISION_PREFIX = SUPERVISION_INBOX.format(patient_id="")  # a patient's SUP-01 notices: "supervision-<id>"
ORDER_PREFIX = "order-"  # an order's notices (activities.orders)
NOTICE_WORDS = {
    "supervision_prompt": "Supervisory visit due", "supervision_lapse": "Supervisory visit lapsed",
    "order_reminder": "Order waiting for signature", "order_escalation": "Order unsigned too long",
    "late_alert": "Late or missed visit", "missed_visit": "Missed visit",
    "missed_visit_notice": "Missed visit: notice to send",
}
OFFICE = (Role.admin, Role.supervisor)  # who may open the supervision and orders pages


@dataclass
class Notice:
    n: Notification
    title: str
    patient: str | None  # whose supervisory visit (SUP-01 notices name no visit)
    link: str | None
    link_words: str
    message: str  # as the workflow wrote it, the patient named where it says "patient <id>"


@router.get("/notices")
def notices_page(request: Request, session: SessionDep, user: UserDep, after: PageCursor) -> Response:
    before = queries.decode_cursor(after, datetime, int) if after else None
    rows = queries.notifications_for(session, user, PAGE + 1, before)
    shown = rows[:PAGE]
    following = queries.encode_cursor(shown[-1].created_at, shown[-1].id) if len(rows) > PAGE else None
    names = _patient_names(session, shown)
    return render(request, "notices.html", {"notices": [_notice(n, user, names) for n in shown],
                                            "first": before is None, "next_after": following,
                                            "rule_ids": user.role in (Role.supervisor, Role.biller)})


def _supervised_patient(n: Notification) -> int | None:
    rest = n.visit_id.removeprefix(SUPERVISION_PREFIX)
    return int(rest) if rest != n.visit_id and rest.isdigit() else None


def _patient_names(session: Session, notices: list[Notification]) -> dict[int, str]:
    """The names of the patients the page's SUP-01 notices are about: one read by primary key for the page."""
    ids = {p for n in notices if (p := _supervised_patient(n)) is not None}
    if not ids:
        return {}
    return {p.id: queries.person(p) for p in session.exec(select(Patient).where(Patient.id.in_(ids)))}


def _notice(n: Notification, user: User, names: dict[int, str]) -> Notice:
    title = NOTICE_WORDS.get(n.kind) or n.kind.replace("_", " ").capitalize()
    patient_id = _supervised_patient(n)
    if patient_id is not None:
        name = names.get(patient_id, f"patient {patient_id}")
        link = f"/supervision?patient={patient_id}#set-title" if user.role in OFFICE else None
        message = re.sub(rf"\bpatient {patient_id}\b", lambda _: name, n.message)
        return Notice(n, title, name, link, f"{name}'s supervision", message)
    if n.visit_id.startswith(ORDER_PREFIX):
        return Notice(n, title, None, "/orders" if user.role in OFFICE else None, "Orders pending signature",
                      n.message)
    return Notice(n, title, None, f"/visits/{n.visit_id}", f"Visit {n.visit_id}", n.message)
