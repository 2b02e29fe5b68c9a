"""835 files for tests: what a payer would send back for the claims a test released.

Written segment by segment like a payer's system would (the same shape as tests/claims/files/remit_835.txt),
so the import reads them with pyx12's 835 map like any real remittance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass
class LineAnswer:
    visit_id: str | None
    hcpcs: str
    charge_cents: int
    paid_cents: int
    units: int
    service_date: date
    modifiers: list[str] = field(default_factory=list)
    adjustments: list[tuple[str, str, int]] = field(default_factory=list)  # (group, CARC, cents)
    remarks: list[str] = field(default_factory=list)  # RARC codes


@dataclass
class ClaimAnswer:
    control_number: str
    payer_claim_number: str
    lines: list[LineAnswer]
    status: str = "1"  # CLP02: 1 processed as primary, 4 denied
    claim_adjustments: list[tuple[str, str, int]] = field(default_factory=list)
    charge_cents: int | None = None  # when the claim has no lines
    paid_cents: int | None = None


def _money(cents: int) -> str:
    return f"{cents / 100:.2f}".rstrip("0").rstrip(".") if cents % 100 else str(cents // 100)


def write_835(claims: list[ClaimAnswer], trace: str = "EFT1001", payer: str = "TEXAS MEDICAID",
              paid_on: date = date(2026, 12, 15)) -> str:
    total = sum(c.paid_cents if c.paid_cents is not None else sum(line.paid_cents for line in c.lines)
                for c in claims)
    segments = [
        "ISA*00*          *00*          *ZZ*TXMEDCLEAR     *ZZ*SUNRISE01      *261210*1200*^*00501*000002001*0*P*:",
        "GS*HP*TXMEDCLEAR*SUNRISE01*20261210*1200*2001*X*005010X221A1",
        "ST*835*0001",
        f"BPR*I*{_money(total)}*C*{'ACH' if total else 'NON'}*CCP*01*111000025*DA*123456789*1512345678**01*"
        f"999988880*DA*98765*{paid_on:%Y%m%d}",
        f"TRN*1*{trace}*1512345678",
        "DTM*405*20261210",
        f"N1*PR*{payer}", "N3*PO BOX 200", "N4*AUSTIN*TX*78711", "PER*BL*PROVIDER SERVICES*TE*8005550199",
        "N1*PE*SUNRISE HOME CARE*XX*1234567893", "REF*TJ*741234567", "LX*1",
    ]
    for c in claims:
        charge = c.charge_cents if c.charge_cents is not None else sum(line.charge_cents for line in c.lines)
        paid = c.paid_cents if c.paid_cents is not None else sum(line.paid_cents for line in c.lines)
        segments.append(f"CLP*{c.control_number}*{c.status}*{_money(charge)}*{_money(paid)}**MC*"
                        f"{c.payer_claim_number}*12*1")
        segments += [f"CAS*{g}*{code}*{_money(cents)}" for g, code, cents in c.claim_adjustments]
        segments.append("NM1*QC*1*GARCIA*ROSA****MR*512345678")
        for line in c.lines:
            procedure = ":".join(["HC", line.hcpcs, *line.modifiers])
            segments.append(f"SVC*{procedure}*{_money(line.charge_cents)}*{_money(line.paid_cents)}**{line.units}")
            segments.append(f"DTM*472*{line.service_date:%Y%m%d}")
            segments += [f"CAS*{g}*{code}*{_money(cents)}" for g, code, cents in line.adjustments]
            if line.visit_id:
                segments.append(f"REF*6R*{line.visit_id}")
            segments += [f"LQ*HE*{code}" for code in line.remarks]
    count = len(segments) - 2 + 1  # ST through SE
    segments += [f"SE*{count}*0001", "GE*1*2001", "IEA*1*000002001"]
    return "~\n".join(segments) + "~\n"
