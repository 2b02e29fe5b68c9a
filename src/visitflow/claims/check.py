"""The 837 checker behind `visitflow check-837` and `POST /api/claims/check`: pyx12 first, then our edits."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from visitflow.claims import edits
from visitflow.claims.findings import ClaimFinding, in_file_order
from visitflow.claims.reader import read_837
from visitflow.claims.validate import validate_x12

# With no payer named, lines are held to the shortest common limit (Texas Medicaid: 95 days from the date of
# service) so that nothing late passes unnoticed; pass the payer's own limit to be exact.
DEFAULT_FILING_LIMIT_DAYS = 95


class FilingSummary(BaseModel):
    limit_days: int
    as_of: date
    soonest_deadline: date | None  # the first line's last filing day
    days_left: int | None


class CheckReport(BaseModel):
    kind: str  # 837P or 837I
    claims: int
    lines: int
    findings: list[ClaimFinding]
    timely_filing: FilingSummary | None  # 837P only

    @property
    def clean(self) -> bool:
        return not self.findings


def file_text(data: bytes) -> str:
    """An uploaded file's text. X12 is ASCII, but refusing a whole file over one stray accented letter helps no one:
    decoded (UTF-8, else Latin-1, which reads any byte), pyx12 names the element that holds it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def check_837(text: str, as_of: date, filing_limit_days: int = DEFAULT_FILING_LIMIT_DAYS) -> CheckReport:
    """Every finding in one 837P or 837I file. Raises UnreadableX12 when the text is not such a file.

    837P: pyx12 (CLM-06), CLM-01, CLM-02, CLM-03 (one or more whole units: the checker does not know the visits'
    minutes), CLM-05, CLM-07. 837I: pyx12, CLM-01 over SV2 lines, CLM-02, CLM-05. CLM-04 needs the verified visits
    and runs where they are known (`edits.clm_04_lines_match_visits`).
    """
    parsed = read_837(text)  # first: it refuses what is not an 837 before pyx12 looks for a map
    findings = validate_x12(text)
    findings += edits.clm_01_total_matches_lines(parsed)
    findings += edits.clm_02_npis_pass_luhn(parsed)
    findings += edits.clm_05_no_split_or_repeat(parsed)
    summary = None
    # Units per visit and a filing clock per visit line belong to the Medicaid home care claim (837P); a Medicare
    # home health 837I bills a 30-day period, not visits one by one.
    if parsed.kind == "837P":
        findings += edits.clm_03_units(parsed)
        findings += edits.clm_07_timely_filing(parsed, filing_limit_days, as_of)
        deadlines = edits.filing_deadlines(parsed, filing_limit_days, as_of)
        summary = FilingSummary(limit_days=filing_limit_days, as_of=as_of,
                                soonest_deadline=deadlines[0].deadline if deadlines else None,
                                days_left=deadlines[0].days_left if deadlines else None)
    return CheckReport(kind=parsed.kind, claims=len(parsed.claims), lines=sum(len(c.lines) for c in parsed.claims),
                       findings=in_file_order(findings), timely_filing=summary)
