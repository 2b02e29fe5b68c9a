"""One settings source: environment over TOML file over defaults; durations in words."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from visitflow.settings import Settings


def test_environment_durations_and_policy(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISITFLOW_NOTE_DUE", "30s")
    monkeypatch.setenv("VISITFLOW_SIGN_ESCALATE_AFTER", "2d")
    monkeypatch.setenv("VISITFLOW_VISIT_MINUTES", '{"T1019": [15, 720]}')
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/visitflow")
    s = Settings()
    assert s.note_due == timedelta(seconds=30) and s.sign_escalate_after == timedelta(days=2)
    assert s.timers().note_due == timedelta(seconds=30)
    assert s.visit_minutes == {"T1019": (15, 720)}
    assert s.resolved_database_url == "postgresql://postgres@127.0.0.1/visitflow"
    assert s.required_note_fields["RN"] == ["assessment", "interventions", "patient_response", "plan"]


def test_toml_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "visitflow.toml").write_text('note_due = "12h"\nsign_due = "6h"\nagency_name = "Bluebonnet Care"\n')
    monkeypatch.setenv("VISITFLOW_SIGN_DUE", "1h")
    s = Settings()
    assert s.note_due == timedelta(hours=12) and s.sign_due == timedelta(hours=1)
    assert s.agency_name == "Bluebonnet Care"
    assert s.resolved_database_url.endswith("data/visitflow.db")


def test_a_bad_duration_is_refused_with_its_reason(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISITFLOW_NOTE_DUE", "soon")
    with pytest.raises(ValidationError, match="not a duration"):
        Settings()
