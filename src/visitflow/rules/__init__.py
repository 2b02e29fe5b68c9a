"""Pure pre-billing rules: no database, no clock, no environment; pydantic in, findings out.

Safe to call from a Temporal workflow or activity and to property-test.
"""

from visitflow.rules.authorization import (
    UnitLimit,
    auth_01_covered,
    auth_02_units_within_limits,
    choose_authorization,
    covering_authorizations,
    unit_limits,
    visit_units,
)
from visitflow.rules.claims import npi_is_valid
from visitflow.rules.documentation import (
    REQUIRED_NOTE_FIELDS_DEFAULT,
    doc_02_duration_within_bounds,
    doc_03_required_fields,
    missing_note_fields,
    sig_01_signed,
)
from visitflow.rules.evv import (
    counting_punches,
    evv_01_six_elements,
    evv_02_punch_at_service_address,
    evv_03_clock_within_tolerance,
    evv_04_manual_time_approved,
    evv_05_visit_length,
    evv_06_correction_allowed,
)
from visitflow.rules.facts import AuthorizationFacts, GateInput, PatientFacts, UsageEntry
from visitflow.rules.gates import GATES, Rule, approved_keys, evaluate, gate_status, run_rules
from visitflow.rules.geo import EARTH_RADIUS_M, describe_distance, distance_m
from visitflow.rules.units import (
    UNIT_MINUTES,
    billable_units,
    latest_punch,
    round_units,
    unit_minutes,
    visit_minutes,
)

__all__ = [
    "EARTH_RADIUS_M",
    "GATES",
    "REQUIRED_NOTE_FIELDS_DEFAULT",
    "UNIT_MINUTES",
    "AuthorizationFacts",
    "GateInput",
    "PatientFacts",
    "Rule",
    "UnitLimit",
    "UsageEntry",
    "approved_keys",
    "auth_01_covered",
    "auth_02_units_within_limits",
    "billable_units",
    "choose_authorization",
    "counting_punches",
    "covering_authorizations",
    "describe_distance",
    "distance_m",
    "doc_02_duration_within_bounds",
    "doc_03_required_fields",
    "evaluate",
    "evv_01_six_elements",
    "evv_02_punch_at_service_address",
    "evv_03_clock_within_tolerance",
    "evv_04_manual_time_approved",
    "evv_05_visit_length",
    "evv_06_correction_allowed",
    "gate_status",
    "latest_punch",
    "missing_note_fields",
    "npi_is_valid",
    "round_units",
    "run_rules",
    "sig_01_signed",
    "unit_limits",
    "unit_minutes",
    "visit_minutes",
    "visit_units",
]
