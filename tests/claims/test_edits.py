"""Claim edits pyx12 does not make: each sample file has one defect that pyx12 accepts and one edit catches."""

from __future__ import annotations

from datetime import date

import pytest

from visitflow.claims import edits
from visitflow.claims.check import check_837
from visitflow.claims.reader import read_837
from visitflow.claims.validate import validate_x12
from visitflow.models import RoundingStrategy

AS_OF = date(2026, 11, 29)


def only(findings):
    assert len(findings) == 1, [f.describe() for f in findings]
    return findings[0]


def test_the_clean_file_passes_every_edit(sample):
    parsed = read_837(sample("clean_837p.txt"))
    assert edits.clm_01_total_matches_lines(parsed) == []
    assert edits.clm_02_npis_pass_luhn(parsed) == []
    assert edits.clm_03_units(parsed) == []
    assert edits.clm_05_no_split_or_repeat(parsed) == []
    assert edits.clm_07_timely_filing(parsed, 95, AS_OF) == []
    assert check_837(sample("clean_837p.txt"), AS_OF).findings == []


@pytest.mark.parametrize(("name", "rule", "where", "words"), [
    ("clm01_total_off.txt", "CLM-01", ("CLM", 20, "C-1001"),
     "claim total 76.2 is not the sum of its 2 line charges, 67.2"),
    ("clm02_bad_npi.txt", "CLM-02", ("NM1", 23, None), "NPI 1245319589 (entity 82) fails the NPI check digit"),
    ("clm03_zero_units.txt", "CLM-03", ("SV1", 29, "C-1001"), "line 2 (visit V-2002) bills 0 units"),
    ("clm05_split_day.txt", "CLM-05", ("SV1", 45, "C-1002"),
     "T1019 on 2026-11-26 for member 512345678 is split across claims C-1001 and C-1002"),
    ("clm07_late.txt", "CLM-07", ("SV1", 59, "C-1003"),
     "line 1 (visit V-2010) of 2026-08-01 is past the payer's 95-day filing limit: the last day was 2026-11-04 "
     "(25 days ago)"),
])
def test_one_defect_pyx12_accepts_and_the_checker_catches(sample, name, rule, where, words):
    text = sample(name)
    assert validate_x12(text) == []
    finding = only(check_837(text, AS_OF).findings)
    assert (finding.rule_id, finding.segment_id, finding.line, finding.claim) == (rule, *where)
    assert words in finding.message


def test_units_that_are_not_whole_are_a_finding(sample):
    text = sample("clean_837p.txt").replace("SV1*HC:T1019:U6*28.8*UN*6***1", "SV1*HC:T1019:U6*28.8*UN*5.5***1")
    assert validate_x12(text) == []
    assert "bills 5.5 units: a line bills one or more whole units" in only(
        edits.clm_03_units(read_837(text))).message


def test_units_follow_the_payers_rounding_of_the_visits_minutes(sample):
    parsed = read_837(sample("clean_837p.txt"))
    # V-2001 bills 8 units of T1019: 120 minutes under nearest-quarter is 8, under the 8-minute rule 113 is 8 too.
    minutes = {"V-2001": 120, "V-2002": 90, "V-2003": 60, "V-2010": 180, "V-2011": 180}
    assert edits.clm_03_units(parsed, minutes, RoundingStrategy.nearest_quarter) == []
    finding = only(edits.clm_03_units(parsed, {**minutes, "V-2002": 82}, RoundingStrategy.floor))
    assert finding.message == ("line 2 (visit V-2002) bills 6 units, but 82 minutes of T1019 round to 5 under "
                               "the payer's floor rounding")


def verified_visits() -> list[edits.VisitFacts]:
    """The EVV visits behind clean_837p.txt, as the aggregator accepted them."""
    def visit(visit_id, day, member, hcpcs, modifiers, units):
        return edits.VisitFacts(visit_id=visit_id, provider_npi="1234567893", date_of_service=day,
                                medicaid_id=member, hcpcs=hcpcs, modifiers=modifiers, units=units)
    return [visit("V-2001", date(2026, 11, 26), "512345678", "T1019", ["U6"], 8),
            visit("V-2002", date(2026, 11, 27), "512345678", "T1019", ["U6"], 6),
            visit("V-2003", date(2026, 11, 25), "512345678", "T1019", ["U6"], 4),
            visit("V-2010", date(2026, 11, 24), "598765432", "S5130", [], 12),
            visit("V-2011", date(2026, 11, 26), "598765432", "S5130", [], 12)]


def test_clm_04_each_line_matches_its_verified_visit(sample):
    assert edits.clm_04_lines_match_visits(read_837(sample("clean_837p.txt")), verified_visits()) == []
    text = sample("clm04_units_over_evv.txt")
    assert validate_x12(text) == []
    assert check_837(text, AS_OF).findings == []  # nothing else is wrong with the file
    finding = only(edits.clm_04_lines_match_visits(read_837(text), verified_visits()))
    assert (finding.rule_id, finding.segment_id, finding.line, finding.claim) == ("CLM-04", "SV1", 29, "C-1001")
    assert finding.message == "line 2 (visit V-2002) bills units 7 but the EVV visit has 6"


def test_clm_04_names_every_field_that_differs_and_lines_without_a_visit(sample):
    visits = verified_visits()
    visits[0] = visits[0].model_copy(update={"provider_npi": "1245319599", "modifiers": ["U6", "UB"],
                                             "date_of_service": date(2026, 11, 25)})
    messages = [f.message for f in edits.clm_04_lines_match_visits(read_837(sample("clean_837p.txt")), visits[:4])]
    assert messages == [
        "line 1 (visit V-2001) bills provider NPI 1234567893 but the EVV visit has 1245319599",
        "line 1 (visit V-2001) bills date of service 2026-11-26 but the EVV visit has 2026-11-25",
        "line 1 (visit V-2001) bills modifiers U6 but the EVV visit has U6:UB",
        "line 2 (visit V-2011) names visit V-2011, which has no verified EVV visit",
    ]


def test_clm_05_a_visit_billed_twice(sample):
    text = sample("clean_837p.txt").replace("REF*6R*V-2011", "REF*6R*V-2010")
    assert validate_x12(text) == []
    finding = only(edits.clm_05_no_split_or_repeat(read_837(text)))
    assert finding.message == "visit V-2010 is billed again: it is already on the line at file line 59"


def test_clm_05_a_void_does_not_split_the_day_it_cancels(sample):
    text = sample("clm05_split_day.txt").replace("12:B:7", "12:B:8")
    assert edits.clm_05_no_split_or_repeat(read_837(text)) == []


def test_clm_07_days_left_to_the_filing_limit(sample):
    deadlines = edits.filing_deadlines(read_837(sample("clean_837p.txt")), 95, AS_OF)
    assert [(d.line.line_control_number, d.deadline, d.days_left) for d in deadlines[:2]] == [
        ("V-2010", date(2027, 2, 27), 90), ("V-2003", date(2027, 2, 28), 91)]
    # The last day is still in time; the day after is not.
    assert edits.clm_07_timely_filing(read_837(sample("clean_837p.txt")), 95, date(2027, 2, 27)) == []
    assert only(edits.clm_07_timely_filing(read_837(sample("clean_837p.txt")), 95, date(2027, 2, 28))).message == (
        "line 1 (visit V-2010) of 2026-11-24 is past the payer's 95-day filing limit: the last day was 2027-02-27 "
        "(1 day ago)")


def test_the_837i_is_checked_over_its_sv2_lines(sample):
    report = check_837(sample("clean_837i.txt"), date(2026, 12, 1))
    assert (report.kind, report.claims, report.lines, report.findings, report.timely_filing) == ("837I", 1, 3, [], None)
    text = sample("clean_837i.txt").replace("SV2*0571*HC:G0156*225*", "SV2*0571*HC:G0156*252*")
    finding = only(check_837(text, date(2026, 12, 1)).findings)
    assert (finding.rule_id, finding.segment_id, finding.claim) == ("CLM-01", "CLM", "HH-3001")
    assert finding.message == "claim total 412.5 is not the sum of its 3 line charges, 439.5"
    bad_npi = sample("clean_837i.txt").replace("XX*1679576722", "XX*1679576723")
    assert only(check_837(bad_npi, date(2026, 12, 1)).findings).rule_id == "CLM-02"


def test_the_837i_period_billed_twice_is_split_across_claims(sample):
    text = sample("clean_837i.txt")
    head, rest = text.split("CLM*HH-3001", 1)
    claim_loop, tail = rest.split("SE*33*0001", 1)
    text = head + "CLM*HH-3001" + claim_loop + "CLM*HH-3002" + claim_loop + "SE*48*0001" + tail
    assert validate_x12(text) == []
    findings = check_837(text, date(2026, 12, 1)).findings
    assert [(f.rule_id, f.claim) for f in findings] == [("CLM-05", "HH-3002")] * 3
    assert findings[1].message == ("G0299 on 2026-11-03 for member 1EG4TE5MK73 is split across claims HH-3001 and "
                                   "HH-3002: bill a day's service on one claim")
