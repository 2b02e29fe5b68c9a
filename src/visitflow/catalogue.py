"""One vocabulary: how VisitFlow names states, tasks, events, reasons and rules in the agency's words.

Read by the services, the API and the UI alike, so a rule or a task is called the same thing everywhere.
Rule ids are those of the domain catalogue (DOMAIN.md); each rule is named as the problem it holds a visit for.
"""

from __future__ import annotations

from visitflow.models import EventKind, Finding, MissedReason, ReasonCode, Role, TaskKind, VisitState

STATE_LABELS = {
    VisitState.scheduled: "Scheduled",
    VisitState.documented: "Awaiting signature",
    VisitState.signed: "Signed, being checked",
    VisitState.authorized: "Authorized",
    VisitState.evv_verified: "EVV verified",
    VisitState.on_hold: "On hold",
    VisitState.claim_ready: "Ready to bill",
    VisitState.released: "Released",
    VisitState.cancelled: "Cancelled",
    VisitState.missed: "Missed",
}

TASK_LABELS = {
    TaskKind.write_note: "Write the visit note",
    TaskKind.sign_note: "Sign the note",
    TaskKind.fix_evv: "Fix the EVV punches",
    TaskKind.fix_note: "Fix the note",
    TaskKind.approve_exception: "Approve or reject an exception",
    TaskKind.note_overdue: "Note overdue",
    TaskKind.signature_overdue: "Signature overdue",
    TaskKind.release: "Release for billing",
    TaskKind.resolve_authorization: "Resolve the authorization",
    TaskKind.fix_reference_data: "Fix patient or payer data",
    TaskKind.resolve_denial: "Fix what the payer denied",
    TaskKind.late_visit: "Late visit: no clock-in yet",
    TaskKind.supervisory_visit_due: "Supervisory visit due",
}

# Status chips on a clinician's task (services.queries.TaskRow.chips), most serious first.
TASK_CHIPS = {
    "missed": "Missed: not clocked in",
    "sent_back": "Sent back",
    "overdue": "Overdue",
    "escalated": "Escalated to your supervisor",
}

ROLE_LABELS = {
    Role.clinician: "Clinician",
    Role.supervisor: "Clinical supervisor",
    Role.biller: "Billing",
    Role.admin: "Office (admin)",
}

ROLE_PEOPLE = {  # who a page is for, in the plural
    Role.clinician: "clinicians",
    Role.supervisor: "clinical supervisors",
    Role.biller: "billers",
    Role.admin: "office staff",
}

REASON_LABELS = {
    ReasonCode.mobile_device_issue: "Mobile device issue",
    ReasonCode.no_cell_coverage: "No cell coverage",
    ReasonCode.forgot_to_clock: "Forgot to clock in or out",
    ReasonCode.alternate_location: "Service at an alternate location (explain)",
    ReasonCode.schedule_error: "Schedule error",
    ReasonCode.data_entry_error: "Data entry error",
    ReasonCode.patient_requested_change: "Patient requested a change",
    ReasonCode.emergency: "Emergency (explain)",
    ReasonCode.other: "Other (explain)",
}

METHOD_LABELS = {"gps": "Mobile GPS", "telephony": "Telephone", "fixed_device": "Fixed device",
                 "manual": "Manual entry"}
PUNCH_LABELS = {"clock_in": "Clock-in", "clock_out": "Clock-out"}

EVENT_LABELS = {
    EventKind.scheduled: "Scheduled",
    EventKind.punch: "EVV punch",
    EventKind.punch_adjusted: "Punch corrected",
    EventKind.note_submitted: "Note submitted",
    EventKind.signed: "Note signed",
    EventKind.hold: "Held",
    EventKind.hold_cleared: "Hold cleared",
    EventKind.exception_approved: "Exception approved",
    EventKind.exception_rejected: "Exception rejected",
    EventKind.deadline_extended: "Deadline extended",
    EventKind.reassigned: "Reassigned",
    EventKind.rescheduled: "Rescheduled",
    EventKind.cancelled: "Cancelled",
    EventKind.released: "Released for billing",
    EventKind.sent_back: "Sent back to clinician",
    EventKind.authorization_changed: "Authorization changed",
    EventKind.reference_data_changed: "Patient or payer details changed",
    EventKind.authorized: "Authorized",
    EventKind.evv_verified: "EVV verified",
    EventKind.claim_ready: "Ready to bill",
    EventKind.note_reminder: "Note reminder sent",
    EventKind.note_escalation: "Late note escalated",
    EventKind.signature_reminder: "Signature reminder sent",
    EventKind.signature_escalation: "Late signature escalated",
    EventKind.claim_denied: "Claim denied by the payer",
    EventKind.back_to_billing: "Back to billing: its claim was voided before the payer had it",
    EventKind.late_alert: "Late: no clock-in, supervisor and office alerted",
    EventKind.late_alert_cleared: "Late alert cleared",
    EventKind.missed: "Marked missed (not billable)",
    EventKind.supervisory_visit_documented: "Supervisory visit recorded",
}

# The rule catalogue (ids as in DOMAIN.md): each rule named as the problem a person sees when it holds a visit.
RULES = {
    "DOC-01": "Note not submitted on time",
    "DOC-02": "Visit length outside the service's limits",
    "DOC-03": "Note missing required fields",
    "SIG-01": "Note not signed by the visit's clinician",
    "SIG-02": "Plan of care or orders not signed",
    "AUTH-01": "No authorization covers the visit",
    "AUTH-02": "Units over the authorization",
    "AUTH-03": "More visits than the ordered frequency",
    "AUTH-04": "Authorization changed: re-checking",
    "EVV-01": "EVV elements missing",
    "EVV-02": "Punch far from the client's address",
    "EVV-03": "Clock-in or clock-out off schedule",
    "EVV-04": "Manual or corrected time needs approval",
    "EVV-05": "Visit longer than the maximum",
    "EVV-06": "Correction past the maintenance window",
    "REL-01": "Release blocked",
    "CLM-05": "Service already billed on another claim",
    "CLM-06": "Claim file fails the X12 check",
    "CLM-07": "Past the payer's timely filing limit",
    "DEN-01": "Claim line denied by the payer",
    "ORD-01": "No physician order covers the visit",
    "ORD-02": "Physician order not signed yet",
    "ORD-03": "Order unsigned: practitioner reminded",
    "SUP-01": "Aide supervisory visit overdue",
    "MV-01": "No clock-in after the scheduled start",
    "MV-02": "Visit missed",
}

# MV-02 reason codes, in the office's words.
MISSED_REASON_LABELS = {
    MissedReason.patient_refused: "Patient refused",
    MissedReason.hospitalized: "Hospitalized",
    MissedReason.not_home: "Not home / no answer",
    MissedReason.staff_no_show: "Staff no-show",
    MissedReason.other: "Other",
}

GATES = [("documented", "Documented"), ("signed", "Signed"), ("authorized", "Authorized"), ("evv", "EVV verified")]

FIELD_HINTS = {
    "assessment": "What you observed and measured today.",
    "interventions": "What you did: care, teaching, procedures.",
    "treatment": "Treatment given and the patient's tolerance.",
    "patient_response": "How the patient responded.",
    "plan": "What happens next visit.",
    "tasks_performed": "The care tasks you carried out.",
    "client_condition": "How the client was: mood, appetite, anything unusual.",
}


def field_label(name: str) -> str:
    return name.replace("_", " ").capitalize()



# HCPCS service codes home care bills (DOMAIN.md, "Units and rounding"): what people call each service and what
# one unit of it is (a claim line's units mean nothing without it). A code not listed is shown as it is.
SERVICES = {
    "T1019": ("Personal care", "per 15 min"),
    "S5125": ("Attendant care", "per 15 min"),
    "S5130": ("Homemaker", "per 15 min"),
    "S5150": ("Respite care", "per 15 min"),
    "G0156": ("Home health aide", "per 15 min"),
    "G0299": ("Skilled nursing (RN)", "per 15 min"),
    "G0300": ("Skilled nursing (LPN)", "per 15 min"),
    "G0151": ("Physical therapy", "per 15 min"),
    "G0152": ("Occupational therapy", "per 15 min"),
    "G0153": ("Speech-language therapy", "per 15 min"),
    "S9122": ("Home health aide", "per hour"),
    "S9123": ("Nursing care (RN)", "per hour"),
    "S9124": ("Nursing care (LPN)", "per hour"),
    "T1020": ("Personal care", "per diem"),
    "S5126": ("Attendant care", "per diem"),
}
SERVICE_NAMES = {code: name for code, (name, _unit) in SERVICES.items()}


def service_name(code: str) -> str:
    """What a clinician calls the service: 'Personal care'."""
    return SERVICE_NAMES.get(code.upper(), code)


def service_label(code: str, modifiers: list[str] | None = None) -> str:
    """What a biller reads: 'T1019 Personal care, per 15 min' (with modifiers: 'T1019-U1 …')."""
    coded = "-".join([code, *(modifiers or [])])
    if code.upper() not in SERVICES:
        return coded
    name, unit = SERVICES[code.upper()]
    return f"{coded} {name}, {unit}"


def hold_words(message: str, rule_id: str) -> str:
    """A hold's reason without its leading rule id: pages show the id once, as a small tag."""
    return message.removeprefix(f"{rule_id} ").removeprefix(rule_id).strip() or message


def clinician_can_fix(role: Role) -> bool:
    """Whether sending a held visit back to its clinician can clear the hold.

    The rules route each hold to whoever can remove its cause: the clinician's own note or punches (DOC-03,
    SIG-01, a missing punch, a punch reason, the visit's length) go to the clinician. Authorization holds go to
    billing, patient and payer data to the office, exceptions to a supervisor's decision: sending those back
    would only withdraw a good signature and change nothing.
    """
    return role == Role.clinician


def send_back_can_help(holds: list[Finding]) -> bool:
    """A signed visit may go back to its clinician unless every hold on it is someone else's to resolve."""
    return not holds or any(clinician_can_fix(h.role) for h in holds)


# CHG-01: what a recorded change did to an open visit, and the kinds of change, in the biller's words.
CHANGE_OUTCOMES = {"pending": "Re-checking…", "held": "Put on hold", "cleared": "Hold cleared",
                   "units_moved": "Units changed", "still_held": "Still on hold", "still_ready": "No effect: still ready",
                   "not_checked": "Not billable yet: checked when signed"}
CHANGE_KINDS = {"authorization_added": "Authorization added", "authorization_changed": "Authorization changed",
                "authorization_ended": "Authorization ended", "visit_rescheduled": "Visit rescheduled",
                "visit_reassigned": "Visit reassigned", "patient_changed": "Patient details changed",
                "payer_changed": "Payer details changed", "order_added": "Physician order entered",
                "order_changed": "Physician order changed"}
