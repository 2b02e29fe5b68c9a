"""Minimum necessary (HIPAA): which patients, visits, clinicians, payers and authorizations each person sees.

This is the one place that decides it; the API and the UI ask here instead of checking roles themselves.

- Admins (office, intake) see everything.
- Supervisors and billers see every patient, visit, clinician, payer and authorization: supervisors reassign,
  approve and chase any visit; billers bill any visit and need its payer, authorization and clinician (NPI).
- A clinician sees only the visits assigned to them, the patients of those visits and their own clinician
  record; payers (rates, EVV rules) and authorizations are not part of their work.

Something a person may not see does not exist for them (404, as for visits), so its id tells them nothing;
a whole kind of record they may not see at all is refused (403). Changing reference data stays admin-only
(`AdminUser` on those routes); user accounts are admin-only.
"""

from __future__ import annotations

from enum import StrEnum

from fastapi import HTTPException, status
from sqlalchemy import ColumnElement, true
from sqlmodel import SQLModel, select

from visitflow.db.tables import Authorization, Clinician, Patient, Payer, User, Visit
from visitflow.models import Role, roles_phrase


class Reach(StrEnum):
    everything = "everything"
    own = "own"  # a clinician's own visits and what belongs to them
    nothing = "nothing"


_STAFF = {Role.admin: Reach.everything, Role.supervisor: Reach.everything, Role.biller: Reach.everything}

REACH: dict[type[SQLModel], dict[Role, Reach]] = {
    Visit: {**_STAFF, Role.clinician: Reach.own},
    Patient: {**_STAFF, Role.clinician: Reach.own},
    Clinician: {**_STAFF, Role.clinician: Reach.own},
    Payer: {**_STAFF, Role.clinician: Reach.nothing},
    Authorization: {**_STAFF, Role.clinician: Reach.nothing},
}

_NAMES = {Visit: "visits", Patient: "patients", Clinician: "clinicians", Payer: "payers",
          Authorization: "authorizations"}


def _own(user: User, table: type[SQLModel]) -> ColumnElement[bool]:
    if table is Visit:
        return Visit.clinician_id == user.clinician_id
    if table is Patient:  # the patients of the visits assigned to this clinician, now
        return Patient.id.in_(select(Visit.patient_id).where(Visit.clinician_id == user.clinician_id))
    if table is Clinician:
        return Clinician.id == user.clinician_id
    raise ValueError(f"no 'own' rows are defined for {table.__name__}")


def visible(user: User, table: type[SQLModel]) -> ColumnElement[bool]:
    """A WHERE condition for the rows of `table` this person may see; 403 if they may see none at all."""
    reach = REACH[table][user.role]
    if reach == Reach.nothing:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{_NAMES[table]} are not shown to {roles_phrase([user.role])}: their work does not "
                            "need them")
    return true() if reach == Reach.everything else _own(user, table)


def sees_visit_of(user: User, clinician_id: int) -> bool:
    """Whether this person may see a visit assigned to `clinician_id` (for a visit read from its workflow)."""
    reach = REACH[Visit][user.role]
    return reach == Reach.everything or (reach == Reach.own and user.clinician_id == clinician_id)
