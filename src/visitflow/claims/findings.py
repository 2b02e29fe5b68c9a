"""A problem found in an X12 file, said so a biller can find it and fix it."""

from __future__ import annotations

from pydantic import BaseModel


class ClaimFinding(BaseModel):
    rule_id: str  # catalogue id: CLM-06 for what pyx12 finds, CLM-01..07 for our own edits
    segment_id: str | None = None  # e.g. SV1
    segment_number: int | None = None  # position inside its ST..SE transaction set, ST = 1 (as a 999 counts)
    line: int | None = None  # the segment's position in the file, ISA = 1: the file line when one segment a line
    element: str | None = None  # e.g. SV102, or SV101-2 for a component
    claim: str | None = None  # the claim control number (CLM01) the finding belongs to, when there is one
    message: str

    def describe(self) -> str:
        """One line for a person: where, then what."""
        where = []
        if self.segment_id:
            where.append(self.element or self.segment_id)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.segment_number is not None:
            where.append(f"segment {self.segment_number} of its transaction")
        if self.claim:
            where.append(f"claim {self.claim}")
        return f"{self.rule_id} {', '.join(where)}: {self.message}" if where else f"{self.rule_id}: {self.message}"


def in_file_order(findings: list[ClaimFinding]) -> list[ClaimFinding]:
    """By line, keeping the order of findings on the same line; findings with no line last."""
    return sorted(findings, key=lambda f: (f.line is None, f.line or 0))
