"""Read an 835 remittance (005010X221A1): what the payer paid, per claim and per visit line, and why not more.

pyx12's context reader walks the file against its 835 map, so each segment arrives knowing its loop: a CAS in
2100 adjusts the whole claim, one in 2110 adjusts a service line. Adjustment (CARC) and remark (RARC) codes are
turned into words from the table of the common ones below; a code not in it keeps its number.
"""

from __future__ import annotations

import io
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

import pyx12.error_handler
import pyx12.errors
import pyx12.params
import pyx12.x12context
from pydantic import BaseModel

from visitflow.claims.reader import implementation_guide
from visitflow.claims.validate import PYX12_CANNOT_READ, UnreadableX12, normalized, unreadable, validate_x12

REMITTANCE_GUIDE = "005010X221A1"

# CLP02: what the payer did with the claim.
CLAIM_STATUS = {
    "1": "processed as primary",
    "2": "processed as secondary",
    "3": "processed as tertiary",
    "4": "denied",
    "19": "processed as primary, forwarded to another payer",
    "20": "processed as secondary, forwarded to another payer",
    "21": "processed as tertiary, forwarded to another payer",
    "22": "reversal of an earlier payment",
    "23": "not our claim, forwarded to another payer",
    "25": "priced only (predetermination), not paid",
}

# CAS01: who carries the adjusted amount.
ADJUSTMENT_GROUPS = {
    "CO": "contractual obligation (the agency writes it off)",
    "PR": "patient responsibility",
    "OA": "other adjustment",
    "PI": "payer-initiated reduction",
}

# Claim adjustment reason codes (CARC) home care meets most, in our own words.
ADJUSTMENT_REASONS = {
    "1": "deductible",
    "2": "coinsurance",
    "3": "co-payment",
    "4": "the procedure code does not go with the modifier billed, or a required modifier is missing",
    "16": "the claim or line lacks information or has a billing error",
    "18": "duplicate of a claim or line already received",
    "22": "another payer may cover this (coordination of benefits)",
    "26": "service before the member's coverage began",
    "27": "service after the member's coverage ended",
    "29": "the timely filing limit has passed",
    "31": "the payer cannot identify the patient as its member",
    "45": "charge is above the fee schedule or contracted rate",
    "50": "not covered: the payer does not consider it medically necessary",
    "96": "non-covered charge",
    "97": "paid as part of another service already adjudicated",
    "109": "not covered by this payer: bill the right payer",
    "119": "benefit maximum for the period reached",
    "151": "the payer's information does not support this many services",
    "197": "prior authorization absent",
    "198": "prior authorization exceeded",
    "204": "not covered under the member's current benefit plan",
    "252": "documentation or an attachment is needed to decide the claim",
}

# Remittance advice remark codes (RARC), LQ*HE, in our own words.
REMARKS = {
    "M127": "the patient's medical record for this service is missing",
    "M15": "separately billed services were bundled as parts of one procedure",
    "M51": "procedure code missing, incomplete or invalid",
    "M62": "treatment authorization code missing, incomplete or invalid",
    "M86": "already paid for the same or a similar service in this period",
    "MA130": "the claim is unprocessable (incomplete or invalid information): correct it and send a new claim; "
             "no appeal rights",
    "N29": "documentation, orders or notes are missing",
    "N20": "not payable with another service given the same day",
    "N54": "the claim does not match the authorized services",
    "N130": "see the plan's benefit documents for this service's limits",
    "N290": "rendering provider identifier missing, incomplete or invalid",
    "N362": "more days or units than the payer accepts",
    "N706": "documentation is missing",
}


class RemittanceError(ValueError):
    """The 835 can be read as X12 but a value the payment depends on is missing or malformed."""


class Adjustment(BaseModel):
    group: str  # CO, PR, OA, PI
    group_words: str
    reason_code: str  # CARC
    reason: str  # in words; "CARC <n>" for a code not in the table
    amount_cents: int  # positive reduces the payment; negative adds to it
    quantity: Decimal | None = None


class Remark(BaseModel):
    code: str  # RARC
    words: str


class LinePayment(BaseModel):
    """One SVC: a visit line as the payer adjudicated it."""

    hcpcs: str
    modifiers: list[str]
    charge_cents: int
    paid_cents: int
    units: Decimal  # SVC05, units paid; absent means one
    visit_id: str | None  # REF*6R: the line control number we sent, our visit id
    date_of_service: date | None  # DTM*472
    adjustments: list[Adjustment]
    remarks: list[Remark]

    @property
    def denied(self) -> bool:
        return self.paid_cents == 0 and self.charge_cents > 0


class ClaimPayment(BaseModel):
    """One CLP: a claim as the payer adjudicated it."""

    claim_control_number: str  # CLP01: our claim control number (CLM01)
    status_code: str
    status: str
    charge_cents: int
    paid_cents: int
    patient_responsibility_cents: int
    payer_claim_control_number: str | None  # CLP07: what a replacement (7) or void (8) must name
    adjustments: list[Adjustment]  # claim-level CAS
    lines: list[LinePayment]


class Payment(BaseModel):
    amount_cents: int  # BPR02: the total actually paid
    method: str  # BPR04: ACH, CHK, NON (no payment), ...
    trace_number: str  # TRN02: the check or EFT number, to match the bank deposit
    paid_on: date | None  # BPR16


class Remittance(BaseModel):
    payer_name: str
    payer_id: str | None  # TRN03
    payee_name: str | None
    payee_npi: str | None
    payment: Payment
    claims: list[ClaimPayment]


def read_835(text: str) -> Remittance:
    """The payer, the payment and every claim and line of an 835. UnreadableX12 when it is not an 835 005010X221A1;
    RemittanceError when pyx12 finds it incomplete or not as the guide says, or an amount is missing or not in
    cents."""
    guide = implementation_guide(text)
    if guide != REMITTANCE_GUIDE:
        raise UnreadableX12(f"not an 835 ({REMITTANCE_GUIDE}) file: GS08 is {guide!r}")
    # The reader below takes whatever segments arrive: a file cut short in transit (no SE, GE, IEA) would be
    # applied as far as it goes and its money counted. pyx12 checks it whole first, as it checks our 837s.
    if findings := validate_x12(text):
        raise RemittanceError(incomplete(findings))
    header: dict[str, str | None] = {}
    claims: list[ClaimPayment] = []
    line: LinePayment | None = None
    payment: Payment | None = None
    try:
        reader = pyx12.x12context.X12ContextReader(pyx12.params.params(), pyx12.error_handler.errh_null(),
                                                   io.StringIO(normalized(text)))
        with reader:
            for node in reader.iter_segments():
                seg_id, loop, value = node.id, node.x12_map_node.parent.id, node.get_value
                where = f"{seg_id} at line {node.cur_line_number}"
                if seg_id == "BPR":
                    payment = Payment(amount_cents=_cents(value("BPR02"), where), method=value("BPR04") or "",
                                      trace_number="", paid_on=_date(value("BPR16")))
                elif seg_id == "TRN" and payment is not None:
                    payment.trace_number = value("TRN02") or ""
                    header["payer_id"] = value("TRN03")
                elif loop == "1000A" and seg_id == "N1":
                    header["payer_name"] = value("N102")
                elif loop == "1000B" and seg_id == "N1":
                    header["payee_name"] = value("N102")
                    header["payee_npi"] = value("N104") if value("N103") == "XX" else None
                elif loop == "2100":
                    line = None
                    _claim_segment(node, claims, where)
                elif loop == "2110" and claims:
                    line = _line_segment(node, claims[-1], line, where)
    except PYX12_CANNOT_READ as exc:
        raise unreadable(exc) from exc
    if payment is None or not header.get("payer_name"):
        raise RemittanceError("the 835 has no payment (BPR) or no payer (N1*PR)")
    return Remittance(payer_name=header["payer_name"], payer_id=header.get("payer_id"),
                      payee_name=header.get("payee_name"), payee_npi=header.get("payee_npi"),
                      payment=payment, claims=claims)


def incomplete(findings: list, shown: int = 5) -> str:
    """pyx12's findings in words, the first few by line, for a file refused whole."""
    # (Without the rule id: CLM-06 names the check on the claims we send.)
    said = "; ".join(f.describe().removeprefix(f"{f.rule_id} ") for f in findings[:shown])
    more = f"; and {len(findings) - shown} more" if len(findings) > shown else ""
    return f"the file is incomplete or does not follow the 835 guide, so nothing was imported: {said}{more}"


def _claim_segment(node, claims: list[ClaimPayment], where: str) -> None:
    value = node.get_value
    if node.id == "CLP":
        status = value("CLP02") or ""
        claims.append(ClaimPayment(
            claim_control_number=value("CLP01") or "", status_code=status,
            status=CLAIM_STATUS.get(status, f"claim status {status}"),
            charge_cents=_cents(value("CLP03"), where), paid_cents=_cents(value("CLP04"), where),
            patient_responsibility_cents=_cents(value("CLP05") or "0", where),
            payer_claim_control_number=value("CLP07") or None, adjustments=[], lines=[]))
    elif node.id == "CAS" and claims:
        claims[-1].adjustments += _adjustments(node, where)


def _line_segment(node, claim: ClaimPayment, line: LinePayment | None, where: str) -> LinePayment | None:
    value = node.get_value
    if node.id == "SVC":
        # SVC01 is the procedure as adjudicated: HC:code:modifiers.
        line = LinePayment(hcpcs=value("SVC01-2") or "",
                           modifiers=[m for m in (value(f"SVC01-{i}") for i in range(3, 7)) if m],
                           charge_cents=_cents(value("SVC02"), where), paid_cents=_cents(value("SVC03"), where),
                           units=_quantity(value("SVC05"), where) or Decimal(1), visit_id=None, date_of_service=None,
                           adjustments=[], remarks=[])
        claim.lines.append(line)
    elif line is None:
        return None
    elif node.id == "DTM" and value("DTM01") in ("472", "150"):  # 150: first day of a billed period
        line.date_of_service = _date(value("DTM02"))
    elif node.id == "CAS":
        line.adjustments += _adjustments(node, where)
    elif node.id == "REF" and value("REF01") == "6R":
        line.visit_id = value("REF02") or None
    elif node.id == "LQ" and value("LQ01") == "HE":
        code = value("LQ02") or ""
        line.remarks.append(Remark(code=code, words=REMARKS.get(code, f"RARC {code}")))
    return line


def _adjustments(node, where: str) -> list[Adjustment]:
    """A CAS holds one group and up to six reason / amount / quantity triples (CAS02-04, CAS05-07, ...)."""
    value = node.get_value
    group = value("CAS01") or ""
    found = []
    for first in range(2, 20, 3):
        reason = value(f"CAS{first:02d}")
        if not reason:
            continue
        found.append(Adjustment(group=group, group_words=ADJUSTMENT_GROUPS.get(group, f"group {group}"),
                                reason_code=reason, reason=ADJUSTMENT_REASONS.get(reason, f"CARC {reason}"),
                                amount_cents=_cents(value(f"CAS{first + 1:02d}"), where),
                                quantity=_quantity(value(f"CAS{first + 2:02d}"), where)))
    return found


def _cents(text: str | None, where: str) -> int:
    if not text:
        raise RemittanceError(f"{where}: an amount is missing")
    try:
        cents = Decimal(text) * 100
    except InvalidOperation:
        raise RemittanceError(f"{where}: {text!r} is not an amount") from None
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise RemittanceError(f"{where}: {text!r} is not an amount in dollars and cents")
    return int(cents)


def _quantity(text: str | None, where: str) -> Decimal | None:
    if not text:
        return None
    try:
        quantity = Decimal(text)
    except InvalidOperation:
        raise RemittanceError(f"{where}: {text!r} is not a quantity") from None
    if not quantity.is_finite():
        raise RemittanceError(f"{where}: {text!r} is not a quantity")
    return quantity


def _date(text: str | None) -> date | None:
    try:
        return datetime.strptime(text or "", "%Y%m%d").date()
    except ValueError:
        return None
