"""`python -m bench --reads` at a tiny size, so the benchmark keeps running (its numbers are not checked here)."""

from __future__ import annotations

import os

from bench.reads import ROUTES, run_reads


def test_the_read_benchmark_loads_and_times_every_route():
    said: list[str] = []
    base = os.environ.get("VISITFLOW_TEST_DATABASE_URL", "")
    results = run_reads(300, base if base.startswith("postgres") else None, rounds=2, log=said.append,
                        explain=True)
    assert [label for label, *_ in results] == [label for label, *_ in ROUTES]
    assert all(status == 200 for *_, status in results), results
    assert all(p50 > 0 and p95 >= p50 for _, p50, p95, _, _ in results)
    assert any("300 visits on" in line for line in said)
