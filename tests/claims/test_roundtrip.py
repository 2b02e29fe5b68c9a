"""Property: any claim file the writer produces reads back with its totals, lines and visits intact."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.claims.samples import AGENCY, MEMBER, PAYER
from visitflow.claims.models import Claim, ClaimFile, ClaimFrequency, Envelope, ServiceLine
from visitflow.claims.reader import read_837
from visitflow.claims.validate import validate_x12
from visitflow.claims.x837p import write_837p

NAME = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -.,'&", min_size=1,
               max_size=30).filter(lambda s: s.strip())
DAY = st.dates(min_value=date(2025, 1, 1), max_value=date(2026, 12, 31))


@st.composite
def claim_files(draw) -> ClaimFile:
    visit_numbers = iter(range(1, 10_000))
    claims = []
    for index in range(draw(st.integers(1, 4))):
        # Distinct days per claim and member keep CLM-05 (a day's service on one claim) true by construction.
        days = draw(st.lists(DAY, min_size=1, max_size=6, unique=True))
        member = MEMBER.model_copy(update={"medicaid_id": f"5{index:08d}", "last_name": draw(NAME).strip(),
                                           "first_name": draw(NAME).strip()})
        lines = [ServiceLine(visit_id=f"V-{next(visit_numbers)}",
                             hcpcs=draw(st.sampled_from(["T1019", "S5125", "S5130", "S5150", "G0156", "T1020"])),
                             modifiers=draw(st.lists(st.sampled_from(["U6", "UB", "U1", "TT", "52"]), max_size=4)),
                             units=draw(st.integers(1, 9999)), charge_cents=draw(st.integers(1, 99_999_99)),
                             date_of_service=day) for day in days]
        frequency = draw(st.sampled_from(list(ClaimFrequency)))
        claims.append(Claim(
            claim_control_number=f"C-{index}-{draw(st.integers(1, 10**9))}", frequency=frequency,
            original_claim_number=None if frequency == ClaimFrequency.original else draw(st.from_regex(
                r"[0-9A-Z]{1,20}", fullmatch=True)),
            prior_authorization=draw(st.none() | st.from_regex(r"[A-Z0-9]{1,20}", fullmatch=True)),
            diagnosis_codes=draw(st.lists(st.sampled_from(["R26.89", "Z74.01", "Z74.1", "I10", "E11.9"]),
                                          min_size=1, max_size=12)),
            subscriber=member, lines=lines))
    envelope = Envelope(interchange_control_number=draw(st.integers(1, 999_999_999)),
                        group_control_number=draw(st.integers(1, 999_999_999)),
                        transaction_set_control_number=draw(st.integers(1, 999_999_999)),
                        created_at=draw(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1))))
    return ClaimFile(agency=AGENCY, payer=PAYER, envelope=envelope, claims=claims)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claim_files())
def test_every_written_file_reads_back_with_totals_intact(claim_file):
    parsed = read_837(write_837p(claim_file))
    assert [c.claim_control_number for c in parsed.claims] == [c.claim_control_number for c in claim_file.claims]
    for written, read in zip(claim_file.claims, parsed.claims, strict=True):
        assert read.total == Decimal(written.total_cents) / 100 == sum(line.charge for line in read.lines)
        assert read.frequency == written.frequency.value and read.member_id == written.subscriber.medicaid_id
        assert [(line.line_control_number, line.hcpcs, line.modifiers, line.units, line.date_of_service,
                 line.charge) for line in read.lines] == [
            (line.visit_id, line.hcpcs, line.modifiers, line.units, line.date_of_service,
             Decimal(line.charge_cents) / 100) for line in written.lines]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(claim_files())
def test_every_written_file_passes_pyx12(claim_file):
    assert [f.describe() for f in validate_x12(write_837p(claim_file))] == []
