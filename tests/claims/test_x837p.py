"""The 837P writer: what it writes passes pyx12, and the same claims always give the same bytes."""

from __future__ import annotations

import re
from datetime import date

import pytest
from pydantic import ValidationError

from tests.claims.samples import MEMBER, claim, claim_file, line, week_of_claims
from visitflow.claims.models import ClaimFrequency
from visitflow.claims.reader import read_837
from visitflow.claims.validate import validate_x12
from visitflow.claims.x837p import money, write_837p


def segments(text: str) -> list[str]:
    return [s.strip() for s in text.split("~") if s.strip()]


def test_a_week_of_claims_passes_pyx12_and_matches_the_stored_file(sample):
    text = write_837p(week_of_claims())
    assert validate_x12(text) == []
    # A retry writes byte-identical files: control numbers and stamps come from the caller.
    assert text == write_837p(week_of_claims()) == sample("clean_837p.txt")


def test_the_envelope_loops_and_lines_are_where_the_guide_puts_them():
    text = write_837p(week_of_claims())
    segs = segments(text)
    isa = segs[0]
    assert len(isa) == 105 and isa.split("*")[13] == "000001001"  # fixed width; ISA13 from the caller
    assert segs[1] == "GS*HC*SUNRISE01*TXMEDCLEAR*20261128*0930*1001*X*005010X222A1"
    assert segs[-3] == f"SE*{len(segs) - 4}*0001" and segs[-2] == "GE*1*1001" and segs[-1] == "IEA*1*000001001"
    for expected in ("NM1*41*2*SUNRISE HOME CARE*****46*SUNRISE01",
                     "NM1*40*2*TEXAS MEDICAID CLEARINGHOUSE*****46*TXMEDCLEAR",
                     "NM1*85*2*SUNRISE HOME CARE*****XX*1234567893", "REF*EI*741234567", "SBR*P*18*******MC",
                     "NM1*IL*1*GARCIA*ROSA****MI*512345678", "NM1*PR*2*TEXAS MEDICAID*****PI*617591011",
                     "CLM*C-1001*67.2***12:B:1*Y*A*Y*Y", "REF*G1*PA778812", "HI*ABK:R2689*ABF:Z7401",
                     "NM1*82*1*DIAZ*DEVON****XX*1245319599", "SV1*HC:T1019:U6*38.4*UN*8***1",
                     "DTP*472*D8*20261126", "REF*6R*V-2001", "CLM*C-1002*19.2***12:B:7*Y*A*Y*Y",
                     "REF*F8*2026112000017", "SV1*HC:S5130*54*UN*12***1"):
        assert expected in segs, expected
    # The replacement names the claim it replaces after its prior authorization, as the guide orders 2300 REFs.
    replacement = segs.index("CLM*C-1002*19.2***12:B:7*Y*A*Y*Y")
    assert segs.index("REF*F8*2026112000017") == segs.index("REF*G1*PA778812", replacement) + 1


def test_a_void_passes_pyx12_beside_the_claim_that_bills_the_day_again():
    text = write_837p(claim_file(
        claim("C-2001", frequency=ClaimFrequency.void, original_claim_number="2026112000017"),
        claim("C-2002", lines=[line()])))
    assert validate_x12(text) == []
    assert "CLM*C-2001*67.2***12:B:8*Y*A*Y*Y" in segments(text)


def test_money_is_written_without_trailing_zeros():
    assert [money(c) for c in (6000, 6050, 6055, 5, 0)] == ["60", "60.5", "60.55", "0.05", "0"]


@pytest.mark.parametrize(("change", "words"), [
    (lambda: line(units=0), "greater than or equal to 1"),
    (lambda: claim(rendering_provider={"last_name": "DIAZ", "first_name": "DEVON", "npi": "1245319598"}),
     "not a valid NPI"),
    (lambda: claim(frequency=ClaimFrequency.replacement), "needs the payer's original_claim_number"),
    (lambda: claim(original_claim_number="123"), "original claim (frequency 1) has no original_claim_number"),
    (lambda: claim(subscriber=MEMBER.model_copy(update={"last_name": "O*NEIL"}).model_dump()), "X12 delimiters"),
    (lambda: claim(diagnosis_codes=["not a code"]), "'not a code' is not an ICD-10 code"),
    (lambda: claim_file(claim("C-1"), claim("C-2", lines=[line()])), "visit V-2001 is billed twice"),
    (lambda: claim_file(claim("C-1"), claim("C-2", lines=[line("V-9")])), "split across claims C-1 and C-2"),
    (lambda: claim_file(claim("C-1"), claim("C-1", lines=[line("V-9", date(2026, 11, 1))])),
     "claim control numbers repeat"),
])
def test_the_models_refuse_what_the_writer_must_not_write(change, words):
    with pytest.raises(ValidationError, match=re.escape(words)):
        change()


def test_what_is_written_reads_back():
    parsed = read_837(write_837p(week_of_claims()))
    assert parsed.kind == "837P"
    assert [(c.claim_control_number, c.frequency, c.member_id) for c in parsed.claims] == [
        ("C-1001", "1", "512345678"), ("C-1002", "7", "512345678"), ("C-1003", "1", "598765432")]
    first = parsed.claims[0].lines[0]
    assert (first.hcpcs, first.modifiers, first.units, first.date_of_service, first.line_control_number) == (
        "T1019", ["U6"], 8, date(2026, 11, 26), "V-2001")
