"""SQL tables: reference data the API accepts, and the read model the workflows project into.

Reference data follows the Base / Create / Public split: `XBase` holds the fields a caller sends,
`X` is the table, `XCreate` is the request body, `XPublic` the response. The read-model tables
(`Visit`, `VisitEvent`, `VisitTask`, ...) are written only by the projection activity.
"""

from __future__ import annotations

from copy import copy
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, create_model, field_validator
from pydantic import Field as PydanticField
from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from visitflow.models import Discipline, Role, RoundingStrategy

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


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, index=True, max_length=80)
    display_name: str = Field(max_length=120)
    role: Role
    clinician_id: int | None = Field(default=None, foreign_key="clinician.id")
    password_hash: str
    api_token_hash: str | None = Field(default=None, unique=True, index=True)
    active: bool = True


class UserPublic(SQLModel):
    id: int
    username: str
    display_name: str
    role: Role
    clinician_id: int | None


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
    evv_required: bool = True
    evv_radius_m: float = Field(default=402.0, gt=0, le=100_000)
    clock_tolerance_min: int = Field(default=15, ge=0, le=240)
    max_visit_hours: float = Field(default=24.0, gt=0, le=24)
    correction_window_days: int = Field(default=95, ge=0, le=3650)
    rounding: RoundingStrategy = RoundingStrategy.nearest_quarter
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
    """One visit as its workflow last projected it. `version` only moves forward."""

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

    __table_args__ = (Index("ix_visittask_role_clinician", "role", "clinician_id"),)
    id: int | None = Field(default=None, primary_key=True)
    visit_id: str = Field(foreign_key="visit.id", index=True, max_length=64)
    kind: str = Field(max_length=40)
    role: Role
    clinician_id: int | None = None
    title: str
    due_at: datetime | None = None
    escalated: bool = False
    hold_key: str | None = None


class ReleaseBatch(SQLModel, table=True):
    """A biller's release of claim-ready visits; becomes a claim file in the claims issue."""

    id: str = Field(primary_key=True, max_length=64)
    created_by: str = Field(max_length=80)
    created_at: datetime
    visit_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


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
