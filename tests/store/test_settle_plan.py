"""Settling acknowledgements reads the chunks they name by key, whatever the statistics say."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg

from worker.store.acks import SETTLE_CHUNKS

CHUNKS = 180_000
WAITING = 20_000
ACKED = 3_820


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def test_a_burst_of_waiting_chunks_is_not_scanned_once_per_acknowledgement(pool: asyncpg.Pool) -> None:
    """Found in the bench (auto_explain): statistics taken when no chunk was waiting made
    the planner expect one, and put a sequential scan of task_chunks outside a rescan of
    the batch's results. With 15,000 chunks then waiting, one ack batch took 9.3 s and
    no job completed meanwhile. Rolled back: the rows and the statistics do not stay."""
    task_ids = [uuid.uuid4() for _ in range(CHUNKS)]
    first_job = 10_000_000
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(
                "INSERT INTO task_chunks (job_id, product, chunk_no, task_id, seq_from, seq_to, status)"
                " SELECT $2 + g, 'p' || (g % 3), 0, t, 0, 1, 'success'"
                " FROM unnest($1::uuid[]) WITH ORDINALITY AS u(t, g)",
                task_ids,
                first_job,
            )
            await connection.execute("ANALYZE task_chunks")  # a moment with none waiting
            await connection.execute(
                "UPDATE task_chunks SET status = 'waiting' WHERE job_id > $1", first_job + CHUNKS - WAITING
            )
            acked = range(CHUNKS - ACKED + 1, CHUNKS + 1)  # ordinality: 1-based
            explained = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) {SETTLE_CHUNKS}",
                [task_ids[g - 1] for g in acked],
                [first_job + g for g in acked],
                [f"p{g % 3}" for g in acked],
                ["success"] * ACKED,
                [None] * ACKED,
                [None] * ACKED,
                [None] * ACKED,
                *([] for _ in range(6)),
            )
        finally:
            await transaction.rollback()
    plan = json.loads(explained)[0]["Plan"]
    outer_scans = [loop["Plans"][0] for loop in nodes(plan) if loop["Node Type"] == "Nested Loop" and loop.get("Plans")]
    assert not [
        scan for scan in outer_scans if scan["Node Type"] == "Seq Scan" and scan["Relation Name"] == "task_chunks"
    ], explained
