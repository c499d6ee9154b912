"""Migrations apply in order, once, safely from concurrent processes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import Services
from worker.migrate import apply_migrations

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


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
