"""CLM-06: pyx12 in-process, its findings in words with the segment, line and element."""

from __future__ import annotations

import pytest

from visitflow.claims.validate import UnreadableX12, validate_x12


def test_an_accepted_file_has_no_findings(sample):
    assert validate_x12(sample("clean_837p.txt")) == []
    assert validate_x12(sample("clean_837i.txt")) == []
    assert validate_x12(sample("remit_835.txt")) == []


def test_a_rejected_file_says_what_is_wrong_where(sample):
    found = {(f.rule_id, f.segment_id, f.element, f.line, f.segment_number): f.message
             for f in validate_x12(sample("rejected_837p.txt"))}
    assert found == {
        ("CLM-06", "SBR", None, 49, 47): 'required segment missing: Mandatory segment "Subscriber Information" (SBR) '
                                          "missing",
        ("CLM-06", "DMG", "DMG02", 52, 50): 'invalid date (Subscriber Birth Date): Data element "Subscriber Birth '
                                             'Date" (DMG02) contains an invalid date (19501321)',
        ("CLM-06", "DMG", "DMG03", 52, 50): "invalid code value (Subscriber Gender Code): (X) is not a valid code "
                                             "for Subscriber Gender Code (DMG03)",
    }


def test_a_wrong_segment_count_is_a_finding_on_the_transaction_set(sample):
    text = sample("clean_837p.txt").replace("SE*64*0001", "SE*60*0001")
    [finding] = validate_x12(text)
    assert (finding.segment_id, finding.line) == ("ST", 66)  # the SE line
    assert "SE count of 60" in finding.message and "64" in finding.message


def test_a_leading_byte_order_mark_and_blank_lines_are_not_the_file(sample):
    assert validate_x12("\ufeff\r\n" + sample("clean_837p.txt")) == []


@pytest.mark.parametrize(("text", "why"), [
    ("This is not an X12 file", "does not begin with 'ISA'"),
    ("ISA*00*  ~", "ISA line is only"),
    ("", "does not begin with 'ISA'"),
])
def test_text_that_is_not_x12_cannot_be_checked(text, why):
    with pytest.raises(UnreadableX12, match=why):
        validate_x12(text)


def test_an_unknown_transaction_set_cannot_be_checked(sample):
    with pytest.raises(UnreadableX12, match="Map not found"):
        validate_x12(sample("clean_837p.txt").replace("005010X222A1", "005010X999A1"))


@pytest.mark.parametrize(("old", "new"), [
    ("GE*1*1001~\nIEA*1*000001001~\n", "IEA*1*000001001~\nGE*1*1001~\n"),  # a group closed after its interchange
    ("ST*837*0001*005010X222A1~\n", "SE*2*0001~\nST*837*0001*005010X222A1~\n"),  # a transaction closed before it opens
])
def test_envelopes_that_do_not_nest_cannot_be_checked(sample, old, new):
    # pyx12 itself trips over these (an IndexError in its bookkeeping); the checker says what is wrong instead.
    with pytest.raises(UnreadableX12, match=r"envelope segments \(ISA, GS, ST ... SE, GE, IEA\) do not open and close"):
        validate_x12(sample("clean_837p.txt").replace(old, new))
