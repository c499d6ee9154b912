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
from worker.ops.migrate import apply_migrations

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
    files = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert sorted(applied) == files  # every file applied by exactly one of the four
    assert await apply_migrations(empty_database, MIGRATIONS) == []  # re-running is a no-op
    connection = await asyncpg.connect(empty_database)
    try:
        rows = await connection.fetch("SELECT name FROM schema_migrations ORDER BY name")
    finally:
        await connection.close()
    assert [row["name"] for row in rows] == files


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
