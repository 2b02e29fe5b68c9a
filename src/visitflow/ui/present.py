"""How the UI words things: labels in the agency's language, local times, durations, lateness."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from visitflow.models import ReasonCode, Role, VisitState

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
}

TASK_LABELS = {
    "write_note": "Write the visit note",
    "sign_note": "Sign the note",
    "fix_evv": "Fix the EVV punches",
    "fix_note": "Fix the note",
    "approve_exception": "Approve or reject an exception",
    "note_overdue": "Note overdue",
    "signature_overdue": "Signature overdue",
    "release": "Release for billing",
    "resolve_authorization": "Resolve the authorization",
    "fix_reference_data": "Fix patient or payer data",
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
    "scheduled": "Scheduled",
    "punch": "EVV punch",
    "punch_adjusted": "Punch corrected",
    "note_submitted": "Note submitted",
    "signed": "Note signed",
    "hold": "Held",
    "hold_cleared": "Hold cleared",
    "exception_approved": "Exception approved",
    "exception_rejected": "Exception rejected",
    "deadline_extended": "Deadline extended",
    "reassigned": "Reassigned",
    "rescheduled": "Rescheduled",
    "cancelled": "Cancelled",
    "released": "Released for billing",
    "sent_back": "Sent back to clinician",
    "authorization_changed": "Authorization changed",
    "authorized": "Authorized",
    "evv_verified": "EVV verified",
    "claim_ready": "Ready to bill",
    "note_reminder": "Note reminder sent",
    "note_escalation": "Late note escalated",
    "signature_reminder": "Signature reminder sent",
    "signature_escalation": "Late signature escalated",
}

# The rule catalogue in a sentence each, for hold group headings (ids as in DOMAIN.md).
RULES = {
    "DOC-01": "Note submitted on time",
    "DOC-02": "Visit length fits the service",
    "DOC-03": "Note has every required field",
    "SIG-01": "Note signed by the visit's clinician",
    "SIG-02": "Plan of care and orders signed",
    "AUTH-01": "An active authorization covers the visit",
    "AUTH-02": "Units stay within the authorization",
    "AUTH-03": "Visits stay within the ordered frequency",
    "AUTH-04": "Authorization change re-checked",
    "EVV-01": "All six EVV elements present",
    "EVV-02": "Punch at the service address",
    "EVV-03": "Clock-in and -out on schedule",
    "EVV-04": "Manual or corrected time approved",
    "EVV-05": "Visit no longer than the maximum",
    "EVV-06": "Correction within the maintenance window",
    "REL-01": "Released by a biller",
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


def dom_id(*parts: object) -> str:
    """A safe HTML id (and CSS selector) from visit ids and hold keys like 'EVV-02:punch-1'."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(str(p) for p in parts))


def as_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def human_duration(delta: timedelta) -> str:
    """'2 d 3 h', '5 h 10 min', '12 min' — the two largest units a person cares about."""
    minutes = int(abs(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


class Clock:
    """Formats times in the agency's zone; one per app (settings.agency_timezone)."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.zone_name = timezone

    def local(self, dt: datetime) -> datetime:
        return as_utc(dt).astimezone(self.zone)

    def when(self, dt: datetime | None) -> str:
        return f"{self.local(dt):%a %d %b %H:%M}" if dt else "—"

    def clock(self, dt: datetime | None) -> str:
        return f"{self.local(dt):%H:%M}" if dt else "—"

    def day(self, d: date | datetime | None) -> str:
        if d is None:
            return "—"
        if isinstance(d, datetime):
            d = self.local(d).date()
        return f"{d:%a %d %b %Y}"

    def input_value(self, dt: datetime | None) -> str:
        """The value of an <input type=datetime-local> showing dt in the agency's zone."""
        return f"{self.local(dt):%Y-%m-%dT%H:%M}" if dt else ""

    def parse_input(self, value: str) -> datetime | None:
        """A datetime-local value, read in the agency's zone, as UTC; None when it is not a time."""
        try:
            naive = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if naive.tzinfo is not None:
            return naive.astimezone(UTC)
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def lateness(self, due: datetime | None, now: datetime | None = None) -> tuple[str, bool]:
        """('3 h 10 min late', True) or ('due in 5 h', False)."""
        if due is None:
            return "no deadline", False
        delta = (now or self.now()) - as_utc(due)
        if delta.total_seconds() > 0:
            return f"{human_duration(delta)} late", True
        return f"due in {human_duration(delta)}", False

    def ago(self, dt: datetime | None, now: datetime | None = None) -> str:
        if dt is None:
            return "—"
        delta = (now or self.now()) - as_utc(dt)
        return f"{human_duration(delta)} ago" if delta.total_seconds() >= 60 else "just now"
