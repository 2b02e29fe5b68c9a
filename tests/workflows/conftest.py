"""Fixtures of the workflow tests."""

from __future__ import annotations

from datetime import datetime

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment


@pytest_asyncio.fixture
async def t0(env: WorkflowEnvironment) -> datetime:
    """The test server's clock: time skipping in earlier tests moves it ahead of the wall clock."""
    return (await env.get_current_time()).replace(microsecond=0)
