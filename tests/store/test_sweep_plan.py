"""The reconciler's sweep asks whether a job is on retention_queue by an index lookup."""

from __future__ import annotations

import asyncpg

from tests.store.plans import explain, plan_nodes, rolled_back
from worker.store.reconcile import SWEEP

QUEUED = 50_000


async def test_the_sweep_never_reads_the_whole_retention_queue_per_job(pool: asyncpg.Pool) -> None:
    """Found with auto_explain in the bench: the sweep's check that an ended job is queued
    for retention read all of retention_queue for each job of the page (its key starts
    with finished_at), 2.2-3.2 s a page at 63,000 queued. Migration 0019 indexes job_id.
    Rolled back: the rows and the statistics do not stay."""
    async with rolled_back(pool) as connection:
        await connection.execute(
            "INSERT INTO retention_queue (finished_at, job_id)"
            " SELECT now() - g * interval '1 s', 20000000 + g FROM generate_series(1, $1) g",
            QUEUED,
        )
        await connection.execute("ANALYZE retention_queue")
        plan = await explain(connection, SWEEP, 0, 10_000)
    reads = [
        node
        for node in plan_nodes(plan)
        if node.get("Relation Name") == "retention_queue" and node["Node Type"] != "ModifyTable"
    ]
    assert reads, plan
    assert {node["Node Type"] for node in reads} <= {"Index Only Scan", "Index Scan", "Bitmap Heap Scan"}, plan
