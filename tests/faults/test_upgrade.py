"""A rolling upgrade from the previous release, as production does it: the old roles
run; the pre-deployment migrations are applied under them; new roles join and old ones
leave while requests keep coming; then the post-deployment migrations. Every request
becomes one job and completes, whichever release's process took it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import asyncpg
import pytest

from tests.faults.accounting import settle
from tests.faults.conftest import PRODUCTS, PRODUCTS_TOML, drop_database
from tests.faults.helpers import publish_many, wait_for_consumers
from tests.faults.processes import WorkerProcesses
from tests.support import Services
from worker.amqp import connect, topology
from worker.db import init_connection
from worker.ops.demo import ensure_demo_schema
from worker.ops.migrate import apply_migrations
from worker.store.projects import create_project

REPO = Path(__file__).resolve().parents[2]
PREVIOUS_RELEASE = "fb0679f"  # the last release before the outbox (migrations 0001-0002)
OLD_ROLES = ("intake", "dispatch", "acks", *(f"product:{p}" for p in PRODUCTS))


@contextlib.contextmanager
def previous_release(tmp_path: Path) -> Iterator[Path]:
    """The previous release's package and migrations, from this repository's history."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "worker", "schemas", "migrations"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        message = f"release {PREVIOUS_RELEASE} is not in this clone's history: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    target = tmp_path / "previous"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    yield target


@pytest.mark.timeout(600)
async def test_a_rolling_upgrade_loses_and_duplicates_nothing(services: Services, tmp_path: Path) -> None:
    with previous_release(tmp_path) as old:
        name = f"dwupgrade_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(services.admin_database_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = services.database_url(name)
        await apply_migrations(url, old / "migrations")  # the database as the old release left it
        connection = await asyncpg.connect(url)
        await ensure_demo_schema(connection)
        _, key = await create_project(connection, "org-upgrade", "upgrade")
        await connection.close()
        products_file = tmp_path / "products.toml"
        products_file.write_text(PRODUCTS_TOML)
        prefix = f"tu{secrets.token_hex(4)}"
        workers = WorkerProcesses(url, services.amqp_url, prefix, products_file, tmp_path)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4, init=init_connection)
        queues = [f"{prefix}.requests", f"{prefix}.acks", *(f"{prefix}.product.{p}" for p in PRODUCTS)]
        try:
            for role in OLD_ROLES:
                workers.start_command(f"old {role}", "run", "--role", role, code=old)
            await wait_for_consumers(services.amqp_url, queues)
            publishing = asyncio.create_task(publish_many(services.amqp_url, prefix, key, 3000, "during"))
            await asyncio.sleep(1.0)
            # Expand, under load: new tables and columns, an index built concurrently.
            assert await apply_migrations(url, REPO / "migrations", post_deploy=False)
            workers.start_every_role(PRODUCTS)  # the new release joins
            await asyncio.sleep(3.0)
            for role in OLD_ROLES:  # and the old one leaves, gracefully
                workers.stop(f"old {role}")
            during = await publishing
            assert await apply_migrations(url, REPO / "migrations") == [
                "post/0006_validate_product_status.sql",
                "post/0007_request_ids_per_project_only.sql",
            ]
            after = await publish_many(services.amqp_url, prefix, key, 1000, "after")
            books = await settle(pool, during + after, timeout=240)
            logs = workers.logs()
            print(books.line("rolling upgrade from the previous release"))  # noqa: T201
            assert books.lost == books.duplicated == books.overcounted_products == books.identity_mismatches == 0
            assert books.completed == 4000
            assert "role_failed" not in logs  # no role of the new release met what it could not handle
            assert "dead_letter_queue_without_retention" in logs  # the old release made them: said how to fix
        finally:
            workers.stop_all()
            await pool.close()
            amqp = await connect(services.amqp_url)
            try:
                await topology.delete(await amqp.channel(), workers.topology())
                for queue in queues:  # the previous release's per-queue retry queues
                    await (await amqp.channel()).queue_delete(f"{queue}.retry")
            finally:
                await amqp.close()
            await drop_database(services.admin_database_url, url)
