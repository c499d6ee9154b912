"""Applies `migrations/*.sql` in name order, each once.

Safe to run from many processes at once: an advisory lock serialises them, and each
file is applied in its own transaction together with its row in schema_migrations.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_KEY = 7_420_001


class MigrationError(Exception):
    pass


def migration_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    return sorted(directory.glob("*.sql"))


async def apply_migrations(database_url: str, directory: Path) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    files = migration_files(directory)
    connection = await asyncpg.connect(database_url)
    applied: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
            for path in files:
                if path.name in done:
                    continue
                async with connection.transaction():
                    await connection.execute(path.read_text(encoding="utf-8"))
                    await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", path.name)
                applied.append(path.name)
                log.info("migration_applied", migration=path.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()
    return applied
