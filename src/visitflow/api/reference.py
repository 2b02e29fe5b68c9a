"""Reference data other systems feed in: patients, clinicians, payers, authorizations."""


from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlmodel import SQLModel, func, select

from visitflow.api.idempotency import IdempotencyDep
from visitflow.db.tables import (
    Authorization,
    AuthorizationCreate,
    AuthorizationPublic,
    AuthorizationUpdate,
    Clinician,
    ClinicianCreate,
    ClinicianPublic,
    ClinicianUpdate,
    Patient,
    PatientCreate,
    PatientPublic,
    PatientUpdate,
    Payer,
    PayerCreate,
    PayerPublic,
    PayerRate,
    PayerRateCreate,
    PayerRatePublic,
    PayerUpdate,
    Visit,
)
from visitflow.deps import (
    MAX_ROW_ID,
    AdminUser,
    CurrentUser,
    RowId,
    SessionDep,
    SettingsDep,
    TemporalDep,
    WriteSessionDep,
)
from visitflow.services.access import visible
from visitflow.services.changes import (
    AUTHORIZATION_FACTS,
    announce_change,
    field_changes,
    record_authorization_change,
    record_change,
)
from visitflow.services.commands import recheck_visits_for, recheck_visits_of

router = APIRouter(prefix="/api")


class ChangeResult(BaseModel):
    rechecked_visits: list[str] = []


def _add_reference(name: str, path: str, table: type[SQLModel], create: type[SQLModel], update: type[BaseModel],
                   public: type[SQLModel], visit_column=None):
    """Create / list / get / change one kind of reference data: changed by admins, read as `access` allows.

    `visit_column` names the visits a change touches; those waiting on their gates check them again.
    """
    changed = type(f"{table.__name__}Changed", (public, ChangeResult), {})

    @router.post(f"/{path}", response_model=public, status_code=status.HTTP_201_CREATED, tags=[name],
                 name=f"create_{name}")
    def create_item(body: create, request: Request, session: WriteSessionDep, _user: AdminUser,  # type: ignore[valid-type]  # noqa: F821
                    idempotency: IdempotencyDep):
        item = table.model_validate(body)
        session.add(item)
        session.flush()
        # The answer to a retry is stored with the row, in one transaction: created once, whatever dies when.
        answer = idempotency.answer(request, session, status.HTTP_201_CREATED, public.model_validate(item))
        session.commit()
        return answer

    @router.get(f"/{path}", response_model=list[public], tags=[name], name=f"list_{name}")
    def list_items(session: SessionDep, user: CurrentUser, limit: int = Query(100, ge=1, le=500),
                   offset: int = Query(0, ge=0, le=1_000_000)):
        return session.exec(select(table).where(visible(user, table)).order_by(table.id)
                            .offset(offset).limit(limit)).all()

    @router.get(f"/{path}/{{item_id}}", response_model=public, tags=[name], name=f"get_{name}")
    def get_item(item_id: RowId, session: SessionDep, user: CurrentUser):
        item = session.exec(select(table).where(table.id == item_id, visible(user, table))).first()
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} {item_id} not found")
        return item

    @router.patch(f"/{path}/{{item_id}}", response_model=changed, tags=[name], name=f"change_{name}")
    async def change_item(item_id: RowId, body: update, session: WriteSessionDep, temporal: TemporalDep,  # type: ignore[valid-type]
                          settings: SettingsDep, _user: AdminUser):
        item = session.get(table, item_id)
        if item is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{name} {item_id} not found")
        changes = body.model_dump(exclude_unset=True)
        if not changes:
            raise HTTPException(422, "nothing to change: send at least one field")
        for field, value in changes.items():
            if value is None and not _nullable(table, field):
                raise HTTPException(422, f"{field} cannot be empty")
        before = item.model_dump()
        item.sqlmodel_update(changes)
        session.add(item)
        moved = field_changes(before, {k: getattr(item, k) for k in changes})
        change = None
        if visit_column is not None and moved:  # CHG-01: a patient's or payer's facts, in the same transaction
            change = record_change(
                session, actor=_user.username, kind=f"{name}_changed", subject=f"{name} {item_id}",
                summary=f"{name} {item_id} changed: " + ", ".join(m["field"] for m in moved), fields=moved,
                patient_id=item_id if name == "patient" else None, payer_id=item_id if name == "payer" else None)
        change_id = change.id if change is not None else None  # known once flushed, read before the commit
        session.commit()
        session.refresh(item)
        saved = item.model_dump()  # before the re-check ends the session's transaction
        rechecked = []
        if visit_column is not None:
            what = ", ".join(f"{k}={v}" for k, v in changes.items())
            rechecked = await recheck_visits_of(session, temporal, f"{name} {item_id}", visit_column == item_id,
                                                f"changed ({what})", change_id=change_id)
        if change_id is not None:
            await announce_change(session.get_bind(), temporal, settings, change_id, rechecked)
        return changed(**saved, rechecked_visits=rechecked)


def _nullable(table: type[SQLModel], field: str) -> bool:
    annotation = table.model_fields[field].annotation
    return type(None) in getattr(annotation, "__args__", ())


_add_reference("patient", "patients", Patient, PatientCreate, PatientUpdate, PatientPublic, Visit.patient_id)
_add_reference("clinician", "clinicians", Clinician, ClinicianCreate, ClinicianUpdate, ClinicianPublic)
_add_reference("payer", "payers", Payer, PayerCreate, PayerUpdate, PayerPublic, Visit.payer_id)


class AuthorizationChangeResult(AuthorizationPublic):
    rechecked_visits: list[str] = []


def _check_authorization(session: SessionDep, auth: Authorization) -> None:
    if auth.end_date < auth.start_date:
        raise HTTPException(422, "end_date must not be before start_date")
    for name, table, ref in (("patient", Patient, auth.patient_id), ("payer", Payer, auth.payer_id)):
        if session.get(table, ref) is None:
            raise HTTPException(422, f"{name} {ref} does not exist")
    duplicate = session.exec(select(func.count()).select_from(Authorization).where(
        Authorization.auth_number == auth.auth_number, Authorization.payer_id == auth.payer_id,
        Authorization.id != (auth.id or -1))).one()
    if duplicate:
        raise HTTPException(409, f"authorization number {auth.auth_number} already exists for this payer")


@router.post("/authorizations", response_model=AuthorizationChangeResult, status_code=201, tags=["authorization"])
async def create_authorization(body: AuthorizationCreate, session: WriteSessionDep, temporal: TemporalDep,
                               settings: SettingsDep, _user: AdminUser):
    auth = Authorization.model_validate(body, update={
        "service_code": body.service_code.upper(), "modifiers": [m.upper() for m in body.modifiers],
        "updated_at": datetime.now(UTC)})
    _check_authorization(session, auth)
    session.add(auth)
    session.flush()
    change_id = record_authorization_change(session, _user.username, auth, None).id  # known once flushed
    session.commit()
    session.refresh(auth)
    saved = auth.model_dump()  # before the re-check ends the session's transaction
    rechecked = await recheck_visits_for(session, temporal, auth, "added", change_id=change_id)
    # Nothing of this session is read after the re-check: a read would begin a transaction holding the write lock.
    await announce_change(session.get_bind(), temporal, settings, change_id, rechecked)
    return AuthorizationChangeResult(**saved, rechecked_visits=rechecked)


@router.patch("/authorizations/{auth_id}", response_model=AuthorizationChangeResult, tags=["authorization"])
async def change_authorization(auth_id: RowId, body: AuthorizationUpdate, session: WriteSessionDep,
                               temporal: TemporalDep, settings: SettingsDep, _user: AdminUser):
    auth = session.get(Authorization, auth_id)
    if auth is None:
        raise HTTPException(404, f"authorization {auth_id} not found")
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise HTTPException(422, "nothing to change: send at least one field")
    for required in ("end_date", "active"):
        if required in changes and changes[required] is None:
            raise HTTPException(422, f"{required} cannot be empty")
    before = {k: getattr(auth, k) for k in AUTHORIZATION_FACTS}
    auth.sqlmodel_update(changes)
    _check_authorization(session, auth)
    auth.version += 1
    auth.updated_at = datetime.now(UTC)
    session.add(auth)
    change = record_authorization_change(session, _user.username, auth, before)
    change_id = change.id if change is not None else None  # known once flushed, read before the commit
    session.commit()
    session.refresh(auth)
    what = ", ".join(f"{k}={v}" for k, v in changes.items())
    saved = auth.model_dump()  # before the re-check ends the session's transaction
    rechecked = await recheck_visits_for(session, temporal, auth, f"changed ({what})", change_id=change_id)
    if change_id is not None:
        await announce_change(session.get_bind(), temporal, settings, change_id, rechecked)
    return AuthorizationChangeResult(**saved, rechecked_visits=rechecked)


@router.get("/authorizations", response_model=list[AuthorizationPublic], tags=["authorization"])
def list_authorizations(session: SessionDep, user: CurrentUser,
                        patient_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                        limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000)):
    query = select(Authorization).where(visible(user, Authorization))
    if patient_id is not None:
        query = query.where(Authorization.patient_id == patient_id)
    return session.exec(query.order_by(Authorization.id).offset(offset).limit(limit)).all()


@router.get("/authorizations/{auth_id}", response_model=AuthorizationPublic, tags=["authorization"])
def get_authorization(auth_id: RowId, session: SessionDep, user: CurrentUser):
    auth = session.exec(select(Authorization).where(Authorization.id == auth_id,
                                                    visible(user, Authorization))).first()
    if auth is None:
        raise HTTPException(404, f"authorization {auth_id} not found")
    return auth


# --- fee schedule ---------------------------------------------------------------------------


@router.post("/payer-rates", response_model=PayerRatePublic, status_code=201, tags=["payer"])
def create_payer_rate(body: PayerRateCreate, request: Request, session: WriteSessionDep, _user: AdminUser,
                      idempotency: IdempotencyDep):
    """A fee schedule entry: the payer's rate per unit for a service with exactly these modifiers (in claim
    order). Claims use it for visits released from now on; a service without one bills at the payer's
    `rate_per_unit_cents`."""
    from visitflow.activities.release import rate_key

    if session.get(Payer, body.payer_id) is None:
        raise HTTPException(422, f"payer {body.payer_id} does not exist")
    modifiers = [m.upper() for m in body.modifiers]
    rate = PayerRate.model_validate(body, update={"service_code": body.service_code.upper(), "modifiers": modifiers,
                                                  "modifier_key": rate_key(modifiers)})
    same = session.exec(select(PayerRate.id).where(PayerRate.payer_id == rate.payer_id,
                                                   PayerRate.service_code == rate.service_code,
                                                   PayerRate.modifier_key == rate.modifier_key)).first()
    if same is not None:
        raise HTTPException(409, f"payer {rate.payer_id} already has a rate for {rate.service_code}"
                                 f"{' ' + ':'.join(modifiers) if modifiers else ''} (payer rate {same})")
    session.add(rate)
    session.flush()
    answer = idempotency.answer(request, session, status.HTTP_201_CREATED, PayerRatePublic.model_validate(rate))
    session.commit()
    return answer


@router.get("/payer-rates", response_model=list[PayerRatePublic], tags=["payer"])
def list_payer_rates(session: SessionDep, user: CurrentUser,
                     payer_id: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                     limit: int = Query(100, ge=1, le=500), offset: int = Query(0, ge=0, le=1_000_000)):
    query = select(PayerRate).where(visible(user, Payer))
    if payer_id is not None:
        query = query.where(PayerRate.payer_id == payer_id)
    return session.exec(query.order_by(PayerRate.id).offset(offset).limit(limit)).all()
