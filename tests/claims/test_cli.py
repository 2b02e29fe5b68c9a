"""`visitflow check-837`: exit 0 clean, 1 with findings, 2 unreadable; --json for machines."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import typer
from typer.testing import CliRunner

from tests.claims.conftest import FILES
from visitflow.claims.cli import check_837_command
from visitflow.settings import get_settings

AS_OF = ["--as-of", "2026-11-29"]


@pytest.fixture
def check():
    app = typer.Typer()
    app.command("check-837")(check_837_command)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [*args, *AS_OF])


def test_a_clean_file_exits_0(check):
    result = check(str(FILES / "clean_837p.txt"))
    assert result.exit_code == 0, result.output
    assert result.output == (f"{FILES / 'clean_837p.txt'}: clean (837P, 3 claim(s), 5 line(s); first filing "
                             "deadline 2027-02-27 (90 days left))\n")


def test_findings_exit_1_and_are_listed_in_words(check):
    result = check(str(FILES / "clean_837p.txt"), str(FILES / "clm01_total_off.txt"))
    assert result.exit_code == 1
    assert (f"{FILES / 'clm01_total_off.txt'}: 1 finding(s) (837P, 3 claim(s), 5 line(s)" in result.output)
    assert ("  CLM-01 CLM02, line 20, segment 18 of its transaction, claim C-1001: claim total 76.2 is not the sum "
            "of its 2 line charges, 67.2\n") in result.output


def test_the_filing_limit_is_the_payers(check):
    late = str(FILES / "clm07_late.txt")
    result = check(late)
    assert result.exit_code == 1
    # Past the limit it says how far past, never a negative count of days left.
    assert "first filing deadline 2026-11-04 (25 days past the filing limit))" in result.output
    assert check(late, "--filing-limit-days", "365").exit_code == 0  # Medicare's year


@pytest.mark.parametrize("name", ["not_x12.txt", "remit_835.txt", "missing.txt"])
def test_a_file_that_cannot_be_read_as_an_837_exits_2(check, name):
    result = check(str(FILES / "clean_837p.txt"), str(FILES / "rejected_837p.txt"), str(FILES / name))
    assert result.exit_code == 2
    assert f"{FILES / name}: cannot be read as an 837" in result.output


def test_json_lists_every_file(check):
    result = check("--json", str(FILES / "rejected_837p.txt"), str(FILES / "not_x12.txt"))
    assert result.exit_code == 2
    files = json.loads(result.output)["files"]
    rejected, unreadable = files
    assert rejected["readable"] is True and rejected["kind"] == "837P"
    assert [(f["rule_id"], f["segment_id"], f["element"], f["line"]) for f in rejected["findings"]] == [
        ("CLM-06", "SBR", None, 49), ("CLM-06", "DMG", "DMG02", 52), ("CLM-06", "DMG", "DMG03", 52)]
    assert unreadable == {"file": str(FILES / "not_x12.txt"), "readable": False,
                          "error": "First line does not begin with 'ISA': Thi"}


def test_filing_days_are_counted_to_the_agencys_today_by_default():
    app = typer.Typer()
    app.command("check-837")(check_837_command)
    result = CliRunner().invoke(app, ["--json", str(FILES / "clean_837p.txt")])
    filing = json.loads(result.output)["files"][0]["timely_filing"]
    today = datetime.now(ZoneInfo(get_settings().agency_timezone)).date()
    assert filing["as_of"] == today.isoformat()
    assert filing["days_left"] == (date(2027, 2, 27) - today).days


def test_a_file_with_a_latin_1_letter_is_checked_not_refused(check, tmp_path):
    path = tmp_path / "garcia.837"
    path.write_bytes((FILES / "clean_837p.txt").read_text().replace("GARCIA*ROSA", "GARCÍA*ROSA", 1).encode("latin-1"))
    result = check(str(path))
    assert result.exit_code == 1
    assert "CLM-06 NM103, line 15, segment 13 of its transaction: invalid character" in result.output
