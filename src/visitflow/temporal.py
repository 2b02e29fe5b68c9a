"""Connecting to Temporal and running the worker (one way, used by the CLI, the API and the tests)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from visitflow.activities.changes import ChangeActivities
from visitflow.activities.orders import OrderActivities
from visitflow.activities.release import ReleaseActivities
from visitflow.activities.supervision import SupervisionActivities
from visitflow.activities.visits import VisitActivities
from visitflow.settings import Settings
from visitflow.workflows.events import EventDeliveryWorkflow
from visitflow.workflows.order import OrderWorkflow
from visitflow.workflows.release import ReleaseWorkflow
from visitflow.workflows.supervision import SupervisionWorkflow
from visitflow.workflows.visit import VisitWorkflow


async def connect(settings: Settings) -> Client:
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                data_converter=pydantic_data_converter)


# When a worker dies, the visits cached on it wait this long before another worker takes their next task.
STICKY_TIMEOUT = timedelta(seconds=3)
# On a clean stop, running activities (milliseconds each) get this long to finish before they are cancelled.
DRAIN_FOR = timedelta(seconds=5)
# Visits kept in the worker's memory between their workflow tasks (Settings.worker_cached_visits). Most open
# visits wait hours for a note or a signature; one that is not cached replays its short history when it is next
# acted on, which costs milliseconds. The cache bounds a worker's memory whatever the number of open visits
# (10,000 open visits: bench/README.md, `python -m bench --open-visits 10000`).
MAX_CACHED_VISITS = Settings.model_fields["worker_cached_visits"].default

# The visit workflow's module holds no state (constants, the workflow class, pure helpers), so the sandbox may
# share the worker's copy instead of executing the module again for every visit it starts or replays (3.6 ms of
# CPU per visit, and a copy of the module in every cached visit). Each visit still gets its own sandbox and
# workflow instance. The price: calls made from this module are not checked against the sandbox's restrictions
# (its globals are the worker's modules), so its determinism rests on review and on tests/replay.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(VisitWorkflow.__module__))


def build_worker(client: Client, task_queue: str, engine: Engine, max_activity_threads: int = 16,
                 max_cached_visits: int = MAX_CACHED_VISITS,
                 timezone: str = Settings.model_fields["agency_timezone"].default) -> Worker:
    activities = (VisitActivities(engine).all() + ReleaseActivities(engine).all() + OrderActivities(engine).all()
                  + SupervisionActivities(engine, timezone).all() + ChangeActivities(engine, client, task_queue).all())
    return Worker(
        client, task_queue=task_queue,
        workflows=[VisitWorkflow, ReleaseWorkflow, OrderWorkflow, SupervisionWorkflow, EventDeliveryWorkflow],
        activities=activities,
        workflow_runner=WORKFLOW_RUNNER, max_cached_workflows=max_cached_visits,
        activity_executor=ThreadPoolExecutor(max_workers=max_activity_threads),
        max_concurrent_activities=max_activity_threads,
        sticky_queue_schedule_to_start_timeout=STICKY_TIMEOUT, graceful_shutdown_timeout=DRAIN_FOR,
    )
