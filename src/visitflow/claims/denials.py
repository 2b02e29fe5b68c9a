"""What an 835 line means for the agency: paid, paid less for a reason someone can fix, or denied; and who fixes it.

A line paid less than billed is still paid when every reduction is the contract (CO-45, the fee schedule) or the
member's share (PR: deductible, coinsurance, co-payment): nobody can or should fix those. Any other reduction, or
no payment at all, sends the visit back into work with the payer's codes in words.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from visitflow.claims.remittance import Adjustment, ClaimPayment, LinePayment
from visitflow.models import DOCUMENTATION_DENIAL_CODES, DenialKind


class LineOutcome(StrEnum):
    paid = "paid"
    adjusted = "adjusted"  # paid less than billed for a reason someone can fix
    denied = "denied"  # paid nothing


def _expected(adjustment: Adjustment) -> bool:
    return adjustment.group == "PR" or (adjustment.group == "CO" and adjustment.reason_code == "45")


def line_outcome(line: LinePayment, claim: ClaimPayment) -> LineOutcome:
    if line.charge_cents > 0 and line.paid_cents <= 0:
        return LineOutcome.denied
    if line.paid_cents < line.charge_cents and not all(_expected(a) for a in [*line.adjustments, *claim.adjustments]):
        return LineOutcome.adjusted
    return LineOutcome.paid


def claim_outcome(claim: ClaimPayment) -> LineOutcome:
    """For a claim the payer answered without service lines: the claim's own status and amounts."""
    if claim.status_code == "4" or (claim.charge_cents > 0 and claim.paid_cents <= 0):
        return LineOutcome.denied
    if claim.paid_cents < claim.charge_cents and not all(_expected(a) for a in claim.adjustments):
        return LineOutcome.adjusted
    return LineOutcome.paid


def codes(adjustments: Iterable[Adjustment], remark_codes: Iterable[str] = ()) -> list[str]:
    """"CO-45", "N130": as billers write them."""
    return [f"{a.group}-{a.reason_code}" for a in adjustments] + list(remark_codes)


def reasons(line: LinePayment | None, claim: ClaimPayment) -> list[str]:
    """Each adjustment and remark, the line's and the claim's, with its words."""
    adjustments = [*(line.adjustments if line else []), *claim.adjustments]
    said = [f"{a.group}-{a.reason_code}: {a.reason} (${a.amount_cents / 100:,.2f})" for a in adjustments]
    said += [f"{r.code}: {r.words}" for r in (line.remarks if line else [])]
    return said


def denial_kind(said: Iterable[str], documentation_codes: Iterable[str] = DOCUMENTATION_DENIAL_CODES,
                evv_codes: Iterable[str] = ()) -> DenialKind:
    """Who can fix a denial, from its codes (as in `reasons`, "CO-252: ..." or "N29: ..."). Documentation first:
    a revised, re-signed note is the fix; then EVV (codes an agency's state uses for EVV mismatches, a setting);
    anything else is the biller's."""
    found = set()
    for reason in said:
        code = reason.split(":", 1)[0]
        found.add(code.split("-", 1)[1] if "-" in code else code)
    if found & set(documentation_codes):
        return DenialKind.documentation
    if found & set(evv_codes):
        return DenialKind.evv
    return DenialKind.billing


def code_in_words(code: str) -> str:
    """A stored code ("CO-252", "N29") with its words, as a line's adjustments are shown to people."""
    from visitflow.claims.remittance import ADJUSTMENT_REASONS, REMARKS

    if "-" in code:
        number = code.split("-", 1)[1]
        return f"{code}: {ADJUSTMENT_REASONS.get(number, f'CARC {number}')}"
    return f"{code}: {REMARKS.get(code, f'RARC {code}')}"
