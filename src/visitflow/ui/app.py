"""Wiring the UI into the app: its routers, static files, htmx, sessions and CSRF, and error pages that
say what went wrong in words (API paths keep their JSON answers).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visitflow.services.errors import ServiceError
from visitflow.settings import Settings
from visitflow.ui.auth import (
    SESSION_COOKIE,
    CSRFMiddleware,
    session_secret,
)
from visitflow.ui.deps import HTMX_FILE, HTMX_URL, STATIC, SignInRequired, UIDep, UIState, find_htmx, is_htmx, render
from visitflow.ui.routes import (
    admin,
    audit,
    billing,
    changes,
    claims,
    clinician,
    dashboard,
    events,
    missed,
    notices,
    orders,
    remittances,
    revenue,
    signin,
    supervisor,
    visit,
)
from visitflow.ui.routes.signin import _safe_next

log = logging.getLogger("visitflow.ui")

router = APIRouter(include_in_schema=False)


_API_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz")


@router.get(HTMX_URL)
def htmx_script(ui: UIDep) -> Response:
    if ui.htmx is None:
        raise HTTPException(404, "htmx is not installed on this server: run `npm install` in the project.")
    return FileResponse(ui.htmx, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def is_ui_request(request: Request) -> bool:
    return not request.url.path.startswith(_API_PREFIXES)


def error_response(request: Request, status: int, message: str, title: str | None = None) -> Response:
    """A page (or, for htmx, a message in the page's notice area) that says what went wrong in words."""
    title = title or {401: "Please sign in", 403: "Not allowed", 404: "Not found",
                      422: "Please check your request"}.get(status, "Something went wrong")
    if is_htmx(request):
        return render(request, "_flash.html", {"message": f"{title}: {message}", "tone": "error"}, status=status,
                      headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
    return render(request, "error.html", {"status": status, "title": title, "message": message}, status=status)


def _sign_in_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if is_htmx(request):
        # htmx follows HX-Redirect; the page the person was on (their draft is in localStorage) comes back after.
        current = request.headers.get("hx-current-url", "")
        back = "/" + current.split("/", 3)[3] if current.count("/") >= 3 else "/"
        return Response(status_code=401, headers={"HX-Redirect": f"/signin?next={_quote(_safe_next(back))}"})
    return RedirectResponse(f"/signin?next={_quote(here)}", status_code=303)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def install_error_handlers(app: FastAPI) -> None:
    """Wrap the API's handlers: UI paths get pages, API paths keep their JSON answers."""

    def wrap(exc_class: type[Exception], for_ui: Callable[[Request, Any], Response]) -> None:
        for_api = app.exception_handlers.get(exc_class)

        async def handler(request: Request, exc: Exception) -> Response:
            if is_ui_request(request) or for_api is None:
                return for_ui(request, exc)
            result = for_api(request, exc)
            return await result if hasattr(result, "__await__") else result

        app.add_exception_handler(exc_class, handler)

    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401:
            return _sign_in_redirect(request)
        detail = exc.detail if isinstance(exc.detail, str) else "That did not work."
        if exc.status_code == 404 and detail == "Not Found":
            detail = "There is no page at this address."
        if exc.status_code == 405:
            detail = "This address does not take that kind of request."
        return error_response(request, exc.status_code, detail)

    def invalid(request: Request, exc: RequestValidationError) -> Response:
        names = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return error_response(request, 422, f"Some values in the address or form are not valid ({names}).")

    def crashed(request: Request, exc: Exception) -> Response:
        log.exception("UI error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "VisitFlow could not finish this. It has been logged; nothing you "
                                            "typed is lost. Try again in a moment.")

    wrap(ServiceError, lambda request, exc: error_response(request, exc.status, exc.message))
    wrap(StarletteHTTPException, http_error)
    wrap(RequestValidationError, invalid)
    wrap(Exception, crashed)
    app.add_exception_handler(SignInRequired, lambda request, exc: _sign_in_redirect(request))


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` to UI responses, so render times can be read off any page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={ms:.1f}".encode())]
            await send(message)

        await self.app(scope, receive, send_with_timing)


def mount_ui(app: FastAPI, settings: Settings) -> None:
    htmx = find_htmx()
    if htmx is None:
        log.warning("htmx is not installed (%s is missing): run `npm install` in the project directory. "
                    "Pages still render, but buttons and live lists need it.", HTMX_FILE)
    ui = UIState(settings, htmx)
    app.state.ui = ui
    for pages in (signin, clinician, visit, supervisor, billing, claims, remittances, revenue, dashboard, admin,
                  audit, orders, missed, changes, events, notices):
        app.include_router(pages.router)
    app.include_router(router)  # htmx itself
    app.mount("/static/ui", StaticFiles(directory=STATIC), name="ui-static")

    def csrf_rejection(scope: Scope, reason: str) -> Response:
        request = Request(scope)
        if not is_ui_request(request):
            return Response(json.dumps({"detail": reason}), status_code=403, media_type="application/json")
        return error_response(request, 403, reason, title="Not accepted")

    # Added inside-out: timing innermost, then CSRF (needs the session), then the session cookie.
    app.add_middleware(ServerTiming)
    app.add_middleware(CSRFMiddleware, reject=csrf_rejection)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
                       max_age=int(settings.session_max_age.total_seconds()), same_site="lax",
                       https_only=settings.secure_cookies)
    install_error_handlers(app)
