"""`python -m bench`: VisitFlow's visit lifecycle against a bare workflow of the same shape (prints numbers).
`python -m bench --reads`: the lists, queues and dashboard timed on a fresh database of N visits (bench/reads.py).

The workflows live in `bench.lifecycle`, an importable module, so the workflow sandbox can re-import them.
"""

import asyncio

import typer

from visitflow.settings import get_settings

READS_DEFAULT_VISITS = 1_000_000
LIFECYCLE_DEFAULT_VISITS = 100


def main(visits: int = typer.Option(None, help="Visits: driven through the lifecycle (default 100), or loaded "
                                               "for --reads (default 1,000,000)"),
         concurrency: int = typer.Option(20, help="Visits in flight at once (lifecycle)"),
         reads: bool = typer.Option(False, "--reads", help="Time the read routes at N visits instead"),
         database_url: str = typer.Option(None, help="--reads: a PostgreSQL server URL to create a fresh database "
                                                     "on (default: a SQLite temp file)"),
         rounds: int = typer.Option(20, help="--reads: timed requests per route"),
         explain: bool = typer.Option(False, "--explain", help="--reads: also print every query plan that scans "
                                                               "or sorts a visit, event, hold or task table")) -> None:
    if reads:
        from bench.reads import run_reads

        run_reads(visits or READS_DEFAULT_VISITS, database_url, rounds, explain=explain)
        return
    from bench.lifecycle import run_benchmark

    asyncio.run(run_benchmark(get_settings(), visits or LIFECYCLE_DEFAULT_VISITS, concurrency))


typer.run(main)
