"""Fixtures of the workflow tests: a time-skipping test server of their own, its worker, and its clock.

These tests skip hours and days. On the server the API and UI tests share, each skip would also fire the timers
of every visit those tests left waiting (re-checks, reminders): a storm that has nothing to do with the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.conftest import register_search_attributes, time_skipping_server_binary
from visitflow.temporal import build_worker


@pytest_asyncio.fixture(scope="package")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server_binary(),
            data_converter=pydantic_data_converter) as own:
        await register_search_attributes(own.client)
        yield own


@pytest_asyncio.fixture(scope="package")
async def worker(env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Worker]:
    async with build_worker(env.client, "visits-test", engine) as running:
        yield running


@pytest.fixture
def client(env: WorkflowEnvironment, worker: Worker) -> Client:
    return env.client


@pytest_asyncio.fixture
async def t0(env: WorkflowEnvironment) -> datetime:
    """The test server's clock: time skipping in earlier tests moves it ahead of the wall clock."""
    return (await env.get_current_time()).replace(microsecond=0)
