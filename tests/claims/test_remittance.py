"""835 reading: amounts in cents, adjustments and remarks in words, lines tied back to visits."""

from __future__ import annotations

from datetime import date

import pytest

from visitflow.claims.remittance import ADJUSTMENT_REASONS, REMARKS, RemittanceError, read_835
from visitflow.claims.validate import UnreadableX12


def by_number(remittance):
    return {claim.claim_control_number: claim for claim in remittance.claims}


def test_the_payment_and_the_payer(sample):
    remittance = read_835(sample("remit_835.txt"))
    assert (remittance.payer_name, remittance.payer_id) == ("TEXAS MEDICAID", "1512345678")
    assert (remittance.payee_name, remittance.payee_npi) == ("SUNRISE HOME CARE", "1234567893")
    assert remittance.payment.model_dump() == {"amount_cents": 14520, "method": "ACH", "trace_number": "EFT778899",
                                               "paid_on": date(2026, 12, 15)}
    assert sum(claim.paid_cents for claim in remittance.claims) == remittance.payment.amount_cents


def test_a_paid_claim(sample):
    paid = by_number(read_835(sample("remit_835.txt")))["C-1001"]
    assert (paid.status_code, paid.status, paid.charge_cents, paid.paid_cents, paid.payer_claim_control_number) == (
        "1", "processed as primary", 6720, 6720, "2026112800001")
    assert [(line.visit_id, line.hcpcs, line.modifiers, line.units, line.date_of_service, line.paid_cents)
            for line in paid.lines] == [("V-2001", "T1019", ["U6"], 8, date(2026, 11, 26), 3840),
                                        ("V-2002", "T1019", ["U6"], 6, date(2026, 11, 27), 2880)]
    assert all(not line.adjustments and not line.remarks for line in paid.lines)


def test_a_partially_paid_claim(sample):
    partial = by_number(read_835(sample("remit_835.txt")))["C-1002"]
    assert (partial.charge_cents, partial.paid_cents) == (6720, 5880)
    reduced, whole = partial.lines
    assert (reduced.visit_id, reduced.charge_cents, reduced.paid_cents, reduced.denied) == ("V-1990", 3840, 3000, False)
    [adjustment] = reduced.adjustments
    assert adjustment.model_dump() == {
        "group": "CO", "group_words": "contractual obligation (the agency writes it off)", "reason_code": "45",
        "reason": "charge is above the fee schedule or contracted rate", "amount_cents": 840, "quantity": None}
    assert [(r.code, r.words) for r in reduced.remarks] == [("N362", "more days or units than the payer accepts")]
    assert reduced.charge_cents - sum(a.amount_cents for a in reduced.adjustments) == reduced.paid_cents
    assert (whole.paid_cents, whole.adjustments) == (2880, [])


def test_a_denied_line_says_why(sample):
    claim = by_number(read_835(sample("remit_835.txt")))["C-1003"]
    assert (claim.charge_cents, claim.paid_cents) == (4800, 1920)
    denied = claim.lines[1]
    assert (denied.visit_id, denied.hcpcs, denied.modifiers, denied.paid_cents, denied.denied) == (
        "V-1981", "S5125", [], 0, True)
    assert [(a.group, a.reason_code, a.reason, a.amount_cents) for a in denied.adjustments] == [
        ("CO", "197", "prior authorization absent", 2880)]
    assert [(r.code, r.words) for r in denied.remarks] == [
        ("M62", "treatment authorization code missing, incomplete or invalid")]


def test_a_denied_claim_carries_its_adjustment_at_claim_level(sample):
    claim = by_number(read_835(sample("remit_835.txt")))["C-1004"]
    assert (claim.status_code, claim.status, claim.paid_cents, claim.lines) == ("4", "denied", 0, [])
    assert [(a.reason_code, a.reason, a.amount_cents) for a in claim.adjustments] == [
        ("29", "the timely filing limit has passed", 3840)]


def test_unknown_codes_keep_their_number_and_a_cas_holds_several_reasons(sample):
    text = sample("remit_835.txt").replace("CAS*CO*45*8.4~", "CAS*CO*45*4.4**B99*4*2~").replace(
        "LQ*HE*N362~", "LQ*HE*N999~")
    reduced = by_number(read_835(text))["C-1002"].lines[0]
    assert [(a.reason_code, a.reason, a.amount_cents, a.quantity) for a in reduced.adjustments] == [
        ("45", "charge is above the fee schedule or contracted rate", 440, None), ("B99", "CARC B99", 400, 2)]
    assert [(r.code, r.words) for r in reduced.remarks] == [("N999", "RARC N999")]


def test_the_common_codes_are_in_words():
    for carc in ("1", "2", "3", "4", "16", "18", "29", "45", "50", "96", "97", "109", "119", "197", "198", "204",
                 "252"):
        assert ADJUSTMENT_REASONS[carc]
    for rarc in ("M15", "N130", "N362", "MA130"):
        assert REMARKS[rarc]


def test_an_amount_that_is_not_cents_is_refused(sample):
    with pytest.raises(RemittanceError, match=r"SVC at line 24: '30.005' is not an amount in dollars and cents"):
        read_835(sample("remit_835.txt").replace("SVC*HC:T1019:U6*38.4*30**8", "SVC*HC:T1019:U6*38.4*30.005**8"))


def test_only_an_835_is_read_as_a_remittance(sample):
    with pytest.raises(UnreadableX12, match="not an 835"):
        read_835(sample("clean_837p.txt"))
    with pytest.raises(UnreadableX12, match="does not begin with 'ISA'"):
        read_835(sample("not_x12.txt"))
