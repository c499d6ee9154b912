"""Migrations apply in order, once, safely from concurrent processes."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import Services
from worker.ops.migrate import apply_migrations, pending_migrations

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


@pytest.fixture
async def empty_database(services: Services) -> AsyncIterator[str]:
    name = f"dwmig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield services.database_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database: str) -> None:
    results = await asyncio.gather(*(apply_migrations(empty_database, MIGRATIONS) for _ in range(4)))
    applied = [name for result in results for name in result]
    files = sorted(
        [p.name for p in MIGRATIONS.glob("*.sql")] + [f"post/{p.name}" for p in MIGRATIONS.glob("post/*.sql")]
    )
    assert sorted(applied) == files  # every file applied by exactly one of the four
    assert await apply_migrations(empty_database, MIGRATIONS) == []  # re-running is a no-op
    connection = await asyncpg.connect(empty_database)
    try:
        rows = await connection.fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        await connection.close()
    assert [row["name"] for row in rows] == files


async def test_pre_deploy_leaves_the_contracting_migrations_for_after_the_rollout(empty_database: str) -> None:
    applied = await apply_migrations(empty_database, MIGRATIONS, post_deploy=False)
    assert applied
    assert not any(name.startswith("post/") for name in applied)
    assert await pending_migrations(empty_database, MIGRATIONS) == sorted(
        f"post/{p.name}" for p in MIGRATIONS.glob("post/*.sql")
    )
    connection = await asyncpg.connect(empty_database)
    try:
        # Both uniquenesses while both releases run: the old one's ON CONFLICT (request_id)
        # still has its index, the new one's (project_id, request_id) too.
        constraint = "SELECT count(*) FROM pg_constraint WHERE conname = 'jobs_request_id_key'"
        assert await connection.fetchval(constraint) == 1
        assert await connection.fetchval("SELECT to_regclass('jobs_project_request_idx') IS NOT NULL")
        await apply_migrations(empty_database, MIGRATIONS)
        assert await connection.fetchval(constraint) == 0
    finally:
        await connection.close()


async def test_a_migration_waits_for_a_long_transaction_instead_of_blocking_everyone(
    empty_database: str, tmp_path: Path
) -> None:
    """Under lock_timeout a migration gives up (and tries again) rather than queue behind a
    long transaction while every writer of the table queues behind the migration."""
    files = tmp_path / "m"
    files.mkdir()
    (files / "0001_t.sql").write_text("CREATE TABLE t (a int);")
    await apply_migrations(empty_database, files)
    (files / "0002_alter.sql").write_text("ALTER TABLE t ADD COLUMN b int;")
    holder = await asyncpg.connect(empty_database)
    writer = await asyncpg.connect(empty_database)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE t IN ACCESS SHARE MODE")  # a long reader
        migrating = asyncio.create_task(apply_migrations(empty_database, files))
        await asyncio.sleep(1.0)
        # While the migration waits its turn, writers are not stuck behind it.
        await asyncio.wait_for(writer.execute("INSERT INTO t (a) VALUES (1)"), 5)
        await transaction.rollback()
        assert await asyncio.wait_for(migrating, 60) == ["0002_alter.sql"]
    finally:
        await holder.close()
        await writer.close()


async def test_a_migration_that_loses_a_deadlock_to_a_writer_is_tried_again(
    empty_database: str, tmp_path: Path
) -> None:
    """A migration changing two tables can deadlock with a writer that takes them in the
    other order (seen in the rolling-upgrade test: 0008 adds triggers on jobs and
    product_status while the old release writes both). Postgres aborts one side; when
    that is the migration, it is tried again, not reported as failed."""
    files = tmp_path / "m"
    files.mkdir()
    (files / "0001_t.sql").write_text("CREATE TABLE a (x int); CREATE TABLE b (x int);")
    await apply_migrations(empty_database, files)
    # The migration's session checks for a deadlock soon after it starts waiting (and so
    # is the victim); the writer's check would come much later.
    admin = await asyncpg.connect(empty_database)
    await admin.execute(f"ALTER DATABASE {empty_database.rsplit('/', 1)[1]} SET deadlock_timeout = '100ms'")
    await admin.close()
    # The pause lets the writer queue for b before the migration asks for a.
    (files / "0002_both.sql").write_text(
        "ALTER TABLE b ADD COLUMN y int; SELECT pg_sleep(0.5); ALTER TABLE a ADD COLUMN y int;"
    )
    writer = await asyncpg.connect(empty_database)
    try:
        await writer.execute("SET deadlock_timeout = '5s'")
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute("INSERT INTO a (x) VALUES (1)")  # holds a
        migrating = asyncio.create_task(apply_migrations(empty_database, files))
        await asyncio.sleep(0.25)  # the migration holds b
        await writer.execute("INSERT INTO b (x) VALUES (1)")  # waits for b, then for a: a deadlock
        await transaction.commit()
        assert await asyncio.wait_for(migrating, 60) == ["0002_both.sql"]
    finally:
        await writer.close()


async def test_a_no_transaction_migration_rebuilds_an_index_a_failed_concurrent_build_left(
    empty_database: str, tmp_path: Path
) -> None:
    files = tmp_path / "m"
    files.mkdir()
    (files / "0001_t.sql").write_text("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1);")
    await apply_migrations(empty_database, files)
    (files / "0002_index.sql").write_text(
        "-- migrate: no-transaction\n-- unique on a duplicate: the concurrent build fails\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"
    )
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        await apply_migrations(empty_database, files)
    connection = await asyncpg.connect(empty_database)
    try:
        assert await connection.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass") is False
        await connection.execute("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
        assert await apply_migrations(empty_database, files) == ["0002_index.sql"]
        assert await connection.fetchval("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass")
    finally:
        await connection.close()


async def test_upgrade_queues_existing_jobs_and_frees_job_updates_from_indexes(
    empty_database: str, tmp_path: Path
) -> None:
    """0002 on a database with work in it: scheduled jobs enter the dispatch queue, ended
    jobs with identity values the retention queue; afterwards no index on `jobs` names a
    column that a status change writes (those updates stay HOT)."""
    first = tmp_path / "first"
    first.mkdir()
    (first / "0001_init.sql").write_text((MIGRATIONS / "0001_init.sql").read_text(encoding="utf-8"))
    await apply_migrations(empty_database, first)
    connection = await asyncpg.connect(empty_database)
    try:
        await connection.execute(
            """
            INSERT INTO organizations (id) VALUES ('o');
            INSERT INTO projects (key, org_id, name) VALUES ('k', 'o', 'p');
            INSERT INTO jobs (request_id, project_id, action, identity_count, chunk_size, status, start_at, finished_at,
                              identities_hashed_at)
            VALUES ('due', 1, 'delete_user_data', 1, 10, 'scheduled', NULL, NULL, NULL),
                   ('later', 1, 'delete_user_data', 1, 10, 'scheduled', '2100-01-01Z', NULL, NULL),
                   ('busy', 1, 'delete_user_data', 1, 10, 'running', NULL, NULL, NULL),
                   ('ended', 1, 'delete_user_data', 1, 10, 'completed', NULL, '2020-01-01Z', NULL),
                   ('hashed', 1, 'delete_user_data', 1, 10, 'completed', NULL, '2020-01-01Z', '2020-02-01Z');
            """
        )
        await apply_migrations(empty_database, MIGRATIONS)
        queued = await connection.fetch(
            "SELECT j.request_id, q.due_at = coalesce(j.start_at, j.created_at) AS due_ok"
            " FROM dispatch_queue q JOIN jobs j ON j.id = q.job_id ORDER BY q.due_at"
        )
        assert [(row["request_id"], row["due_ok"]) for row in queued] == [("due", True), ("later", True)]
        ended = await connection.fetch(
            "SELECT j.request_id FROM retention_queue q"
            " JOIN jobs j ON j.id = q.job_id AND q.finished_at = j.finished_at"
        )
        assert [row["request_id"] for row in ended] == ["ended"]

        blocking = await connection.fetch(
            """
            SELECT i.indexrelid::regclass::text AS name FROM pg_index i
            WHERE i.indrelid = 'jobs'::regclass AND EXISTS (
                SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = i.indrelid
                  AND a.attname IN ('status', 'errors', 'updated_at', 'dispatched_at', 'finished_at',
                                    'identities_hashed_at')
                  AND (a.attnum = ANY(i.indkey)
                       OR pg_get_expr(i.indpred, i.indrelid) LIKE '%' || a.attname || '%'
                       OR pg_get_expr(i.indexprs, i.indrelid) LIKE '%' || a.attname || '%'))
            """
        )
        assert [row["name"] for row in blocking] == []
    finally:
        await connection.close()


async def test_work_order_ids_are_time_ordered_uuids(empty_database: str) -> None:
    await apply_migrations(empty_database, MIGRATIONS)
    connection = await asyncpg.connect(empty_database)
    try:
        ids = [await connection.fetchval("SELECT deletion_time_ordered_uuid()") for _ in range(3)]
        await asyncio.sleep(0.005)
        ids += [await connection.fetchval("SELECT deletion_time_ordered_uuid()") for _ in range(3)]
        assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
        assert len(set(ids)) == len(ids)
        # The first 48 bits are Unix milliseconds: now, and increasing across the sleep.
        millis = [u.int >> 80 for u in ids]
        assert abs(millis[0] / 1000 - time.time()) < 60
        assert max(millis[:3]) < min(millis[3:])
    finally:
        await connection.close()
