"""Documented and signed gates: the note is complete and plausible, and the clinician signed it."""

from __future__ import annotations

from visitflow.models import Discipline, Finding, Gate, Role
from visitflow.rules.facts import GateInput
from visitflow.rules.units import visit_minutes

# Agency policy, not law: the settings module reads these defaults and may override them per discipline.
REQUIRED_NOTE_FIELDS_DEFAULT: dict[Discipline, list[str]] = {
    Discipline.RN: ["assessment", "interventions", "patient_response", "plan"],
    Discipline.LPN: ["assessment", "interventions", "patient_response", "plan"],
    Discipline.PT: ["assessment", "treatment", "patient_response", "plan"],
    Discipline.OT: ["assessment", "treatment", "patient_response", "plan"],
    Discipline.SLP: ["assessment", "treatment", "patient_response", "plan"],
    Discipline.HHA: ["tasks_performed", "client_condition"],
    Discipline.PCA: ["tasks_performed", "client_condition"],
}


def missing_note_fields(fields: dict[str, str], required: list[str]) -> list[str]:
    """Required fields that are absent or blank, in the order required, each once."""
    missing: list[str] = []
    for name in required:
        if not (fields.get(name) or "").strip() and name not in missing:
            missing.append(name)
    return missing


def _finding(rule_id: str, gate: Gate, message: str, role: Role, key: str, approvable: bool = False) -> Finding:
    return Finding(rule_id=rule_id, gate=gate, message=f"{rule_id} {message}", role=role, key=key,
                   approvable=approvable)


def doc_02_duration_within_bounds(ctx: GateInput) -> list[Finding]:
    """DOC-02: the visit's duration is within the service's min/max minutes, else a supervisor reviews it."""
    minutes = visit_minutes(ctx.visit)
    code = ctx.visit.spec.service_code
    if ctx.min_minutes is not None and minutes < ctx.min_minutes:
        message = f"visit lasted {minutes:.0f} min, shorter than the {ctx.min_minutes} min minimum for {code}"
    elif ctx.max_minutes is not None and minutes > ctx.max_minutes:
        message = f"visit lasted {minutes:.0f} min, longer than the {ctx.max_minutes} min maximum for {code}"
    else:
        return []
    return [_finding("DOC-02", Gate.documented, message, Role.supervisor, "DOC-02", approvable=True)]


def doc_03_required_fields(ctx: GateInput) -> list[Finding]:
    """DOC-03: the note is in and every required field for the discipline is filled."""
    note = ctx.visit.note
    if note is None:
        return [_finding("DOC-03", Gate.documented, "visit note not submitted", Role.clinician, "DOC-03")]
    missing = missing_note_fields(note.fields, ctx.required_note_fields)
    if not missing:
        return []
    return [_finding("DOC-03", Gate.documented, f"note is missing {', '.join(missing)}", Role.clinician,
                     "DOC-03")]


def sig_01_signed(ctx: GateInput) -> list[Finding]:
    """SIG-01: the note is signed. Who signs and when is enforced when the signature is taken."""
    if ctx.visit.signature is not None:
        return []
    return [_finding("SIG-01", Gate.signed, "note not signed by the clinician", Role.clinician, "SIG-01")]
