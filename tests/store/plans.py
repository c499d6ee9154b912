"""Reading query plans in tests, inside a transaction that is rolled back (rows and
statistics made for the plan do not stay)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan, at any depth."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def explain(connection: asyncpg.Connection, statement: str, *args: object) -> dict[str, Any]:
    """The plan's root node (EXPLAIN, JSON format)."""
    plan: dict[str, Any] = json.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args))[0]["Plan"]
    return plan


@contextlib.asynccontextmanager
async def rolled_back(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        finally:
            await transaction.rollback()
