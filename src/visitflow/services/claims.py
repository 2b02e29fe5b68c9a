"""Claims and 837P files for billers: find them, read them, move them through their states.

Shared by the REST API and the UI. Every change of a claim's state goes through `set_claim_state`, which checks
the one transition table (`visitflow.claims.states`) and writes the status history; the 835 import reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, select

from visitflow.claims.denials import code_in_words
from visitflow.claims.states import SET_BY_BILLER, ClaimState, refusal
from visitflow.db.tables import (
    Claim,
    ClaimEvent,
    ClaimEventPublic,
    ClaimFile,
    ClaimFilePublic,
    ClaimLine,
    ClaimLinePublic,
    ClaimPublic,
    Patient,
    Payer,
    ReleaseBatch,
    Visit,
)
from visitflow.services.errors import ServiceError
from visitflow.services.revenue import claim_moved

PAGE_SIZE = 50


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- state changes ---------------------------------------------------------------------------


def set_claim_state(session: Session, claim_id: int, to_state: ClaimState | str, actor: str, note: str = "",
                    at: datetime | None = None) -> Claim:
    """Move a claim to `to_state` if the transition table allows it, recording who, when and why.

    Locks the claim row (SELECT ... FOR UPDATE; SQLite: the caller's write session) so two changes queue. The
    caller commits, together with whatever else belongs to the change.
    """
    claim = session.exec(select(Claim).where(Claim.id == claim_id).with_for_update()).first()
    if claim is None:
        raise ServiceError(404, f"claim {claim_id} not found")
    why = refusal(claim.state, to_state)
    if why:
        raise ServiceError(409 if to_state in {s.value for s in ClaimState} else 422,
                           f"claim {claim.control_number}: {why}", "state")
    at = at or now_utc()
    session.add(ClaimEvent(claim_id=claim.id, at=at, actor=actor, from_state=claim.state,
                           to_state=ClaimState(to_state).value, note=note))
    claim_moved(session, claim, claim.state, ClaimState(to_state).value)
    claim.state, claim.state_changed_at = ClaimState(to_state).value, at
    session.add(claim)
    return claim


def record_new_claim(session: Session, claim: Claim, actor: str, note: str) -> None:
    """A claim was just made (by a release, a replacement or a void): its first history entry, and the
    receivables it adds."""
    session.add(ClaimEvent(claim_id=claim.id, at=claim.created_at, actor=actor, from_state=None,
                           to_state=claim.state, note=note))
    claim_moved(session, claim, None, claim.state)


def set_claim_state_by_biller(session: Session, claim_id: int, to_state: str, actor: str, note: str) -> Claim:
    """What the 999 / 277CA said (accepted, rejected); payments come from the 835 only. The state is read
    whatever its capitalisation ("Accepted" is accepted)."""
    to_state = to_state.strip().lower()
    allowed = sorted(s.value for s in SET_BY_BILLER - {ClaimState.submitted})
    if to_state not in allowed:
        what = repr(to_state) if to_state else "an empty state"
        raise ServiceError(422, f"{what} is not a state a biller sets: the 999 / 277CA "
                                f"answer is one of {', '.join(allowed)}; the file's 'submitted' button sends a "
                                "claim, and payments come from the 835", "state")
    if to_state == ClaimState.rejected.value and not note.strip():
        raise ServiceError(422, "say why the claim was rejected (the 999 / 277CA reason)", "note")
    return set_claim_state(session, claim_id, to_state, actor, note.strip())


def mark_file_submitted(session: Session, file_id: int, actor: str) -> ClaimFile:
    """The biller uploaded the file to the payer or clearinghouse: the file and each claim in it are submitted."""
    file = session.exec(select(ClaimFile).where(ClaimFile.id == file_id).with_for_update()).first()
    if file is None:
        raise ServiceError(404, f"claim file {file_id} not found")
    if not file.valid:
        raise ServiceError(409, f"claim file {file_id} is blocked and cannot be submitted: "
                                + "; ".join(file.findings or ["it has not been written yet"]))
    if file.submitted_at is not None:
        raise ServiceError(409, f"claim file {file_id} was already marked submitted by {file.submitted_by} "
                                f"at {file.submitted_at:%Y-%m-%d %H:%M} UTC")
    at = now_utc()
    file.submitted_at, file.submitted_by = at, actor
    session.add(file)
    for claim_id in session.exec(select(Claim.id).where(Claim.claim_file_id == file.id,
                                                        Claim.state == ClaimState.created.value)).all():
        set_claim_state(session, claim_id, ClaimState.submitted, actor, f"file {file.id} uploaded", at)
    return file


ALL_VOIDED = "every claim in this file was voided before it was sent: there is nothing to send"


def take_voided_claim_off_file(session: Session, claim: Claim) -> ClaimFile | None:
    """A claim voided before its file was sent must not go out with that file: the file drops it from its counts
    and is blocked until written again without it (the caller writes it after committing). A file left with no
    claim says so and stays blocked. Returns the file to write again, if any; None when there is nothing to do
    (no file, already sent, or nothing left in it)."""
    if claim.claim_file_id is None:
        return None
    file = session.exec(select(ClaimFile).where(ClaimFile.id == claim.claim_file_id).with_for_update()).one()
    if file.submitted_at is not None:
        return None  # sent: the payer has it, so the claim was not voided in place (services.commands.void_claim)
    file.claim_count = max(file.claim_count - 1, 0)
    file.total_cents -= claim.total_cents
    left = session.exec(select(func.count(Claim.id)).where(Claim.claim_file_id == file.id, Claim.id != claim.id,
                                                           Claim.state != ClaimState.voided.value)).one()
    file.valid, file.content = False, ""
    file.findings = ([ALL_VOIDED] if not left else
                     [f"claim {claim.control_number} was voided before the file was sent: the file must be written "
                      "again without it (press Write the file again if this stays)"])
    session.add(file)
    return file if left else None


def rewrite_blocked_file(engine, file_id: int, settings, actor: str = "system") -> None:
    """Write a blocked file again, after what it named was fixed (a patient's diagnosis, the agency's identity):
    the same claims and control numbers, checked again. A rejected claim waiting in it to be sent again
    (`resend_rejected_claim`) becomes created once the file is valid, in the same transaction: a valid file never
    holds a rejected claim. The caller reads the result."""
    from sqlmodel import Session as ReadSession

    from visitflow.activities.release import write_file
    from visitflow.db.session import write_session

    with ReadSession(engine) as s:
        file = s.get(ClaimFile, file_id)
        if file is None:
            raise ServiceError(404, f"claim file {file_id} not found")
        if file.valid:
            raise ServiceError(409, f"claim file {file_id} is valid already; nothing to write again")
        if not s.exec(select(Claim.id).where(Claim.claim_file_id == file.id,
                                             Claim.state != ClaimState.voided.value)).first():
            raise ServiceError(409, f"claim file {file_id}: {ALL_VOIDED}")
        agency = settings.agency.model_dump(mode="json") if settings.agency else None
        content, findings = write_file(s, file, agency, settings.claim_file_blocker(), settings.agency_timezone)
    with write_session(engine) as s:
        file = s.exec(select(ClaimFile).where(ClaimFile.id == file_id).with_for_update()).one()
        if not file.valid:  # a concurrent rewrite may have stored a valid file first: keep it
            file.content, file.findings, file.valid = content, findings, not findings
            s.add(file)
            if file.valid:
                for claim_id in s.exec(select(Claim.id).where(Claim.claim_file_id == file.id,
                                                              Claim.state == ClaimState.rejected.value)).all():
                    set_claim_state(s, claim_id, ClaimState.created, actor,
                                    f"sent again in file {file.id} ({file_name(file)}), checked and valid, once "
                                    "what the rejection named was fixed: the same claim and control number")
            s.commit()


def lock_claim(s: Session, claim_id: int) -> Claim:
    """The claim, locked for a change, with its file locked first: the order marking a file submitted takes them
    in, so two actions on one claim never deadlock."""
    file_id = s.exec(select(Claim.claim_file_id).where(Claim.id == claim_id)).first()
    if file_id is not None:
        s.exec(select(ClaimFile.id).where(ClaimFile.id == file_id).with_for_update()).one()
    claim = s.exec(select(Claim).where(Claim.id == claim_id).with_for_update()).first()
    if claim is None:
        raise ServiceError(404, f"claim {claim_id} not found")
    return claim


def resend_rejected_claim(engine, claim_id: int, settings, actor: str) -> None:
    """A claim the 999 / 277CA rejected, fixed (the patient's record, the agency's settings), is sent again: the
    payer never adjudicated it, so the same claim with the same control number and frequency goes into a new 837P
    of its own (batch `resend-<claim id>-<rejections so far>`), written and checked as every file is
    (`rewrite_blocked_file`). Valid, the claim becomes created (ready to download and upload); with findings the
    file is blocked, saying why, and the claim stays rejected: fix what it names and send again, the same file is
    written again. Asked again once it went, nothing more is made."""
    from visitflow.db.session import write_session

    with write_session(engine) as s:
        claim = lock_claim(s, claim_id)
        if claim.state != ClaimState.rejected.value:
            last_rejection = s.exec(select(ClaimEvent).where(ClaimEvent.claim_id == claim.id,
                                                             ClaimEvent.from_state == ClaimState.rejected.value)
                                    .order_by(ClaimEvent.id.desc())).first()
            if last_rejection is not None and last_rejection.to_state == ClaimState.created.value:
                return  # sent again already (a double click, a resend): the same answer
            raise ServiceError(409, f"claim {claim.control_number} is {claim.state}, not rejected: only a claim the "
                                    "999 / 277CA rejected is sent again", "state")
        file = s.get(ClaimFile, claim.claim_file_id) if claim.claim_file_id else None
        if file is None or file.submitted_at is not None:
            # The file the payer refused went out: a new file, numbered by its own row, for this claim alone.
            rejections = s.exec(select(func.count(ClaimEvent.id)).where(
                ClaimEvent.claim_id == claim.id, ClaimEvent.to_state == ClaimState.rejected.value)).one()
            batch_id = f"resend-{claim.id}-{rejections}"
            at = now_utc()
            # Done as soon as made: nothing to release, so a restart never picks it up as unfinished.
            s.add(ReleaseBatch(id=batch_id, created_by=actor, created_at=at, visit_ids=[], completed_at=at))
            s.flush()
            new = ClaimFile(release_batch_id=batch_id, payer_id=claim.payer_id, interchange_control_number=0,
                            group_control_number=0, transaction_set_control_number=1, claim_count=1,
                            total_cents=claim.total_cents, created_at=at, valid=False,
                            findings=[f"claim {claim.control_number} is being written into this file to be sent "
                                      "again (press Send again on the claim if this stays)"])
            s.add(new)
            s.flush()
            new.interchange_control_number = new.group_control_number = new.id  # unique, never reused
            was = f" (it was in file {file.id}, {file_name(file)})" if file is not None else ""
            s.add(ClaimEvent(claim_id=claim.id, at=at, actor=actor, from_state=claim.state, to_state=claim.state,
                             note=f"to be sent again in file {new.id}{was}"))
            claim.claim_file_id = new.id
            s.add(claim)
            s.commit()
            file = new
        file_id = file.id
    try:
        rewrite_blocked_file(engine, file_id, settings, actor)
    except ServiceError as err:
        if err.status != 409:  # valid already: a concurrent press wrote it, and the claim went with it
            raise
    with Session(engine) as s:
        claim, file = s.get(Claim, claim_id), s.get(ClaimFile, file_id)
        if claim.state == ClaimState.rejected.value:
            raise ServiceError(409, f"claim {claim.control_number} stays rejected: its new file {file.id} is "
                                    "blocked: " + "; ".join(file.findings or ["it could not be written"]) +
                               ". Fix that, then send it again.")


# --- reading ------------------------------------------------------------------------------


@dataclass
class ClaimFilter:
    state: str | None = None
    payer_id: int | None = None
    patient_id: int | None = None
    period_from: date | None = None  # claims whose period starts on or after
    period_to: date | None = None  # ... and on or before


class ClaimRow(ClaimPublic):
    payer: str
    patient: str
    lines: int | None = None


class ClaimPage(BaseModel):
    items: list[ClaimRow]
    next_after: int | None  # pass as `after` for the next page; None on the last


def list_claims(session: Session, wanted: ClaimFilter, after: int | None = None,
                limit: int = PAGE_SIZE) -> ClaimPage:
    """Newest first, a page at a time by id (keyset: each filter's index ends in id), never counting them all."""
    if wanted.state and wanted.state not in {s.value for s in ClaimState}:
        raise ServiceError(422, f"state: not a claim state (one of {', '.join(s.value for s in ClaimState)})",
                           "state")
    query = (select(Claim, Payer.name, Patient.first_name, Patient.last_name)
             .join(Payer, Payer.id == Claim.payer_id).join(Patient, Patient.id == Claim.patient_id))
    if wanted.state:
        query = query.where(Claim.state == wanted.state)
    if wanted.payer_id:
        query = query.where(Claim.payer_id == wanted.payer_id)
    if wanted.patient_id:
        query = query.where(Claim.patient_id == wanted.patient_id)
    if wanted.period_from:
        query = query.where(Claim.period_start >= wanted.period_from)
    if wanted.period_to:
        query = query.where(Claim.period_start <= wanted.period_to)
    if after is not None:
        query = query.where(Claim.id < after)
    rows = session.exec(query.order_by(Claim.id.desc()).limit(limit + 1)).all()
    counts = line_counts(session, [c.id for c, *_ in rows[:limit]])
    items = [ClaimRow(**c.model_dump(), payer=payer, patient=f"{first} {last}", lines=counts.get(c.id, 0))
             for c, payer, first, last in rows[:limit]]
    return ClaimPage(items=items, next_after=items[-1].id if len(rows) > limit else None)


def line_counts(session: Session, claim_ids: list[int]) -> dict[int, int]:
    """Lines per claim for a page of claims: one grouped query by the line's claim index, not one per claim."""
    if not claim_ids:
        return {}
    return dict(session.exec(select(ClaimLine.claim_id, func.count(ClaimLine.id))
                             .where(ClaimLine.claim_id.in_(claim_ids)).group_by(ClaimLine.claim_id)).all())


class ClaimLineView(ClaimLinePublic):
    visit_state: str | None = None


class ClaimDetail(ClaimRow):
    line_items: list[ClaimLineView]
    history: list[ClaimEventPublic]
    file: ClaimFilePublic | None
    segments: list[str]  # this claim's part of its 837P file, one segment a line


def claim_detail(session: Session, claim_id: int) -> ClaimDetail:
    found = session.exec(select(Claim, Payer.name, Patient.first_name, Patient.last_name)
                         .join(Payer, Payer.id == Claim.payer_id).join(Patient, Patient.id == Claim.patient_id)
                         .where(Claim.id == claim_id)).first()
    if found is None:
        raise ServiceError(404, f"claim {claim_id} not found")
    claim, payer, first, last = found
    lines = session.exec(select(ClaimLine, Visit.state).outerjoin(Visit, Visit.id == ClaimLine.visit_id)
                         .where(ClaimLine.claim_id == claim.id).order_by(ClaimLine.line_number)).all()
    history = session.exec(select(ClaimEvent).where(ClaimEvent.claim_id == claim.id).order_by(ClaimEvent.id)).all()
    file = session.get(ClaimFile, claim.claim_file_id) if claim.claim_file_id else None
    return ClaimDetail(
        **claim.model_dump(), payer=payer, patient=f"{first} {last}", lines=len(lines),
        line_items=[ClaimLineView(**line.model_dump(), visit_state=state) for line, state in lines],
        history=[ClaimEventPublic.model_validate(e, from_attributes=True) for e in history],
        file=ClaimFilePublic.model_validate(file, from_attributes=True) if file else None,
        segments=claim_segments(file.content, claim.control_number) if file and file.content else [])


class VisitClaim(BaseModel):
    """A claim a visit was billed on, as its page and the API show it (oldest first)."""

    claim_id: int
    control_number: str
    claim_state: str
    frequency: str
    live: bool  # False once a replacement or a void took the visit off this claim
    line_state: str  # billed, paid, denied, adjusted
    charge_cents: int
    paid_cents: int | None = None  # what the payer paid for the visit's line, once paid
    denial: list[str] = []  # the payer's codes in words, when it denied or cut the line


def visit_claims(session: Session, visit_id: str) -> list[VisitClaim]:
    """Every claim the visit was on, by the claim lines' visit index (one query, no scan)."""
    rows = session.exec(select(ClaimLine, Claim.control_number, Claim.state, Claim.frequency)
                        .join(Claim, Claim.id == ClaimLine.claim_id)
                        .where(ClaimLine.visit_id == visit_id).order_by(ClaimLine.id)).all()
    return [VisitClaim(claim_id=line.claim_id, control_number=number, claim_state=state, frequency=frequency,
                       live=line.live, line_state=line.state, charge_cents=line.charge_cents,
                       paid_cents=line.paid_cents if line.state in ("paid", "adjusted") else None,
                       denial=[code_in_words(c) for c in line.adjustments] if line.state in ("denied", "adjusted")
                       else [])
            for line, number, state, frequency in rows]


def claim_billing_visits_of(session: Session, claim_id: int) -> int | None:
    """The claim that bills this claim's visits now (itself, its replacement, or the claim that took its lines):
    the live line of its first visit, by the visit's line index."""
    visit_id = session.exec(select(ClaimLine.visit_id).where(ClaimLine.claim_id == claim_id)
                            .order_by(ClaimLine.line_number)).first()
    if visit_id is None:
        return None
    return session.exec(select(ClaimLine.claim_id).where(ClaimLine.visit_id == visit_id, ClaimLine.live)).first()


def claim_segments(content: str, control_number: str) -> list[str]:
    """The segments of one claim in its file: its subscriber loop (HL 22), the CLM and its lines."""
    segments = [s.strip() for s in content.split("~") if s.strip()]
    starts = [i for i, s in enumerate(segments) if s.startswith("HL*") and s.split("*")[3:4] == ["22"]]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else next(
            (i for i, s in enumerate(segments) if s.startswith("SE*")), len(segments))
        part = segments[start:end]
        if any(s.startswith(f"CLM*{control_number}*") for s in part):
            return part
    return []


class FileRow(ClaimFilePublic):
    payer: str
    file_name: str


class FilePage(BaseModel):
    items: list[FileRow]
    next_after: int | None


def file_name(file: ClaimFile) -> str:
    return f"837P-{file.interchange_control_number:09d}.txt"


def list_files(session: Session, after: int | None = None, limit: int = PAGE_SIZE,
               payer_id: int | None = None) -> FilePage:
    query = select(ClaimFile, Payer.name).join(Payer, Payer.id == ClaimFile.payer_id)
    if payer_id:
        query = query.where(ClaimFile.payer_id == payer_id)
    if after is not None:
        query = query.where(ClaimFile.id < after)
    rows = session.exec(query.order_by(ClaimFile.id.desc()).limit(limit + 1)).all()
    items = [FileRow(**ClaimFilePublic.model_validate(f, from_attributes=True).model_dump(), payer=payer,
                     file_name=file_name(f)) for f, payer in rows[:limit]]
    return FilePage(items=items, next_after=items[-1].id if len(rows) > limit else None)


class FileDetail(FileRow):
    claims: list[ClaimRow] = []


def file_detail(session: Session, file_id: int) -> FileDetail:
    found = session.exec(select(ClaimFile, Payer.name).join(Payer, Payer.id == ClaimFile.payer_id)
                         .where(ClaimFile.id == file_id)).first()
    if found is None:
        raise ServiceError(404, f"claim file {file_id} not found")
    file, payer = found
    claims = session.exec(select(Claim, Patient.first_name, Patient.last_name)
                          .join(Patient, Patient.id == Claim.patient_id)
                          .where(Claim.claim_file_id == file.id).order_by(Claim.id)).all()
    counts = line_counts(session, [c.id for c, *_ in claims])
    return FileDetail(**ClaimFilePublic.model_validate(file, from_attributes=True).model_dump(), payer=payer,
                      file_name=file_name(file),
                      claims=[ClaimRow(**c.model_dump(), payer=payer, patient=f"{first} {last}",
                                       lines=counts.get(c.id, 0)) for c, first, last in claims])


def file_download(session: Session, file_id: int) -> tuple[str, str]:
    """(file name, X12 text) of a valid file; a blocked one is refused with its findings in words."""
    file = session.get(ClaimFile, file_id)
    if file is None:
        raise ServiceError(404, f"claim file {file_id} not found")
    if not file.valid:
        raise ServiceError(409, f"claim file {file_id} is blocked and cannot be downloaded: "
                                + "; ".join(file.findings or ["it has not been written yet"]))
    return file_name(file), file.content
