"""835 remittances: what the payer paid, per claim and per visit line, applied to our claims; denials back into work.

The import happens in two steps, each safe to repeat:
1. One transaction records the payment and applies every CLP and SVC to the claim and the line it answers. A
   payment is known by its payer and TRN trace number (the key its bank deposit is matched by), unique in the
   database, as is the digest of the file: importing the same file again, or a copy the payer re-sent under new
   control numbers (ISA13/GS06), changes nothing, even when both arrive at once.
2. Each denied (or fixably underpaid) visit is sent back into work: a new run of its workflow with the denial
   attached (`commands.reopen_denied_visit`), marked on the remittance line when done. If Temporal cannot be
   reached, the lines stay marked as still to send, and importing the same file again finishes the job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.service import RPCError

from visitflow.claims.denials import LineOutcome, claim_outcome, codes, denial_kind, line_outcome, reasons
from visitflow.claims.remittance import ClaimPayment, LinePayment, Remittance as Parsed
from visitflow.claims.states import ClaimState
from visitflow.claims.validate import normalized
from visitflow.db.session import write_session
from visitflow.db.tables import (
    Claim,
    ClaimLine,
    Remittance,
    RemittanceLine,
    RemittanceLinePublic,
    RemittancePublic,
)
from visitflow.models import Actor, Denial, DenialKind
from visitflow.services.claims import set_claim_state
from visitflow.services.commands import reopen_denied_visit
from visitflow.services.errors import ServiceError
from visitflow.services.revenue import NOT_APPLIED, count_denial, count_payment, denial_code
from visitflow.settings import Settings

# Lines that send their visit back into work.
SENT_BACK = (LineOutcome.denied.value, LineOutcome.adjusted.value)


class ImportOutcome(BaseModel):
    remittance: RemittancePublic
    already_imported: bool  # this payment (same payer and trace number) was imported before: nothing changed
    lines: list[RemittanceLinePublic]
    returned_to_work: list[str]  # visits this import sent back into work
    still_to_return: list[str]  # denied visits not yet back in work (Temporal unreachable): import again


def digest_of(text: str) -> str:
    return hashlib.sha256(normalized(text).encode()).hexdigest()


def payment_key(payer_code: str | None, payer_name: str, trace_number: str, digest: str) -> str:
    """What identifies one payment: the payer (TRN03, else its name) and the trace number (TRN02), compared
    without regard to case or spaces around them. A file with no trace number is known by its text alone."""
    trace = trace_number.strip().upper()
    if not trace:
        return f"file|{digest}"
    payer = (payer_code or "").strip().upper() or payer_name.strip().upper()
    return f"{payer[:80]}|{trace[:50]}"


async def import_835(engine: Engine, client: Client | None, settings: Settings, text: str, parsed: Parsed, actor: Actor,
                     filename: str | None = None) -> ImportOutcome:
    """Record and apply an 835 (parsed by the caller, off the event loop), then send its denials back into work."""
    remittance_id, already = record_835(engine, settings, text, parsed, actor, filename)
    returned, waiting = await return_denials_to_work(engine, client, settings.task_queue, remittance_id)
    with Session(engine) as session:
        remittance = session.get(Remittance, remittance_id)
        lines = remittance_lines(session, remittance_id)
        return ImportOutcome(remittance=RemittancePublic.model_validate(remittance, from_attributes=True),
                             already_imported=already, lines=lines, returned_to_work=returned,
                             still_to_return=waiting)


def record_835(engine: Engine, settings: Settings, text: str, parsed: Parsed, actor: Actor,
               filename: str | None) -> tuple[int, bool]:
    """Step 1: the file and everything it says, in one transaction. Returns (remittance id, imported before)."""
    digest = digest_of(text)
    key = payment_key(parsed.payer_id, parsed.payer_name, parsed.payment.trace_number, digest)
    try:
        return _record(engine, settings, text, parsed, actor, filename, digest, key)
    except IntegrityError:
        # Another import of the same payment committed between our read and our write: the unique keys refused
        # ours, and nothing of it was kept. That one stands.
        with Session(engine) as session:
            existing = _imported_before(session, digest, key)
        if existing is None:
            raise
        return existing, True


def _imported_before(session: Session, digest: str, key: str) -> int | None:
    return session.exec(select(Remittance.id).where(or_(Remittance.payment_key == key, Remittance.digest == digest))
                        .order_by(Remittance.id)).first()


def _record(engine: Engine, settings: Settings, text: str, parsed: Parsed, actor: Actor, filename: str | None,
            digest: str, key: str) -> tuple[int, bool]:
    now = datetime.now(UTC)
    with write_session(engine) as session:
        existing = _imported_before(session, digest, key)
        if existing is not None:
            return existing, True
        remittance = Remittance(
            digest=digest, payment_key=key, content=text, payer_name=parsed.payer_name[:60], payer_code=parsed.payer_id,
            trace_number=parsed.payment.trace_number[:50], payment_method=parsed.payment.method[:3],
            amount_cents=parsed.payment.amount_cents, paid_on=parsed.payment.paid_on,
            filename=(filename or None) and filename[:200], imported_at=now, imported_by=actor.username)
        session.add(remittance)
        session.flush()
        applier = _Applier(session, remittance, settings, actor.username, now)
        for claim_payment in parsed.claims:
            applier.apply(claim_payment)
        remittance.claims_matched = len(applier.claims_matched)
        applied = unmatched = 0
        for row in applier.rows:
            remittance.lines_paid += row.outcome == LineOutcome.paid.value
            remittance.lines_adjusted += row.outcome == LineOutcome.adjusted.value
            remittance.lines_denied += row.outcome == LineOutcome.denied.value
            if row.outcome in NOT_APPLIED:
                remittance.lines_unmatched += 1
                unmatched += row.paid_cents
            else:
                applied += row.paid_cents
        count_payment(session, now.date(), applied, unmatched)
        session.add(remittance)
        session.commit()
        return remittance.id, False


@dataclass
class _Applier:
    session: Session
    remittance: Remittance
    settings: Settings
    actor: str
    now: datetime
    rows: list[RemittanceLine] = field(default_factory=list)
    claims_matched: set[int] = field(default_factory=set)

    def apply(self, paid: ClaimPayment) -> None:
        claim = self.session.exec(select(Claim).where(Claim.control_number == paid.claim_control_number)).first()
        if claim is None:
            self._unmatched(paid, paid.lines or [None], f"no claim {paid.claim_control_number} in VisitFlow")
            return
        if claim.state in (ClaimState.replaced, ClaimState.voided):
            why = ("a newer claim took its place" if claim.state == ClaimState.replaced
                   else "the biller cancelled it")
            self._unmatched(paid, paid.lines or [None], f"claim {claim.control_number} was {claim.state}: {why}, "
                            "so this answer changes nothing", claim=claim, outcome="not_applied")
            return
        self.claims_matched.add(claim.id)
        if paid.payer_claim_control_number:
            claim.payer_claim_number = paid.payer_claim_control_number[:50]
        lines = self.session.exec(select(ClaimLine).where(ClaimLine.claim_id == claim.id)
                                  .order_by(ClaimLine.line_number)).all()
        if paid.lines:
            for line_payment in paid.lines:
                line = _matching_line(lines, line_payment)
                if line is None:
                    self._unmatched(paid, [line_payment], f"claim {claim.control_number} has no line for "
                                    f"{_line_words(line_payment)}", claim=claim)
                    continue
                outcome = line_outcome(line_payment, paid)
                self._apply_line(paid, claim, line, outcome, line_payment.paid_cents, line_payment)
        else:
            # Answered at claim level only: the outcome applies to every line; money only where it is whole.
            outcome = claim_outcome(paid)
            for line in lines:
                self._apply_line(paid, claim, line, outcome,
                                 line.charge_cents if outcome == LineOutcome.paid else 0, None)
        self._settle(claim, lines, paid)

    def _apply_line(self, paid: ClaimPayment, claim: Claim, line: ClaimLine, outcome: LineOutcome,
                    paid_cents: int, line_payment: LinePayment | None) -> None:
        said = reasons(line_payment, paid)
        line.state = outcome.value
        line.paid_cents = paid_cents
        line.adjustments = codes([*(line_payment.adjustments if line_payment else []), *paid.adjustments],
                                 [r.code for r in line_payment.remarks] if line_payment else [])
        self.session.add(line)
        kind = (denial_kind(said, self.settings.denial_documentation_codes, self.settings.denial_evv_codes)
                if outcome.value in SENT_BACK else None)
        if kind is not None:
            count_denial(self.session, self.remittance.paid_on or self.now.date(), denial_code(said),
                         max(line.charge_cents - paid_cents, 0))
        self._row(paid, claim=claim, line=line, outcome=outcome.value, reasons=said,
                  denial_kind=kind.value if kind else None,
                  paid_cents=paid_cents, charge_cents=line.charge_cents, visit_id=line.visit_id,
                  hcpcs=line.hcpcs, service_date=line.service_date)

    def _settle(self, claim: Claim, lines: list[ClaimLine], paid: ClaimPayment) -> None:
        """The claim's paid amount and state follow its lines."""
        claim.paid_cents = sum(line.paid_cents for line in lines)
        states = {line.state for line in lines}
        if states <= {LineOutcome.paid.value}:
            target = ClaimState.paid
        elif states <= {LineOutcome.denied.value}:
            target = ClaimState.denied
        else:
            target = ClaimState.partially_paid
        note = f"835 {self.remittance.trace_number}: {paid.status}, paid ${paid.paid_cents / 100:,.2f}"
        if ClaimState(claim.state) == ClaimState.created:
            # The payer answered, so the file went out: record the step nobody marked.
            self._move(claim, ClaimState.submitted, f"implied by {note}")
        if ClaimState(claim.state) != target:
            self._move(claim, target, note)
        self.session.add(claim)

    def _move(self, claim: Claim, target: ClaimState, note: str) -> None:
        set_claim_state(self.session, claim.id, target, self.actor, note, at=self.now)

    def _unmatched(self, paid: ClaimPayment, line_payments: list[LinePayment | None], problem: str,
                   claim: Claim | None = None, outcome: str = "unmatched") -> None:
        for line_payment in line_payments:
            self._row(paid, claim=claim, line=None, outcome=outcome, reasons=reasons(line_payment, paid),
                      problem=problem, visit_id=line_payment.visit_id if line_payment else None,
                      hcpcs=line_payment.hcpcs if line_payment else None,
                      service_date=line_payment.date_of_service if line_payment else None,
                      charge_cents=line_payment.charge_cents if line_payment else paid.charge_cents,
                      paid_cents=line_payment.paid_cents if line_payment else paid.paid_cents)

    def _row(self, paid: ClaimPayment, claim: Claim | None, line: ClaimLine | None, **values) -> None:
        row = RemittanceLine(remittance_id=self.remittance.id, claim_control_number=paid.claim_control_number[:50],
                             payer_claim_number=(paid.payer_claim_control_number or None) and
                             paid.payer_claim_control_number[:50],
                             claim_id=claim.id if claim else None, claim_line_id=line.id if line else None,
                             **values)
        if row.visit_id:
            row.visit_id = row.visit_id[:64]
        self.session.add(row)
        self.rows.append(row)


def _matching_line(lines: list[ClaimLine], paid: LinePayment) -> ClaimLine | None:
    """The line an SVC answers: by the visit id we sent (REF*6R), else by service and date when that is unique."""
    if paid.visit_id:
        return next((line for line in lines if line.visit_id == paid.visit_id), None)
    same = [line for line in lines if line.hcpcs == paid.hcpcs and line.service_date == paid.date_of_service]
    return same[0] if len(same) == 1 else None


def _line_words(paid: LinePayment) -> str:
    what = paid.hcpcs + (f" on {paid.date_of_service:%Y-%m-%d}" if paid.date_of_service else "")
    return f"visit {paid.visit_id} ({what})" if paid.visit_id else what


async def return_denials_to_work(engine: Engine, client: Client | None, task_queue: str, remittance_id: int
                                 ) -> tuple[list[str], list[str]]:
    """Step 2: every denied line of this remittance not yet back in work goes back now. Returns (sent back now,
    still to send); with no Temporal client (unreachable), everything is still to send."""
    with Session(engine) as session:
        pending = session.exec(
            select(RemittanceLine, Claim).join(Claim, Claim.id == RemittanceLine.claim_id)
            .where(RemittanceLine.remittance_id == remittance_id, RemittanceLine.outcome.in_(SENT_BACK),
                   RemittanceLine.claim_line_id.is_not(None), RemittanceLine.returned_to_work_at.is_(None))
            .order_by(RemittanceLine.id)).all()
        work = [(row.id, row.visit_id, Denial(
            key=f"{remittance_id}:{row.visit_id}", remittance_id=remittance_id,
            claim_control_number=claim.control_number, payer_claim_number=claim.payer_claim_number,
            kind=DenialKind(row.denial_kind or DenialKind.billing), reasons=row.reasons or ["no reason given"],
            denied_cents=max(row.charge_cents - row.paid_cents, 0), denied_on=None)) for row, claim in pending]
    returned, waiting = [], []
    for row_id, visit_id, denial in work:
        if client is None:
            waiting.append(visit_id)
            continue
        try:
            await reopen_denied_visit(client, task_queue, visit_id, denial)
        except ServiceError as err:
            if err.status != 409:
                raise
            # Not released (already back in work for an earlier denial, or cancelled): nothing more to send.
        except RPCError:
            waiting.append(visit_id)
            continue
        with write_session(engine) as session:
            row = session.get(RemittanceLine, row_id)
            if row.returned_to_work_at is None:
                row.returned_to_work_at = datetime.now(UTC)
                session.add(row)
                session.commit()
        returned.append(visit_id)
    return returned, waiting


# --- reading -------------------------------------------------------------------------------------------------


def remittance_lines(session: Session, remittance_id: int) -> list[RemittanceLinePublic]:
    rows = session.exec(select(RemittanceLine).where(RemittanceLine.remittance_id == remittance_id)
                        .order_by(RemittanceLine.id)).all()
    return [RemittanceLinePublic.model_validate(row, from_attributes=True) for row in rows]


def remittances(session: Session, before_id: int | None, limit: int) -> list[Remittance]:
    """Newest first, keyset-paged by id."""
    query = select(Remittance).options(defer(Remittance.content)).order_by(Remittance.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Remittance.id < before_id)
    return list(session.exec(query).all())
