"""Test fixtures: a real RabbitMQ and Postgres, isolated per test run.

Where they come from: DELETION_TEST_AMQP_URL / DELETION_TEST_DATABASE_URL when set (the
development machines and CI); otherwise containers started with testcontainers where a
Docker engine is available; otherwise the tests are skipped locally and fail under CI.

Isolation: each run creates its own database (dropped at the end) and every worker a
test starts uses its own topology prefix (its queues are deleted afterwards), so runs
and tests never see each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.metrics import MetricWrapperBase

from tests.support import Services, WorkerHandle, start_worker, stop_worker
from worker import metrics, tracing
from worker.db import init_connection
from worker.ops.demo import ensure_demo_schema
from worker.ops.migrate import apply_migrations
from worker.roles.spec import RoleSpec
from worker.settings import Settings
from worker.store.jobs import delete_jobs
from worker.store.projects import create_project

REPO_ROOT = Path(__file__).resolve().parent.parent


def _containers() -> Iterator[Services]:
    try:
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415
        from testcontainers.rabbitmq import RabbitMqContainer  # noqa: PLC0415

        with PostgresContainer("postgres:16", driver=None) as postgres, RabbitMqContainer("rabbitmq:3.13") as rabbit:
            amqp = f"amqp://guest:guest@{rabbit.get_container_host_ip()}:{rabbit.get_exposed_port(5672)}/"
            yield Services(amqp_url=amqp, admin_database_url=postgres.get_connection_url())
    except Exception as error:  # noqa: BLE001 - no Docker engine: skip or fail below
        message = f"no RabbitMQ/Postgres for tests (set DELETION_TEST_AMQP_URL and DELETION_TEST_DATABASE_URL): {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    amqp = os.environ.get("DELETION_TEST_AMQP_URL")
    database = os.environ.get("DELETION_TEST_DATABASE_URL")
    if amqp and database:
        yield Services(amqp_url=amqp, admin_database_url=database)
        return
    yield from _containers()


@pytest.fixture(scope="session")
async def database_url(services: Services) -> AsyncIterator[str]:
    """A database of this test run's own, migrated, dropped at the end."""
    name = f"dwtest_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.admin_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = services.database_url(name)
        await apply_migrations(url, REPO_ROOT / "migrations")
        connection = await asyncpg.connect(url)
        try:
            await ensure_demo_schema(connection)
        finally:
            await connection.close()
        yield url
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(database_url, min_size=1, max_size=5, init=init_connection)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


@pytest.fixture
def make_settings(services: Services, database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: own topology prefix, products file written from TOML text."""

    def make(products_toml: str = "", **overrides: Any) -> Settings:
        products_file = tmp_path / f"products-{secrets.token_hex(3)}.toml"
        products_file.write_text(products_toml, encoding="utf-8")
        values: dict[str, Any] = {
            "database_url": database_url,
            "amqp_url": services.amqp_url,
            "topology_prefix": f"t{secrets.token_hex(5)}",
            "products_file": products_file,
            "metrics_port": 0,
            "batch_wait_ms": 2,
            "dispatch_interval": 0.2,
            "retry_base_ms": 50,
            "retry_cap_ms": 400,
            "shutdown_timeout": 10,
            "allow_insecure_http": True,  # the tests' HTTP products listen on 127.0.0.1
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def make_project(pool: asyncpg.Pool) -> AsyncIterator[Callable[..., Awaitable[tuple[int, str]]]]:
    """Creates projects (organization `org` by default); deletes them and their jobs afterwards."""
    created: list[int] = []

    async def make(org: str = "org-test", name: str = "test project") -> tuple[int, str]:
        async with pool.acquire() as connection:
            project_id, key = await create_project(connection, org, name)
        created.append(project_id)
        return project_id, key

    yield make
    async with pool.acquire() as connection:
        job_ids = [
            row["id"]
            for row in await connection.fetch("SELECT id FROM jobs WHERE project_id = ANY($1::bigint[])", created)
        ]
        await delete_jobs(connection, job_ids)
        await connection.execute("DELETE FROM projects WHERE id = ANY($1::bigint[])", created)


@pytest.fixture
async def run_worker() -> AsyncIterator[Callable[..., Awaitable[WorkerHandle]]]:
    """Starts WorkerProcess instances in this event loop; stops them and deletes their
    queues afterwards."""
    handles: list[WorkerHandle] = []

    async def start(settings: Settings, roles: list[RoleSpec] | None = None) -> WorkerHandle:
        handle = await start_worker(settings, roles)
        handles.append(handle)
        return handle

    yield start
    for handle in reversed(handles):
        await stop_worker(handle)


@pytest.fixture
async def amqp_channel(services: Services) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(services.amqp_url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await asyncio.wait_for(connection.close(), 10)


@pytest.fixture(autouse=True)
def _forget_role_states() -> Iterator[None]:
    """Role progress lives in the process-wide metrics registry; a role a test made
    (and left holding work) must not read as a stalled role of the next test's worker."""
    yield
    # Every labelled series goes: each test has queues of its own prefix, and a full run
    # left ~100,000 series (histograms per queue) whose rendering, which a health check
    # does, took the event loop from the in-process worker of a later test.
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.clear()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for this test, every finished span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()
