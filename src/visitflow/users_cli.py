"""`visitflow users ...`: the same user administration as the admin page and /api/users, from a shell.

It is how the first admin of an agency is made (`visitflow users add NAME --role admin`), and how an admin
who has locked themselves out gets back in. It works on the database in the configuration directly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlmodel import Session

from visitflow.db.session import get_engine, migrate, write_session
from visitflow.db.tables import PasswordReset, User, UserCreate, UserUpdate
from visitflow.models import Role
from visitflow.services.errors import ServiceError
from visitflow.services.users import (
    add_user,
    change_user,
    field_problems,
    find_user,
    is_locked,
    issue_token,
    list_tokens,
    list_users,
    reset_password,
    revoke_token,
    set_active,
    unlock,
)
from visitflow.settings import get_settings

users_app = typer.Typer(help="Add and manage users, their sign-in and their API tokens.", no_args_is_help=True)
T = TypeVar("T")
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin, one line")]


@contextmanager
def _database() -> Iterator[Session]:
    settings = get_settings()
    migrate(settings.resolved_database_url)  # a first admin can be added before VisitFlow ever started
    with write_session(get_engine(settings.resolved_database_url)) as session:
        yield session


def _run(operation: Callable[[Session], T]) -> T:
    """Run one operation; a refusal is printed as a sentence and exits with status 1."""
    with _database() as session:
        try:
            return operation(session)
        except ServiceError as err:
            _fail(err.message)
        except ValidationError as err:
            _fail("; ".join(f"{name}: {problem}" for name, problem in field_problems(err).items()))


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _when(dt: datetime | None) -> str:
    return f"{dt:%Y-%m-%d %H:%M} UTC" if dt else "-"


def _describe(user: User) -> str:
    status = "active" if user.active else "deactivated"
    if is_locked(user):
        status += f", locked until {_when(user.locked_until)}"
    link = f", clinician {user.clinician_id}" if user.clinician_id else ""
    return f"{user.username} ({user.display_name}): {user.role.value}{link}, {status}"


@users_app.command("add")
def add(username: str, role: Annotated[Role, typer.Option(help="admin, clinician, supervisor or biller")],
        clinician: Annotated[int | None, typer.Option(help="The clinician record id (clinicians only)")] = None,
        name: Annotated[str | None, typer.Option(help="Display name (default: the username)")] = None,
        password_stdin: PasswordStdin = False) -> None:
    """Add a user (prompts for the password twice unless --password-stdin)."""
    password = _password(password_stdin)
    user = _run(lambda s: add_user(s, UserCreate(username=username, display_name=name or username.strip(),
                                                 role=role, clinician_id=clinician, password=password)))
    typer.echo(f"added {_describe(user)}")


@users_app.command("list")
def list_cmd() -> None:
    """Every user: role, clinician link, active, lock, last sign-in."""
    for user in _run(list_users):
        typer.echo(f"{user.id:>4}  {_describe(user)}; last sign-in {_when(user.last_signed_in_at)}")


@users_app.command("set-role")
def set_role(username: str, role: Role,
             clinician: Annotated[int | None, typer.Option(help="Needed when the new role is clinician")] = None,
             ) -> None:
    """Change a user's role. Another role than clinician drops the clinician link."""
    def change(s: Session) -> User:
        user = find_user(s, username)
        link = (clinician or user.clinician_id) if role == Role.clinician else None
        return change_user(s, user.id, UserUpdate(role=role, clinician_id=link))
    typer.echo(f"changed {_describe(_run(change))}")


@users_app.command("link")
def link(username: str, clinician: int) -> None:
    """Link a clinician's account to their clinician record (whose visits they see and document)."""
    user = _run(lambda s: change_user(s, find_user(s, username).id, UserUpdate(clinician_id=clinician)))
    typer.echo(f"linked {_describe(user)}")


@users_app.command("deactivate")
def deactivate(username: str) -> None:
    """Deactivate: their sessions end and their API tokens stop working at once."""
    typer.echo(f"deactivated {_describe(_run(lambda s: set_active(s, find_user(s, username).id, False)))}")


@users_app.command("activate")
def activate(username: str) -> None:
    """Reactivate a deactivated user (their tokens that were not revoked work again)."""
    typer.echo(f"activated {_describe(_run(lambda s: set_active(s, find_user(s, username).id, True)))}")


@users_app.command("reset-password")
def reset_password_cmd(username: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password; the user's sessions end and a sign-in lock is lifted."""
    password = _password(password_stdin)
    user = _run(lambda s: reset_password(s, find_user(s, username).id, PasswordReset(password=password)))
    typer.echo(f"password reset for {_describe(user)}")


@users_app.command("unlock")
def unlock_cmd(username: str) -> None:
    """Lift a lock left by too many failed sign-ins."""
    typer.echo(f"unlocked {_describe(_run(lambda s: unlock(s, find_user(s, username).id)))}")


@users_app.command("token-issue")
def token_issue(username: str, name: Annotated[str, typer.Option(help="What will use it, e.g. 'EVV sync'")]) -> None:
    """Issue an API token; it is printed once, here, and never again."""
    token, raw = _run(lambda s: issue_token(s, find_user(s, username).id, name))
    typer.echo(f"token {token.id} ({token.name}) for {username}; store it now, it is not shown again:")
    typer.echo(raw)


@users_app.command("token-list")
def token_list(username: str) -> None:
    """A user's API tokens: id, name, first characters, created, last used, revoked."""
    for t in _run(lambda s: list_tokens(s, find_user(s, username).id)):
        state = f"revoked {_when(t.revoked_at)}" if t.revoked_at else "active"
        typer.echo(f"{t.id:>4}  {t.name}  {t.prefix or '(unknown)'}…  created {_when(t.created_at)}  "
                   f"last used {_when(t.last_used_at)}  {state}")


@users_app.command("token-revoke")
def token_revoke(token_id: int) -> None:
    """Revoke an API token by its id (see token-list); the next request with it is refused."""
    token = _run(lambda s: revoke_token(s, token_id))
    typer.echo(f"revoked token {token.id} ({token.name})")
