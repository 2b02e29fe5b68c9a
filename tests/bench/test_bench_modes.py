"""The bench's scale modes at a tiny size, so they cannot rot. They print numbers; these check only that each mode
runs end to end and that its own correctness checks hold (the numbers themselves are not asserted)."""

from __future__ import annotations

import os

import pytest

from bench.scale import run_open_visits, run_workers
from visitflow.settings import Settings

pytestmark = pytest.mark.e2e  # a dev server and `visitflow worker` processes, like `visitflow up`


async def test_open_visits_finish_after_eviction(capsys):
    # More open visits than the worker caches: the earliest were evicted and must still move on when acted on.
    out = await run_open_visits(Settings(), count=6, concurrency=3, sample=2, cached_visits=2)
    assert out["finished"] == 2 and out["problems"] == 0
    assert out["worker_rss_mib"] > 0 and out["server_rss_mib"] > 0
    assert "evicted from the cache" in capsys.readouterr().out


async def test_two_workers_release_every_visit_once():
    # On PostgreSQL when the suite runs there (a scratch database on that server, dropped afterwards).
    postgres = os.environ.get("VISITFLOW_TEST_DATABASE_URL") or None
    out = await run_workers(Settings(), workers=2, visits=4, concurrency=2, warmup=1, postgres=postgres)
    assert [r["workers"] for r in out["results"]] == [1, 2]
    assert all(r["wrong"] == [] for r in out["results"])
