"""The Alembic migrations build exactly the schema the tables declare (on SQLite and PostgreSQL)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import visitflow.db.tables  # noqa: F401

# Indexes on an expression with a collation: SQLAlchemy reflects PostgreSQL's `lower((x)::text) COLLATE "C"` as
# `lower(x::text)` (the collation dropped) and cannot reflect expression indexes on SQLite at all, so autogenerate
# cannot compare them; the test below checks them by name and definition instead.
NAME_KEYS = {"ix_clinician_first_name_key": "first_name", "ix_clinician_last_name_key": "last_name"}
VISIT_KEYS = {"ix_visit_id_key": "id"}  # a visit found by its id in any case


def _comparable(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and (name in NAME_KEYS or name in VISIT_KEYS))


def test_migrations_match_the_tables(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _comparable})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == [], f"tables and migrations differ; add a migration: {diff}"


def test_clinician_names_are_indexed_as_the_filter_reads_them(engine):
    """The name indexes exist with the expression the query uses (on PostgreSQL, in the "C" collation), so a
    prefix of a name is one index range."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            defs = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes "
                                          "WHERE tablename = 'clinician'")).all())
            for index, column in NAME_KEYS.items():
                assert f'lower(({column})::text) COLLATE "C"' in defs[index], defs
        else:
            defs = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                          "AND tbl_name = 'clinician'")).all())
            for index, column in NAME_KEYS.items():
                assert f"lower({column})" in defs[index].replace('"', ""), defs


def test_visit_ids_are_indexed_as_the_lookup_reads_them(engine):
    """v-8001 finds V-8001 by one index read: the index holds the id as `name_key` writes it."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            defs = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes "
                                          "WHERE tablename = 'visit'")).all())
            assert 'lower((id)::text) COLLATE "C"' in defs["ix_visit_id_key"], defs
        else:
            defs = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                          "AND tbl_name = 'visit'")).all())
            assert "lower(id)" in defs["ix_visit_id_key"].replace('"', ""), defs
