"""Database engine and migrations. One engine per process, made on demand (never at import)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_LOCK = "visitflow_write_lock"  # execution option: lock for writing from the first statement


def normalise_url(url: str) -> str:
    # PostgreSQL goes through psycopg 3; accept the plain URLs people paste.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # The pool serves the worker's activity threads and the API's requests in one process.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=32, max_overflow=32)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets the API read while the worker writes
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; Temporal holds the truth anyway
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # pysqlite would only BEGIN before the first write, so a read-then-write transaction could
            # act on stale reads; we begin ourselves (below) so every transaction is one snapshot.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # WRITE_LOCK transactions take the write lock up front: SQLite's stand-in for SELECT ... FOR UPDATE.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_LOCK) else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


_writers: dict[int, threading.Lock] = {}


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction holds the write lock from its first statement.

    On PostgreSQL that is plain SELECT ... FOR UPDATE inside. SQLite has one writer at a time; within
    this process the writers queue on a lock and hand over at once, instead of SQLite's sleep-and-retry
    busy handler (which costs milliseconds per wait and hundreds under load).
    """
    locked = engine.execution_options(**{WRITE_LOCK: True})
    if engine.dialect.name != "sqlite":
        with Session(locked) as session:
            yield session
        return
    with _writers.setdefault(id(engine), threading.Lock()), Session(locked) as session:
        yield session


def migrate(url: str) -> None:
    """Bring the database to the newest schema (Alembic upgrade head)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url))
    cfg.attributes["engine"] = get_engine(url)
    command.upgrade(cfg, "head")
    _first_rollups(get_engine(url))


def _first_rollups(engine: Engine) -> None:
    """Visits but no rollups: a database from before migration 0006 (every projected visit counts at least its
    state). Fill the dashboard's columns from the snapshots and count the rollups once, so the dashboard is
    right from the first start after the upgrade; afterwards the projection keeps them."""
    from sqlalchemy import select

    from visitflow.db.tables import Visit, VisitRollup
    from visitflow.services.rollups import rebuild

    with engine.connect() as conn:
        todo = (conn.execute(select(Visit.id).limit(1)).first() is not None
                and conn.execute(select(VisitRollup.figure).limit(1)).first() is None)
    if todo:
        rebuild(engine, from_snapshots=True)
