"""Postgres connections: the pool, and which errors are worth retrying."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from worker.errors import FailureClass, classify
from worker.settings import Settings

T = TypeVar("T")
CONTENTION_ATTEMPTS = 4


async def retry_contention(work: Callable[[], Awaitable[T]], attempts: int = CONTENTION_ATTEMPTS) -> T:
    """Run a transaction again when it lost to another (deadlock, serialization failure):
    for calls that answer a person (a cancel over the API) rather than a consumer's batch,
    which has its own rule for it."""
    for attempt in range(1, attempts + 1):
        try:
            return await work()
        except Exception as error:
            if classify(error) is not FailureClass.CONTENTION or attempt == attempts:
                raise
            await asyncio.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pool connection returned without asyncpg's reset statement (RESET ALL, UNLISTEN *,
    CLOSE ALL, pg_advisory_unlock_all): a round trip on every release. Our pooled sessions
    keep no state: settings and advisory locks are transaction-scoped, the dispatcher
    removes its listener before it releases the connection, and asyncpg still rolls back
    an open transaction and drops listener callbacks on release."""

    def get_reset_query(self) -> str:
        return ""


async def init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def init_api_connection(connection: asyncpg.Connection) -> None:
    """The API's reads are planned for their values every time: a prepared statement's
    generic plan is made once for all tenants, and tenants differ by millions of jobs (a
    one-job organization's list walked the whole table in id order, 0.6 s). Planning
    these small queries costs a fraction of a millisecond."""
    await init_connection(connection)
    await connection.execute(API_SESSION)


API_SESSION = "SET plan_cache_mode = force_custom_plan"


async def create_pool(settings: Settings, **overrides: Any) -> asyncpg.Pool:
    options: dict[str, Any] = {
        "min_size": settings.db_pool_min,
        "max_size": settings.db_pool_max,
        "init": init_connection,
        "command_timeout": 60,
        "connection_class": PooledConnection,
        # Short batch statements (unnest of a few thousand values, CTE chains) whose row
        # estimates are far off: with the server's default JIT, Postgres compiled plans for
        # a second or two to run them in milliseconds.
        "server_settings": {"jit": "off"},
    }
    options.update(overrides)
    pool = await asyncpg.create_pool(settings.database_url, **options)
    assert pool is not None
    return pool
