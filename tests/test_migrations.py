"""The Alembic migrations build exactly the schema the tables declare (on SQLite and PostgreSQL)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import visitflow.db.tables  # noqa: F401


def test_migrations_match_the_tables(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"tables and migrations differ; add a migration: {diff}"
