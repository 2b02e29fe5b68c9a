"""Claim edits pyx12 does not make (CLM-01..05, CLM-07), over a file read by `reader.read_837`.

Pure functions: a parsed file (and the facts to compare with) in, findings out. Each finding names its rule, the
segment and line it is about, and what is wrong in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta

from pydantic import BaseModel

from visitflow.claims.findings import ClaimFinding
from visitflow.claims.reader import ClaimLine, ParsedClaim, ParsedClaimFile, SegmentRef
from visitflow.models import RoundingStrategy
from visitflow.rules.claims import npi_is_valid
from visitflow.rules.units import billable_units

VOID = "8"


def _finding(rule_id: str, at: SegmentRef, message: str, claim: ParsedClaim | None = None,
             element: str | None = None) -> ClaimFinding:
    return ClaimFinding(rule_id=rule_id, segment_id=at.segment_id, segment_number=at.segment_number, line=at.line,
                        element=element, claim=claim.claim_control_number if claim else None, message=message)


def _line_name(line: ClaimLine) -> str:
    return f"line {line.number}" + (f" (visit {line.line_control_number})" if line.line_control_number else "")


def clm_01_total_matches_lines(parsed: ParsedClaimFile) -> list[ClaimFinding]:
    """CLM-01: the claim's total charge (CLM02) is the sum of its line charges (SV102 / SV203)."""
    findings = []
    for claim in parsed.claims:
        charges = [line.charge for line in claim.lines]
        if claim.total is None or any(charge is None for charge in charges):
            continue  # an unreadable amount is pyx12's finding (CLM-06); a sum over it would mislead
        lines_sum = sum(charges)
        if claim.total != lines_sum:
            findings.append(_finding("CLM-01", claim.at, f"claim total {claim.total} is not the sum of its "
                                     f"{len(charges)} line charges, {lines_sum}", claim, "CLM02"))
    return findings


def clm_02_npis_pass_luhn(parsed: ParsedClaimFile) -> list[ClaimFinding]:
    """CLM-02: every NPI in the file (NM1 with qualifier XX) has a valid check digit."""
    return [_finding("CLM-02", mention.at, f"NPI {mention.npi} (entity {mention.entity}) fails the NPI check "
                     "digit: a digit is wrong or two are swapped", element="NM109")
            for mention in parsed.npis if not npi_is_valid(mention.npi)]


def clm_03_units(parsed: ParsedClaimFile, minutes_by_visit: Mapping[str, float] | None = None,
                 rounding: RoundingStrategy | None = None) -> list[ClaimFinding]:
    """CLM-03: each line bills at least one whole unit; given the visits' minutes of care and the payer's rounding,
    exactly the units that rounding gives (the same functions that count units for the authorization gate)."""
    findings = []
    for claim, line in _lines(parsed):
        if line.units is None:
            continue  # missing units are pyx12's finding
        if line.units < 1 or line.units != line.units.to_integral_value():
            findings.append(_finding("CLM-03", line.at, f"{_line_name(line)} bills {line.units} units: "
                                     "a line bills one or more whole units", claim))
            continue
        minutes = (minutes_by_visit or {}).get(line.line_control_number or "")
        if minutes is None or rounding is None or line.hcpcs is None:
            continue
        expected = billable_units(minutes, line.hcpcs, rounding)
        if line.units != expected:
            findings.append(_finding("CLM-03", line.at, f"{_line_name(line)} bills {line.units} units, but "
                                     f"{minutes:g} minutes of {line.hcpcs} round to {expected} under the payer's "
                                     f"{rounding.value} rounding", claim))
    return findings


class VisitFacts(BaseModel):
    """What the EVV system accepted for a visit: the state matches each claim line against these."""

    visit_id: str
    provider_npi: str  # the billing provider's NPI the visit was reported under
    date_of_service: date
    medicaid_id: str
    hcpcs: str
    modifiers: list[str] = []
    units: int


def clm_04_lines_match_visits(parsed: ParsedClaimFile, visits: Iterable[VisitFacts]) -> list[ClaimFinding]:
    """CLM-04: each line matches its verified visit (by REF*6R) on NPI, date, Medicaid id, HCPCS, modifiers and
    units; a line the state cannot match is denied, so each difference is a finding."""
    by_id = {visit.visit_id: visit for visit in visits}
    findings = []
    for claim, line in _lines(parsed):
        visit = by_id.get(line.line_control_number or "")
        if visit is None:
            what = (f"names visit {line.line_control_number}, which has no verified EVV visit"
                    if line.line_control_number else "has no line control number (REF*6R) naming its visit")
            findings.append(_finding("CLM-04", line.at, f"{_line_name(line)} {what}", claim))
            continue
        billed = {"provider NPI": claim.billing_npi, "date of service": line.date_of_service,
                  "Medicaid id": claim.member_id, "HCPCS": line.hcpcs, "modifiers": line.modifiers,
                  "units": line.units}
        verified = {"provider NPI": visit.provider_npi, "date of service": visit.date_of_service,
                    "Medicaid id": visit.medicaid_id, "HCPCS": visit.hcpcs, "modifiers": visit.modifiers,
                    "units": visit.units}
        for field, value in billed.items():
            if value != verified[field]:
                findings.append(_finding("CLM-04", line.at, f"{_line_name(line)} bills {field} {_shown(value)} "
                                         f"but the EVV visit has {_shown(verified[field])}", claim))
    return findings


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ":".join(value) if value else "none"
    return "none" if value is None else str(value)


def clm_05_no_split_or_repeat(parsed: ParsedClaimFile) -> list[ClaimFinding]:
    """CLM-05: one member's date of service + service code sits on one claim only, and no visit (line control
    number) is billed twice in the file. A void (frequency 8) bills nothing, so it is left out."""
    findings = []
    claim_of_service: dict[tuple, ParsedClaim] = {}
    first_line_of_visit: dict[str, ClaimLine] = {}
    for claim, line in _lines(parsed):
        if claim.frequency == VOID:
            continue
        if line.line_control_number:
            earlier = first_line_of_visit.setdefault(line.line_control_number, line)
            if earlier is not line:
                findings.append(_finding("CLM-05", line.at, f"visit {line.line_control_number} is billed again: "
                                         f"it is already on the line at file line {earlier.at.line}", claim))
        if line.date_of_service is None or line.hcpcs is None:
            continue
        service = (claim.member_id, line.date_of_service, line.hcpcs)
        other = claim_of_service.setdefault(service, claim)
        if other is not claim:
            findings.append(_finding("CLM-05", line.at, f"{line.hcpcs} on {line.date_of_service} for member "
                                     f"{claim.member_id} is split across claims {other.claim_control_number} and "
                                     f"{claim.claim_control_number}: bill a day's service on one claim", claim))
    return findings


class FilingDeadline(BaseModel):
    claim: str
    line: ClaimLine
    deadline: date  # the last day the payer accepts the line
    days_left: int  # negative once the limit has passed


def filing_deadlines(parsed: ParsedClaimFile, limit_days: int, as_of: date) -> list[FilingDeadline]:
    """CLM-07: for each dated line, the payer's last filing day (date of service + limit) and days left on `as_of`,
    soonest first."""
    deadlines = [FilingDeadline(claim=claim.claim_control_number, line=line,
                                deadline=line.date_of_service + timedelta(days=limit_days),
                                days_left=(line.date_of_service + timedelta(days=limit_days) - as_of).days)
                 for claim, line in _lines(parsed) if line.date_of_service is not None]
    return sorted(deadlines, key=lambda d: d.deadline)


def clm_07_timely_filing(parsed: ParsedClaimFile, limit_days: int, as_of: date) -> list[ClaimFinding]:
    """CLM-07: a line past the payer's timely filing limit would be denied (CARC 29); hold it instead."""
    return [ClaimFinding(rule_id="CLM-07", segment_id=d.line.at.segment_id, segment_number=d.line.at.segment_number,
                         line=d.line.at.line, claim=d.claim,
                         message=f"{_line_name(d.line)} of {d.line.date_of_service} is past the payer's "
                                 f"{limit_days}-day filing limit: the last day was {d.deadline} "
                                 f"({_days(-d.days_left)} ago)")
            for d in filing_deadlines(parsed, limit_days, as_of) if d.days_left < 0]


def _days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def _lines(parsed: ParsedClaimFile) -> Iterator[tuple[ParsedClaim, ClaimLine]]:
    for claim in parsed.claims:
        for line in claim.lines:
            yield claim, line
