"""`python -m bench`: VisitFlow's visit lifecycle against a bare workflow of the same shape (prints numbers).

The workflows live in `bench.lifecycle`, an importable module, so the workflow sandbox can re-import them.
"""

import asyncio

import typer

from bench.lifecycle import run_benchmark
from visitflow.settings import get_settings


def main(visits: int = typer.Option(100, help="Visits to drive through the lifecycle"),
         concurrency: int = typer.Option(20, help="Visits in flight at once")) -> None:
    asyncio.run(run_benchmark(get_settings(), visits, concurrency))


typer.run(main)
