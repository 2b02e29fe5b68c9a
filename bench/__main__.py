"""`python -m bench`: VisitFlow's visit lifecycle against a bare workflow of the same shape (prints numbers).
`python -m bench --reads`: the lists, queues and dashboard timed on a fresh database of N visits (bench/reads.py).

`--open-visits N`: worker memory with N visits waiting for their notes; `--workers N`: 1 and then N worker
processes against one Temporal server (bench/scale.py). The workflows live in `bench.lifecycle`, an importable
module, so the workflow sandbox can re-import them.
"""

import asyncio

import typer

from visitflow.settings import get_settings

READS_DEFAULT_VISITS = 1_000_000
LIFECYCLE_DEFAULT_VISITS = 100


def main(visits: int = typer.Option(None, help="Visits: driven through the lifecycle (default 100, per side / per "
                                               "worker count), or loaded for --reads (default 1,000,000)"),
         concurrency: int = typer.Option(20, help="Visits in flight at once"),
         reads: bool = typer.Option(False, "--reads", help="Instead: time the read routes at N visits"),
         database_url: str = typer.Option(None, help="--reads: a PostgreSQL server URL to create a fresh database "
                                                     "on (default: a SQLite temp file)"),
         rounds: int = typer.Option(20, help="--reads: timed requests per route"),
         explain: bool = typer.Option(False, "--explain", help="--reads: also print every query plan that scans "
                                                               "or sorts a visit, event, hold or task table"),
         open_visits: int = typer.Option(0, "--open-visits", help="Instead: memory with this many open visits"),
         workers: int = typer.Option(0, "--workers", help="Instead: scale-out to this many worker processes"),
         sample: int = typer.Option(20, help="--open-visits: the earliest visits then taken through to release"),
         cached_visits: int = typer.Option(None, "--cached-visits",
                                           help="--open-visits: the worker's workflow cache (default: settings)"),
         postgres: str = typer.Option(None, help="--open-visits/--workers: a PostgreSQL server URL to create a "
                                                 "scratch database on (dropped after) instead of SQLite")) -> None:
    if sum(map(bool, (reads, open_visits, workers))) > 1:
        raise typer.BadParameter("choose one of --reads, --open-visits and --workers")
    if reads:
        from bench.reads import run_reads

        run_reads(visits or READS_DEFAULT_VISITS, database_url, rounds, explain=explain)
        return
    settings = get_settings()
    if open_visits:
        from bench.scale import run_open_visits

        asyncio.run(run_open_visits(settings, open_visits, concurrency, sample, cached_visits, postgres))
    elif workers:
        from bench.scale import run_workers

        asyncio.run(run_workers(settings, workers, visits or LIFECYCLE_DEFAULT_VISITS, concurrency, postgres))
    else:
        from bench.lifecycle import run_benchmark

        asyncio.run(run_benchmark(settings, visits or LIFECYCLE_DEFAULT_VISITS, concurrency))


typer.run(main)
