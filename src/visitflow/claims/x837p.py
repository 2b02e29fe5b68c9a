"""The 837P writer: one payer's claims as one 005010X222A1 file.

The output is a pure function of the `ClaimFile`: the caller chooses the control numbers and the creation stamp,
so writing the same claims again (a retry) gives the same bytes, and the payer's duplicate checks see one file.
"""

from __future__ import annotations

from collections.abc import Iterator

from visitflow.claims.models import Address, Claim, ClaimFile, ClaimFrequency, ServiceLine

IMPLEMENTATION_GUIDE = "005010X222A1"
ELEMENT, COMPONENT, REPETITION, SEGMENT = "*", ":", "^", "~"


def money(cents: int) -> str:
    """X12 decimal amount: no trailing zeros after the point, no point for whole amounts (6050 -> "60.5")."""
    whole, rest = divmod(cents, 100)
    if rest == 0:
        return str(whole)
    return f"{whole}.{rest:02d}".rstrip("0")


def write_837p(claim_file: ClaimFile) -> str:
    """The file's text, one segment per line."""
    body = list(_transaction(claim_file))
    env = claim_file.envelope
    st_number = f"{env.transaction_set_control_number:04d}"
    segments = [
        _interchange_header(claim_file),
        _seg("GS", "HC", claim_file.agency.submitter_id, claim_file.agency.receiver_id,
             env.created_at.strftime("%Y%m%d"), env.created_at.strftime("%H%M"), str(env.group_control_number),
             "X", IMPLEMENTATION_GUIDE),
        _seg("ST", "837", st_number, IMPLEMENTATION_GUIDE),
        *body,
        # SE01 counts the segments from ST to SE, both included.
        _seg("SE", str(len(body) + 2), st_number),
        _seg("GE", "1", str(env.group_control_number)),
        _seg("IEA", "1", f"{env.interchange_control_number:09d}"),
    ]
    return "".join(segment + SEGMENT + "\n" for segment in segments)


def _interchange_header(claim_file: ClaimFile) -> str:
    # ISA is fixed width: receivers find the delimiters by position, so every field is padded to its size.
    env = claim_file.envelope
    return _seg(
        "ISA", "00", " " * 10, "00", " " * 10,
        "ZZ", claim_file.agency.submitter_id.ljust(15), "ZZ", claim_file.agency.receiver_id.ljust(15),
        env.created_at.strftime("%y%m%d"), env.created_at.strftime("%H%M"), REPETITION, "00501",
        f"{env.interchange_control_number:09d}", "0", "P" if env.production else "T", COMPONENT)


def _transaction(claim_file: ClaimFile) -> Iterator[str]:
    agency, env = claim_file.agency, claim_file.envelope
    # BHT02 00 = original transmission; BHT06 CH = chargeable (fee-for-service claims).
    yield _seg("BHT", "0019", "00", env.batch_reference, env.created_at.strftime("%Y%m%d"),
               env.created_at.strftime("%H%M"), "CH")
    # 1000A submitter, 1000B receiver
    yield _seg("NM1", "41", "2", agency.submitter_name, "", "", "", "", "46", agency.submitter_id)
    yield _seg("PER", "IC", agency.contact.name, "TE", agency.contact.phone)
    yield _seg("NM1", "40", "2", agency.receiver_name, "", "", "", "", "46", agency.receiver_id)
    # 2000A / 2010AA billing provider: the agency
    yield _seg("HL", "1", "", "20", "1")
    yield _seg("NM1", "85", "2", agency.name, "", "", "", "", "XX", agency.npi)
    yield from _address(agency.address)
    yield _seg("REF", "EI", agency.tax_id)
    # One 2000B subscriber level per claim: the patient is the Medicaid member, so no 2000C patient level.
    for hl_number, claim in enumerate(claim_file.claims, start=2):
        yield from _subscriber(claim, hl_number, claim_file)
        yield from _claim(claim)


def _subscriber(claim: Claim, hl_number: int, claim_file: ClaimFile) -> Iterator[str]:
    member = claim.subscriber
    yield _seg("HL", str(hl_number), "1", "22", "0")
    # SBR: primary payer, the subscriber is the patient (18), claim filing indicator MC = Medicaid.
    yield _seg("SBR", "P", "18", "", "", "", "", "", "", "MC")
    yield _seg("NM1", "IL", "1", member.last_name, member.first_name, "", "", "", "MI", member.medicaid_id)
    yield from _address(member.address)
    yield _seg("DMG", "D8", member.birth_date.strftime("%Y%m%d"), member.gender.value)
    yield _seg("NM1", "PR", "2", claim_file.payer.name, "", "", "", "", "PI", claim_file.payer.payer_id)


def _claim(claim: Claim) -> Iterator[str]:
    # CLM05: place of service : B (a place-of-service code) : frequency. CLM06-09: provider signature on file,
    # accepts assignment, benefits assigned, release of information on file.
    yield _seg("CLM", claim.claim_control_number, money(claim.total_cents), "", "",
               COMPONENT.join((claim.place_of_service, "B", claim.frequency.value)), "Y", "A", "Y", "Y")
    if claim.prior_authorization:
        yield _seg("REF", "G1", claim.prior_authorization)
    if claim.frequency != ClaimFrequency.original:
        yield _seg("REF", "F8", claim.original_claim_number)
    # The first diagnosis is the principal one (ABK), the rest are other diagnoses (ABF).
    codes = [f"ABK{COMPONENT}{claim.diagnosis_codes[0]}"]
    codes += [f"ABF{COMPONENT}{code}" for code in claim.diagnosis_codes[1:]]
    yield _seg("HI", *codes)
    if claim.rendering_provider is not None:
        person = claim.rendering_provider
        yield _seg("NM1", "82", "1", person.last_name, person.first_name, "", "", "", "XX", person.npi)
    for number, line in enumerate(claim.lines, start=1):
        yield from _service_line(number, line)


def _service_line(number: int, line: ServiceLine) -> Iterator[str]:
    yield _seg("LX", str(number))
    procedure = COMPONENT.join(["HC", line.hcpcs, *line.modifiers])
    # SV107 points at the claim's first diagnosis.
    yield _seg("SV1", procedure, money(line.charge_cents), "UN", str(line.units), "", "", "1")
    yield _seg("DTP", "472", "D8", line.date_of_service.strftime("%Y%m%d"))
    if line.prior_authorization:
        yield _seg("REF", "G1", line.prior_authorization)
    yield _seg("REF", "6R", line.visit_id)
    if line.rendering_provider is not None:
        person = line.rendering_provider
        yield _seg("NM1", "82", "1", person.last_name, person.first_name, "", "", "", "XX", person.npi)


def _address(address: Address) -> Iterator[str]:
    yield _seg("N3", address.line1, *([address.line2] if address.line2 else []))
    yield _seg("N4", address.city, address.state, address.postal_code)


def _seg(segment_id: str, *elements: str) -> str:
    # Trailing empty elements are left off, as the X12 syntax requires.
    values = list(elements)
    while values and values[-1] == "":
        values.pop()
    return ELEMENT.join([segment_id, *values])
