from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from visitflow.models import Finding, Gate, PayerRules, PunchKind, PunchMethod, ReasonCode, Role
from visitflow.rules import (
    GATES,
    GateInput,
    PatientFacts,
    UsageEntry,
    approved_keys,
    evaluate,
    gate_status,
    run_rules,
)

from .conftest import HOME, PATIENT_ID, START, approval, authorization, keys, moved, visit


def test_gates_run_in_order() -> None:
    assert list(GATES) == [Gate.documented, Gate.signed, Gate.ordered, Gate.authorized, Gate.evv, Gate.claim,
                           Gate.supervised]


def test_clean_visit_passes_every_gate_and_bills_under_its_authorization() -> None:
    result = evaluate(visit().ctx())
    assert result.findings == []
    assert (result.billable_units, result.authorization_id, result.authorization_number) == (4, 1, "PA-1")
    assert gate_status(result.findings) == {"documented": True, "signed": True, "ordered": True, "authorized": True,
                                            "evv": True, "claim": True, "supervised": True}


def test_findings_come_in_gate_order() -> None:
    ctx = visit().unsigned().no_note().without(PunchKind.clock_out).ctx(authorizations=[])
    assert [f.rule_id for f in evaluate(ctx).findings] == ["DOC-03", "SIG-01", "AUTH-01", "EVV-01"]


def test_approved_key_drops_the_finding() -> None:
    builder = visit().clock_in(START + timedelta(minutes=42))
    assert keys(evaluate(builder.ctx()).findings) == ["EVV-03:clock_in"]
    assert evaluate(builder.ack("EVV-03:clock_in").ctx()).findings == []


def test_the_last_acknowledgement_for_a_key_wins() -> None:
    builder = visit().clock_in(START + timedelta(minutes=42))
    assert evaluate(builder.ack("EVV-03:clock_in").ack("EVV-03:clock_in", "rejected").ctx()).findings != []
    assert evaluate(builder.ack("EVV-03:clock_in", "approved").ctx()).findings == []


def test_approval_of_another_key_does_not_clear() -> None:
    builder = visit().clock_in(START + timedelta(minutes=42)).ack("EVV-03:clock_out")
    assert keys(evaluate(builder.ctx()).findings) == ["EVV-03:clock_in"]


def test_an_approval_cannot_clear_a_hard_hold() -> None:
    # A missing punch or an exhausted authorization must be fixed; an acknowledgement does not make it billable.
    builder = visit().without(PunchKind.clock_out).ack("EVV-01:clock_out").ack("AUTH-01")
    assert keys(evaluate(builder.ctx(authorizations=[])).findings) == ["AUTH-01", "EVV-01:clock_out"]


def test_over_authorization_bills_under_no_authorization() -> None:
    usage = {1: [UsageEntry(visit_id="other", service_date=date(2026, 11, 18), units=40)]}
    result = evaluate(visit().ctx(usage=usage))
    assert keys(result.findings) == ["AUTH-02"]
    assert result.billable_units == 4 and result.authorization_id is None and result.authorization_number is None
    assert gate_status(result.findings)["authorized"] is False


def test_gate_status_names_each_failing_gate() -> None:
    ctx = visit().unsigned().clock_in(location=moved(HOME, north_m=3000)).ctx()
    assert gate_status(evaluate(ctx).findings) == {"documented": True, "signed": False, "ordered": True,
                                                   "authorized": True, "evv": False, "claim": True,
                                                   "supervised": True}


def test_gate_status_includes_gates_of_later_rules() -> None:
    finding = Finding(rule_id="CLM-02", gate=Gate.claim, message="bad NPI", role=Role.biller, key="CLM-02")
    assert gate_status([finding])["claim"] is False


def test_rules_appended_to_a_gate_are_run(monkeypatch) -> None:
    def auth_03(ctx: GateInput) -> list[Finding]:
        return [Finding(rule_id="AUTH-03", gate=Gate.authorized, message="AUTH-03 over frequency",
                        role=Role.biller, key="AUTH-03")]

    monkeypatch.setitem(GATES, Gate.authorized, [*GATES[Gate.authorized], auth_03])
    assert keys(evaluate(visit().ctx()).findings) == ["AUTH-03"]


def test_approved_keys_follow_recording_order() -> None:
    acks = [approval("A"), approval("B"), approval("A", "rejected"), approval("C", "rejected"), approval("C")]
    assert approved_keys(acks) == {"B", "C"}


def test_evaluate_is_pure() -> None:
    ctx = visit().clock_in(START + timedelta(minutes=42)).ctx(authorizations=[])
    before = ctx.model_dump()
    assert evaluate(ctx) == evaluate(ctx)
    assert ctx.model_dump() == before


# --- property: approvals


@st.composite
def troubled_visits(draw: st.DrawFn) -> GateInput:
    """Visits with any mix of EVV, documentation, signature and authorization problems."""
    builder = visit()
    for kind, scheduled in ((PunchKind.clock_in, builder.spec.scheduled_start),
                            (PunchKind.clock_out, builder.spec.scheduled_end)):
        if draw(st.booleans()):
            builder.without(kind)
            continue
        method = draw(st.sampled_from(list(PunchMethod)))
        offset = timedelta(minutes=draw(st.integers(min_value=-90, max_value=26 * 60 if kind == PunchKind.clock_out
                                                    else 90)))
        extra: dict[str, object] = {}
        if draw(st.booleans()):
            extra.update(adjusted_at=scheduled, adjusted_by="sup",
                         adjust_reason_code=draw(st.none() | st.sampled_from(list(ReasonCode))))
        builder.without(kind).add_punch(
            kind, scheduled + offset, method=method,
            location=draw(st.none() | st.builds(moved, st.just(HOME), st.floats(min_value=0, max_value=5000))),
            reason_code=draw(st.none() | st.sampled_from(list(ReasonCode))),
            reason_text=draw(st.sampled_from([None, "", "phone died"])), **extra)
    if draw(st.booleans()):
        builder.no_note()
    elif draw(st.booleans()):
        builder.note_fields(tasks_performed="bathing")
    if draw(st.booleans()):
        builder.unsigned()
    auths = draw(st.sampled_from([[], [authorization()], [authorization(units_per_week=2)],
                                  [authorization(end_date=date(2026, 11, 19))]]))
    patient = PatientFacts(patient_id=PATIENT_ID, medicaid_id=draw(st.sampled_from(["TX1", None])),
                           service_location=draw(st.sampled_from([HOME, None])))
    return builder.ctx(authorizations=auths, patient=patient, min_minutes=draw(st.sampled_from([None, 30, 90])),
                       max_minutes=draw(st.sampled_from([None, 120])),
                       payer=PayerRules(evv_required=draw(st.booleans())))


@settings(max_examples=200, deadline=None)
@given(ctx=troubled_visits(), data=st.data())
def test_property_evaluate_never_returns_an_approved_finding(ctx: GateInput, data: st.DataObject) -> None:
    before = run_rules(ctx)
    candidate_keys = [f.key for f in before] + ["EVV-02:punch-99", "unrelated"]
    decisions = data.draw(st.lists(st.tuples(st.sampled_from(candidate_keys),
                                             st.sampled_from(["approved", "rejected"])), max_size=12))
    acks = [approval(key, decision) for key, decision in decisions]
    visit_with_acks = ctx.visit.model_copy(update={"acknowledgements": acks})
    result = evaluate(ctx.model_copy(update={"visit": visit_with_acks}))

    approved = {key for key, decision in dict(decisions).items() if decision == "approved"}
    assert not any(f.approvable and f.key in approved for f in result.findings)
    # Nothing else disappears: hard holds stay, unapproved and rejected findings stay, order is kept.
    assert result.findings == [f for f in before if not (f.approvable and f.key in approved)]


@settings(max_examples=200, deadline=None)
@given(ctx=troubled_visits())
def test_property_keys_are_unique_and_gate_status_matches_findings(ctx: GateInput) -> None:
    findings = evaluate(ctx).findings
    assert len(keys(findings)) == len(set(keys(findings)))
    status = gate_status(findings)
    assert all(status[f.gate.value] is False for f in findings)
    assert all(passed for gate, passed in status.items() if gate not in {f.gate.value for f in findings})
    assert all(f.message.startswith(f.rule_id + " ") for f in findings)
