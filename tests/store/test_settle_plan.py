"""Settling acknowledgements reads the chunks they name by key, whatever the statistics say."""

from __future__ import annotations

import uuid

import asyncpg

from tests.store.plans import explain, plan_nodes, rolled_back
from worker.store.acks import SETTLE_CHUNKS

CHUNKS = 180_000
WAITING = 20_000
ACKED = 3_820


async def test_a_burst_of_waiting_chunks_is_not_scanned_once_per_acknowledgement(pool: asyncpg.Pool) -> None:
    """Found in the bench (auto_explain): statistics taken when no chunk was waiting made
    the planner expect one, and put a sequential scan of task_chunks outside a rescan of
    the batch's results. With 15,000 chunks then waiting, one ack batch took 9.3 s and
    no job completed meanwhile. Rolled back: the rows and the statistics do not stay."""
    task_ids = [uuid.uuid4() for _ in range(CHUNKS)]
    first_job = 10_000_000
    async with rolled_back(pool) as connection:
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
        plan = await explain(
            connection,
            SETTLE_CHUNKS,
            [task_ids[g - 1] for g in acked],
            [first_job + g for g in acked],
            [f"p{g % 3}" for g in acked],
            ["success"] * ACKED,
            [None] * ACKED,
            [None] * ACKED,
            [None] * ACKED,
            *([] for _ in range(6)),
        )
    outer_scans = [
        loop["Plans"][0] for loop in plan_nodes(plan) if loop["Node Type"] == "Nested Loop" and loop.get("Plans")
    ]
    assert not [
        scan for scan in outer_scans if scan["Node Type"] == "Seq Scan" and scan["Relation Name"] == "task_chunks"
    ], plan
