"""SUP-01: aide care is supervised by an RN or a therapist on a schedule (42 CFR 484.80(h)): every 14 days for a
patient with skilled services, every 60 days for aide-only care (agency settings). An aide visit whose date of
service falls after the supervisory visit's due date is held until the next supervisory visit is documented; then
the due date moves and the held visit passes on its next check.
"""

from __future__ import annotations

from visitflow.models import AIDE_DISCIPLINES, Finding, Gate, Role, service_date
from visitflow.rules.facts import GateInput


def sup_01_aide_supervision_current(ctx: GateInput) -> list[Finding]:
    sup = ctx.supervision
    spec = ctx.visit.spec
    if sup is None or spec.discipline not in AIDE_DISCIPLINES:
        return []
    day = service_date(spec)
    if day <= sup.due_on:
        return []
    last = f"the last was on {sup.last_visit_on}" if sup.last_visit_on else "none is on record"
    return [Finding(
        rule_id="SUP-01", gate=Gate.supervised, role=Role.supervisor, key=f"SUP-01:{sup.due_on}",
        message=(f"SUP-01 the aide supervisory visit was due by {sup.due_on} ({last}); this aide visit on {day} "
                 "is held until an RN or therapist documents a supervisory visit"))]
