"""The pre-billing gates: run every rule, drop what a supervisor approved, report what still holds the visit."""

from __future__ import annotations

from collections.abc import Callable

from visitflow.models import Acknowledgement, Finding, Gate, GateResult
from visitflow.rules.authorization import (
    auth_01_covered,
    auth_02_units_within_limits,
    choose_authorization,
    visit_units,
)
from visitflow.rules.denials import den_01_denial_fixed
from visitflow.rules.documentation import doc_02_duration_within_bounds, doc_03_required_fields, sig_01_signed
from visitflow.rules.evv import (
    evv_01_six_elements,
    evv_02_punch_at_service_address,
    evv_03_clock_within_tolerance,
    evv_04_manual_time_approved,
    evv_05_visit_length,
)
from visitflow.rules.facts import GateInput
from visitflow.rules.orders import auth_03_within_frequency, ord_01_ordered, ord_02_signed
from visitflow.rules.supervision import sup_01_aide_supervision_current

Rule = Callable[[GateInput], list[Finding]]

# Gates in the order a visit passes them. Each is a list so later rules (AUTH-03, CLM-*) can be appended.
GATES: dict[Gate, list[Rule]] = {
    Gate.documented: [doc_02_duration_within_bounds, doc_03_required_fields],
    Gate.signed: [sig_01_signed],
    Gate.ordered: [ord_01_ordered, ord_02_signed],  # physician orders (rules/orders.py)
    Gate.authorized: [auth_01_covered, auth_02_units_within_limits, auth_03_within_frequency],
    Gate.evv: [evv_01_six_elements, evv_02_punch_at_service_address, evv_03_clock_within_tolerance,
               evv_04_manual_time_approved, evv_05_visit_length],
    Gate.claim: [den_01_denial_fixed],
    Gate.supervised: [sup_01_aide_supervision_current],
}


def approved_keys(acknowledgements: list[Acknowledgement]) -> set[str]:
    """Keys whose latest acknowledgement (in the order recorded) is an approval."""
    latest: dict[str, str] = {}
    for ack in acknowledgements:
        latest[ack.key] = ack.decision
    return {key for key, decision in latest.items() if decision == "approved"}


def run_rules(ctx: GateInput) -> list[Finding]:
    """Every finding of every gate, before acknowledgements; one finding per key."""
    findings: dict[str, Finding] = {}
    for rules in GATES.values():
        for rule in rules:
            for finding in rule(ctx):
                findings.setdefault(finding.key, finding)
    return list(findings.values())


def evaluate(ctx: GateInput) -> GateResult:
    """Findings still holding the visit, its billable units and the authorization it bills under.

    A supervisor's approval clears only findings marked approvable: a missing punch or an exhausted
    authorization is fixed, never acknowledged away.
    """
    approved = approved_keys(ctx.visit.acknowledgements)
    findings = [f for f in run_rules(ctx) if not (f.approvable and f.key in approved)]
    auth = choose_authorization(ctx)
    return GateResult(
        findings=findings,
        billable_units=visit_units(ctx),
        authorization_id=auth.id if auth else None,
        authorization_number=auth.auth_number if auth else None,
    )


def gate_status(findings: list[Finding]) -> dict[str, bool]:
    """Gate name -> passed (no open finding), for every known gate and any gate a finding names."""
    status = {gate.value: True for gate in GATES}
    for finding in findings:
        status[finding.gate.value] = False
    return status
