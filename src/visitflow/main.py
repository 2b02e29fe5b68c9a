"""The FastAPI application: REST API under /api, the HTMX UI at /, one process."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from visitflow.api import audit, changes, claims, idempotency, missed, orders, reference, remittances, users, visits
from visitflow.api.idempotency import StoreAnswers, forget_old_answers
from visitflow.api.text_guard import reject_unstorable_text
from visitflow.audit import AuditMiddleware
from visitflow.db.session import get_engine
from visitflow.services.errors import ServiceError
from visitflow.process import freeze_what_startup_built, thaw
from visitflow.settings import Settings, get_settings
from visitflow.temporal import connect
from visitflow.ui.app import mount_ui

log = logging.getLogger("visitflow.api")


def settle_for_serving(app: FastAPI) -> None:
    """Once a serving process has started: compile every page's template now rather than on its first request,
    then freeze what start-up built, templates included, out of the garbage collector's way."""
    env = app.state.ui.templates.env
    for name in env.list_templates(extensions=["html"]):
        env.get_template(name)
    freeze_what_startup_built()


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if getattr(app.state, "temporal", None) is None:
            app.state.temporal = await connect(settings)
        housekeeping = asyncio.create_task(forget_old_answers_every(app.state.engine, settings.idempotency_keep))
        settle_for_serving(app)
        yield
        housekeeping.cancel()
        thaw()

    app = FastAPI(title="VisitFlow", version="0.1.0", lifespan=lifespan,
                  description="Every home care visit from schedule to claim. Authenticate with "
                              "`Authorization: Bearer <token>` (demo tokens are printed by `visitflow up`).\n\n"
                              "**Retrying safely.** " + idempotency.RETRY_ADVICE)
    app.state.settings = settings
    app.state.temporal = temporal  # given by `visitflow up` and the tests; else connected at start-up
    app.state.engine = get_engine(settings.resolved_database_url)
    # Every API route takes an Idempotency-Key: a retried state-changing request gets its first answer.
    retry_safe = [Depends(idempotency.claim_idempotency)]
    for api_router in (reference.router, visits.router, users.router, audit.router, claims.router,
                       claims.files_router, remittances.router, orders.router, missed.router, changes.router):
        app.include_router(api_router, dependencies=retry_safe)
    app.add_middleware(StoreAnswers, engine=app.state.engine)
    app.add_exception_handler(idempotency.Replay, idempotency.replay)

    @app.exception_handler(RequestValidationError)
    async def readable_422(_request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            # A check of ours says what is wrong in words; pydantic's "Value error, " in front of it says nothing.
            msg = str(err.get("msg")).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        return JSONResponse(status_code=422, content={"detail": "; ".join(problems),
                                                      "errors": jsonable_errors(exc)})

    @app.exception_handler(ServiceError)
    async def refused(_request: Request, exc: ServiceError):
        # The one place a refusal becomes an answer: the status, the reason in words, the field it is about.
        headers = {"Retry-After": "5"} if exc.status == 503 else None
        return JSONResponse(status_code=exc.status, headers=headers,
                            content={"detail": exc.message, "field": exc.field, **exc.facts})

    @app.exception_handler(RPCError)
    async def temporal_unavailable(request: Request, exc: RPCError):
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:  # e.g. an id Temporal cannot take
            return JSONResponse(status_code=422, content={"detail": f"not accepted: {exc.message}"})
        log.warning("Temporal call failed on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, headers={"Retry-After": "5"}, content={
            "detail": "the workflow service did not answer; try again shortly. A state-changing request may "
                      "have been applied: send it again with the same Idempotency-Key to get its outcome."})

    @app.exception_handler(Exception)
    async def no_stack_traces(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"detail": "internal error; it has been logged"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"ok": True}

    mount_ui(app, settings)
    app.middleware("http")(reject_unstorable_text)  # before sessions, CSRF and routes
    # Outermost, so it records every answer, including the refusals of the layers above.
    app.add_middleware(AuditMiddleware, engine=app.state.engine, behind_proxy=settings.behind_proxy)
    return app


async def forget_old_answers_every(engine, keep: timedelta, every: timedelta = timedelta(minutes=10)) -> None:
    """Stored answers to keyed requests are kept for `keep` (retries come within minutes), then deleted."""
    while True:
        try:
            while await run_in_threadpool(forget_old_answers, engine, keep):
                pass
        except Exception:
            log.exception("could not delete old idempotent answers; trying again later")
        await asyncio.sleep(every.total_seconds())


def jsonable_errors(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
