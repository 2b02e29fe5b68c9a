"""Read an 837 (professional X222A1 or institutional X223A2) back into what the claim edits look at.

pyx12's context reader walks the file against the implementation guide's map, so every segment arrives knowing
its loop (2010AA billing provider, 2300 claim, 2400 line, ...): an NM1 is a billing provider because of where it
stands, not because of a guess at its qualifier. The reader is tolerant: a file pyx12 rejects is still read as
far as it goes, with missing or malformed values left as None, so the edits can say what they can about it.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context
import pyx12.x12file
from pydantic import BaseModel

from visitflow.claims.validate import PYX12_CANNOT_READ, UnreadableX12, normalized, unreadable

PROFESSIONAL = "005010X222A1"
INSTITUTIONAL = "005010X223A2"
KINDS = {PROFESSIONAL: "837P", INSTITUTIONAL: "837I"}


class SegmentRef(BaseModel):
    """Where a segment stands: the same coordinates a 999 and our findings use."""

    segment_id: str
    segment_number: int | None  # inside its transaction set, ST = 1
    line: int  # in the file, ISA = 1


class NpiMention(BaseModel):
    npi: str
    entity: str  # NM101: 85 billing provider, 82 rendering, 71 attending, ...
    at: SegmentRef


class ClaimLine(BaseModel):
    at: SegmentRef  # the SV1 (837P) or SV2 (837I)
    number: str | None  # LX01
    revenue_code: str | None = None  # 837I SV201
    hcpcs: str | None
    modifiers: list[str]
    charge: Decimal | None
    units: Decimal | None
    date_of_service: date | None
    line_control_number: str | None  # REF*6R: our visit id


class ParsedClaim(BaseModel):
    at: SegmentRef  # the CLM
    claim_control_number: str
    total: Decimal | None
    frequency: str | None  # CLM05-3
    billing_npi: str | None
    member_id: str | None  # the subscriber's id at the payer (2010BA NM109): the Medicaid id
    payer_id: str | None
    lines: list[ClaimLine]


class ParsedClaimFile(BaseModel):
    kind: str  # 837P or 837I
    claims: list[ParsedClaim]
    npis: list[NpiMention]


def implementation_guide(text: str) -> str | None:
    """GS08 of the first functional group, read with pyx12's plain reader."""
    try:
        with pyx12.x12file.X12Reader(io.StringIO(normalized(text))) as reader:
            for segment in reader:
                if segment.get_seg_id() == "GS":
                    return segment.get_value("GS08")
    except PYX12_CANNOT_READ as exc:
        raise unreadable(exc) from exc
    return None


def read_837(text: str) -> ParsedClaimFile:
    """The claims, lines and NPIs of an 837P or 837I; UnreadableX12 for anything else."""
    guide = implementation_guide(text)
    if guide not in KINDS:
        raise UnreadableX12(f"not an 837P ({PROFESSIONAL}) or 837I ({INSTITUTIONAL}) file: GS08 is {guide!r}")
    claims: list[ParsedClaim] = []
    npis: list[NpiMention] = []
    billing_npi = member_id = payer_id = None
    claim: ParsedClaim | None = None
    line: ClaimLine | None = None
    try:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.params(), pyx12.error_handler.errh_null(),
                                                   io.StringIO(normalized(text)))
        with reader:
            for node in reader.iter_segments():
                seg_id, loop = node.id, node.x12_map_node.parent.id
                at = SegmentRef(segment_id=seg_id, segment_number=node.seg_count or None, line=node.cur_line_number)
                value = node.get_value
                if seg_id == "NM1" and value("NM108") == "XX" and value("NM109"):
                    npis.append(NpiMention(npi=value("NM109"), entity=value("NM101") or "", at=at))
                if loop == "2000A" and seg_id == "HL":
                    billing_npi = None  # a new billing provider level
                elif loop == "2010AA" and seg_id == "NM1":
                    billing_npi = value("NM109")
                elif loop == "2010BA" and seg_id == "NM1":
                    member_id = value("NM109")
                elif loop == "2010BB" and seg_id == "NM1":
                    payer_id = value("NM109")
                elif loop == "2300" and seg_id == "CLM":
                    claim = ParsedClaim(at=at, claim_control_number=value("CLM01") or "", total=_amount(value("CLM02")),
                                        frequency=value("CLM05-3") or None, billing_npi=billing_npi,
                                        member_id=member_id, payer_id=payer_id, lines=[])
                    claims.append(claim)
                    line = None
                elif loop == "2400" and claim is not None:
                    line = _line_segment(node, at, claim, line)
    except PYX12_CANNOT_READ as exc:
        raise unreadable(exc) from exc
    return ParsedClaimFile(kind=KINDS[guide], claims=claims, npis=npis)


def _line_segment(node, at: SegmentRef, claim: ParsedClaim, line: ClaimLine | None) -> ClaimLine | None:
    """One segment of a 2400 service line loop; LX opens the line, the rest fill it in."""
    seg_id, value = node.id, node.get_value
    if seg_id == "LX":
        line = ClaimLine(at=at, number=value("LX01"), hcpcs=None, modifiers=[], charge=None, units=None,
                         date_of_service=None, line_control_number=None)
        claim.lines.append(line)
    elif line is None:
        return None
    elif seg_id == "SV1":  # HC:code:mod1..mod4 * charge * UN * units
        line.at = at
        line.hcpcs = value("SV101-2") or None
        line.modifiers = [m for m in (value(f"SV101-{i}") for i in range(3, 7)) if m]
        line.charge, line.units = _amount(value("SV102")), _amount(value("SV104"))
    elif seg_id == "SV2":  # revenue code * HC:code:mods * charge * UN * units
        line.at = at
        line.revenue_code = value("SV201") or None
        line.hcpcs = value("SV202-2") or None
        line.modifiers = [m for m in (value(f"SV202-{i}") for i in range(3, 7)) if m]
        line.charge, line.units = _amount(value("SV203")), _amount(value("SV205"))
    elif seg_id == "DTP" and value("DTP01") == "472":
        # D8 is one day; RD8 a range "from-to", billed from its first day.
        line.date_of_service = _date((value("DTP03") or "").split("-")[0])
    elif seg_id == "REF" and value("REF01") == "6R":
        line.line_control_number = value("REF02") or None
    return line


def _amount(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None  # pyx12 reports the malformed number; the edits skip what they cannot read
    return amount if amount.is_finite() else None


def _date(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
