"""Plain pydantic models that cross workflow, activity and API boundaries.

Nothing here touches a database or the clock: workflow modules import this file through
`workflow.unsafe.imports_passed_through()`, and ORM tables live in `visitflow.db.tables`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field


class Role(StrEnum):
    admin = "admin"  # office/intake staff and integrations: reference data, schedules
    clinician = "clinician"
    supervisor = "supervisor"
    biller = "biller"


class Discipline(StrEnum):
    RN = "RN"
    LPN = "LPN"
    PT = "PT"
    OT = "OT"
    SLP = "SLP"
    HHA = "HHA"  # home health aide
    PCA = "PCA"  # personal care attendant / caregiver


# SUP-01: aide care is supervised by an RN or a therapist.
AIDE_DISCIPLINES = frozenset({Discipline.HHA, Discipline.PCA})
SKILLED_DISCIPLINES = frozenset({Discipline.RN, Discipline.PT, Discipline.OT, Discipline.SLP})


class VisitState(StrEnum):
    scheduled = "scheduled"  # waiting for the visit and its note
    documented = "documented"  # note in, waiting for the signature
    signed = "signed"  # signed, gates being checked
    authorized = "authorized"  # AUTH gate passed, EVV being verified
    evv_verified = "evv_verified"
    on_hold = "on_hold"  # one or more open holds
    claim_ready = "claim_ready"
    released = "released"
    cancelled = "cancelled"
    # MV-02: the visit did not happen. Its own end state rather than a cancellation: an agency counts missed
    # visits (by reason, against the ordered frequency, to tell the practitioner) and never bills them, while a
    # cancelled visit was simply taken off the schedule.
    missed = "missed"


# The visit's workflow has ended: nothing more can be done to it (a payer's denial may reopen a released one).
END_STATES = frozenset({VisitState.released, VisitState.cancelled, VisitState.missed})


class MissedReason(StrEnum):
    """Why a scheduled visit did not happen (MV-02)."""

    patient_refused = "patient_refused"
    hospitalized = "hospitalized"
    not_home = "not_home"  # not home / no answer
    staff_no_show = "staff_no_show"
    other = "other"  # free text required


OPEN_STATES = frozenset(
    {VisitState.scheduled, VisitState.documented, VisitState.signed, VisitState.authorized,
     VisitState.evv_verified, VisitState.on_hold, VisitState.claim_ready}
)


class TaskKind(StrEnum):
    """Work a visit asks of someone."""

    write_note = "write_note"
    sign_note = "sign_note"
    fix_evv = "fix_evv"
    fix_note = "fix_note"
    approve_exception = "approve_exception"
    note_overdue = "note_overdue"
    signature_overdue = "signature_overdue"
    release = "release"
    resolve_authorization = "resolve_authorization"
    fix_reference_data = "fix_reference_data"
    resolve_denial = "resolve_denial"
    late_visit = "late_visit"  # MV-01: no clock-in yet, some minutes after the scheduled start
    supervisory_visit_due = "supervisory_visit_due"  # SUP-01


class EventKind(StrEnum):
    """What a visit's timeline records."""

    scheduled = "scheduled"
    punch = "punch"
    punch_adjusted = "punch_adjusted"
    note_submitted = "note_submitted"
    signed = "signed"
    hold = "hold"
    hold_cleared = "hold_cleared"
    exception_approved = "exception_approved"
    exception_rejected = "exception_rejected"
    deadline_extended = "deadline_extended"
    reassigned = "reassigned"
    rescheduled = "rescheduled"
    cancelled = "cancelled"
    released = "released"
    sent_back = "sent_back"
    authorization_changed = "authorization_changed"
    reference_data_changed = "reference_data_changed"
    authorized = "authorized"
    evv_verified = "evv_verified"
    claim_ready = "claim_ready"
    note_reminder = "note_reminder"
    note_escalation = "note_escalation"
    signature_reminder = "signature_reminder"
    signature_escalation = "signature_escalation"
    claim_denied = "claim_denied"
    back_to_billing = "back_to_billing"
    late_alert = "late_alert"
    late_alert_cleared = "late_alert_cleared"
    missed = "missed"
    supervisory_visit_documented = "supervisory_visit_documented"


class Stage(StrEnum):
    """What a visit waits for from its clinician, each with its own deadline (DOC-01, SIG-01)."""

    note = "note"
    signature = "signature"


class Decision(StrEnum):
    """A supervisor's decision on an exception (EVV-04 and others a supervisor may approve)."""

    approved = "approved"
    rejected = "rejected"


class Gate(StrEnum):
    documented = "documented"
    signed = "signed"
    authorized = "authorized"
    evv = "evv"
    claim = "claim"
    release = "release"
    ordered = "ordered"  # ORD-01, ORD-02: physician orders cover the visit (and are signed, where billing needs it)
    supervised = "supervised"  # SUP-01


class PunchKind(StrEnum):
    clock_in = "clock_in"
    clock_out = "clock_out"


class PunchMethod(StrEnum):
    gps = "gps"
    telephony = "telephony"  # patient's landline, caller id
    fixed_device = "fixed_device"  # FOB in the home
    manual = "manual"  # entered by hand: needs a reason code and supervisor approval (EVV-04)


class ReasonCode(StrEnum):
    mobile_device_issue = "mobile_device_issue"
    no_cell_coverage = "no_cell_coverage"
    forgot_to_clock = "forgot_to_clock"
    alternate_location = "alternate_location"
    schedule_error = "schedule_error"
    data_entry_error = "data_entry_error"
    patient_requested_change = "patient_requested_change"
    emergency = "emergency"
    other = "other"  # free text required


REASONS_NEEDING_TEXT = frozenset({ReasonCode.other, ReasonCode.alternate_location, ReasonCode.emergency})


class RoundingStrategy(StrEnum):
    cms_8_minute = "cms_8_minute"  # 8-22 min = 1 unit, 23-37 = 2, ...; under 8 = 0
    nearest_quarter = "nearest_quarter"  # Texas: nearest quarter hour
    medicare_hh = "medicare_hh"  # <=15 min = 1 unit, longer to the nearest 15
    ceil = "ceil"
    floor = "floor"


class Actor(BaseModel):
    """Who did something. Passed into every human action so the workflow can check the role."""

    user_id: int
    username: str
    role: Role
    clinician_id: int | None = None


class GeoPoint(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class PayerRules(BaseModel):
    """A payer's EVV, authorization and rounding settings; numbers here are configuration, not law."""

    evv_required: bool = True
    evv_radius_m: float = Field(default=402.0, gt=0)  # 1,320 ft
    clock_tolerance_min: int = Field(default=15, ge=0)
    max_visit_hours: float = Field(default=24.0, gt=0)
    correction_window_days: int = Field(default=95, ge=0)
    rounding: RoundingStrategy = RoundingStrategy.nearest_quarter
    # ORD-01: the visit disciplines this payer pays only under a physician order; ORD-02: whether it pays only
    # once the covering orders are signed (Medicare home health: the plan of care and every verbal order).
    orders_required: list[Discipline] = []
    signed_orders_before_billing: bool = False


class Timers(BaseModel):
    """Deadlines a visit runs with; fixed when the visit is scheduled (from settings)."""

    note_due: timedelta = timedelta(hours=24)  # after scheduled end
    note_escalate_after: timedelta = timedelta(hours=24)  # after the note deadline
    sign_due: timedelta = timedelta(hours=24)  # after the note
    sign_escalate_after: timedelta = timedelta(hours=24)
    hold_recheck_every: timedelta = timedelta(hours=6)  # safety net beside AUTH-04 signals


# The defaults, defined once: settings, payer records and visits start from these.
DEFAULT_PAYER_RULES = PayerRules()
DEFAULT_TIMERS = Timers()


class VisitSpec(BaseModel):
    """What was scheduled: the input of a VisitWorkflow."""

    visit_id: str
    patient_id: int
    clinician_id: int
    payer_id: int
    discipline: Discipline
    service_code: str  # HCPCS
    modifiers: list[str] = []
    scheduled_start: datetime
    scheduled_end: datetime
    timers: Timers = Timers()
    required_note_fields: list[str] = []  # DOC-03, from the agency's policy for the discipline
    correction_window_days: int = DEFAULT_PAYER_RULES.correction_window_days  # EVV-06, the payer's, when scheduled
    timezone: str = "UTC"  # the agency's zone: the date of service is the local date
    minutes_min: int | None = None  # DOC-02 bounds for the service, from the agency's policy
    minutes_max: int | None = None
    scheduled_by: str = "system"
    late_alert_minutes: int | None = None  # MV-01, the payer's, when scheduled; None: no late alert
    supervisory: bool = False  # SUP-01: an RN's or therapist's supervisory visit of the patient's aide care


class Punch(BaseModel):
    """An EVV punch. The original time is never edited; a correction sits beside it (EVV-04, EVV-06)."""

    seq: int
    kind: PunchKind
    at: datetime  # original time as captured
    method: PunchMethod
    location: GeoPoint | None = None
    reason_code: ReasonCode | None = None  # required for manual entries
    reason_text: str | None = None
    recorded_by: str
    recorded_at: datetime
    adjusted_at: datetime | None = None  # corrected time, if any
    adjust_reason_code: ReasonCode | None = None
    adjust_reason_text: str | None = None
    adjusted_by: str | None = None
    adjusted_when: datetime | None = None

    @property
    def effective_at(self) -> datetime:
        return self.adjusted_at or self.at

    @property
    def needs_approval(self) -> bool:
        return self.method == PunchMethod.manual or self.adjusted_at is not None


class Note(BaseModel):
    fields: dict[str, str]
    submitted_by: str
    submitted_at: datetime


class Signature(BaseModel):
    attestation: str
    signed_by: str
    signed_at: datetime


class Finding(BaseModel):
    """One reason a visit is not billable: a hold while it is open."""

    rule_id: str  # catalogue id, e.g. EVV-02
    gate: Gate
    message: str  # a person's words: "punch 2.3 km from the service address"
    role: Role  # who must act
    key: str  # stable identity, e.g. "EVV-02:punch-1"; acknowledgements refer to it
    approvable: bool = False  # whoever `role` names may accept it with a reason (clear it, for DEN-01)


# The roles that decide holds, each only the holds that name them (Finding.role): a supervisor an exception,
# billing a payer's denial of its own (DEN-01; EVV denials name the supervisor).
HOLD_DECIDERS = (Role.supervisor, Role.biller)


class Acknowledgement(BaseModel):
    key: str
    rule_id: str
    decision: str  # approved | rejected
    reason: str
    by: str
    at: datetime


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    kind: EventKind
    detail: str = ""
    state: VisitState


class Task(BaseModel):
    kind: TaskKind
    role: Role
    clinician_id: int | None = None
    title: str
    due_at: datetime | None = None
    escalated: bool = False
    hold_key: str | None = None


class GateResult(BaseModel):
    findings: list[Finding]
    billable_units: int | None = None
    authorization_id: int | None = None
    authorization_number: str | None = None


class DenialKind(StrEnum):
    """Who can fix what a payer denied, and how (from the 835's adjustment and remark codes)."""

    documentation = "documentation"  # the clinician revises the note and signs it again
    evv = "evv"  # the punches are reviewed and corrected; a supervisor confirms
    billing = "billing"  # the biller corrects the claim's facts (authorization, codes, member) and rebills


# CARC numbers and RARC codes that mean "the record does not support the service": the clinician's note is the
# fix (the default of the `denial_documentation_codes` setting).
DOCUMENTATION_DENIAL_CODES = frozenset({"50", "150", "252", "M127", "N29", "N706"})


class Denial(BaseModel):
    """A payer's denial of a released visit's claim line, read from an 835: it sends the visit back into work.

    The visit's workflow ended when it was released; a denial starts it again (same workflow id, a new run)
    from everything it knew, with this attached. Fixed and released again, the visit goes out on a
    replacement claim (frequency 7) naming the payer's number of the denied one.
    """

    key: str  # "<remittance id>:<visit id>": an 835 imported twice never sends a visit back twice
    remittance_id: int
    claim_control_number: str  # ours (CLM01)
    payer_claim_number: str | None = None  # the payer's (835 CLP07), named by the replacement claim
    kind: DenialKind
    reasons: list[str]  # each code with its words, e.g. "CO-252: documentation or an attachment is needed..."
    denied_cents: int
    denied_on: date | None = None


class BackToBilling(BaseModel):
    """A released visit whose claim was cancelled before the payer had it (a held claim voided): it is billable
    again, so it goes back to claim-ready through its gates, like a visit a denial reopens (a new run)."""

    key: str  # "void:<claim id>": voiding again never sends a visit back twice
    claim_control_number: str
    reason: str


class MarkMissed(BaseModel):
    """MV-02: the visit did not happen; it ends non-billable."""

    actor: Actor
    reason: MissedReason
    reason_text: str | None = None
    at: datetime | None = None  # when it was recorded; the workflow stamps it


class VisitSnapshot(BaseModel):
    """Everything the read model and the API show of a visit; produced by the workflow."""

    spec: VisitSpec
    state: VisitState
    version: int
    punches: list[Punch] = []
    note: Note | None = None
    signature: Signature | None = None
    holds: list[Finding] = []
    acknowledgements: list[Acknowledgement] = []
    tasks: list[Task] = []
    timeline: list[TimelineEntry] = []
    gates: dict[str, bool] = {}
    note_deadline: datetime | None = None
    sign_deadline: datetime | None = None
    billable_units: int | None = None
    authorization_id: int | None = None
    authorization_number: str | None = None
    release_batch_id: str | None = None
    released_by: str | None = None
    released_at: datetime | None = None
    cancelled_reason: str | None = None
    denial: Denial | None = None  # the payer's denial this run is fixing, if it is one
    missed: MarkMissed | None = None  # MV-02: why the visit did not happen, who said so
    late_alert_at: datetime | None = None  # MV-01: when the late alert went out (None: no alert, or cleared)


# --- Human actions (Update arguments) -------------------------------------------------------


class PunchInput(BaseModel):
    kind: PunchKind
    at: datetime
    method: PunchMethod
    location: GeoPoint | None = None
    reason_code: ReasonCode | None = None
    reason_text: str | None = None


class RecordPunch(BaseModel):
    actor: Actor
    punch: PunchInput
    now: datetime  # when the request arrived (EVV-06 window); the API stamps it


class AdjustPunch(BaseModel):
    actor: Actor
    seq: int
    adjusted_at: datetime
    reason_code: ReasonCode
    reason_text: str | None = None
    now: datetime


class SubmitNote(BaseModel):
    actor: Actor
    fields: dict[str, str]


class SignNote(BaseModel):
    actor: Actor
    attestation: bool
    attestation_text: str = "I attest that this note is accurate and that I delivered this visit."


class ResolveHold(BaseModel):
    actor: Actor
    key: str
    decision: Decision
    reason: str


class ExtendDeadline(BaseModel):
    actor: Actor
    stage: Stage
    new_deadline: datetime
    reason: str


class Reassign(BaseModel):
    actor: Actor
    clinician_id: int
    reason: str


class Reschedule(BaseModel):
    actor: Actor
    scheduled_start: datetime
    scheduled_end: datetime
    reason: str


class Cancel(BaseModel):
    actor: Actor
    reason: str


class Release(BaseModel):
    actor: Actor
    batch_id: str


class ReleaseRequest(BaseModel):
    """What a ReleaseWorkflow works on: a stored batch, who released it, and who bills (None: not configured)."""

    batch_id: str
    visit_ids: list[str]
    actor: Actor
    agency: dict | None = None  # a visitflow.claims.models.Agency, dumped (this module imports no claims code)
    file_blocker: str | None = None  # why no file can be written, in words
    timezone: str = "America/Chicago"


class ReleasedClaim(BaseModel):
    id: int
    control_number: str
    payer_id: int
    patient_id: int
    state: str
    total_cents: int
    visits: int


class ReleasedFile(BaseModel):
    id: int
    payer_id: int
    valid: bool
    claims: int
    findings: list[str] = []


class ReleaseOutcome(BaseModel):
    """What became of a release: which visits went into the batch, which were refused and why, and the claims and
    837P files made of them."""

    batch_id: str
    released: list[str] = []
    already_released: list[dict] = []
    rejected: list[dict] = []
    claims: list[ReleasedClaim] = []
    files: list[ReleasedFile] = []


class SendBack(BaseModel):
    actor: Actor
    message: str


class VisitProgress(BaseModel):
    """Everything a visit's workflow knows, in one model.

    It is what a long-lived visit carries into a fresh run of its workflow (continue-as-new) so its history
    stays short however long it is held, and what the snapshot is made from.
    """

    spec: VisitSpec
    state: VisitState = VisitState.scheduled
    version: int = 0
    punches: list[Punch] = []
    note: Note | None = None
    signature: Signature | None = None
    holds: list[Finding] = []
    acknowledgements: list[Acknowledgement] = []
    timeline: list[TimelineEntry] = []
    gate_result: GateResult | None = None
    note_deadline_override: datetime | None = None
    sign_deadline: datetime | None = None
    notified: set[str] = set()  # "note:reminder", "note:escalation", ...
    sent_back: str | None = None
    recheck: bool = False  # new facts arrived: evaluate the gates again
    release: Release | None = None
    released_at: datetime | None = None
    cancel: Cancel | None = None
    # Update ids of actions taken in earlier runs: a retry that crosses into a fresh run is not applied again.
    earlier_actions: list[str] = []
    denial: Denial | None = None  # set when a payer's denial sent the released visit back into work
    denials_seen: list[str] = []  # keys of every denial that reopened this visit
    back_to_billing: BackToBilling | None = None  # set when its claim was voided unadjudicated (read once, cleared)
    returns_seen: list[str] = []  # keys of every BackToBilling that reopened this visit
    missed: MarkMissed | None = None
    late_alert_at: datetime | None = None
    # CHG-01: change records that reached this visit and wait for its next gate check to say what they did.
    changes_pending: list[int] = []


class NotificationRequest(BaseModel):
    visit_id: str
    role: Role
    clinician_id: int | None = None
    kind: str  # note_reminder, note_escalation, signature_reminder, ...
    message: str
    dedupe_key: str  # a retried activity or a replayed timer never notifies twice


class ReferenceDataChanged(BaseModel):
    """Signal: a patient's or payer's facts changed (address, Medicaid id, EVV settings)."""

    what: str  # "patient 3", "payer 1"
    change: str
    at: datetime
    change_id: int | None = None  # CHG-01: the change record the visit's re-check outcome is written against


class AuthorizationChanged(BaseModel):
    """Signal: an authorization touching this visit was created or changed (AUTH-04)."""

    authorization_id: int
    change: str
    at: datetime
    change_id: int | None = None  # CHG-01: the change record the visit's re-check outcome is written against


class SupervisoryVisitDocumented(BaseModel):
    """Signal to a patient's supervision workflow: an RN or therapist documented a supervisory visit (SUP-01)."""

    visit_id: str
    patient_id: int
    service_date: date
    clinician_id: int
    discipline: Discipline


class SupervisionStatus(BaseModel):
    """Where a patient's aide supervision stands (SUP-01), as the supervision workflow times it."""

    patient_id: int
    due_on: date
    last_visit_on: date | None = None
    supervising_clinician_id: int | None = None
    prompt_at: datetime  # the prompt to the supervising clinician, ahead of the due date
    lapse_at: datetime  # the day after the due date begins: the supervision lapsed
    prompted: bool = False  # already prompted for this due date
    lapsed: bool = False  # already escalated for this due date


class SupervisionAlert(BaseModel):
    patient_id: int
    due_on: date
    kind: str  # prompt | lapse


def as_utc(dt: datetime) -> datetime:
    """Times without a zone are taken as UTC; everything inside VisitFlow is zone-aware UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def roles_phrase(roles) -> str:
    """'an admin or a supervisor': how a rejection names who may act."""
    return " or ".join(("an " if r.value[0] in "aeiou" else "a ") + r.value for r in roles)


def service_date(spec: VisitSpec) -> date:
    """The date of service is the local date at the start of the visit in the agency's zone."""
    return spec.scheduled_start.astimezone(ZoneInfo(spec.timezone)).date()


# --- physician orders (ORD-01..03) -----------------------------------------------------------


class OrderChase(BaseModel):
    """The input of an OrderWorkflow: which order, when it was sent, and the agency's chase intervals (ORD-03)."""

    order_id: int
    patient_id: int
    title: str  # "plan of care #12 for Ana Lopez (Dr. Rivera)"
    sent_on: date
    sent_at: datetime  # the chase's clock starts here
    entered_at: datetime  # when the order was entered: with its id, the chase's workflow id
    remind_every: timedelta
    escalate_after: timedelta


class SignOrder(BaseModel):
    """Update: the practitioner's signature came back (the office records it)."""

    actor: Actor
    signed_on: date
    document_ref: str | None = None
    now: datetime
    # The agency's offset from UTC when the office signs: a signature dated after the agency's today is refused
    # (in a Chicago evening, UTC is already on tomorrow). None (older callers): UTC's date, with a day's grace.
    agency_utc_offset_minutes: int | None = None


class ReturnOrder(BaseModel):
    """Update: the practitioner sent the order back unsigned (wrong frequency, wrong patient, ...)."""

    actor: Actor
    reason: str
    now: datetime


class OrderNotice(BaseModel):
    order_id: int
    role: Role
    kind: str  # order_reminder | order_escalation
    message: str
    number: int  # the n-th reminder: each is sent once
    at: datetime


class OrderOutcome(BaseModel):
    """Where an order's chase stands (the answer of its Updates and query)."""

    order_id: int
    status: str  # sent | signed | returned
    signed_on: date | None = None
    by: str | None = None
    document_ref: str | None = None
    returned_reason: str | None = None
    reminders_sent: int = 0
    escalated: bool = False
class ChangeOutcomeReport(BaseModel):
    """CHG-01: what the visit's gate check after one or more changes found, written against each change."""

    visit_id: str
    change_ids: list[int]
    state_before: VisitState
    state_after: VisitState
    units_before: int | None = None
    units_after: int | None = None
    holds: list[str] = []  # the hold messages the visit has now, in words


class EventDeliveryRequest(BaseModel):
    """One change event for one endpoint (see EventDeliveryWorkflow)."""

    endpoint_id: int
    event_id: str
    body: str  # the exact JSON sent and signed
