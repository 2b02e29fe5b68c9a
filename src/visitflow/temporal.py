"""Connecting to Temporal and running the worker (one way, used by the CLI, the API and the tests)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from visitflow.activities.release import ReleaseActivities
from visitflow.activities.visits import VisitActivities
from visitflow.settings import Settings
from visitflow.workflows.release import ReleaseWorkflow
from visitflow.workflows.visit import VisitWorkflow


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=pydantic_data_converter)


# When a worker dies, the visits cached on it wait this long before another worker takes their next task.
STICKY_TIMEOUT = timedelta(seconds=3)
# On a clean stop, running activities (milliseconds each) get this long to finish before they are cancelled.
DRAIN_FOR = timedelta(seconds=5)


def build_worker(client: Client, task_queue: str, engine: Engine, max_activity_threads: int = 16) -> Worker:
    activities = VisitActivities(engine).all() + ReleaseActivities(engine).all()
    return Worker(
        client, task_queue=task_queue, workflows=[VisitWorkflow, ReleaseWorkflow], activities=activities,
        activity_executor=ThreadPoolExecutor(max_workers=max_activity_threads),
        max_concurrent_activities=max_activity_threads,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT, graceful_shutdown_timeout=DRAIN_FOR,
    )
