"""What goes on a professional claim (837P 005010X222A1), as plain models.

Money is integer cents and dates are `date`s; the writer turns them into X12 text. A model that validates can be
written: every value fits its X12 element and holds none of the file's delimiters, and the claim-level rules the
writer itself could break (CLM-02 NPI check digit, CLM-03 units >= 1, CLM-05 a visit or a member's day of a
service billed once, a 7/8 claim naming the claim it replaces) are refused here. The claim total is the sum of the
lines by construction (CLM-01).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator

from visitflow.rules.claims import npi_is_valid

# The writer's delimiters (element, component, repetition, segment). A value holding one would split the file.
DELIMITERS = "*:^~"


def _x12_text(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ValueError("use printable ASCII characters only")
    if any(d in value for d in DELIMITERS):
        raise ValueError(f"must not contain any of {' '.join(DELIMITERS)} (X12 delimiters)")
    return value


def _npi(value: str) -> str:
    if not npi_is_valid(value):
        raise ValueError("not a valid NPI: ten digits whose last is the check digit (CLM-02)")
    return value


def Text(max_length: int, min_length: int = 1):  # noqa: N802 - reads like a type in the models below
    """X12 string element: trimmed, within the IG's length, no delimiters."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length),
                     AfterValidator(_x12_text)]


Npi = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_npi)]
Cents = Annotated[int, Field(ge=0, le=99_999_999_99)]  # X12 monetary amounts hold at most 10 digits
# ICD-10-CM: a letter, two more characters, then up to four; written without the dot on the claim.
ICD10_PATTERN = re.compile(r"[A-Z][0-9][0-9A-Z]\.?[0-9A-Z]{0,4}")


def icd10_code(code: str) -> str:
    """An ICD-10 code as the claim writes it: upper case (the codes ignore case, people type r26.89), no dot.
    Anything else is refused in words, naming what was typed."""
    upper = code.strip().upper()
    if not ICD10_PATTERN.fullmatch(upper):
        raise ValueError(f"'{code.strip()[:20]}' is not an ICD-10 code (a letter, a digit, then up to five letters "
                         "or digits, e.g. R26.89)")
    return upper.replace(".", "")


Icd10 = Annotated[str, AfterValidator(icd10_code)]
Hcpcs = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z0-9][0-9]{3}[A-Z0-9]$")]
Modifier = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z0-9]{2}$")]


class Gender(StrEnum):
    female = "F"
    male = "M"
    unknown = "U"


class ClaimFrequency(StrEnum):
    """CLM05-3: what this claim does to the payer's record of the service."""

    original = "1"
    replacement = "7"  # replaces a claim the payer already adjudicated
    void = "8"  # cancels one


class Address(BaseModel):
    line1: Text(55)
    line2: Text(55) | None = None
    city: Text(30)
    state: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z]{2}$")]
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{5}([0-9]{4})?$")]


class Contact(BaseModel):
    """Who the payer or clearinghouse calls about the file (1000A PER)."""

    name: Text(60)
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{10}$")]


class Agency(BaseModel):
    """The billing provider, and who sends the file to whom."""

    name: Text(60)
    npi: Npi
    tax_id: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{9}$")]  # EIN, REF*EI
    address: Address  # a street address: the IG refuses a post office box for the billing provider
    submitter_id: Text(15, 2)  # ISA06 / 1000A NM109, as the receiver assigned it
    submitter_name: Text(60)
    receiver_id: Text(15, 2)  # ISA08 / 1000B NM109
    receiver_name: Text(60)
    contact: Contact

    @model_validator(mode="after")
    def _nine_digit_zip(self) -> Agency:
        if len(self.address.postal_code) != 9:
            raise ValueError("the billing provider's postal code needs all nine digits (ZIP+4)")
        return self


class Payer(BaseModel):
    name: Text(60)
    payer_id: Text(80, 2)  # 2010BB NM109, the payer's id at the receiver


class Subscriber(BaseModel):
    """The Medicaid member; in home care the patient is always the subscriber."""

    last_name: Text(60)
    first_name: Text(35)
    medicaid_id: Text(80, 2)
    birth_date: date
    gender: Gender
    address: Address


class Provider(BaseModel):
    """A person who gave the care, when that is not the billing agency itself (2310B rendering provider)."""

    last_name: Text(60)
    first_name: Text(35)
    npi: Npi


class ServiceLine(BaseModel):
    """One visit billed: 2400 LX / SV1 / DTP*472 / REF*6R."""

    visit_id: Text(50)  # REF*6R line control number: ties the payer's answer (835 SVC REF*6R) back to the visit
    hcpcs: Hcpcs
    modifiers: list[Modifier] = Field(default_factory=list, max_length=4)
    units: Annotated[int, Field(ge=1, le=9999)]  # CLM-03: a line bills at least one whole unit
    charge_cents: Annotated[int, Field(ge=1, le=99_999_999_99)]
    date_of_service: date
    # 2400 REF*G1 and 2420A: set when the claim's lines differ in authorization or in who gave the care (a week or
    # month on one claim); lines that share them have them once on the claim instead.
    prior_authorization: Text(50) | None = None
    rendering_provider: Provider | None = None


class Claim(BaseModel):
    claim_control_number: Text(20)  # CLM01, the payer returns it in 835 CLP01
    frequency: ClaimFrequency = ClaimFrequency.original
    original_claim_number: Text(50) | None = None  # the payer's number of the claim a 7 or 8 replaces or voids
    place_of_service: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")] = "12"  # 12 = home
    prior_authorization: Text(50) | None = None  # REF*G1
    diagnosis_codes: list[Icd10] = Field(min_length=1, max_length=12)
    rendering_provider: Provider | None = None
    subscriber: Subscriber
    lines: list[ServiceLine] = Field(min_length=1, max_length=50)  # the 837P allows 50 lines a claim

    @property
    def total_cents(self) -> int:
        return sum(line.charge_cents for line in self.lines)

    @model_validator(mode="after")
    def _frequency_names_the_original(self) -> Claim:
        if self.frequency == ClaimFrequency.original and self.original_claim_number is not None:
            raise ValueError("an original claim (frequency 1) has no original_claim_number")
        if self.frequency != ClaimFrequency.original and self.original_claim_number is None:
            raise ValueError(f"a frequency {self.frequency} claim needs the payer's original_claim_number")
        if self.total_cents > 99_999_999_99:
            raise ValueError("the claim total does not fit an X12 monetary amount")
        return self


class Envelope(BaseModel):
    """Control numbers and stamp of one file, chosen by the caller so that a retry writes the same bytes."""

    interchange_control_number: Annotated[int, Field(ge=1, le=999_999_999)]  # ISA13 / IEA02
    group_control_number: Annotated[int, Field(ge=1, le=999_999_999)]  # GS06 / GE02
    transaction_set_control_number: Annotated[int, Field(ge=1, le=999_999_999)]  # ST02 / SE02
    created_at: datetime  # ISA09/10, GS04/05, BHT04/05, in the agency's time
    production: bool = True  # ISA15 P or T

    @property
    def batch_reference(self) -> str:
        """BHT03: the originator's reference for this batch."""
        return f"{self.interchange_control_number:09d}"


class ClaimFile(BaseModel):
    """One 837P file: the claims of one agency to one payer."""

    agency: Agency
    payer: Payer
    envelope: Envelope
    claims: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _each_claim_and_visit_once(self) -> ClaimFile:
        numbers = [c.claim_control_number for c in self.claims]
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise ValueError(f"claim control numbers repeat in one file: {', '.join(repeated)}")
        # CLM-05, refused at the source: a visit is billed once, a member's day of a service on one claim.
        # A void (8) bills nothing, so it may sit beside the claim that bills the service again.
        visits: set[str] = set()
        claim_of_service: dict[tuple[str, date, str], str] = {}
        for claim in self.claims:
            if claim.frequency == ClaimFrequency.void:
                continue
            for line in claim.lines:
                if line.visit_id in visits:
                    raise ValueError(f"visit {line.visit_id} is billed twice (CLM-05)")
                visits.add(line.visit_id)
                service = (claim.subscriber.medicaid_id, line.date_of_service, line.hcpcs)
                other = claim_of_service.setdefault(service, claim.claim_control_number)
                if other != claim.claim_control_number:
                    raise ValueError(f"{line.hcpcs} on {line.date_of_service} for member {service[0]} is split "
                                     f"across claims {other} and {claim.claim_control_number} (CLM-05)")
        return self

