"""`python -m bench`: VisitFlow's visit lifecycle against a bare workflow of the same shape (prints numbers).

`--open-visits N`: worker memory with N visits waiting for their notes; `--workers N`: 1 and then N worker
processes against one Temporal server (bench/scale.py). The workflows live in `bench.lifecycle`, an importable
module, so the workflow sandbox can re-import them.
"""

import asyncio

import typer

from visitflow.settings import get_settings


def main(visits: int = typer.Option(100, help="Visits to drive through the lifecycle (per side / per worker count)"),
         concurrency: int = typer.Option(20, help="Visits in flight at once"),
         open_visits: int = typer.Option(0, "--open-visits", help="Instead: memory with this many open visits"),
         workers: int = typer.Option(0, "--workers", help="Instead: scale-out to this many worker processes"),
         sample: int = typer.Option(20, help="--open-visits: the earliest visits then taken through to release"),
         cached_visits: int = typer.Option(None, "--cached-visits",
                                           help="--open-visits: the worker's workflow cache (default: settings)"),
         postgres: str = typer.Option(None, help="--open-visits/--workers: a PostgreSQL server URL to create a "
                                                 "scratch database on (dropped after) instead of SQLite")) -> None:
    if open_visits and workers:
        raise typer.BadParameter("choose --open-visits or --workers, not both")
    settings = get_settings()
    if open_visits:
        from bench.scale import run_open_visits

        asyncio.run(run_open_visits(settings, open_visits, concurrency, sample, cached_visits, postgres))
    elif workers:
        from bench.scale import run_workers

        asyncio.run(run_workers(settings, workers, visits, concurrency, postgres))
    else:
        from bench.lifecycle import run_benchmark

        asyncio.run(run_benchmark(settings, visits, concurrency))


typer.run(main)
