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

from pydantic import BaseModel, create_model, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from visitflow.models import DEFAULT_PAYER_RULES, Discipline, Role, RoundingStrategy

# Bounds keep every value inside what both SQLite and PostgreSQL columns hold.
MAX_UNITS = 1_000_000
HCPCS_PATTERN = r"^[A-Za-z][0-9]{4}$"
MODIFIER_PATTERN = r"^[A-Za-z0-9]{2}$"

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
    rate_per_unit_cents: int = Field(default=600, ge=0, le=10_000_000)


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
    created_at: datetime
    updated_at: datetime
    snapshot: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


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

    __table_args__ = (
        Index("ix_visithold_rule_opened_id", "rule_id", "opened_at", "id"),
        Index("ix_visithold_role_approvable_opened_id", "role", "approvable", "opened_at", "id"),
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


class Notification(SQLModel, table=True):
    """Reminders and escalations sent by the workflows (the in-app inbox)."""

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
