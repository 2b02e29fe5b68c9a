"""Signing in and out.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from visitflow.deps import SessionDep
from visitflow.services.commands import now_utc
from visitflow.services.sessions import session_user
from visitflow.services.users import attempt_sign_in
from visitflow.ui.auth import (
    session_token,
    sign_in,
    sign_out,
)
from visitflow.ui.deps import NAV, UIDep, UserDep, render
from visitflow.ui.forms import FORM, FormState, read_form
from visitflow.ui.present import human_duration

log = logging.getLogger("visitflow.ui")

router = APIRouter(include_in_schema=False)


@router.get("/")
def home(user: UserDep) -> Response:
    return RedirectResponse(NAV[user.role][0][1], status_code=303)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: never an open redirect to somewhere else.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/signin")
def signin_page(request: Request, session: SessionDep, ui: UIDep, next: str = "/",
                signed_out: bool = False) -> Response:
    if session_user(session, request.app.state.engine, ui.settings, session_token(request)) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "signin.html", {"f": FormState(), "next": _safe_next(next), "signed_out": signed_out})


@router.post("/signin")
async def signin(request: Request, session: SessionDep, ui: UIDep) -> Response:
    form = await request.form()
    f = read_form(form, ["username", "password", "next"])
    username = f.need("username", "Enter your username.")
    password = f.need("password", "Enter your password.")
    status, user = 401, None
    if f.ok:
        # Hashing and the database run in a worker thread, and the wait below is a sleep on the loop:
        # a burst of guesses slows down only the guesser.
        outcome = await run_in_threadpool(attempt_sign_in, session, request.app.state.engine, ui.settings,
                                          username, password)
        user = outcome.user
        if outcome.locked_until is not None:
            status = 429
            # Whole minutes, rounded up: "15 min" right after the lock, never "0 min".
            left = int((outcome.locked_until - now_utc()).total_seconds())
            wait = human_duration(timedelta(minutes=max(1, -(-left // 60))))
            f.errors[FORM] = (f"This account is locked after too many failed sign-ins. Try again in {wait} "
                              f"(at {ui.clock.clock(outcome.locked_until)}), or ask the office to unlock it.")
        elif user is None:
            await asyncio.sleep(outcome.delay.total_seconds())
            f.errors["password"] = "That username and password do not match an active account."
    if user is None:
        f.values["password"] = ""  # never echo a password back into the page
        return render(request, "signin.html", {"f": f, "next": _safe_next(f.v("next")), "signed_out": False},
                      status=status)
    await run_in_threadpool(sign_in, request, user)
    request.state.user = user  # the audit trail records who signed in
    log.info("%s signed in", user.username)
    return RedirectResponse(_safe_next(f.v("next")) if f.v("next") not in ("", "/") else NAV[user.role][0][1],
                            status_code=303)


@router.post("/signout")
def signout(request: Request, session: SessionDep, ui: UIDep) -> Response:
    # The audit trail records who signed out: look them up before their session ends.
    request.state.user = session_user(session, request.app.state.engine, ui.settings, session_token(request))
    sign_out(request)
    return RedirectResponse("/signin?signed_out=true", status_code=303)
