"""SQL tables: reference data the API accepts, and the read model the workflows project into.

Reference data follows the Base / Create / Public split: `XBase` holds the fields a caller sends,
`X` is the table, `XCreate` is the request body, `XPublic` the response. The read-model tables
(`Visit`, `VisitEvent`, `VisitTask`, ...) are written only by the projection activity.
"""

from __future__ import annotations

import re
from copy import copy
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, create_model, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Field, SQLModel

from visitflow.claims.models import Icd10
from visitflow.models import DEFAULT_PAYER_RULES, Discipline, Role, RoundingStrategy

# Bounds keep every value inside what both SQLite and PostgreSQL columns hold.
MAX_UNITS = 1_000_000
HCPCS_PATTERN = r"^[A-Za-z][0-9]{4}$"
MODIFIER_PATTERN = r"^[A-Za-z0-9]{2}$"

def OneOf(*allowed: str):  # noqa: N802 - reads like a type in the models below
    """A text column holding one of a few words. (SQLModel's `regex=` is not enforced on these models; this is,
    also in the PATCH bodies `partial` makes.)"""
    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise ValueError(f"must be one of: {', '.join(allowed)}")
        return value
    return Annotated[str, AfterValidator(check)]


def partial(model: type[SQLModel], name: str) -> type[BaseModel]:
    """A PATCH body: the same fields and checks as `model`, each optional."""
    fields = {}
    for field_name, info in model.model_fields.items():
        optional = copy(info)
        optional.default, optional.default_factory = None, None
        fields[field_name] = (info.annotation | None, optional)
    return create_model(name, **fields)


# --- people -------------------------------------------------------------------------------

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._@+-]*$"  # stored lower-case: "Carla" and "carla" are one person


def _not_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("must not be blank")
    return value.strip() if value is not None else None


class UserBase(SQLModel):
    display_name: str = Field(min_length=1, max_length=120)
    role: Role
    clinician_id: int | None = Field(default=None, foreign_key="clinician.id", ge=1, le=2_147_483_647)

    _display_name = field_validator("display_name")(_not_blank)


class User(UserBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=80)
    password_hash: str
    active: bool = True
    # Consecutive failed sign-ins since the last success (or lock); at the limit the account locks until then.
    failed_signins: int = 0
    locked_until: datetime | None = None
    last_signed_in_at: datetime | None = None


class UserCreate(UserBase):
    username: str = Field(min_length=1, max_length=80)
    password: str = Field(min_length=8, max_length=256)

    @field_validator("username", mode="before")
    @classmethod
    def _lower_case(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("username")
    @classmethod
    def _username_characters(cls, v: str) -> str:
        if not re.match(USERNAME_PATTERN, v):
            raise ValueError("use letters, digits and . _ @ + - only, starting with a letter or digit")
        return v


class UserUpdate(SQLModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=120)
    role: Role | None = None
    clinician_id: int | None = Field(default=None, ge=1, le=2_147_483_647)
    active: bool | None = None

    _display_name = field_validator("display_name")(_not_blank)


class UserPublic(UserBase):
    id: int
    username: str
    active: bool
    failed_signins: int
    locked_until: datetime | None
    last_signed_in_at: datetime | None


class PasswordReset(SQLModel):
    password: str = Field(min_length=8, max_length=256)


class UserSession(SQLModel, table=True):
    """A signed-in browser. The cookie carries a random token; only its SHA-256 digest is stored here, so
    neither a copy of the database nor of this table lets anyone sign in. `ended_at` is set on sign-out,
    expiry or deactivation; an ended session never comes back."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    created_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None
    client_address: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=300)


class ApiTokenCreate(SQLModel):
    name: str = Field(min_length=1, max_length=80)  # what it is for, e.g. "EVV aggregator sync"


class ApiToken(ApiTokenCreate, table=True):
    """A bearer token for the API. Shown once when issued; stored as its SHA-256 digest."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    token_hash: str = Field(unique=True, index=True, max_length=64)
    # The token's first characters, to tell tokens apart; None for tokens moved from the old user column.
    prefix: str | None = Field(default=None, max_length=16)
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiTokenPublic(ApiTokenCreate):
    id: int
    user_id: int
    prefix: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenIssued(ApiTokenPublic):
    token: str  # the only time it is ever shown


class PatientBase(SQLModel):
    first_name: str = Field(min_length=1, max_length=80)
    last_name: str = Field(min_length=1, max_length=80)
    birth_date: date | None = None
    medicaid_id: str | None = Field(default=None, max_length=40)
    address_line: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=80)
    state: str = Field(min_length=2, max_length=2)
    zip_code: str = Field(min_length=5, max_length=10)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = Field(default=None, max_length=30)
    # What the 837P needs about the member: DMG03 gender (F, M or U) and the diagnoses for HI, principal first.
    gender: OneOf("F", "M", "U") = Field(default="U", min_length=1, max_length=1,
                                         sa_column_kwargs={"server_default": "U"})
    diagnosis_codes: list[Icd10] = Field(default_factory=list, max_length=12,
                                         sa_column=Column(JSON, nullable=False, server_default="[]"))


class Patient(PatientBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class PatientCreate(PatientBase):
    pass


PatientUpdate = partial(PatientBase, "PatientUpdate")


class PatientPublic(PatientBase):
    id: int


class ClinicianBase(SQLModel):
    first_name: str = Field(min_length=1, max_length=80)
    last_name: str = Field(min_length=1, max_length=80)
    discipline: Discipline
    npi: str | None = Field(default=None, min_length=10, max_length=10)
    phone: str | None = Field(default=None, max_length=30)

    @field_validator("npi")
    @classmethod
    def _npi_digits(cls, v: str | None) -> str | None:
        if v is not None and not v.isdigit():
            raise ValueError("NPI must be 10 digits")
        return v


class Clinician(ClinicianBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class name_key(FunctionElement):  # noqa: N801 - reads as the SQL function it stands for
    """A name lower-cased and compared byte by byte, so "what was typed" as a prefix is one index range on both
    databases: `lower(x)` on SQLite (whose default collation is bytewise), `lower(x) COLLATE "C"` on PostgreSQL,
    where a language collation would order "o'b" and "o(" so that a range misses names with punctuation."""

    type = String()
    inherit_cache = True
    name = "name_key"


@compiles(name_key)
def _name_key(element, compiler, **kw) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(name_key, "postgresql")
def _name_key_postgresql(element, compiler, **kw) -> str:
    # The column in parentheses of its own: as PostgreSQL shows the index (`lower((x)::text)`), so the
    # migrations test compares like with like.
    return f'lower(({compiler.process(element.clauses, **kw)})) COLLATE "C"'


# The clinician filter on /escalations matches what was typed against the start of either name (an agency has
# hundreds of clinicians; the page lists at most a few of them).
Index("ix_clinician_first_name_key", name_key(Clinician.__table__.c.first_name))
Index("ix_clinician_last_name_key", name_key(Clinician.__table__.c.last_name))


class ClinicianCreate(ClinicianBase):
    pass


ClinicianUpdate = partial(ClinicianBase, "ClinicianUpdate")


class ClinicianPublic(ClinicianBase):
    id: int


class PayerBase(SQLModel):
    name: str = Field(min_length=1, max_length=120)
    payer_code: str = Field(min_length=1, max_length=40)  # payer id on the 837
    evv_required: bool = DEFAULT_PAYER_RULES.evv_required
    evv_radius_m: float = Field(default=DEFAULT_PAYER_RULES.evv_radius_m, gt=0, le=100_000)
    clock_tolerance_min: int = Field(default=DEFAULT_PAYER_RULES.clock_tolerance_min, ge=0, le=240)
    max_visit_hours: float = Field(default=DEFAULT_PAYER_RULES.max_visit_hours, gt=0, le=24)
    correction_window_days: int = Field(default=DEFAULT_PAYER_RULES.correction_window_days, ge=0, le=3650)
    rounding: RoundingStrategy = DEFAULT_PAYER_RULES.rounding
    rate_per_unit_cents: int = Field(default=600, ge=0, le=10_000_000)  # unless the fee schedule says otherwise
    # How visits are grouped into claims: one claim per visit, per patient-week (Monday to Sunday) or per
    # patient-month.
    billing_period: OneOf("visit", "week", "month") = Field(default="visit", max_length=5,
                                                            sa_column_kwargs={"server_default": "visit"})
    # CLM-07: days from the date of service the payer accepts a claim (Medicare 365, Texas Medicaid 95), and
    # how many days before that the billing queue starts warning.
    filing_limit_days: int = Field(default=365, ge=1, le=3650, sa_column_kwargs={"server_default": "365"})
    filing_warning_days: int = Field(default=30, ge=0, le=3650, sa_column_kwargs={"server_default": "30"})
    # ORD-01: visit disciplines paid only under a physician order (e.g. ["RN", "PT", "HHA"]); ORD-02: bill only
    # once the covering orders are signed.
    orders_required: list[Discipline] = Field(default_factory=list, max_length=len(Discipline),
                                              sa_column=Column(JSON, nullable=False, server_default="[]"))
    signed_orders_before_billing: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    # MV-01: minutes after the scheduled start without a clock-in before the late alert (None: no alert).
    late_alert_minutes: int | None = Field(default=30, ge=1, le=1440, sa_column_kwargs={"server_default": "30"})
    # MV-02: whom the payer requires to hear of a missed visit, e.g. "ordering practitioner's office" (None: nobody
    # beyond the agency's own supervisor and office).
    missed_visit_notice_to: str | None = Field(default=None, max_length=120)


class Payer(PayerBase, table=True):
    id: int | None = Field(default=None, primary_key=True)


class PayerCreate(PayerBase):
    pass


PayerUpdate = partial(PayerBase, "PayerUpdate")


class PayerPublic(PayerBase):
    id: int


class AuthorizationBase(SQLModel):
    auth_number: str = Field(min_length=1, max_length=50)
    patient_id: int = Field(foreign_key="patient.id", ge=1, le=2_147_483_647)
    payer_id: int = Field(foreign_key="payer.id", ge=1, le=2_147_483_647)
    service_code: str = Field(regex=HCPCS_PATTERN, min_length=5, max_length=5)
    modifiers: list[Annotated[str, PydanticField(pattern=MODIFIER_PATTERN)]] = Field(
        default_factory=list, max_length=4, sa_column=Column(JSON, nullable=False))
    start_date: date
    end_date: date
    units_per_day: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_per_week: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_per_month: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_total: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    active: bool = True


class Authorization(AuthorizationBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    version: int = 1
    updated_at: datetime | None = None
    # The sending system's own id for it (bulk intake): a re-sent row finds this authorization again.
    source_id: str | None = Field(default=None, max_length=80, unique=True, index=True)


class AuthorizationCreate(AuthorizationBase):
    pass


class AuthorizationUpdate(SQLModel):
    end_date: date | None = None
    units_per_day: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_per_week: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_per_month: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    units_total: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    active: bool | None = None


class AuthorizationPublic(AuthorizationBase):
    id: int
    version: int
    updated_at: datetime | None


class PayerRateBase(SQLModel):
    """A fee schedule entry: what the payer pays per unit of one service (with exactly these modifiers).

    A service without an entry is billed at the payer's `rate_per_unit_cents`.
    """

    payer_id: int = Field(foreign_key="payer.id", ge=1, le=2_147_483_647)
    service_code: str = Field(regex=HCPCS_PATTERN, min_length=5, max_length=5)
    modifiers: list[Annotated[str, PydanticField(pattern=MODIFIER_PATTERN)]] = Field(
        default_factory=list, max_length=4, sa_column=Column(JSON, nullable=False))
    rate_per_unit_cents: int = Field(ge=0, le=10_000_000)


class PayerRate(PayerRateBase, table=True):
    # `modifier_key` is the modifiers joined with ":" (in claim order): one rate per payer, service and modifiers,
    # found by an index instead of comparing JSON.
    __table_args__ = (UniqueConstraint("payer_id", "service_code", "modifier_key"),)
    id: int | None = Field(default=None, primary_key=True)
    modifier_key: str = Field(default="", max_length=20)


class PayerRateCreate(PayerRateBase):
    pass


class PayerRatePublic(PayerRateBase):
    id: int


class AuthorizationUsage(SQLModel, table=True):
    """Units a visit holds against an authorization (AUTH-02). One row per visit."""

    visit_id: str = Field(primary_key=True, max_length=64)
    authorization_id: int = Field(foreign_key="authorization.id", index=True)
    service_date: date
    units: int


# --- read model -----------------------------------------------------------------------------


class Visit(SQLModel, table=True):
    """One visit as its workflow last projected it. `version` only moves forward.

    Lists read it newest scheduled first a page at a time after a keyset cursor, so every filter a list offers
    has an index ending in (scheduled_start, id): the index serves the filter and the order, never a sort.
    """

    __table_args__ = (
        Index("ix_visit_scheduled_start_id", "scheduled_start", "id"),
        Index("ix_visit_state_scheduled_start_id", "state", "scheduled_start", "id"),
        Index("ix_visit_state_payer_scheduled_start_id", "state", "payer_id", "scheduled_start", "id"),
        Index("ix_visit_clinician_scheduled_start_id", "clinician_id", "scheduled_start", "id"),
        Index("ix_visit_payer_scheduled_start_id", "payer_id", "scheduled_start", "id"),
        Index("ix_visit_patient_scheduled_start_id", "patient_id", "scheduled_start", "id"),
        # The ready-to-bill list (claim-ready, by payer then service date) and its per-payer totals.
        Index("ix_visit_state_payer_service_date_id", "state", "payer_id", "service_date", "id", "billable_units"),
    )
    id: str = Field(primary_key=True, max_length=64)
    workflow_id: str = Field(max_length=80)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    clinician_id: int = Field(foreign_key="clinician.id", index=True)
    payer_id: int = Field(foreign_key="payer.id", index=True)
    service_code: str = Field(max_length=5)
    modifiers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    scheduled_start: datetime
    scheduled_end: datetime
    service_date: date = Field(index=True)
    state: str = Field(index=True, max_length=20)
    version: int = 0
    hold_count: int = 0
    note_deadline: datetime | None = None
    billable_units: int | None = None
    authorization_id: int | None = None
    release_batch_id: str | None = Field(default=None, index=True, max_length=64)
    released_at: datetime | None = None
    released_by: str | None = None
    # Copied out of the snapshot by the projection so the dashboard reads columns, never JSON: when the note
    # came in (note lag), when the signature began to be awaited, and when the visit became ready to bill.
    note_submitted_at: datetime | None = None
    sign_waiting_since: datetime | None = None
    ready_since: datetime | None = None
    missed_reason: str | None = Field(default=None, max_length=20)  # MV-02, set when the state is "missed"
    created_at: datetime
    updated_at: datetime
    snapshot: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


# Visit ids are written by the source systems that schedule them, in their own case: a visit asked for as v-8001
# is found as V-8001 (queries.visit_id_as_stored) by one index read of the lower-cased id.
Index("ix_visit_id_key", name_key(Visit.__table__.c.id))


class VisitEvent(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("visit_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(foreign_key="visit.id", index=True, max_length=64)
    seq: int
    at: datetime
    actor: str = Field(max_length=80)
    kind: str = Field(max_length=40)
    detail: str = ""
    state: str = Field(max_length=20)


class VisitHold(SQLModel, table=True):
    """Open holds, replaced on every projection; the billing queue groups them by rule."""

    # By key: the visits one order holds ("ORD-02:order-12"), for the orders waiting for signature.
    __table_args__ = (
        Index("ix_visithold_rule_opened_id", "rule_id", "opened_at", "id"),
        Index("ix_visithold_role_approvable_opened_id", "role", "approvable", "opened_at", "id"),
        Index("ix_visithold_key", "key"),
    )
    id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(foreign_key="visit.id", index=True, max_length=64)
    rule_id: str = Field(index=True, max_length=12)
    gate: str = Field(max_length=20)
    role: Role
    key: str = Field(max_length=80)
    message: str
    approvable: bool = False
    opened_at: datetime


class VisitTask(SQLModel, table=True):
    """Open work for a role (and a clinician), replaced on every projection."""

    __table_args__ = (
        Index("ix_visittask_role_clinician", "role", "clinician_id"),
        # The supervisors' and billers' queues: escalated first, then the earliest deadline.
        Index("ix_visittask_role_escalated_due_id", "role", "escalated", "due_at", "id"),
        # Late notes and signatures (escalations page), the earliest deadline first.
        Index("ix_visittask_kind_escalated_due_id", "kind", "escalated", "due_at", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(foreign_key="visit.id", index=True, max_length=64)
    kind: str = Field(max_length=40)
    role: Role
    clinician_id: int | None = None
    title: str
    due_at: datetime | None = None
    escalated: bool = False
    hold_key: str | None = None


class VisitRollup(SQLModel, table=True):
    """Running counts behind the dashboard and the team table, kept by the projection in the same transaction
    as the visit row (services/rollups.py), so the dashboard reads a few hundred rows instead of the visits.

    One row per (figure, key, at, bucket): `figure` names what is counted ("state", "backlog", "note_lag", ...),
    `key` which one (a state, a backlog, "rule|payer"), `at` a time in epoch seconds (backlogs: when the wait
    began, so ages are exact at any moment) or a service day (note lag), `bucket` the note lag in minutes.
    Rows that fall to zero are removed. `visitflow rebuild-rollups` recomputes the table from the visits.
    """

    figure: str = Field(primary_key=True, max_length=20)
    key: str = Field(primary_key=True, max_length=80)
    at: int = Field(primary_key=True)
    bucket: int = Field(primary_key=True)
    n: int = 0


class PatientSupervisionBase(SQLModel):
    """SUP-01: how a patient's aide care is supervised. Skilled care: an RN or therapist every 14 days; aide-only
    care: every 60 days (agency settings)."""

    care: OneOf("skilled", "aide_only") = Field(max_length=10)  # skilled: aide with skilled services
    supervising_clinician_id: int | None = Field(default=None, foreign_key="clinician.id", ge=1,
                                                 le=2_147_483_647)
    # The last supervisory visit before VisitFlow kept track (when a patient is set up); later ones are recorded
    # as they are documented.
    last_visit_on: date | None = None


class PatientSupervision(PatientSupervisionBase, table=True):
    patient_id: int = Field(primary_key=True, foreign_key="patient.id")
    last_visit_id: str | None = Field(default=None, max_length=64)
    since: date  # when tracking started: the first due date counts from here when no visit is known
    interval_days: int  # 14 (skilled) or 60 (aide-only) by the agency's settings when set up
    prompt_days: int  # how many days ahead of the due date the supervising clinician is prompted
    due_on: date = Field(index=True)  # aide visits after this date are held until the next supervisory visit
    prompted_for: date | None = None  # the due date the supervising clinician was last prompted for
    lapsed_for: date | None = None  # the due date that lapsed and was escalated, if it did
    updated_at: datetime


class PatientSupervisionCreate(PatientSupervisionBase):
    pass


class PatientSupervisionPublic(PatientSupervisionBase):
    patient_id: int
    last_visit_id: str | None
    since: date
    due_on: date
    prompted_for: date | None
    lapsed_for: date | None


class ReleaseBatch(SQLModel, table=True):
    """A biller's release of claim-ready visits; becomes a claim file in the claims issue.

    Written before any visit is released (REL-01), so no visit is ever released into a batch that is not
    stored. `visit_ids` are the visits the biller put in the batch; which of them were released into it is on
    each visit (`visit.release_batch_id`, written by the projection). `completed_at` is set once every visit
    in it has answered; a batch without it was interrupted and is finished by retrying with the same key.
    """

    id: str = Field(primary_key=True, max_length=64)
    created_by: str = Field(max_length=80)
    created_at: datetime
    visit_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    completed_at: datetime | None = None


# --- claims -----------------------------------------------------------------------------------


class ClaimBase(SQLModel):
    # CLM01: derived from what makes the claim unique (batch, payer, patient, period, frequency, and for a 7 or 8
    # the claim it replaces), so whatever retries the release writes the same number; the payer sends it back in
    # the 835 CLP01.
    control_number: str = Field(unique=True, max_length=20)
    release_batch_id: str = Field(foreign_key="releasebatch.id", max_length=64)
    payer_id: int = Field(foreign_key="payer.id")
    patient_id: int = Field(foreign_key="patient.id")
    period_start: date
    period_end: date
    frequency: str = Field(default="1", max_length=1)  # CLM05-3: 1 original, 7 replacement, 8 void
    replaces_claim_id: int | None = Field(default=None, foreign_key="claim.id")  # the claim a 7 or 8 replaces
    payer_claim_number: str | None = Field(default=None, index=True, max_length=50)  # 835 CLP07, once paid
    state: str = Field(max_length=20)  # see visitflow.claims.states
    total_cents: int
    paid_cents: int = 0
    claim_file_id: int | None = Field(default=None, foreign_key="claimfile.id", index=True)
    created_at: datetime
    created_by: str = Field(max_length=80)
    state_changed_at: datetime


class Claim(ClaimBase, table=True):
    """One claim to a payer: a patient's visits of one billing period, released in one batch.

    The list pages newest first by id under each filter, so each filter's index ends in id.
    """

    __table_args__ = (
        # One claim per (batch, payer, patient, period start, frequency[, the claim it replaces]): its control
        # number is derived from exactly that (claims.billing.control_number) and is unique.
        Index("ix_claim_release_batch_id_id", "release_batch_id", "id"),
        Index("ix_claim_state_id", "state", "id"),
        Index("ix_claim_payer_id_id", "payer_id", "id"),
        Index("ix_claim_patient_id_id", "patient_id", "id"),
        Index("ix_claim_period_start_id", "period_start", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)


class ClaimPublic(ClaimBase):
    id: int


class ClaimLineBase(SQLModel):
    claim_id: int = Field(foreign_key="claim.id")
    line_number: int  # LX01, from 1 in the claim
    visit_id: str = Field(foreign_key="visit.id", max_length=64)  # REF*6R
    patient_id: int = Field(foreign_key="patient.id")  # the claim's, kept here so CLM-05 is one index lookup
    service_date: date  # DTP*472
    hcpcs: str = Field(max_length=5)
    modifiers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    units: int
    charge_cents: int
    authorization_number: str | None = Field(default=None, max_length=50)  # REF*G1
    rendering_npi: str | None = Field(default=None, max_length=10)  # the clinician's NPI, when known
    state: str = Field(default="billed", max_length=20)  # billed, paid, denied, adjusted
    paid_cents: int = 0
    # CARC/RARC codes from the 835 (e.g. ["CO-45", "N130"]): read with its claim, never searched.
    adjustments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # False once a replacement or void takes the visit off this line; a visit is on exactly one live line.
    live: bool = True


class ClaimLine(ClaimLineBase, table=True):
    __table_args__ = (
        UniqueConstraint("claim_id", "line_number"),
        # CLM-05, enforced by the database: whatever races, a visit is billed on one live line only.
        Index("ux_claimline_visit_live", "visit_id", unique=True,
              sqlite_where=text("live"), postgresql_where=text("live")),
        # CLM-05: is this member's date of service of this service already on a live claim?
        Index("ix_claimline_patient_date_hcpcs", "patient_id", "service_date", "hcpcs"),
        # Every claim a visit was ever on (original, replacement, void), oldest first.
        Index("ix_claimline_visit_id_id", "visit_id", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)


class ClaimLinePublic(ClaimLineBase):
    id: int


class ClaimFileBase(SQLModel):
    release_batch_id: str = Field(foreign_key="releasebatch.id", max_length=64)
    payer_id: int = Field(foreign_key="payer.id", index=True)
    # ISA13, GS06, ST02: fixed when the file is first written, so a rewrite gives the same bytes.
    interchange_control_number: int
    group_control_number: int
    transaction_set_control_number: int
    claim_count: int = 0
    total_cents: int = 0
    valid: bool = False  # only a valid file can be downloaded
    # Why the file is blocked, in words: pyx12 findings (CLM-06), claim edits (CLM-01..07), missing set-up.
    findings: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    submitted_at: datetime | None = None
    submitted_by: str | None = Field(default=None, max_length=80)


class ClaimFile(ClaimFileBase, table=True):
    """One 837P file: a release batch's claims to one payer."""

    __table_args__ = (UniqueConstraint("release_batch_id", "payer_id"),)
    id: int | None = Field(default=None, primary_key=True)
    content: str = ""  # the X12 text; empty while the file is blocked before it could be written


class ClaimFilePublic(ClaimFileBase):
    id: int


class ClaimEventBase(SQLModel):
    claim_id: int = Field(foreign_key="claim.id")
    at: datetime
    actor: str = Field(max_length=80)
    from_state: str | None = Field(default=None, max_length=20)  # None when the claim is created
    to_state: str = Field(max_length=20)
    note: str = ""


class ClaimEvent(ClaimEventBase, table=True):
    """A claim's status history: who moved it from what to what, and when. Append-only."""

    __table_args__ = (Index("ix_claimevent_claim_id_id", "claim_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)


class ClaimEventPublic(ClaimEventBase):
    id: int


# --- remittances (835) ----------------------------------------------------------------------------


class RemittanceBase(SQLModel):
    payer_name: str = Field(max_length=60)
    payer_code: str | None = Field(default=None, max_length=80)  # TRN03, the payer's id
    trace_number: str = Field(index=True, max_length=50)  # TRN02: the check or EFT number on the deposit
    payment_method: str = Field(max_length=3)  # BPR04: ACH, CHK, NON (no money, e.g. all denied)
    amount_cents: int  # BPR02: what the payer actually sent
    paid_on: date | None = None
    filename: str | None = Field(default=None, max_length=200)
    imported_at: datetime
    imported_by: str = Field(max_length=80)
    claims_matched: int = 0
    lines_paid: int = 0
    lines_adjusted: int = 0  # paid less for a reason someone can fix: sent back into work
    lines_denied: int = 0  # paid nothing: sent back into work
    lines_unmatched: int = 0  # listed, never dropped


class Remittance(RemittanceBase, table=True):
    """An imported 835. One payment is imported once: its payment key (the payer and the TRN trace number, the
    key a bank deposit is matched by) is unique, and so is the digest of its text, so the same file again, or a
    copy re-sent under new control numbers, changes nothing."""

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(unique=True, max_length=64)
    # "<payer>|<trace number>" (services.remittances.payment_key). None only on a copy imported before the key
    # existed (migration 0016): the first import of each payment keeps the key, and only it counts as paid.
    payment_key: str | None = Field(default=None, unique=True, index=True, max_length=140)
    content: str


class RemittancePublic(RemittanceBase):
    id: int


class RemittanceLineBase(SQLModel):
    """One service line (SVC) of an 835 as the import applied it, or a claim the payer answered without lines."""

    remittance_id: int = Field(foreign_key="remittance.id")
    claim_control_number: str = Field(max_length=50)  # CLP01: ours
    payer_claim_number: str | None = Field(default=None, max_length=50)  # CLP07: the payer's
    claim_id: int | None = Field(default=None, foreign_key="claim.id")
    claim_line_id: int | None = Field(default=None, foreign_key="claimline.id", index=True)
    visit_id: str | None = Field(default=None, max_length=64)  # REF*6R as the payer sent it back
    hcpcs: str | None = Field(default=None, max_length=48)
    service_date: date | None = None
    charge_cents: int = 0
    paid_cents: int = 0
    # paid | adjusted (paid less for a reason someone can fix) | denied | unmatched | not_applied
    outcome: str = Field(max_length=20)
    # Each adjustment and remark with its words, e.g. "CO-252: documentation or an attachment is needed ...".
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    problem: str | None = None  # why an unmatched or not-applied line could not be applied, in words
    denial_kind: str | None = Field(default=None, max_length=20)  # who fixes it: documentation, evv, billing
    # When the denial sent the visit back into work; None on a denied line means it is still to be sent.
    returned_to_work_at: datetime | None = None


class RemittanceLine(RemittanceLineBase, table=True):
    __table_args__ = (Index("ix_remittanceline_remittance_id_id", "remittance_id", "id"),)
    id: int | None = Field(default=None, primary_key=True)


class RemittanceLinePublic(RemittanceLineBase):
    id: int



# --- revenue rollups: kept by the claim and remittance writers, read by the money charts without scanning ----------


class ClaimAgingDay(SQLModel, table=True):
    """Accounts receivable by the day claims were billed: what is billed and not yet adjudicated.

    Moved in the same transaction as the claim (creation, and every state change in and out of the unpaid
    states), so aging buckets are a sum over at most a few hundred days, never a scan of the claims.
    """

    day: date = Field(primary_key=True)
    open_cents: int = 0
    open_claims: int = 0


class DenialMonth(SQLModel, table=True):
    """Dollars the payers denied (or cut for a reason someone can fix), by month and adjustment code."""

    month: date = Field(primary_key=True)  # the first day of the month the remittance was paid
    code: str = Field(primary_key=True, max_length=12)  # e.g. "CO-252"
    cents: int = 0
    lines: int = 0


class PaymentDay(SQLModel, table=True):
    """The payers' money by the day (UTC) its 835 was imported: what was applied to our claims' lines, and what
    matched no claim of ours (or a claim a newer one replaced). Moved by the remittance import in its own
    transaction, so "paid in the last 30 days" is a sum over 30 rows."""

    day: date = Field(primary_key=True)
    applied_cents: int = 0
    unmatched_cents: int = 0


class IdempotentRequest(SQLModel, table=True):
    """One state-changing API request sent with an `Idempotency-Key`, and the answer it got.

    A retry with the same key, from the same user, to the same method and path gets this answer again
    (same status, same body) instead of acting twice. While the first request runs, `locked_until` holds
    the key for it; a request that died leaves a lock that simply expires.
    """

    __table_args__ = (UniqueConstraint("user_id", "method", "path", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(index=True)
    method: str = Field(max_length=8)
    path: str = Field(max_length=300)
    key: str = Field(max_length=200)
    request_digest: str = Field(max_length=64)  # SHA-256 of the body: the same key with another body is refused
    created_at: datetime = Field(index=True)
    locked_until: datetime | None = None
    status: int | None = None  # None while the first request is still running
    content_type: str | None = Field(default=None, max_length=100)
    body: str | None = None
    headers: str | None = None  # JSON: the answer's Location and htmx headers, sent again with it


class Notification(SQLModel, table=True):
    """Reminders and escalations sent by the workflows (the in-app inbox).

    Read newest first a page at a time: by role (office roles) or by clinician (a clinician's own), each index
    ending in (created_at, id) so the notices page and the nav's count seek, never sort or scan.
    """

    __table_args__ = (
        Index("ix_notification_role_created_at_id", "role", "created_at", "id"),
        Index("ix_notification_clinician_created_at_id", "clinician_id", "created_at", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(index=True, max_length=64)
    role: Role
    clinician_id: int | None = None
    kind: str = Field(max_length=40)
    message: str
    created_at: datetime
    dedupe_key: str = Field(unique=True, max_length=120)


# --- audit trail ----------------------------------------------------------------------------


class AuditEventBase(SQLModel):
    at: datetime = Field(index=True)
    user_id: int | None = None  # no foreign key: the record must outlive any change to the user
    username: str | None = Field(default=None, max_length=80)  # for a failed sign-in: the name that was tried
    action: str = Field(max_length=40)  # in plain words: signed_in, viewed_patient, recorded_punch, ...
    method: str = Field(max_length=10)
    path: str = Field(max_length=500)
    status: int
    visit_id: str | None = Field(default=None, max_length=64)
    patient_id: int | None = None
    client_ip: str | None = Field(default=None, max_length=64)


class AuditEvent(AuditEventBase, table=True):
    """Who signed in, looked at a patient or a visit, or acted: when, from where, and what came of it.

    Append-only: the database itself refuses UPDATE and DELETE (triggers in migration 0004). Written only by
    `visitflow.audit.AuditMiddleware`. Admins search it newest first by id, so each filter's index ends in id.
    """

    __table_args__ = (
        Index("ix_auditevent_username_id", "username", "id"),
        Index("ix_auditevent_patient_id_id", "patient_id", "id"),
        Index("ix_auditevent_visit_id_id", "visit_id", "id"),
        Index("ix_auditevent_action_id", "action", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)


class AuditEventPublic(AuditEventBase):
    id: int


# --- physician orders (ORD-01..03, AUTH-03) ------------------------------------------------------

ORDER_KIND_PATTERN = r"^(plan_of_care|verbal|interim)$"


class PhysicianOrderBase(SQLModel):
    """A physician's (or allowed practitioner's) order for a patient: disciplines, frequencies and dates."""

    kind: str = Field(max_length=20)  # plan_of_care, verbal or interim
    patient_id: int = Field(foreign_key="patient.id", ge=1, le=2_147_483_647)
    practitioner_npi: str = Field(min_length=10, max_length=10)
    practitioner_name: str = Field(min_length=1, max_length=120)
    # One line per discipline, as written on the order: "SN 1W4", "HHA 3W2, 2W2", "PT 2-3W4, PRN 2".
    frequencies: list[Annotated[str, PydanticField(min_length=1, max_length=120)]] = Field(
        default_factory=list, min_length=1, max_length=12, sa_column=Column(JSON, nullable=False))
    effective_from: date
    effective_to: date | None = None  # inclusive; open-ended when not given
    sent_on: date  # sent to the practitioner for signature
    document_ref: str | None = Field(default=None, max_length=120)  # the signed paper's id in the document system

    _name = field_validator("practitioner_name")(_not_blank)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if not re.match(ORDER_KIND_PATTERN, v):
            raise ValueError("must be plan_of_care, verbal or interim")
        return v


class PhysicianOrder(PhysicianOrderBase, table=True):
    __tablename__ = "physician_order"
    __table_args__ = (
        Index("ix_physician_order_patient_from", "patient_id", "effective_from"),
        # Orders pending signature, oldest first (keyset paging on sent_on, id).
        Index("ix_physician_order_status_sent", "status", "sent_on", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="sent", max_length=10)  # sent | signed | returned
    signed_on: date | None = None
    signature_recorded_by: str | None = Field(default=None, max_length=80)
    returned_reason: str | None = None
    reminders_sent: int = 0
    escalated_at: datetime | None = None
    created_at: datetime
    created_by: str = Field(max_length=80)
    updated_at: datetime
    version: int = 1


class PhysicianOrderCreate(PhysicianOrderBase):
    pass


class PhysicianOrderUpdate(SQLModel):
    """A changed order (a frequency change, a new end date): the open visits it touches are checked again."""

    frequencies: list[Annotated[str, PydanticField(min_length=1, max_length=120)]] | None = Field(
        default=None, min_length=1, max_length=12)
    effective_to: date | None = None
    document_ref: str | None = Field(default=None, max_length=120)


class PhysicianOrderPublic(PhysicianOrderBase):
    id: int
    status: str
    signed_on: date | None
    signature_recorded_by: str | None
    returned_reason: str | None
    reminders_sent: int
    escalated_at: datetime | None
    created_at: datetime
    created_by: str
    version: int


# --- what changed (CHG-01) and events out -----------------------------------------------------


class ChangeRecordBase(SQLModel):
    at: datetime = Field(index=True)
    actor: str = Field(max_length=80)  # the username, or the feeding system's account
    kind: str = Field(max_length=40)  # authorization_added, authorization_changed, visit_rescheduled, ...
    subject: str = Field(max_length=80)  # "authorization 12", "visit v1a2", "patient 3"
    patient_id: int | None = None  # filters: no foreign key, a change outlives what it was about
    payer_id: int | None = None
    summary: str = Field(max_length=500)
    # Field by field: [{"field": "units_total", "before": 40, "after": 30}, ...]
    fields: list[dict] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    visits_touched: int = 0  # the open visits it sent back to their gates


class ChangeRecord(ChangeRecordBase, table=True):
    """CHG-01: one change that can move money: who, when, before → after. Append-only; billers read it newest
    first by id (ids and `at` grow together), so each filter's index ends in id."""

    __tablename__ = "change_record"
    __table_args__ = (
        Index("ix_change_record_patient_id_id", "patient_id", "id"),
        Index("ix_change_record_payer_id_id", "payer_id", "id"),
    )
    id: int | None = Field(default=None, primary_key=True)


class ChangeRecordPublic(ChangeRecordBase):
    id: int


class ChangeVisitBase(SQLModel):
    change_id: int = Field(foreign_key="change_record.id", primary_key=True)
    visit_id: str = Field(primary_key=True, max_length=64, index=True)
    # pending (not re-checked yet), held, cleared, still_held, still_ready, units_moved, not_checked
    outcome: str = Field(default="pending", max_length=20)
    state_before: str | None = Field(default=None, max_length=20)
    state_after: str | None = Field(default=None, max_length=20)
    units_before: int | None = None
    units_after: int | None = None
    cents_before: int | None = None  # what the visit would bill, at the payer's rate, before and after
    cents_after: int | None = None
    detail: str | None = Field(default=None, max_length=500)  # the holds it ended up with, in words
    checked_at: datetime | None = None


class ChangeVisit(ChangeVisitBase, table=True):
    """What one change did to one open visit, written once the visit has checked its gates again."""

    __tablename__ = "change_visit"


class ChangeVisitPublic(ChangeVisitBase):
    pass


def _web_address(value: str | None) -> str | None:
    if value is not None and not re.match(r"^https?://[^\s/]+[^\s]*$", value):
        raise ValueError("must be an http:// or https:// address")
    return value


# What an endpoint can ask for (README "Change events"). A test event is sent to an endpoint when asked, whatever it
# subscribed to.
EVENT_TYPES = ("change.recorded", "change.visit_outcome")
TEST_EVENT_TYPE = "endpoint.test"


def _event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return value
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r}: choose from {', '.join(EVENT_TYPES)}")
    if not value:
        raise ValueError("choose at least one event type (" + ", ".join(EVENT_TYPES) + ")")
    return sorted(set(value))


class EventEndpointBase(SQLModel):
    url: str = Field(max_length=500)
    description: str = Field(default="", max_length=200)
    active: bool = True
    # Which events it is sent (a short list from EVENT_TYPES; endpoints are few, read all at once).
    event_types: list[str] = Field(default_factory=lambda: list(EVENT_TYPES),
                                   sa_column=Column(JSON, nullable=False))

    _check_url = field_validator("url")(_web_address)
    _check_types = field_validator("event_types")(_event_types)


class EventEndpoint(EventEndpointBase, table=True):
    """A system that wants the change events: each event is POSTed to `url`, signed with `secret`."""

    __tablename__ = "event_endpoint"
    id: int | None = Field(default=None, primary_key=True)
    secret: str = Field(max_length=200)
    created_at: datetime
    created_by: str = Field(max_length=80)
    # The adding request's key (hash of who and their Idempotency-Key): a resent form adds nothing more.
    request_key: str | None = Field(default=None, max_length=64, unique=True, index=True)


class EventEndpointCreate(EventEndpointBase):
    # None: VisitFlow makes one and shows it once, in the answer to this request.
    secret: str | None = Field(default=None, min_length=16, max_length=200)


class EventEndpointUpdate(SQLModel):
    url: str | None = Field(default=None, max_length=500)
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    event_types: list[str] | None = None

    _check_url = field_validator("url")(_web_address)
    _check_types = field_validator("event_types")(_event_types)


class EventEndpointPublic(EventEndpointBase):
    """The secret is never shown again after it is set."""

    id: int
    created_at: datetime
    created_by: str


class EventDeliveryBase(SQLModel):
    endpoint_id: int = Field(foreign_key="event_endpoint.id", primary_key=True)
    event_id: str = Field(primary_key=True, max_length=40)
    event_type: str = Field(default="change.recorded", max_length=40)
    change_id: int | None = Field(default=None, index=True)  # None for a test event
    visit_id: str | None = Field(default=None, max_length=64)  # a change.visit_outcome event's visit
    state: str = Field(default="pending", max_length=20)  # pending, delivered, given_up
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    delivered_at: datetime | None = None
    updated_at: datetime


class EventDelivery(EventDeliveryBase, table=True):
    """How one event's delivery to one endpoint is going; written by the delivery workflow's activity."""

    __tablename__ = "event_delivery"
    # An endpoint's recent deliveries (its admin page) are read newest first from this range.
    __table_args__ = (Index("ix_event_delivery_endpoint_id_updated_at", "endpoint_id", "updated_at"),)


class EventDeliveryPublic(EventDeliveryBase):
    pass
