from datetime import timedelta

import pytest

from visitflow.models import Discipline, Gate, Role
from visitflow.rules import (
    REQUIRED_NOTE_FIELDS_DEFAULT,
    doc_02_duration_within_bounds,
    doc_03_required_fields,
    missing_note_fields,
    sig_01_signed,
)

from .conftest import visit


def test_doc_03_complete_note_passes() -> None:
    assert doc_03_required_fields(visit().ctx()) == []


def test_doc_03_missing_and_blank_fields_go_to_the_clinician() -> None:
    ctx = visit().note_fields(tasks_performed="  ").ctx()
    [finding] = doc_03_required_fields(ctx)
    assert (finding.key, finding.role, finding.gate, finding.approvable) == ("DOC-03", Role.clinician,
                                                                             Gate.documented, False)
    assert finding.message == "DOC-03 note is missing tasks_performed, client_condition"


def test_doc_03_no_note_yet() -> None:
    [finding] = doc_03_required_fields(visit().no_note().ctx(required_note_fields=[]))
    assert finding.key == "DOC-03" and "not submitted" in finding.message


def test_doc_03_nothing_required_means_any_note_passes() -> None:
    assert doc_03_required_fields(visit().note_fields().ctx(required_note_fields=[])) == []


def test_doc_03_missing_note_fields_keeps_order_and_drops_repeats() -> None:
    assert missing_note_fields({"plan": "x", "assessment": ""}, ["assessment", "plan", "treatment", "assessment"]) == [
        "assessment", "treatment"]


@pytest.mark.parametrize("discipline", list(Discipline))
def test_doc_03_every_discipline_has_default_fields(discipline: Discipline) -> None:
    assert REQUIRED_NOTE_FIELDS_DEFAULT[discipline]


def test_doc_02_duration_within_bounds_passes_including_the_edges() -> None:
    builder = visit().worked(60)
    assert doc_02_duration_within_bounds(builder.ctx(min_minutes=60, max_minutes=60)) == []
    assert doc_02_duration_within_bounds(builder.ctx()) == []


def test_doc_02_short_visit_is_an_approvable_supervisor_hold() -> None:
    [finding] = doc_02_duration_within_bounds(visit().worked(20).ctx(min_minutes=30))
    assert (finding.key, finding.role, finding.gate, finding.approvable) == ("DOC-02", Role.supervisor,
                                                                             Gate.documented, True)
    assert "20 min, shorter than the 30 min minimum for T1019" in finding.message


def test_doc_02_long_visit() -> None:
    [finding] = doc_02_duration_within_bounds(visit().worked(241).ctx(max_minutes=240))
    assert "longer than the 240 min maximum" in finding.message


def test_doc_02_uses_the_schedule_before_punches() -> None:
    builder = visit().no_punches()
    ten_minutes = builder.spec.scheduled_start + timedelta(minutes=10)
    builder.spec = builder.spec.model_copy(update={"scheduled_end": ten_minutes})
    assert len(doc_02_duration_within_bounds(builder.ctx(min_minutes=30))) == 1


def test_sig_01_signed_note_passes() -> None:
    assert sig_01_signed(visit().ctx()) == []


def test_sig_01_missing_signature_goes_to_the_clinician() -> None:
    [finding] = sig_01_signed(visit().unsigned().ctx())
    assert (finding.key, finding.role, finding.gate) == ("SIG-01", Role.clinician, Gate.signed)
