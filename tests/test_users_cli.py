"""`visitflow users ...` through typer's runner, against a real database of its own (SQLite, or a fresh
PostgreSQL database when VISITFLOW_TEST_DATABASE_URL says so), as an agency setting up its first accounts."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Iterator

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from visitflow.cli import app, serve
from visitflow.db.session import get_engine
from visitflow.db.tables import Clinician, User
from visitflow.models import Discipline
from visitflow.security import verify_password
from visitflow.services.users import find_user, token_user
from visitflow.settings import Settings, get_settings


@pytest.fixture
def fresh_url(empty_database_url, tmp_path, monkeypatch) -> Iterator[str]:
    """An empty database, named to the CLI the way an agency would: DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    monkeypatch.chdir(tmp_path)  # no visitflow.toml of the developer's
    get_settings.cache_clear()
    yield empty_database_url
    get_settings.cache_clear()


def run(*args: str, password: str | None = None):
    return CliRunner().invoke(app, ["users", *args], input=None if password is None else password + "\n")


def test_an_agency_sets_up_its_accounts_from_the_shell(fresh_url):
    first = run("add", "Olivia", "--role", "admin", "--name", "Olivia Grant", "--password-stdin",
                password="office password")
    assert first.exit_code == 0, first.output
    assert "added olivia (Olivia Grant): admin, active" in first.output

    engine = get_engine(fresh_url)
    with Session(engine) as s:
        nurse = Clinician(first_name="Carla", last_name="Reyes", discipline=Discipline.RN)
        s.add(nurse)
        s.commit()
        s.refresh(nurse)

    unlinked = run("add", "carla", "--role", "clinician", "--password-stdin", password="nurse password")
    assert unlinked.exit_code == 1 and "must be linked to their clinician record" in unlinked.output
    carla = run("add", "carla", "--role", "clinician", "--clinician", str(nurse.id), "--password-stdin",
                password="nurse password")
    assert carla.exit_code == 0 and f"clinician {nurse.id}" in carla.output
    taken = run("add", "CARLA", "--role", "biller", "--password-stdin", password="another password")
    assert taken.exit_code == 1 and "is taken" in taken.output
    short = run("add", "sam", "--role", "supervisor", "--password-stdin", password="short")
    assert short.exit_code == 1 and "password: String should have at least 8 characters" in short.output

    # Prompted twice when not piped; the two must match.
    prompted = CliRunner().invoke(app, ["users", "add", "bea", "--role", "biller"],
                                  input="billing password\nbilling password\n")
    assert prompted.exit_code == 0, prompted.output
    with Session(engine) as s:
        assert verify_password(find_user(s, "bea").password_hash, "billing password")

    listed = run("list")
    assert listed.exit_code == 0
    assert [line.split()[1] for line in listed.output.splitlines()] == ["bea", "carla", "olivia"]
    assert "last sign-in -" in listed.output

    assert "changed bea (bea): supervisor" in run("set-role", "Bea", "supervisor").output
    assert run("set-role", "bea", "clinician").exit_code == 1  # a clinician needs a clinician record
    assert f"clinician {nurse.id}" in run("set-role", "bea", "clinician", "--clinician", str(nurse.id)).output
    assert "linked" in run("link", "bea", str(nurse.id)).output
    assert "does not exist" in run("link", "bea", "999999").output
    assert "there is no user named 'nobody'" in run("unlock", "nobody").output

    with Session(engine) as s:
        bea = find_user(s, "bea")
        bea.failed_signins = 5
        s.add(bea)
        s.commit()
    assert run("unlock", "bea").exit_code == 0
    reset = run("reset-password", "bea", "--password-stdin", password="a new billing password")
    assert reset.exit_code == 0
    with Session(engine) as s:
        bea = find_user(s, "bea")
        assert bea.failed_signins == 0 and verify_password(bea.password_hash, "a new billing password")


def test_tokens_from_the_shell_and_the_last_admin_stays(fresh_url):
    assert run("add", "olivia", "--role", "admin", "--password-stdin", password="office password").exit_code == 0
    engine = get_engine(fresh_url)

    issued = run("token-issue", "Olivia", "--name", "EVV aggregator sync")
    assert issued.exit_code == 0 and "it is not shown again" in issued.output
    raw = issued.output.strip().splitlines()[-1]
    with Session(engine) as s:
        assert token_user(s, engine, raw).username == "olivia"

    listed = run("token-list", "olivia")
    token_id = listed.output.split()[0]
    assert "EVV aggregator sync" in listed.output and raw[:10] in listed.output and raw not in listed.output
    assert "active" in listed.output and "last used 20" in listed.output

    assert run("token-revoke", token_id).output.startswith(f"revoked token {token_id}")
    with Session(engine) as s:
        assert token_user(s, engine, raw) is None
    assert "revoked 20" in run("token-list", "olivia").output
    assert "API token 999999 not found" in run("token-revoke", "999999").output

    # The only admin cannot be deactivated or demoted: nobody could manage users any more.
    for args in (("deactivate", "olivia"), ("set-role", "olivia", "biller")):
        refused = run(*args)
        assert refused.exit_code == 1 and "the last active admin" in refused.output
    assert run("add", "sam", "--role", "admin", "--password-stdin", password="second admin").exit_code == 0
    assert "deactivated olivia" in run("deactivate", "olivia").output
    with Session(engine) as s:
        assert not find_user(s, "olivia").active
    assert "activated olivia" in run("activate", "olivia").output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_first_start_without_the_demo_says_how_to_make_the_first_admin(fresh_url, env, tmp_path, capsys):
    settings = Settings(database_url=fresh_url, data_dir=tmp_path, api_port=_free_port(),
                        temporal_address=env.client.service_client.config.target_host)
    from visitflow.db.session import migrate

    migrate(fresh_url)
    await start_and_stop(settings)
    assert "There are no users yet" in capsys.readouterr().out

    with Session(get_engine(fresh_url)) as s:
        s.add(User(username="olivia", display_name="Olivia", role="admin", password_hash="x"))
        s.commit()
    await start_and_stop(settings)
    assert "There are no users yet" not in capsys.readouterr().out


async def start_and_stop(settings: Settings) -> None:
    """`visitflow api` as far as its start-up messages, then a clean stop."""
    stop = asyncio.Event()
    stop.set()
    try:
        await serve(settings, run_worker=False, seed=False, stop=stop)
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # serve() took Ctrl-C over; hand it back to pytest
            loop.remove_signal_handler(sig)
