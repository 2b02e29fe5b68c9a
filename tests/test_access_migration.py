"""Migration 0003 on a database that has users from before it: each user's single API token moves into
its own row and keeps working, usernames become lower-case, and the way back restores the old column."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import Session

from visitflow.db.session import MIGRATIONS, get_engine, normalise_url
from visitflow.security import token_digest
from visitflow.services.users import find_user, token_user


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url))
    cfg.attributes["engine"] = get_engine(url)
    return cfg


def add_old_user(engine, username: str, token: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text('INSERT INTO "user" (username, display_name, role, password_hash, api_token_hash, '
                             "active) VALUES (:u, :u, 'admin', 'x', :t, :a)"),
                     {"u": username, "t": token_digest(token) if token else None, "a": True})


def test_tokens_move_into_their_table_and_usernames_are_lowered(empty_database_url):
    url, cfg = empty_database_url, alembic_config(empty_database_url)
    command.upgrade(cfg, "0002")
    engine = get_engine(url)
    add_old_user(engine, "Olivia", "demo-olivia-token")
    add_old_user(engine, "sam", None)

    command.upgrade(cfg, "0003")
    with Session(engine) as s:
        olivia = find_user(s, "OLIVIA")
        assert olivia.username == "olivia" and olivia.failed_signins == 0 and olivia.locked_until is None
        assert token_user(s, engine, "demo-olivia-token").id == olivia.id  # the old token still works
    with engine.connect() as conn:
        moved = conn.execute(sa.text("SELECT name, prefix, revoked_at FROM apitoken")).all()
    assert moved == [("API token (issued before tokens had names)", None, None)]

    command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        back = dict(conn.execute(sa.text('SELECT username, api_token_hash FROM "user"')).all())
    assert back == {"olivia": token_digest("demo-olivia-token"), "sam": None}


def test_names_that_differ_only_in_case_stop_the_upgrade_with_their_names(empty_database_url):
    url, cfg = empty_database_url, alembic_config(empty_database_url)
    command.upgrade(cfg, "0002")
    add_old_user(get_engine(url), "Carla", None)
    add_old_user(get_engine(url), "carla", None)
    with pytest.raises(RuntimeError, match="differ only in upper/lower case.*carla"):
        command.upgrade(cfg, "0003")
