"""DEN-01: a denied visit is held for whoever the denial was routed to, until they clear it."""

from visitflow.models import Denial, DenialKind, Role
from visitflow.rules import evaluate

from .conftest import visit


def denied(kind: DenialKind) -> Denial:
    return Denial(key="3:v-1", remittance_id=3, claim_control_number="VF1", kind=kind,
                  reasons=["CO-197: prior authorization absent"], denied_cents=2400)


def ctx_with(kind: DenialKind, *acks: str):
    builder = visit()
    for key in acks:
        builder.ack(key)
    ctx = builder.ctx()
    return ctx.model_copy(update={"visit": ctx.visit.model_copy(update={"denial": denied(kind)})})


def test_billing_denial_holds_for_the_biller_with_the_payers_words() -> None:
    [hold] = evaluate(ctx_with(DenialKind.billing)).findings
    assert (hold.rule_id, hold.role, hold.key, hold.approvable) == ("DEN-01", Role.biller, "DEN-01:3:v-1", True)
    assert "claim VF1" in hold.message and "CO-197: prior authorization absent" in hold.message


def test_evv_denial_goes_to_a_supervisor() -> None:
    [hold] = evaluate(ctx_with(DenialKind.evv)).findings
    assert hold.role == Role.supervisor


def test_documentation_denial_needs_no_hold_the_new_signature_is_the_fix() -> None:
    assert evaluate(ctx_with(DenialKind.documentation)).findings == []


def test_cleared_denial_no_longer_holds() -> None:
    assert evaluate(ctx_with(DenialKind.billing, "DEN-01:3:v-1")).findings == []
