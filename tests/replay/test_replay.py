"""Replay committed histories of real visits against today's VisitWorkflow.

A change that would break running visits (a new command in an old path, a changed order of
activities or timers) fails here. Record fresh histories with
`VISITFLOW_RECORD_HISTORIES=1 pytest tests/workflows` and commit them when a change is intended
and guarded with `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from visitflow.workflows.visit import VisitWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed():
    assert len(HISTORIES) >= 5, "tests/replay/histories/ must hold recorded visit histories"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[VisitWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)
