"""Fixtures of the API tests: the app in-process on the real test server and database, and the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio

from visitflow.main import create_app
from visitflow.settings import Settings


@pytest_asyncio.fixture
async def api(client, database_url, tmp_path):
    settings = Settings(database_url=database_url, task_queue="visits-test", data_dir=tmp_path)
    app = create_app(settings, temporal=client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


@pytest.fixture
def t0() -> datetime:
    """Wall-clock now: the API stamps punches with it (EVV-06, no future punches)."""
    return datetime.now(UTC).replace(microsecond=0)
