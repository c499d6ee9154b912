"""Fixtures of the fault tests: a database of their own on the shared server, or private
servers for the tests that restart them; worker processes that are always stopped."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest

from tests.faults.processes import WorkerProcesses
from tests.faults.services import PrivatePostgres, PrivateRabbitMQ, available
from tests.support import Services
from worker.amqp import topology
from worker.db import init_connection
from worker.ops.demo import ensure_demo_schema
from worker.ops.migrate import apply_migrations
from worker.store.projects import create_project

REPO = Path(__file__).resolve().parents[2]
PRODUCTS = ("p1", "p2", "p3")
PRODUCTS_TOML = "".join(
    f'[products.{name}]\nhandler = "postgres"\nnamespaces = ["userId", "email"]\n'
    f'statements = ["DELETE FROM demo.sessions WHERE user_id = ANY($1)"]\n'
    for name in PRODUCTS
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def private_rabbitmq() -> Iterator[PrivateRabbitMQ]:
    if not available():
        pytest.skip("rabbitmq-server and postgres binaries are needed for restart tests")
    node = PrivateRabbitMQ()
    try:
        node.start()
        yield node
    finally:
        node.remove()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not available():
        pytest.skip("rabbitmq-server and postgres binaries are needed for restart tests")
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


async def make_database(admin_url: str) -> tuple[str, str]:
    """A fresh migrated database with the demo schema and a project: (url, projectKey)."""
    name = f"dwfault_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    # The path names the database; the query (target_session_attrs of a multi-host URL) stays.
    url = urlsplit(admin_url)._replace(path=f"/{name}").geturl()
    await apply_migrations(url, REPO / "migrations")
    connection = await asyncpg.connect(url)
    try:
        await ensure_demo_schema(connection)
        _, key = await create_project(connection, "org-faults", "faults")
    finally:
        await connection.close()
    return url, key


async def drop_database(admin_url: str, url: str) -> None:
    with contextlib.suppress(Exception):
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def fault_setup(
    admin_database_url: str, amqp_url: str, tmp_path: Path, products_toml: str = PRODUCTS_TOML
) -> AsyncIterator[tuple[WorkerProcesses, asyncpg.Pool, str]]:
    """Database, products file (products p1, p2, p3), worker processes; everything removed afterwards."""
    url, key = await make_database(admin_database_url)
    products_file = tmp_path / "products.toml"
    products_file.write_text(products_toml)
    prefix = f"tf{secrets.token_hex(4)}"
    workers = WorkerProcesses(url, amqp_url, prefix, products_file, tmp_path)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4, init=init_connection)
    assert pool is not None
    try:
        yield workers, pool, key
    finally:
        print(f"[worker warnings and errors]\n{workers.trouble()}")  # noqa: T201 - shown for a failed test only
        workers.stop_all()
        await pool.close()
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(amqp_url, timeout=10)
            try:
                await topology.delete(await connection.channel(), workers.topology())
            finally:
                await connection.close()
        await drop_database(admin_database_url, url)


@pytest.fixture
async def shared_setup(services: Services, tmp_path: Path) -> AsyncIterator[tuple[WorkerProcesses, asyncpg.Pool, str]]:
    async with fault_setup(services.admin_database_url, services.amqp_url, tmp_path) as setup:
        yield setup
