"""A realistic claim file for the tests: a Texas agency billing personal care to a Medicaid plan."""

from __future__ import annotations

from datetime import date, datetime

from visitflow.claims.models import (
    Address,
    Agency,
    Claim,
    ClaimFile,
    ClaimFrequency,
    Contact,
    Envelope,
    Gender,
    Payer,
    Provider,
    ServiceLine,
    Subscriber,
)

AGENCY = Agency(
    name="SUNRISE HOME CARE", npi="1234567893", tax_id="741234567",
    address=Address(line1="100 CONGRESS AVE", city="AUSTIN", state="TX", postal_code="787011234"),
    submitter_id="SUNRISE01", submitter_name="SUNRISE HOME CARE", receiver_id="TXMEDCLEAR",
    receiver_name="TEXAS MEDICAID CLEARINGHOUSE", contact=Contact(name="BEA BILLER", phone="5125550100"))
PAYER = Payer(name="TEXAS MEDICAID", payer_id="617591011")
MEMBER = Subscriber(last_name="GARCIA", first_name="ROSA", medicaid_id="512345678", birth_date=date(1941, 3, 9),
                    gender=Gender.female,
                    address=Address(line1="12 OAK ST", line2="APT 4", city="AUSTIN", state="TX",
                                    postal_code="78702"))
MEMBER_2 = Subscriber(last_name="NGUYEN", first_name="TAM", medicaid_id="598765432", birth_date=date(1950, 7, 21),
                      gender=Gender.male,
                      address=Address(line1="48 ELM DR", city="AUSTIN", state="TX", postal_code="78745"))
CAREGIVER = Provider(last_name="DIAZ", first_name="DEVON", npi="1245319599")
ENVELOPE = Envelope(interchange_control_number=1001, group_control_number=1001,
                    transaction_set_control_number=1, created_at=datetime(2026, 11, 28, 9, 30))


def line(visit_id: str = "V-2001", day: date = date(2026, 11, 26), units: int = 8, cents: int = 3840,
         hcpcs: str = "T1019", modifiers: tuple[str, ...] = ("U6",)) -> ServiceLine:
    return ServiceLine(visit_id=visit_id, hcpcs=hcpcs, modifiers=list(modifiers), units=units, charge_cents=cents,
                       date_of_service=day)


def claim(number: str = "C-1001", lines: list[ServiceLine] | None = None, **extra) -> Claim:
    fields = {"prior_authorization": "PA778812", "diagnosis_codes": ["R26.89", "Z74.01"],
              "rendering_provider": CAREGIVER, "subscriber": MEMBER, **extra}
    return Claim(claim_control_number=number,
                 lines=lines or [line(), line("V-2002", date(2026, 11, 27), units=6, cents=2880)], **fields)


def claim_file(*claims: Claim) -> ClaimFile:
    return ClaimFile(agency=AGENCY, payer=PAYER, envelope=ENVELOPE, claims=list(claims) or [claim()])


def week_of_claims() -> ClaimFile:
    """files/clean_837p.txt: two members, one claim replacing an earlier one (frequency 7)."""
    return claim_file(
        claim(),
        claim("C-1002", lines=[line("V-2003", date(2026, 11, 25), units=4, cents=1920)],
              frequency=ClaimFrequency.replacement, original_claim_number="2026112000017"),
        claim("C-1003", subscriber=MEMBER_2, diagnosis_codes=["Z74.1"], rendering_provider=None,
              lines=[line("V-2010", date(2026, 11, 24), units=12, cents=5400, hcpcs="S5130", modifiers=()),
                     line("V-2011", date(2026, 11, 26), units=12, cents=5400, hcpcs="S5130", modifiers=())]))
