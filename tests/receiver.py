"""A real HTTP receiver of change events for the tests: a small Starlette app served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class Receiver:
    """A real HTTP server on a free port that checks signatures; it can refuse the first few deliveries."""

    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret, self.fail_first = secret, fail_first
        self.attempts: list[str] = []  # event ids, in order of arrival
        self.accepted: list[dict] = []
        self.bad_signatures = 0

    async def handle(self, request: Request):
        body = await request.body()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-visitflow-signature", "")):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        self.attempts.append(request.headers["x-visitflow-event-id"])
        if len(self.attempts) <= self.fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        self.accepted.append(json.loads(body))
        return JSONResponse({"ok": True})


@pytest_asyncio.fixture
async def receivers():
    servers, tasks = [], []

    async def start(receiver: Receiver) -> str:
        app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
        tasks.append(asyncio.create_task(server.serve()))
        servers.append(server)
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started, "the receiver did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
