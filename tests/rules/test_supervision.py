"""SUP-01: aide visits after the supervisory visit's due date are held; others, and skilled visits, are not."""

from __future__ import annotations

from datetime import date

from tests.rules.conftest import visit
from visitflow.models import Discipline, Gate, Role
from visitflow.rules import evaluate
from visitflow.rules.facts import SupervisionFacts
from visitflow.rules.supervision import sup_01_aide_supervision_current

VISIT_DAY = date(2026, 11, 20)  # the builder's visit, in UTC (the spec's zone)


def test_an_aide_visit_on_or_before_the_due_date_passes() -> None:
    for due in (VISIT_DAY, date(2026, 12, 4)):
        assert sup_01_aide_supervision_current(visit().ctx(supervision=SupervisionFacts(due_on=due))) == []


def test_an_aide_visit_after_a_lapse_is_held_for_the_supervisor_and_cannot_be_approved_away() -> None:
    ctx = visit().ctx(supervision=SupervisionFacts(due_on=date(2026, 11, 19), last_visit_on=date(2026, 9, 20)))
    [finding] = sup_01_aide_supervision_current(ctx)
    assert (finding.rule_id, finding.gate, finding.role, finding.approvable) == ("SUP-01", Gate.supervised,
                                                                               Role.supervisor, False)
    assert "2026-11-19" in finding.message and "2026-09-20" in finding.message
    # An approval with its key changes nothing: only a documented supervisory visit lifts it.
    assert [f.rule_id for f in evaluate(visit().ack(finding.key).ctx(supervision=ctx.supervision)).findings] == [
        "SUP-01"]


def test_hha_is_aide_care_too_and_skilled_visits_are_never_held() -> None:
    lapsed = SupervisionFacts(due_on=date(2026, 11, 1))
    assert sup_01_aide_supervision_current(visit(discipline=Discipline.HHA, service_code="G0156").ctx(
        supervision=lapsed))
    assert sup_01_aide_supervision_current(visit(discipline=Discipline.RN, service_code="G0299").ctx(
        supervision=lapsed)) == []


def test_a_patient_whose_supervision_is_not_tracked_is_not_held() -> None:
    assert sup_01_aide_supervision_current(visit().ctx()) == []
