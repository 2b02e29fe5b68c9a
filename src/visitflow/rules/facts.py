"""The facts a gate needs besides the visit itself.

The caller (an activity) loads these from the database; the rules only read them, so every rule stays a
pure function of a `GateInput`.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from visitflow.models import GeoPoint, PayerRules, VisitSnapshot


class PatientFacts(BaseModel):
    patient_id: int
    medicaid_id: str | None
    service_location: GeoPoint | None  # geocoded service address; EVV-02 measures GPS punches from it


class AuthorizationFacts(BaseModel):
    """A payer's prior authorization: what may be billed for whom, when, and how many units."""

    id: int
    auth_number: str  # goes on the claim as REF*G1
    patient_id: int
    payer_id: int
    service_code: str  # HCPCS
    modifiers: list[str] = []
    start_date: date
    end_date: date  # inclusive
    units_per_day: int | None = None
    units_per_week: int | None = None  # ISO week, Monday to Sunday
    units_per_month: int | None = None  # calendar month
    units_total: int | None = None  # whole authorization
    active: bool = True


class UsageEntry(BaseModel):
    """Units already consumed under an authorization by another visit."""

    visit_id: str
    service_date: date
    units: int


class OrderFacts(BaseModel):
    """A physician order for the patient (ORD-01..03, AUTH-03): what it orders, from when, and whether signed."""

    id: int
    kind: str  # plan_of_care | verbal | interim
    patient_id: int
    practitioner_name: str
    effective_from: date
    effective_to: date | None = None  # inclusive; None while open-ended
    frequencies: list[str] = []  # one line per discipline, e.g. "HHA 3W2, 2W2"
    signed_on: date | None = None
    status: str = "sent"  # sent | signed | returned


class OrderedVisit(BaseModel):
    """Another live visit of the patient under the same orders, for counting against the frequency (AUTH-03)."""

    visit_id: str
    discipline: str
    service_date: date
    scheduled_start: datetime
class SupervisionFacts(BaseModel):
    """SUP-01: when the patient's aide care was last supervised and when the next supervisory visit is due."""

    due_on: date
    last_visit_on: date | None = None


class GateInput(BaseModel):
    """Everything the pre-billing gates look at for one visit."""

    visit: VisitSnapshot
    patient: PatientFacts
    payer: PayerRules
    authorizations: list[AuthorizationFacts]
    usage: dict[int, list[UsageEntry]] = Field(default_factory=dict)  # key: authorization id
    required_note_fields: list[str] = []  # DOC-03, per discipline from settings
    min_minutes: int | None = None  # DOC-02, per service from settings
    max_minutes: int | None = None
    orders: list[OrderFacts] = []  # the patient's orders effective on the date of service
    ordered_visits: list[OrderedVisit] = []  # the patient's other live visits in those orders' dates
    supervision: SupervisionFacts | None = None  # SUP-01; None: the patient's aide care is not tracked here
