"""`visitflow import-835 FILE... --as USER`: import payers' 835 remittances from a shell or a scheduled job.

The same import as the billing page and POST /api/remittances: paid lines paid, denials back into work with the
payer's words, unmatched lines listed. Importing a file again changes nothing, so a job that picks up every file
in a drop folder may simply run again.

Exit status: 0 when every file was applied in full (or had been before), 1 when a new file had lines that match
no claim, or a denied visit could not yet go back into work (run again), 2 when a file cannot be read as an 835 or the user
may not import.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from visitflow.claims.check import file_text
from visitflow.claims.remittance import RemittanceError, read_835
from visitflow.claims.validate import UnreadableX12
from visitflow.db.session import get_engine
from visitflow.models import Role
from visitflow.services.commands import actor_of
from visitflow.services.errors import ServiceError
from visitflow.services.remittances import ImportOutcome, import_835
from visitflow.services.users import find_user
from visitflow.settings import get_settings
from visitflow.temporal import connect

APPLIED, INCOMPLETE, UNREADABLE = 0, 1, 2


def import_835_command(
    files: Annotated[list[Path], typer.Argument(help="835 (005010X221A1) remittance files")],
    username: Annotated[str, typer.Option("--as", help="the biller or admin importing them (for the record)")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document with every file's outcome")] = False,
) -> None:
    """Import 835 remittances: what the payers paid and denied, applied to VisitFlow's claims."""
    raise typer.Exit(asyncio.run(_import(files, username, as_json)))


async def _import(files: list[Path], username: str, as_json: bool) -> int:
    settings = get_settings()
    engine = get_engine(settings.resolved_database_url)
    with Session(engine) as session:
        try:
            user = find_user(session, username)
        except ServiceError:
            user = None
    if user is None or not user.active or user.role not in (Role.biller, Role.admin):
        typer.echo(f"{username}: no active biller or admin by that name", err=True)
        return UNREADABLE
    client, connected = None, False
    status, reports = APPLIED, []
    for path in files:
        try:
            text = file_text(path.read_bytes())
            parsed = read_835(text)
        except (OSError, UnreadableX12, RemittanceError) as exc:
            why = (exc.strerror or str(exc) if isinstance(exc, OSError) else
                   f"not a readable 835 file: {exc}" if isinstance(exc, UnreadableX12) else str(exc))
            reports.append({"file": str(path), "imported": False, "error": why})
            if not as_json:
                typer.echo(f"{path}: not imported: {why}", err=True)
            status = UNREADABLE
            continue
        if not connected:  # only once there is something to import
            connected = True
            try:
                client = await connect(settings)
            except RuntimeError as exc:
                typer.echo(f"Temporal is not reachable at {settings.temporal_address} ({exc}); the files are "
                           "still imported, and their denials go back into work when you import them again", err=True)
        outcome = await import_835(engine, client, settings, text, parsed, actor_of(user), path.name)
        # A file imported before was reported then; only denials still waiting to go back into work count again.
        unmatched = outcome.remittance.lines_unmatched and not outcome.already_imported
        if status == APPLIED and (unmatched or outcome.still_to_return):
            status = INCOMPLETE
        reports.append({"file": str(path), "imported": True, **outcome.model_dump(mode="json")})
        if not as_json:
            _print(path, outcome)
    if as_json:
        typer.echo(json.dumps({"files": reports}, indent=2))
    return status


def _print(path: Path, outcome: ImportOutcome) -> None:
    r = outcome.remittance
    if outcome.already_imported:
        typer.echo(f"{path}: imported before (remittance {r.id}); nothing changed")
        return
    typer.echo(f"{path}: remittance {r.id} from {r.payer_name}, {r.payment_method} {r.trace_number} "
               f"${r.amount_cents / 100:,.2f}: {r.claims_matched} claim(s), {r.lines_paid} line(s) paid, "
               f"{r.lines_adjusted} paid less, {r.lines_denied} denied, {r.lines_unmatched} unmatched")
    for line in outcome.lines:
        if line.outcome in ("denied", "adjusted"):
            typer.echo(f"  {line.outcome} visit {line.visit_id} on claim {line.claim_control_number}: "
                       f"{'; '.join(line.reasons)} -> back to {line.denial_kind}")
        elif line.outcome in ("unmatched", "not_applied"):
            typer.echo(f"  {line.outcome}: {line.problem}")
    if outcome.still_to_return:
        typer.echo(f"  not yet back in work (Temporal unreachable): {', '.join(outcome.still_to_return)}; "
                   "run the import again", err=True)
