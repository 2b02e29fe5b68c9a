"""Side effects of a release (ReleaseWorkflow): the visits released by their workflows, the claims made of them,
one 837P file per payer, checked before anyone can download it.

Each activity may run again (a retry, a worker killed mid-way) and leaves the same result: the release Update has
the fixed id "release"; claims are keyed by (batch, payer, patient, period start, frequency) and a visit sits on one
live claim line (a partial unique index); a file is keyed by (batch, payer) and its control numbers are fixed
when its row is first written.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from visitflow.activities.visits import heartbeating
from visitflow.claims import models as x12
from visitflow.claims.billing import control_number, period_of, split_lines
from visitflow.claims.check import check_837
from visitflow.claims.states import ClaimState
from visitflow.claims.x837p import write_837p
from visitflow.db.session import write_session
from visitflow.db.tables import (
    Authorization,
    Claim,
    ClaimFile,
    ClaimLine,
    Clinician,
    Patient,
    Payer,
    PayerRate,
    ReleaseBatch,
    Visit,
)
from visitflow.models import ReleasedClaim, ReleasedFile, ReleaseOutcome, ReleaseRequest, VisitState
from visitflow.services.claims import record_new_claim, set_claim_state

CHUNK = 500  # ids per IN (...) list
# A visit on a live line in one of these states was denied (or underpaid for a reason someone can fix) and sent back
# into work; released again, it is billed on a replacement claim.
REBILLED_LINE_STATES = frozenset({"denied", "adjusted"})


def _chunks(ids: list, size: int = CHUNK):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def filing_deadline(service_date: date, limit_days: int) -> date:
    """CLM-07: the last day the payer accepts a claim for this date of service."""
    return service_date + timedelta(days=limit_days)


def timely_filing_refusal(service_date: date, payer: Payer, today: date) -> str | None:
    """CLM-07 in words when the date of service is past the payer's filing limit; None while it is not."""
    deadline = filing_deadline(service_date, payer.filing_limit_days)
    if today <= deadline:
        return None
    late = (today - deadline).days
    return (f"CLM-07 the visit of {service_date} is past {payer.name}'s {payer.filing_limit_days}-day timely "
            f"filing limit: the last day to bill it was {deadline} ({late} day{'s' if late != 1 else ''} ago), "
            "so the payer would deny it; it is held, not released")


def rate_key(modifiers: list[str]) -> str:
    """PayerRate.modifier_key: the modifiers in claim order."""
    return ":".join(m.upper() for m in modifiers)


def charge_for(session: Session, payer: Payer, service_code: str, modifiers: list[str], units: int) -> int:
    """What a visit bills: units at the fee schedule's rate for the service and modifiers, else the payer's rate."""
    rate = session.exec(select(PayerRate.rate_per_unit_cents).where(
        PayerRate.payer_id == payer.id, PayerRate.service_code == service_code,
        PayerRate.modifier_key == rate_key(modifiers))).first()
    return units * (payer.rate_per_unit_cents if rate is None else rate)


class ReleaseActivities:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- 1. release each visit -------------------------------------------------------------

    @activity.defn(name="release_batch_visits")
    async def release_batch_visits(self, req: ReleaseRequest) -> ReleaseOutcome:
        """REL-01 through each visit's workflow. The Update id is fixed per visit ("release"), so a repeat (this
        activity retried, or a competing batch) gets the first release's answer and nothing is released twice."""
        from visitflow.models import Release
        from visitflow.services.commands import VisitClosed, act  # here: commands starts this module's workflow
        from visitflow.services.errors import ServiceError
        from visitflow.workflows.visit import VisitWorkflow

        late = await asyncio.to_thread(self._past_filing_limit, req.visit_ids, req.timezone)
        client = activity.client()
        outcome = ReleaseOutcome(batch_id=req.batch_id)
        for done, visit_id in enumerate(req.visit_ids):
            activity.heartbeat(done)
            if visit_id in late:
                outcome.rejected.append({"visit_id": visit_id, "status": 409, "rule_id": "CLM-07",
                                         "reason": late[visit_id]})
                continue
            try:
                snap = await act(client, visit_id, VisitWorkflow.release,
                                 Release(actor=req.actor, batch_id=req.batch_id), update_id="release")
            except VisitClosed as closed:
                snap = closed.snapshot
                if snap.state != VisitState.released:
                    outcome.rejected.append({"visit_id": visit_id, "status": 409, "reason": closed.message})
                    continue
            except ServiceError as err:
                if err.status == 503:
                    # The visit did not answer in time: it may be released. Retrying this activity asks again
                    # (same Update id) and gets the release's outcome; the visits done so far answer at once.
                    raise
                outcome.rejected.append({"visit_id": visit_id, "status": err.status, "reason": err.message})
                continue
            if snap.release_batch_id == req.batch_id:
                outcome.released.append(visit_id)
            else:
                outcome.already_released.append({"visit_id": visit_id, "batch_id": snap.release_batch_id,
                                                 "released_by": snap.released_by})
        return outcome

    def _past_filing_limit(self, visit_ids: list[str], timezone: str) -> dict[str, str]:
        """CLM-07: the visits not yet released whose payer's filing limit has passed, with the reason."""
        today = datetime.now(ZoneInfo(timezone)).date()
        late: dict[str, str] = {}
        with Session(self.engine) as s:
            for chunk in _chunks(visit_ids):
                for visit_id, service_date, state, payer in s.exec(
                        select(Visit.id, Visit.service_date, Visit.state, Payer)
                        .join(Payer, Payer.id == Visit.payer_id).where(Visit.id.in_(chunk))):
                    if state == VisitState.released.value:
                        continue  # already released (by this batch's earlier attempt or another): not ours to hold
                    reason = timely_filing_refusal(service_date, payer, today)
                    if reason:
                        late[visit_id] = reason
        return late

    # --- 2. claims ---------------------------------------------------------------------------

    @activity.defn(name="create_claims")
    @heartbeating
    def create_claims(self, req: ReleaseRequest, released: list[str]) -> list[ReleasedClaim]:
        """One claim per payer, patient and billing period (the payer's setting) of the visits released into the
        batch, each visit one line. A visit the payer denied, fixed and released again goes out on a replacement
        (frequency 7) of the claim that billed it; any other visit already on a live line is left where it is."""
        with write_session(self.engine) as s:
            # Every visit the read model has in this batch (by its index), not only those this run saw released.
            visits = list(s.exec(select(Visit).where(Visit.release_batch_id == req.batch_id).order_by(Visit.id)))
            missing = set(released) - {v.id for v in visits}
            if missing:  # released, but the projection is not written yet: try again in a moment
                raise ApplicationError(f"released visits not in the read model yet: {', '.join(sorted(missing))}")
            billed: dict[str, tuple[str, int]] = {}  # visit -> (its live line's state, that line's claim)
            for chunk in _chunks([v.id for v in visits]):
                billed |= {visit_id: (state, claim_id) for visit_id, state, claim_id in s.exec(
                    select(ClaimLine.visit_id, ClaimLine.state, ClaimLine.claim_id)
                    .where(ClaimLine.visit_id.in_(chunk), ClaimLine.live))}
            todo = [v for v in visits if v.id not in billed]
            rebilled: dict[int, dict[str, Visit]] = defaultdict(dict)
            for v in visits:
                if v.id in billed and billed[v.id][0] in REBILLED_LINE_STATES:
                    rebilled[billed[v.id][1]][v.id] = v
            if todo:
                self._make_claims(s, req, todo)
            for claim_id, fixed in sorted(rebilled.items()):
                replace_claim(s, req.batch_id, req.actor.username, s.get(Claim, claim_id), fixed)
            if todo or rebilled:
                s.commit()
            return self._claims_of(s, req.batch_id)

    def _make_claims(self, s: Session, req: ReleaseRequest, visits: list[Visit]) -> None:
        # Locked patient by patient (in id order: no deadlocks): two batches billing one patient check CLM-05 one
        # after the other. (SQLite's write session is one writer already.)
        patient_ids = sorted({v.patient_id for v in visits})
        s.exec(select(Patient.id).where(Patient.id.in_(patient_ids)).order_by(Patient.id).with_for_update()).all()
        payers = {p.id: p for p in s.exec(select(Payer).where(Payer.id.in_(sorted({v.payer_id for v in visits}))))}
        auth_ids = {v.authorization_id for v in visits if v.authorization_id}
        auths = dict(s.exec(select(Authorization.id, Authorization.auth_number)
                            .where(Authorization.id.in_(sorted(auth_ids)))).all()) if auth_ids else {}
        npis = dict(s.exec(select(Clinician.id, Clinician.npi)
                           .where(Clinician.id.in_(sorted({v.clinician_id for v in visits})))).all())
        groups: dict[tuple, list[Visit]] = defaultdict(list)
        for v in visits:
            start, end = period_of(v.service_date, payers[v.payer_id].billing_period)
            groups[(v.payer_id, v.patient_id, start, end)].append(v)
        now = datetime.now(UTC)
        for (payer_id, patient_id, start, end), members in sorted(groups.items()):
            members.sort(key=lambda v: (v.service_date, v.scheduled_start, v.id))
            parts = split_lines([(v.service_date, v) for v in members])
            for number, part in enumerate(parts):
                # A period longer than one claim holds goes on several, each from its first date of service.
                part_start = start if number == 0 else part[0].service_date
                part_end = end if number == len(parts) - 1 else parts[number + 1][0].service_date - timedelta(days=1)
                self._make_claim(s, req, payers[payer_id], patient_id, part_start, part_end, part, auths, npis, now)

    def _make_claim(self, s: Session, req: ReleaseRequest, payer: Payer, patient_id: int, start: date, end: date,
                    visits: list[Visit], auths: dict, npis: dict, now: datetime) -> None:
        lines = []
        for number, v in enumerate(visits, start=1):
            units = v.billable_units or 0
            lines.append(ClaimLine(
                claim_id=0, line_number=number, visit_id=v.id, patient_id=patient_id, service_date=v.service_date,
                hcpcs=v.service_code, modifiers=list(v.modifiers), units=units,
                charge_cents=charge_for(s, payer, v.service_code, list(v.modifiers), units),
                authorization_number=auths.get(v.authorization_id), rendering_npi=npis.get(v.clinician_id)))
        # CLM-05: a member's date of service of a service is billed on one claim. Already on a live claim of
        # this payer (an earlier batch)? Then this claim is held, not filed, and says which claim bills it.
        conflicts = []
        for line in lines:
            other = s.exec(select(Claim.control_number).join(ClaimLine, ClaimLine.claim_id == Claim.id).where(
                ClaimLine.patient_id == patient_id, ClaimLine.service_date == line.service_date,
                ClaimLine.hcpcs == line.hcpcs, ClaimLine.live, Claim.payer_id == payer.id)).first()
            if other:
                conflicts.append(f"visit {line.visit_id}: {line.hcpcs} on {line.service_date} is already billed on "
                                 f"claim {other}")
        state = ClaimState.held if conflicts else ClaimState.created
        frequency = "1"
        claim = Claim(
            control_number=control_number(req.batch_id, payer.id, patient_id, start, frequency),
            release_batch_id=req.batch_id, payer_id=payer.id, patient_id=patient_id, period_start=start,
            period_end=end, frequency=frequency, state=state.value, total_cents=sum(x.charge_cents for x in lines),
            created_at=now, created_by=req.actor.username, state_changed_at=now)
        s.add(claim)
        s.flush()
        for line in lines:
            line.claim_id = claim.id
            s.add(line)
        note = f"released in batch {req.batch_id}"
        if conflicts:
            note = ("CLM-05 held, not filed: a day's service is never split across two claims; "
                    + "; ".join(conflicts) + ". Bill these visits by replacing that claim (frequency 7).")
        record_new_claim(s, claim, req.actor.username, note)
        s.flush()

    @staticmethod
    def _claims_of(s: Session, batch_id: str) -> list[ReleasedClaim]:
        rows = s.exec(select(Claim, func.count(ClaimLine.id)).join(ClaimLine, ClaimLine.claim_id == Claim.id)
                      .where(Claim.release_batch_id == batch_id).group_by(Claim.id).order_by(Claim.id)).all()
        return [ReleasedClaim(id=c.id, control_number=c.control_number, payer_id=c.payer_id,
                              patient_id=c.patient_id, state=c.state, total_cents=c.total_cents, visits=n)
                for c, n in rows]

    # --- 3. files ----------------------------------------------------------------------------

    @activity.defn(name="write_claim_files")
    @heartbeating
    def write_claim_files(self, req: ReleaseRequest) -> list[ReleasedFile]:
        """One 837P per payer of the batch's claims, checked with pyx12 and the claim edits; a file with any
        finding is kept but blocked from download, with the findings in words."""
        # (a) The file rows, with their control numbers, and which claims each holds: fixed once, in one step.
        with write_session(self.engine) as s:
            unfiled = s.exec(select(Claim).where(Claim.release_batch_id == req.batch_id, Claim.claim_file_id.is_(None),
                                                 Claim.state == ClaimState.created.value)).all()
            by_payer: dict[int, list[Claim]] = defaultdict(list)
            for claim in unfiled:
                by_payer[claim.payer_id].append(claim)
            now = datetime.now(UTC)
            for payer_id, claims in sorted(by_payer.items()):
                file = s.exec(select(ClaimFile).where(ClaimFile.release_batch_id == req.batch_id,
                                                      ClaimFile.payer_id == payer_id)).first()
                if file is None:
                    file = ClaimFile(release_batch_id=req.batch_id, payer_id=payer_id, interchange_control_number=0,
                                     group_control_number=0, transaction_set_control_number=1, created_at=now)
                    s.add(file)
                    s.flush()
                    # The row id is unique and never reused: it numbers the interchange and the group.
                    file.interchange_control_number = file.group_control_number = file.id
                for claim in claims:
                    claim.claim_file_id = file.id
                    s.add(claim)
                file.claim_count = len(claims) + file.claim_count
                file.total_cents = sum(c.total_cents for c in claims) + file.total_cents
                s.add(file)
            s.commit()
            files = s.exec(select(ClaimFile).where(ClaimFile.release_batch_id == req.batch_id)
                           .order_by(ClaimFile.id)).all()
            pending = [f.id for f in files if not f.content and not f.findings]
        # (b) Write and check each file outside the write lock (pyx12 reads the whole file), then store it.
        for file_id in pending:
            with Session(self.engine) as s:
                content, findings = self._write_file(s, req, s.get(ClaimFile, file_id))
            with write_session(self.engine) as s:
                file = s.get(ClaimFile, file_id)
                if not file.content and not file.findings:  # a concurrent attempt may have stored it already
                    file.content, file.findings, file.valid = content, findings, not findings
                    s.add(file)
                    s.commit()
        with Session(self.engine) as s:
            return [ReleasedFile(id=f.id, payer_id=f.payer_id, valid=f.valid, claims=f.claim_count,
                                 findings=list(f.findings))
                    for f in s.exec(select(ClaimFile).where(ClaimFile.release_batch_id == req.batch_id)
                                    .order_by(ClaimFile.id))]

    def _write_file(self, s: Session, req: ReleaseRequest, file: ClaimFile) -> tuple[str, list[str]]:
        return write_file(s, file, req.agency, req.file_blocker, req.timezone)

    # --- 4. done -----------------------------------------------------------------------------

    @activity.defn(name="complete_release_batch")
    @heartbeating
    def complete_release_batch(self, batch_id: str) -> None:
        with write_session(self.engine) as s:
            batch = s.get(ReleaseBatch, batch_id)
            if batch is not None and batch.completed_at is None:
                batch.completed_at = datetime.now(UTC)
                s.add(batch)
                s.commit()

    def all(self) -> list:
        return [self.release_batch_visits, self.create_claims, self.write_claim_files, self.complete_release_batch]


def replace_claim(s: Session, batch_id: str, actor: str, old: Claim, fixed: dict[str, Visit],
                  carried: list[ClaimLine] = (), why: str | None = None) -> Claim:
    """A frequency 7 claim in place of `old`, naming the payer's number for it: every line `old` billed, the
    fixed visits as they are now and the others as they were, so the payer readjudicates the whole claim; then
    the `carried` lines (a held claim's, CLM-05: the same days of service go on this one claim). The lines it
    takes over give up their visits in the same transaction (a visit stays on exactly one live line)."""
    now = datetime.now(UTC)
    payer = s.get(Payer, old.payer_id)
    auth_ids = {v.authorization_id for v in fixed.values() if v.authorization_id}
    auths = dict(s.exec(select(Authorization.id, Authorization.auth_number)
                        .where(Authorization.id.in_(auth_ids))).all()) if auth_ids else {}
    npis = dict(s.exec(select(Clinician.id, Clinician.npi)
                       .where(Clinician.id.in_({v.clinician_id for v in fixed.values()}))).all()) if fixed else {}
    old_lines = s.exec(select(ClaimLine).where(ClaimLine.claim_id == old.id, ClaimLine.live)
                       .order_by(ClaimLine.line_number)).all()
    lines = []
    for number, line in enumerate([*old_lines, *carried], start=1):
        v = fixed.get(line.visit_id)
        if v is None:
            lines.append(ClaimLine(
                claim_id=0, line_number=number, visit_id=line.visit_id, patient_id=line.patient_id,
                service_date=line.service_date, hcpcs=line.hcpcs, modifiers=list(line.modifiers),
                units=line.units, charge_cents=line.charge_cents, authorization_number=line.authorization_number,
                rendering_npi=line.rendering_npi))
        else:
            units = v.billable_units or 0
            lines.append(ClaimLine(
                claim_id=0, line_number=number, visit_id=v.id, patient_id=old.patient_id,
                service_date=v.service_date, hcpcs=v.service_code, modifiers=list(v.modifiers), units=units,
                charge_cents=charge_for(s, payer, v.service_code, list(v.modifiers), units),
                authorization_number=auths.get(v.authorization_id), rendering_npi=npis.get(v.clinician_id)))
        line.live = False
        s.add(line)
    s.flush()  # the old lines let go of their visits before the new ones take them
    frequency = "7"
    dates = [x.service_date for x in lines]
    claim = Claim(
        control_number=control_number(batch_id, payer.id, old.patient_id, old.period_start, frequency, old.id),
        release_batch_id=batch_id, payer_id=payer.id, patient_id=old.patient_id,
        period_start=min([old.period_start, *dates]), period_end=max([old.period_end, *dates]),
        frequency=frequency, replaces_claim_id=old.id, state=ClaimState.created.value,
        total_cents=sum(x.charge_cents for x in lines), created_at=now, created_by=actor, state_changed_at=now)
    s.add(claim)
    s.flush()
    for line in lines:
        line.claim_id = claim.id
        s.add(line)
    payer_number = f" (the payer's {old.payer_claim_number})" if old.payer_claim_number else ""
    if why is None:
        why = (f"after the payer's denial of visit{'s' if len(fixed) > 1 else ''} {', '.join(sorted(fixed))} "
               "was fixed")
    record_new_claim(s, claim, actor, f"replaces claim {old.control_number}{payer_number} {why}")
    set_claim_state(s, old.id, ClaimState.replaced, actor, f"replaced by claim {claim.control_number} (frequency 7)",
                    at=now)
    s.flush()
    return claim


def write_file(s: Session, file: ClaimFile, agency: dict | None, blocker: str | None,
               timezone: str) -> tuple[str, list[str]]:
    """(X12 text, findings in words) of a file's claims: written with its fixed control numbers, then checked
    with pyx12 (CLM-06) and the claim edits. Text is empty when the claims cannot be written at all."""
    if blocker or agency is None:
        return "", [blocker or "The agency's billing identity is not configured."]
    payer = s.get(Payer, file.payer_id)
    # A claim voided before the file went out stays linked to it (its page says where it was) but is not sent.
    claims = s.exec(select(Claim).where(Claim.claim_file_id == file.id, Claim.state != ClaimState.voided.value)
                    .order_by(Claim.id)).all()
    built, problems = [], []
    for claim in claims:
        try:
            built.append(claim_model(s, claim))
        except ValidationError as err:
            problems += [f"claim {claim.control_number}: {why}" for why in explain(err)]
    if problems:
        return "", problems
    zone = ZoneInfo(timezone)
    try:
        document = x12.ClaimFile(
            agency=x12.Agency.model_validate(agency),
            payer=x12.Payer(name=payer.name[:60], payer_id=payer.payer_code),
            envelope=x12.Envelope(interchange_control_number=file.interchange_control_number,
                                  group_control_number=file.group_control_number,
                                  transaction_set_control_number=file.transaction_set_control_number,
                                  created_at=file.created_at.astimezone(zone)),
            claims=built)
    except ValidationError as err:
        return "", explain(err)
    content = write_837p(document)
    report = check_837(content, as_of=datetime.now(zone).date(), filing_limit_days=payer.filing_limit_days)
    return content, [finding.describe() for finding in report.findings]


# What the claim models call a field, in the words of the record a biller fixes.
_FIELD_WORDS = {
    "medicaid_id": "the patient's Medicaid id", "birth_date": "the patient's birth date",
    "gender": "the patient's gender", "diagnosis_codes": "the patient's diagnosis codes (ICD-10)",
    "postal_code": "the ZIP code", "npi": "the NPI", "payer_id": "the payer's code", "units": "the units",
    "charge_cents": "the charge", "last_name": "the last name", "first_name": "the first name",
    "line1": "the street address", "city": "the city", "state": "the state",
}


# A list the claim needs at least one of, left empty: what to do, in the biller's words.
_EMPTY_WORDS = {
    "diagnosis_codes": "The patient has no diagnosis code (ICD-10); add one on the patient's record",
}


def explain(err: ValidationError) -> list[str]:
    """A claim model's refusal, one sentence per problem, naming the record to fix."""
    out = []
    for problem in err.errors():
        names = [str(p) for p in problem["loc"] if not isinstance(p, int)]
        field = next((_FIELD_WORDS[n] for n in reversed(names) if n in _FIELD_WORDS), ".".join(names) or "claim")
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] in ("missing", "string_type", "date_type") and problem.get("input") is None:
            message = "is missing"
        elif problem["type"] == "too_short":  # pydantic's "List should have at least 1 item after validation"
            if names and names[-1] in _EMPTY_WORDS:
                out.append(_EMPTY_WORDS[names[-1]])
                continue
            message = f"needs at least {problem.get('ctx', {}).get('min_length', 1)}, and has none"
        out.append(f"{field} {message}")
    return out


def claim_model(s: Session, claim: Claim) -> x12.Claim:
    """The 837P claim of a stored claim, its lines and its patient (raises ValidationError with what is wrong)."""
    patient = s.get(Patient, claim.patient_id)
    lines = s.exec(select(ClaimLine).where(ClaimLine.claim_id == claim.id).order_by(ClaimLine.line_number)).all()
    clinicians = {v_id: c for v_id, c in s.exec(
        select(Visit.id, Clinician).join(Clinician, Clinician.id == Visit.clinician_id)
        .where(Visit.id.in_([line.visit_id for line in lines])))}
    providers = {}
    for line in lines:
        c = clinicians.get(line.visit_id)
        providers[line.visit_id] = (x12.Provider(last_name=c.last_name, first_name=c.first_name, npi=c.npi)
                                    if c is not None and c.npi else None)
    # Shared by every line: said once on the claim (2300); otherwise on each line (2400 / 2420A).
    auth_numbers = {line.authorization_number for line in lines}
    shared_auth = next(iter(auth_numbers)) if len(auth_numbers) == 1 else None
    provider_npis = {p.npi if p else None for p in providers.values()}
    shared_provider = next(iter(providers.values())) if len(provider_npis) == 1 else None
    # Plain values, validated as one claim: every problem of the patient's record is named at once.
    subscriber = dict(
        last_name=patient.last_name, first_name=patient.first_name, medicaid_id=patient.medicaid_id,
        birth_date=patient.birth_date, gender=patient.gender,
        address=dict(line1=patient.address_line, city=patient.city, state=patient.state,
                     postal_code=patient.zip_code.replace("-", "").replace(" ", "")))
    original = None
    if claim.replaces_claim_id is not None:  # a 7 or 8 names the payer's number of the claim it replaces
        replaced = s.get(Claim, claim.replaces_claim_id)
        original = replaced.payer_claim_number or replaced.control_number
    return x12.Claim(
        claim_control_number=claim.control_number, frequency=claim.frequency, original_claim_number=original,
        prior_authorization=shared_auth, diagnosis_codes=list(patient.diagnosis_codes),
        rendering_provider=shared_provider, subscriber=subscriber,
        lines=[x12.ServiceLine(
            visit_id=line.visit_id, hcpcs=line.hcpcs, modifiers=list(line.modifiers), units=line.units,
            charge_cents=line.charge_cents, date_of_service=line.service_date,
            prior_authorization=None if len(auth_numbers) == 1 else line.authorization_number,
            rendering_provider=None if len(provider_npis) == 1 else providers[line.visit_id])
            for line in lines])
