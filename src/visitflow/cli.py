"""`visitflow` command line: `up` runs everything with embedded defaults; the rest run one piece each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

import typer
import uvicorn

from visitflow.claims.cli import check_837_command
from visitflow.db.session import get_engine, migrate
from visitflow.remittance_cli import import_835_command
from visitflow.process import freeze_what_startup_built
from visitflow.services.users import count_users
from visitflow.settings import Settings, get_settings
from visitflow.users_cli import users_app

app = typer.Typer(help="VisitFlow: home care visits from schedule to claim, on Temporal.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.command("check-837")(check_837_command)
app.command("import-835")(import_835_command)
log = logging.getLogger("visitflow")


# A clean stop (Ctrl-C, SIGTERM) ends within about 15 s with requests in flight: open requests get API_DRAIN to
# finish, then the worker gets WORKER_DRAIN. Nothing is lost either way: visits live in Temporal.
API_DRAIN = timedelta(seconds=5)
WORKER_DRAIN = timedelta(seconds=7)


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `up` stops the API, the worker and Temporal in order."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def _connect_with_retry(settings: Settings, timeout: float = 60.0):
    from visitflow.temporal import connect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await connect(settings)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def serve(settings: Settings, run_api: bool = True, run_worker: bool = True, seed: bool = False,
                stop: asyncio.Event | None = None) -> None:
    """Run the worker and/or the API until `stop` is set (or SIGINT/SIGTERM)."""
    from visitflow.temporal import build_worker

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    client = await _connect_with_retry(settings)
    engine = get_engine(settings.resolved_database_url)
    tasks: list[asyncio.Task] = []
    worker = (build_worker(client, settings.task_queue, engine, max_cached_visits=settings.worker_cached_visits,
                           timezone=settings.agency_timezone)
              if run_worker else None)
    if worker:
        freeze_what_startup_built()
        tasks.append(asyncio.create_task(worker.run(), name="worker"))
        from visitflow.services.commands import resume_unfinished_releases

        # A release batch stored by an API that died before starting its workflow is finished now.
        resumed = await resume_unfinished_releases(engine, client, settings)
        if resumed:
            typer.echo(f"finishing {len(resumed)} interrupted release batch(es): {', '.join(resumed)}")
        from visitflow.services.orders import resume_order_chases

        # An order stored by an API that died before starting its signature chase (ORD-03) is chased now.
        await resume_order_chases(engine, client, settings)
        from visitflow.services.changes import resume_undelivered_events

        # A change stored by an API that died before starting its event deliveries has them started now.
        await resume_undelivered_events(engine, client, settings)
    server = None
    if run_api:
        from visitflow.main import create_app  # here: a worker alone never loads the API and the UI

        config = uvicorn.Config(create_app(settings, client), host=settings.api_host, port=settings.api_port,
                                log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=int(API_DRAIN.total_seconds()))
        server = _QuietServer(config)
        tasks.append(asyncio.create_task(server.serve(), name="api"))
    if seed:
        from visitflow.seed import seed_demo

        summary = await seed_demo(settings, client)
        if summary:
            typer.echo(summary)
    if run_api and count_users(engine) == 0:
        typer.echo("There are no users yet. Create the first admin (it asks for a password):\n"
                   "  visitflow users add NAME --role admin")
    typer.echo(f"VisitFlow is up: http://{settings.api_host}:{settings.api_port}  (API docs at /docs)"
               if run_api else "VisitFlow worker is running")
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    typer.echo("stopping VisitFlow...")
    # First the API, while the worker still runs: requests in flight are waiting on visit Updates that
    # only the worker can finish. Then the worker, which lets running activities end. Every step is bounded.
    if server:
        server.should_exit = True
        await asyncio.wait([t for t in tasks if t.get_name() == "api"], timeout=API_DRAIN.total_seconds() + 1)
    if worker:
        try:
            await asyncio.wait_for(worker.shutdown(), timeout=WORKER_DRAIN.total_seconds())
        except TimeoutError:
            log.warning("the worker did not stop within %s; its tasks move to the next worker", WORKER_DRAIN)
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task is not stopper and task.exception():
            raise task.exception()


@app.command()
def up(seed: bool = typer.Option(None, help="Seed the demo agency when the database is empty")) -> None:
    """Run everything: Temporal dev server, migrations, worker and API (and demo data on an empty database)."""
    from visitflow.devserver import DevServer

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(settings.resolved_database_url)
    server = None
    if settings.embedded_temporal:
        host, port = settings.temporal_address.rsplit(":", 1)
        server = DevServer(settings.data_dir, host=host, port=int(port),
                           ui_port=int(settings.temporal_ui_url.rsplit(":", 1)[1]))
        typer.echo(f"starting the Temporal dev server on {server.address} (UI {settings.temporal_ui_url})")
        server.start()
    try:
        asyncio.run(serve(settings, seed=settings.seed_demo if seed is None else seed))
    finally:
        if server:
            server.stop()
        typer.echo("VisitFlow stopped; open visits resume at the next start.")


@app.command()
def worker() -> None:
    """Run a worker only (scale-out: as many as you like against one Temporal cluster)."""
    logging.basicConfig(level=logging.INFO)
    settings = get_settings()
    asyncio.run(serve(settings, run_api=False))


@app.command()
def api() -> None:
    """Run the API and UI only."""
    logging.basicConfig(level=logging.INFO)
    settings = get_settings()
    migrate(settings.resolved_database_url)
    asyncio.run(serve(settings, run_worker=False))


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply database migrations (Alembic upgrade head)."""
    settings = get_settings()
    migrate(settings.resolved_database_url)
    typer.echo(f"database is at the newest schema: {settings.resolved_database_url}")


@app.command("rebuild-rollups")
def rebuild_rollups(from_snapshots: bool = typer.Option(
        False, "--from-snapshots",
        help="First copy the dashboard's columns (note submitted, waiting since) out of every visit's snapshot "
             "(`migrate` does this once for a database whose visits were projected before migration 0006)")
        ) -> None:
    """Recompute the dashboard's and the team table's counts from the visits, and the money figures
    (receivables, denials, payments) from the claims and remittances (their writers keep them current; this
    repairs them, or fills them after an upgrade). Projections, claim and remittance writers wait while it runs."""
    from visitflow.db.session import write_session
    from visitflow.services.revenue import rebuild_revenue_rollups
    from visitflow.services.rollups import rebuild

    settings = get_settings()
    migrate(settings.resolved_database_url)
    engine = get_engine(settings.resolved_database_url)
    rows = rebuild(engine, from_snapshots=from_snapshots)
    with write_session(engine) as session:
        days, months, paid_days = rebuild_revenue_rollups(session)
        session.commit()
    typer.echo(f"Rollups rebuilt: {rows} rows; money: {days} days of receivables, {months} denial rows, "
               f"{paid_days} days of payments.")


if __name__ == "__main__":  # last, so `python -m visitflow.cli` knows every command above
    app()
