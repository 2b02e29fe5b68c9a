"""`visitflow check-837 FILE...`: check 837P/837I files before they go to the payer.

Exit status: 0 when every file is clean, 1 when any has findings, 2 when any cannot be read as X12.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from visitflow.claims.check import DEFAULT_FILING_LIMIT_DAYS, CheckReport, check_837, file_text
from visitflow.claims.validate import UnreadableX12
from visitflow.settings import get_settings

CLEAN, FINDINGS, UNREADABLE = 0, 1, 2


def check_837_command(
    files: Annotated[list[Path], typer.Argument(help="837P (005010X222A1) or 837I (005010X223A2) files")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document with every file's report")] = False,
    filing_limit_days: Annotated[int, typer.Option(
        min=1, help="The payer's timely filing limit in days from the date of service (CLM-07); "
                    "Medicare 365, Texas Medicaid 95")] = DEFAULT_FILING_LIMIT_DAYS,
    as_of: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="The day to count filing days to (default: today)")] = None,
) -> None:
    """Check 837 claim files: pyx12 against the implementation guide, then VisitFlow's claim edits."""
    # Dates of service are the agency's local dates, so "today" is too.
    day = as_of.date() if as_of else datetime.now(ZoneInfo(get_settings().agency_timezone)).date()
    reports, status = [], CLEAN
    for path in files:
        try:
            report = check_837(_read(path), day, filing_limit_days)
        except UnreadableX12 as exc:
            status = UNREADABLE
            reports.append({"file": str(path), "readable": False, "error": str(exc)})
            if not as_json:
                typer.echo(f"{path}: cannot be read as an 837: {exc}", err=True)
            continue
        if report.findings and status == CLEAN:
            status = FINDINGS
        reports.append({"file": str(path), "readable": True, **report.model_dump(mode="json")})
        if not as_json:
            _print(path, report)
    if as_json:
        typer.echo(json.dumps({"files": reports}, indent=2))
    raise typer.Exit(status)


def _read(path: Path) -> str:
    try:
        return file_text(path.read_bytes())
    except OSError as exc:
        raise UnreadableX12(exc.strerror or str(exc)) from exc


def _print(path: Path, report: CheckReport) -> None:
    size = f"{report.kind}, {report.claims} claim(s), {report.lines} line(s)"
    if report.timely_filing and report.timely_filing.soonest_deadline:
        left = report.timely_filing.days_left
        # Past the limit, a negative count of days "left" reads as nonsense: say how far past it is.
        when = (f"{left} day{'' if left == 1 else 's'} left" if left >= 0
                else f"{-left} day{'' if left == -1 else 's'} past the filing limit")
        size += f"; first filing deadline {report.timely_filing.soonest_deadline} ({when})"
    if report.clean:
        typer.echo(f"{path}: clean ({size})")
        return
    typer.echo(f"{path}: {len(report.findings)} finding(s) ({size})")
    for finding in report.findings:
        typer.echo(f"  {finding.describe()}")
