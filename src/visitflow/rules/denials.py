"""DEN-01: a visit the payer denied stays held until whoever the denial was routed to says it is fixed.

A documentation denial needs no hold: the visit goes back to its clinician to revise and sign again, and the
gates run on the new signature. Other denials (EVV, authorization, billing facts) hold the visit for the biller
(the supervisor, for EVV) to clear once the fix is in, so a visit is never rebilled unchanged by accident.
"""

from __future__ import annotations

from visitflow.models import DenialKind, Finding, Gate, Role
from visitflow.rules.facts import GateInput


def den_01_denial_fixed(ctx: GateInput) -> list[Finding]:
    denial = ctx.visit.denial
    if denial is None or denial.kind == DenialKind.documentation:
        return []
    role = Role.supervisor if denial.kind == DenialKind.evv else Role.biller
    return [Finding(
        rule_id="DEN-01", gate=Gate.claim, role=role, key=f"DEN-01:{denial.key}", approvable=True,
        message=(f"the payer denied claim {denial.claim_control_number}: {'; '.join(denial.reasons)}; "
                 "fix it, then clear this hold to bill the visit again"))]
