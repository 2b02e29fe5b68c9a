"""Bulk intake: authorizations and scheduled visits from another system, as a CSV file or a JSON list.

Each row carries the sending system's own id (`source_id`), so sending the same file again changes nothing and a
changed row updates what it made. Every row is checked before anything is written, and a file with any bad row
applies nothing: the answer lists every problem with its line and field. Authorizations are written in one
transaction. Visits are workflows: every row is checked against the visits as they stand first, then each is
started or changed through its workflow, so a failure of Temporal part-way leaves a file whose second sending
finishes the job (a row already applied is recognised by its source id and skipped).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import Client

from visitflow.db.session import write_session
from visitflow.db.tables import (
    HCPCS_PATTERN,
    MODIFIER_PATTERN,
    Authorization,
    AuthorizationCreate,
    Clinician,
    Patient,
    Payer,
    Visit,
)
from visitflow.models import Actor, Reassign, Reschedule, Role, as_utc
from visitflow.services.changes import (
    AUTHORIZATION_FACTS,
    act_recording_change,
    active_endpoints,
    announce_changes,
    field_changes,
    record_authorization_change,
)
from visitflow.services.commands import ScheduleRequest, recheck_visits_for, schedule_visit
from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.workflows.visit import VisitWorkflow

MAX_ROWS = 20_000
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,59}$")
IN_CHUNK = 500  # ids per IN (...) lookup
AUTHORIZATION_COLUMNS = ("source_id", "auth_number", "patient_id", "payer_id", "service_code", "modifiers",
                         "start_date", "end_date", "units_per_day", "units_per_week", "units_per_month",
                         "units_total", "active")
VISIT_COLUMNS = ("source_id", "patient_id", "clinician_id", "payer_id", "service_code", "modifiers",
                 "scheduled_start", "scheduled_end")
REQUIRED = {"authorizations": {"source_id", "auth_number", "patient_id", "payer_id", "service_code", "start_date",
                               "end_date"},
            "visits": {"source_id", "patient_id", "clinician_id", "payer_id", "service_code", "scheduled_start",
                       "scheduled_end"}}


class RowProblem(BaseModel):
    line: int  # the CSV line (the header is line 1), or the position in a JSON list (from 1)
    field: str | None
    message: str


class IntakeResult(BaseModel):
    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    changes: list[int] = []  # the change records (CHG-01) the updates made


class IntakeRejected(ServiceError):
    """The whole file is refused: nothing was applied. Every problem is listed."""

    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__(422, f"nothing was applied: {len(problems)} problem(s) in the file; fix them and send it "
                              "again", None, problems=[p.model_dump() for p in problems])
        self.problems = problems


def rows_from_csv(text: str, kind: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; blank cells are left out (the field is not given)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    # As spreadsheets write them: "Source ID", "Patient_ID " are source_id and patient_id.
    header = [re.sub(r"[\s-]+", "_", h.strip().lower()) for h in (reader.fieldnames or [])]
    known = AUTHORIZATION_COLUMNS if kind == "authorizations" else VISIT_COLUMNS
    problems = [RowProblem(line=1, field=h, message=f"unknown column {h!r} (known: {', '.join(known)})")
                for h in header if h not in known]
    problems += [RowProblem(line=1, field=c, message=f"column {c!r} is missing")
                 for c in sorted(REQUIRED[kind] - set(header))]
    if problems:
        raise IntakeRejected(problems)
    reader.fieldnames = header
    rows = []
    for row in reader:
        if len(rows) >= MAX_ROWS:
            raise ServiceError(413, f"a file holds at most {MAX_ROWS} rows; split it")
        if None in row:
            raise IntakeRejected([RowProblem(line=reader.line_num, field=None,
                                             message="the row has more cells than the header has columns")])
        cells = {k: v.strip() for k, v in row.items() if v is not None and v.strip() != ""}
        if cells:
            rows.append((reader.line_num, cells))
    if not rows:
        raise ServiceError(422, "the file has no rows")
    return rows


def rows_from_json(items: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    if not items:
        raise ServiceError(422, "send at least one row")
    if len(items) > MAX_ROWS:
        raise ServiceError(413, f"at most {MAX_ROWS} rows at once; split them")
    return [(n, {k: v for k, v in item.items() if v is not None}) for n, item in enumerate(items, start=1)]


def _modifiers(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(m).upper() for m in value]
    return [m.upper() for m in re.split(r"[\s:;,]+", str(value)) if m]


def _pydantic_problems(line: int, err: ValidationError) -> list[RowProblem]:
    return [RowProblem(line=line, field=".".join(str(p) for p in e["loc"]) or None, message=e["msg"])
            for e in err.errors()]


def _existing_ids(session: Session, column, wanted: set) -> set:
    found: set = set()
    ordered = sorted(wanted, key=str)
    for i in range(0, len(ordered), IN_CHUNK):
        found |= set(session.exec(select(column).where(column.in_(ordered[i:i + IN_CHUNK]))).all())
    return found


def _check_source_ids(parsed: list[tuple[int, dict[str, Any]]], problems: list[RowProblem]) -> None:
    first_line: dict[str, int] = {}
    for line, row in parsed:
        sid = str(row.get("source_id", ""))
        if not SOURCE_ID.match(sid):
            problems.append(RowProblem(line=line, field="source_id", message="source_id must be 1-60 letters, "
                                       "digits, '.', '_', ':' or '-', starting with a letter or digit"))
        elif sid in first_line:
            problems.append(RowProblem(line=line, field="source_id",
                                       message=f"source_id {sid} is also on line {first_line[sid]}"))
        else:
            first_line[sid] = line


# --- authorizations ------------------------------------------------------------------------------------------


async def import_authorizations(engine: Engine, client: Client, settings: Settings,
                               parsed: list[tuple[int, dict[str, Any]]], actor: Actor) -> IntakeResult:
    problems: list[RowProblem] = []
    _check_source_ids(parsed, problems)
    valid: list[tuple[int, str, AuthorizationCreate]] = []
    for line, row in parsed:
        if "modifiers" in row:
            row = {**row, "modifiers": _modifiers(row["modifiers"])}
        try:
            auth = AuthorizationCreate.model_validate({k: v for k, v in row.items() if k != "source_id"})
        except ValidationError as err:
            problems += _pydantic_problems(line, err)
            continue
        if auth.end_date < auth.start_date:
            problems.append(RowProblem(line=line, field="end_date", message="end_date must not be before start_date"))
        auth.service_code = auth.service_code.upper()
        valid.append((line, str(row.get("source_id")), auth))
    result = IntakeResult(kind="authorizations", rows=len(parsed))
    written: list[tuple[int, Authorization]] = []
    with write_session(engine) as s:
        s.expire_on_commit = False  # the authorizations written are read again after the commit
        patients = _existing_ids(s, Patient.id, {a.patient_id for _, _, a in valid})
        payers = _existing_ids(s, Payer.id, {a.payer_id for _, _, a in valid})
        existing = {}
        sids = [sid for _, sid, _ in valid]
        for i in range(0, len(sids), IN_CHUNK):
            for a in s.exec(select(Authorization).where(Authorization.source_id.in_(sids[i:i + IN_CHUNK]))).all():
                existing[a.source_id] = a
        numbers = sorted({a.auth_number for _, _, a in valid})
        holders: dict[tuple[int, str], int] = {}  # (payer, number) -> the authorization that has it
        for i in range(0, len(numbers), IN_CHUNK):
            for aid, payer_id, number in s.exec(select(Authorization.id, Authorization.payer_id,
                                                       Authorization.auth_number)
                                                .where(Authorization.auth_number.in_(numbers[i:i + IN_CHUNK]))).all():
                holders[(payer_id, number)] = aid
        numbers_in_file: dict[tuple[int, str], int] = {}
        for line, sid, auth in valid:
            if auth.patient_id not in patients:
                problems.append(RowProblem(line=line, field="patient_id",
                                           message=f"patient {auth.patient_id} does not exist"))
            if auth.payer_id not in payers:
                problems.append(RowProblem(line=line, field="payer_id",
                                           message=f"payer {auth.payer_id} does not exist"))
            key = (auth.payer_id, auth.auth_number)
            if key in numbers_in_file:
                problems.append(RowProblem(line=line, field="auth_number", message=f"authorization number "
                                           f"{auth.auth_number} is also on line {numbers_in_file[key]}"))
            numbers_in_file[key] = line
            mine = existing.get(sid)
            taken = holders.get(key)
            if taken is not None and taken != (mine.id if mine else None):
                problems.append(RowProblem(line=line, field="auth_number", message=f"authorization number "
                                           f"{auth.auth_number} already exists for this payer (authorization {taken})"))
        if problems:
            raise IntakeRejected(sorted(problems, key=lambda p: p.line))
        endpoints = active_endpoints(s)
        for _line, sid, auth in valid:
            mine = existing.get(sid)
            if mine is None:
                mine = Authorization.model_validate(auth, update={"source_id": sid, "updated_at": datetime.now(UTC)})
                s.add(mine)
                s.flush()
                change = record_authorization_change(s, actor.username, mine, None, endpoints)
                result.created += 1
            else:
                before = {k: getattr(mine, k) for k in AUTHORIZATION_FACTS}
                if not field_changes(before, {k: getattr(auth, k) for k in AUTHORIZATION_FACTS}):
                    result.unchanged += 1
                    continue
                mine.sqlmodel_update(auth.model_dump())
                mine.version += 1
                mine.updated_at = datetime.now(UTC)
                s.add(mine)
                change = record_authorization_change(s, actor.username, mine, before, endpoints)
                result.updated += 1
            written.append((change.id, mine))
        s.commit()
        result.changes = [cid for cid, _ in written]
    # After the commit: AUTH-04 re-checks and the change events (a crash here leaves deliveries to the resume).
    touched: dict[int, tuple[list[str], list[str]]] = {}
    with Session(engine) as reader:
        for change_id, auth in written:
            touched[change_id] = (await recheck_visits_for(reader, client, auth, "updated by bulk intake",
                                                           change_id=change_id), [])
    await announce_changes(engine, client, settings, touched)
    return result


# --- visits --------------------------------------------------------------------------------------------------


class VisitRow(BaseModel):
    patient_id: int
    clinician_id: int
    payer_id: int
    service_code: str
    modifiers: list[str] = []
    scheduled_start: datetime
    scheduled_end: datetime


CONCURRENT_STARTS = 16


async def import_visits(engine: Engine, client: Client, settings: Settings, parsed: list[tuple[int, dict[str, Any]]],
                        actor: Actor) -> IntakeResult:
    problems: list[RowProblem] = []
    _check_source_ids(parsed, problems)
    valid: list[tuple[int, str, VisitRow]] = []
    for line, row in parsed:
        if "modifiers" in row:
            row = {**row, "modifiers": _modifiers(row["modifiers"])}
        try:
            v = VisitRow.model_validate({k: val for k, val in row.items() if k != "source_id"})
        except ValidationError as err:
            problems += _pydantic_problems(line, err)
            continue
        v.scheduled_start, v.scheduled_end = as_utc(v.scheduled_start), as_utc(v.scheduled_end)
        v.service_code = v.service_code.upper()
        if not re.match(HCPCS_PATTERN, v.service_code):
            problems.append(RowProblem(line=line, field="service_code", message="a HCPCS code: a letter and 4 digits"))
        for m in v.modifiers:
            if not re.match(MODIFIER_PATTERN, m):
                problems.append(RowProblem(line=line, field="modifiers",
                                           message=f"modifier {m!r} is not 2 letters or digits"))
        if v.scheduled_end <= v.scheduled_start:
            problems.append(RowProblem(line=line, field="scheduled_end", message="must be after scheduled_start"))
        elif v.scheduled_end - v.scheduled_start > timedelta(hours=24):
            problems.append(RowProblem(line=line, field="scheduled_end",
                                       message="EVV-05 a visit cannot be scheduled for longer than 24 hours"))
        valid.append((line, str(row.get("source_id")), v))
    plan: list[tuple[str, str, VisitRow, Visit | None]] = []  # (action, source id, row, visit as it stands)
    with Session(engine) as s:
        found = {name: _existing_ids(s, col, {getattr(v, f"{name}_id") for _, _, v in valid})
                 for name, col in (("patient", Patient.id), ("clinician", Clinician.id), ("payer", Payer.id))}
        visits: dict[str, Visit] = {}
        sids = [sid for _, sid, _ in valid]
        for i in range(0, len(sids), IN_CHUNK):
            for visit in s.exec(select(Visit).where(Visit.id.in_(sids[i:i + IN_CHUNK]))).all():
                visits[visit.id] = visit
        for line, sid, v in valid:
            for name in ("patient", "clinician", "payer"):
                if getattr(v, f"{name}_id") not in found[name]:
                    problems.append(RowProblem(line=line, field=f"{name}_id",
                                               message=f"{name} {getattr(v, f'{name}_id')} does not exist"))
            current = visits.get(sid)
            if current is None:
                plan.append(("schedule", sid, v, None))
                continue
            for field in ("patient_id", "payer_id", "service_code"):
                if getattr(current, field) != getattr(v, field):
                    problems.append(RowProblem(line=line, field=field, message=f"visit {sid} already exists with "
                                               f"{field} {getattr(current, field)}; cancel it and send a new one"))
            moved = (as_utc(current.scheduled_start), as_utc(current.scheduled_end)) != (v.scheduled_start,
                                                                                      v.scheduled_end)
            reassigned = current.clinician_id != v.clinician_id
            if (moved or reassigned) and current.state in ("released", "cancelled"):
                problems.append(RowProblem(line=line, field="scheduled_start" if moved else "clinician_id",
                                           message=f"visit {sid} is {current.state}; it can no longer change"))
            if reassigned and actor.role != Role.supervisor:
                problems.append(RowProblem(line=line, field="clinician_id",
                                           message="only a supervisor can give a visit to another clinician"))
            elif reassigned and current.state not in ("scheduled", "documented"):
                problems.append(RowProblem(line=line, field="clinician_id", message=f"visit {sid} is signed; "
                                           "a signed visit cannot be reassigned"))
            if moved:
                plan.append(("reschedule", sid, v, current))
            if reassigned:
                plan.append(("reassign", sid, v, current))
            if not (moved or reassigned):
                plan.append(("unchanged", sid, v, current))
    if problems:
        raise IntakeRejected(sorted(problems, key=lambda p: p.line))
    result = IntakeResult(kind="visits", rows=len(parsed))
    gate = asyncio.Semaphore(CONCURRENT_STARTS)

    by_visit: dict[str, list[tuple[str, VisitRow]]] = {}
    for action, sid, v, _current in plan:
        by_visit.setdefault(sid, []).append((action, v))

    async def apply(sid: str, actions: list[tuple[str, VisitRow]]) -> str:
        async with gate:  # one visit's actions in order; many visits side by side
            outcome = "unchanged"
            for action, v in actions:
                # The Update id comes from the row's content: the same row sent again is the same action.
                key = "intake:" + hashlib.sha256(f"{action}:{sid}:{v.model_dump_json()}".encode()).hexdigest()[:24]
                if action == "schedule":
                    with Session(engine) as s:
                        _snap, created = await schedule_visit(
                            s, client, settings, ScheduleRequest(id=sid, **v.model_dump()), actor)
                    outcome = "created" if created else "unchanged"
                elif action == "reschedule":
                    await act_recording_change(engine, client, settings, sid, VisitWorkflow.reschedule, Reschedule(
                        actor=actor, scheduled_start=v.scheduled_start, scheduled_end=v.scheduled_end,
                        reason="changed by bulk intake"), "visit_rescheduled", key)
                    outcome = "updated"
                elif action == "reassign":
                    await act_recording_change(engine, client, settings, sid, VisitWorkflow.reassign, Reassign(
                        actor=actor, clinician_id=v.clinician_id, reason="changed by bulk intake"),
                        "visit_reassigned", key)
                    outcome = "updated"
            return outcome

    for outcome in await asyncio.gather(*(apply(sid, actions) for sid, actions in by_visit.items())):
        setattr(result, outcome, getattr(result, outcome) + 1)
    return result


