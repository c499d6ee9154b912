"""Applies the SQL migrations in name order, each once, safely on a live database.

- `migrations/*.sql` only *expand* the schema (new tables, nullable columns, indexes
  built concurrently): the previous release keeps working beside the new one, so they
  are applied before a rolling upgrade (`migrate --pre-deploy`).
- `migrations/post/*.sql` *contract* it (drop what only the previous release needed):
  applied by `migrate` once no process of that release runs any more. A fresh install
  applies both at once.
- A file runs in one transaction under `lock_timeout`: a migration that would queue
  behind a long transaction (and block every writer behind itself) gives up and is
  tried again a little later, up to LOCK_ATTEMPTS times; so does one that Postgres chose
  as the victim of a deadlock with a writer.
- A file whose first line is `-- migrate: no-transaction` runs statement by statement,
  outside a transaction (CREATE INDEX CONCURRENTLY needs that); its statements must be
  safe to run again. An index that a failed concurrent build left invalid is dropped
  before it is built again.
- An advisory lock serialises migrators: many processes may run `migrate` at once.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import asyncpg
import structlog

from worker.errors import ConfigError

log = structlog.get_logger(__name__)

# Any constant works; it only has to be the same for every process migrating this database.
MIGRATION_LOCK_KEY = 7_420_001
# Short: while a migration waits for its lock, the writers of that table queue behind it.
LOCK_TIMEOUT = "2s"
LOCK_ATTEMPTS = 20
NO_TRANSACTION = "-- migrate: no-transaction"
POST_DEPLOY = "post"
CONCURRENT_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.I)


class MigrationError(ConfigError):
    pass


def migration_files(directory: Path, post_deploy: bool = True) -> list[tuple[str, Path]]:
    """(name recorded in schema_migrations, path), in the order they are applied."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    files = [(path.name, path) for path in sorted(directory.glob("*.sql"))]
    if post_deploy:
        files += [(f"{POST_DEPLOY}/{path.name}", path) for path in sorted((directory / POST_DEPLOY).glob("*.sql"))]
    return files


def statements(sql: str) -> list[str]:
    """The statements of a no-transaction file: each ends with `;` at the end of a line.
    Keep such files to plain statements: a line ending in `;` inside a string, a comment
    or a `$$` body would be taken for the end of a statement."""
    return [part.strip() for part in re.split(r";\s*$", sql, flags=re.M) if part.strip() and not _only_comments(part)]


def _only_comments(part: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in part.splitlines())


async def _run_without_transaction(connection: asyncpg.Connection, sql: str) -> None:
    for statement in statements(sql):
        index = CONCURRENT_INDEX.search(statement)
        # A concurrent build blocks no writer, but waits for every older transaction: no
        # time limit for it (a limit would only leave an invalid index behind).
        await connection.execute(f"SET lock_timeout = '{'0' if index else LOCK_TIMEOUT}'")
        if index is not None:
            valid = await connection.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", index.group(1)
            )
            if valid is False:
                log.warning("dropping_invalid_index", index=index.group(1))
                await connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.group(1)}")
        await connection.execute(statement)


async def _apply(connection: asyncpg.Connection, name: str, sql: str) -> None:
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            if sql.startswith(NO_TRANSACTION):
                await _run_without_transaction(connection, sql)
                await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            else:
                async with connection.transaction():
                    await connection.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    await connection.execute(sql)
                    await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.DeadlockDetectedError) as error:
            # A deadlock with a writer (a file changing two tables the running release
            # writes in the other order) rolled the whole file back: the same retry.
            log.warning("migration_waiting_for_a_lock", migration=name, attempt=attempt, sqlstate=error.sqlstate)
            await asyncio.sleep(min(10.0, 0.5 * attempt))  # writers go through meanwhile
        else:
            return
    raise MigrationError(
        f"{name}: could not take its locks within {LOCK_TIMEOUT} in {LOCK_ATTEMPTS} tries;"
        " a long transaction holds a table it changes (see pg_stat_activity)"
    )


async def apply_migrations(database_url: str, directory: Path, *, post_deploy: bool = True) -> list[str]:
    """Apply pending migrations (without post-deployment ones when `post_deploy` is
    False); returns the names applied by this call."""
    files = migration_files(directory, post_deploy)
    connection = await asyncpg.connect(database_url)
    applied: list[str] = []
    try:
        # Polled rather than waited for: a migrator blocked in pg_advisory_lock holds a
        # transaction open, which a concurrent index build of the other would wait for.
        while not await connection.fetchval(  # noqa: ASYNC110 - the lock lives in Postgres
            "SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY
        ):
            await asyncio.sleep(0.2)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
            for name, path in files:
                if name in done:
                    continue
                await _apply(connection, name, path.read_text(encoding="utf-8"))
                applied.append(name)
                log.info("migration_applied", migration=name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await connection.close()
    return applied


async def pending_migrations(database_url: str, directory: Path) -> list[str]:
    connection = await asyncpg.connect(database_url)
    try:
        exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done = (
            {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")} if exists else set()
        )
    finally:
        await connection.close()
    return [name for name, _ in migration_files(directory) if name not in done]
